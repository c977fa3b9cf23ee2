"""Basic-auth passwords: hashed when a key is written, checked fast and safely when one is used.

Writing (the Gateway API): ``hash_password`` stores a password the way the gateway's
``basic_auth_hash_key_function`` says (Tyk's ``basic_auth_data`` with ``hash_type``): bcrypt cost
10 (the default), sha256 or murmur hex digests, or plain text for compatibility.

Checking (every request): ``PasswordChecker``. bcrypt is slow on purpose (about 60-140 ms at cost
10 here), so:

* it never runs on the event loop: a small thread pool runs it (bcrypt releases the GIL) at a
  lower CPU priority, so one slow check never stalls other requests, and a burst of them takes
  CPU only from itself when the loop needs it;
* results are cached by (stored hash, keyed digest of the presented password). The result is a
  pure function of that pair, so a cached answer can never be wrong: a password change or a
  deleted key changes or removes the stored hash and so misses the cache. Entries live at most
  the API's ``cache_ttl`` (Tyk: 60 s), the cache is bounded (LRU), and the password digest is
  keyed BLAKE2b under a per-process random key (Tyk keeps a murmur64 of the password, which collides on
  purpose-made inputs and is a fast unsalted hash of the secret);
* concurrent checks of the same pair share one bcrypt run (single flight), and at most
  ``max_pending`` distinct checks wait for the pool: beyond that the request is answered 503
  instead of queueing without bound behind a password-guessing burst.

Passwords longer than 72 bytes are refused rather than silently truncated: bcrypt only reads 72
bytes, so "the right 72 bytes followed by anything" would otherwise match. They cannot be stored
with bcrypt (the Gateway API answers 400), and a presented one never matches a bcrypt hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import bcrypt

from fastgate.sessions.key_ids import HASH_ALGORITHMS, hash_bytes
from fastgate.sessions.session import BasicAuthData

__all__ = ["HASH_FUNCTIONS", "PasswordChecker", "PasswordTooLong", "hash_password", "BCRYPT_MAX_BYTES"]

log = logging.getLogger("fastgate.auth")

BCRYPT_MAX_BYTES: Final = 72
BCRYPT_COST: Final = 10
BCRYPT_NICE: Final = 10  # added to bcrypt threads' nice value: about a tenth of the loop's CPU weight
# Values of ``basic_auth_hash_key_function`` ("" means bcrypt, as in Tyk).
HASH_FUNCTIONS: Final = ("", "bcrypt", "plain") + HASH_ALGORITHMS


class PasswordTooLong(ValueError):
    """A password bcrypt cannot hold without truncating it."""


def hash_password(password: str, function: str) -> BasicAuthData:
    """``password`` as stored for ``function`` (one of HASH_FUNCTIONS); raises PasswordTooLong."""
    raw = password.encode()
    if function in ("", "bcrypt"):
        if len(raw) > BCRYPT_MAX_BYTES:
            raise PasswordTooLong(f"a bcrypt password is at most {BCRYPT_MAX_BYTES} bytes")
        hashed = bcrypt.hashpw(raw, bcrypt.gensalt(BCRYPT_COST)).decode("ascii")
        return BasicAuthData(password=hashed, hash_type="bcrypt")
    if function == "plain":
        return BasicAuthData(password=password, hash_type="")
    return BasicAuthData(password=hash_bytes(raw, function), hash_type=function)


def check_fast(stored: BasicAuthData, password: bytes) -> bool | None:
    """The answer for a non-bcrypt hash (constant time), or None when bcrypt is needed."""
    kind = stored.hash_type
    if kind == "":
        return hmac.compare_digest(stored.password.encode(), password)
    if kind in HASH_ALGORITHMS:
        return hmac.compare_digest(stored.password.encode(), hash_bytes(password, kind).encode())
    return None  # "bcrypt", and as in Tyk anything unknown


class PasswordChecker:
    """bcrypt checks off the event loop, cached and single-flighted (see the module doc)."""

    def __init__(self, *, threads: int = 2, max_entries: int = 10_000, max_pending: int = 128) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._threads = threads
        self._max = max_entries
        self._max_pending = max_pending
        self._key = os.urandom(32)
        self._cache: OrderedDict[tuple[str, bytes], tuple[bool, float]] = OrderedDict()
        self._inflight: dict[tuple[str, bytes], asyncio.Future[bool]] = {}

    def cache_key(self, stored_hash: str, password: bytes) -> tuple[str, bytes]:
        """The cache key for a (stored hash, presented password) pair."""
        # Keyed BLAKE2b is a MAC in one pass: 1 µs, where HMAC-SHA256 took 5.
        return stored_hash, hashlib.blake2b(password, key=self._key, digest_size=32).digest()

    def cached(self, key: tuple[str, bytes], ttl: float) -> bool | None:
        """Without awaiting: the remembered result if younger than ``ttl`` seconds, else None."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[1] >= ttl:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry[0]

    def cached_until(self, key: tuple[str, bytes], ttl: float) -> float:
        """When the remembered result for ``key`` stops being used (``time.monotonic``); 0 when
        none is remembered."""
        entry = self._cache.get(key)
        return entry[1] + ttl if entry is not None else 0.0

    async def check(self, key: tuple[str, bytes], password: bytes, *, remember: bool) -> bool | None:
        """Run bcrypt for ``key`` off the loop; None when too many checks are already waiting."""
        if len(password) > BCRYPT_MAX_BYTES:
            return False  # never the stored password (see the module doc); bcrypt would raise
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._inflight) >= self._max_pending:
            return None
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._executor(), _bcrypt_matches, key[0], password)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: an unshared failure is not reported as lost
            raise
        finally:
            del self._inflight[key]
        future.set_result(ok)
        if remember:
            self._cache[key] = (ok, time.monotonic())
            self._cache.move_to_end(key)
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return ok

    def close(self) -> None:
        """Stop the thread pool (checks in progress finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="bcrypt", initializer=_lower_priority)
        return self._pool


def _lower_priority() -> None:
    """Run bcrypt at a lower CPU priority than the event loop (Linux nice is per thread): when a
    core is shared, requests that need no bcrypt keep most of it and an uncached check waits a
    little longer, instead of the other way round."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BCRYPT_NICE))
    except (OSError, AttributeError):  # not Linux, or not allowed: run at normal priority
        pass


def _bcrypt_matches(stored_hash: str, password: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, stored_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        log.warning("a basic-auth key holds a bcrypt hash that is not valid; the password check fails")
        return False
