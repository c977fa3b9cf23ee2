"""RFC 7662 token introspection for external OAuth: the call, its cache and its single flight.

The call (Tyk's form): ``POST`` to the configured URL, form-encoded ``token``, ``client_id`` and
``client_secret`` (or, with ``client_auth: "basic"``, the client credentials as HTTP Basic and only
``token`` in the form). The answer must be a 200 JSON object with a boolean ``active``; anything
else (no connection, a timeout, a non-200 status, garbage, a body over ``MAX_RESPONSE_BYTES``) is
an ``IdpError`` the stage turns into 503: the IdP's trouble is never reported as the client's.

The cache (beyond Tyk, which stores ``introspection-<token>`` in Redis) is node-local, per API, a
bounded LRU (``MAX_ENTRIES``) keyed by the SHA-256 of the token, never the token itself:

* a positive answer is kept for ``cache.timeout`` seconds (0: no timeout of its own) and never
  past the token's ``exp`` (an answer with neither is kept ``NO_EXP_TTL`` seconds);
* a negative answer (``active: false``) is kept for ``NEGATIVE_TTL`` seconds (or ``cache.timeout``
  when shorter), so a client replaying a bad token cannot make the gateway hammer the IdP;
* failures are never cached.

Without ``cache.enabled`` nothing is kept. Concurrent requests for one token share one call
(single flight, cache on or off), and at most ``MAX_CONCURRENT_CALLS`` calls per API are in
flight at once (more wait, within the read timeout).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import time
from collections import OrderedDict
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson

from fastgate.apidef.auth_settings import IntrospectionSettings
from fastgate.auth.idp_http import IdpError, idp_request

__all__ = ["Introspected", "Introspector", "MAX_ENTRIES", "NEGATIVE_TTL", "NO_EXP_TTL", "token_key"]

MAX_ENTRIES: Final = 10_000
NEGATIVE_TTL: Final = 10.0
NO_EXP_TTL: Final = 300.0
MAX_RESPONSE_BYTES: Final = 64 * 1024
MAX_CONCURRENT_CALLS: Final = 32
CONNECT_TIMEOUT: Final = 2.0
READ_TIMEOUT: Final = 5.0


# This process's calls to introspection endpoints (every API) and the failed ones (no answer in
# time, an answer other than 200, garbage): read by the metrics at scrape.
CALLS: list[int] = [0, 0]


class Introspected:
    """One introspection answer and how long it may be used."""

    __slots__ = ("active", "claims", "until")

    def __init__(self, active: bool, claims: dict[str, Any], until: float) -> None:
        self.active = active
        self.claims = claims
        self.until = until


def token_key(token: str) -> bytes:
    """What the cache keys a token by: its SHA-256 (the token itself is never kept)."""
    return hashlib.sha256(token.encode()).digest()


class Introspector:
    """Introspection for one API: the cache, the calls in flight, the call itself."""

    def __init__(self, settings: IntrospectionSettings, *, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.cache: OrderedDict[bytes, Introspected] = OrderedDict()
        self.calls = 0  # made to the IdP (for the decision trace and tests)
        self._inflight: dict[bytes, asyncio.Future[Introspected | IdpError]] = {}
        self._slots: asyncio.Semaphore | None = None
        headers = [("Content-Type", "application/x-www-form-urlencoded")]
        if settings.basic_auth:
            pair = f"{quote(settings.client_id, safe='')}:{quote(settings.client_secret, safe='')}"
            headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
        self._headers = tuple(headers)

    def cached(self, key: bytes, now: float) -> Introspected | None:
        """The cached answer for a token's ``key`` still usable at ``now``, or None."""
        entry = self.cache.get(key)
        if entry is None:
            return None
        if entry.until <= now:
            del self.cache[key]
            return None
        self.cache.move_to_end(key)
        return entry

    async def introspect(self, token: str, key: bytes) -> Introspected | IdpError:
        """Ask the IdP about ``token`` (joining a call in flight for it); cached when enabled."""
        pending = self._inflight.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.create_future()
            self._inflight[key] = pending
            loop.create_task(self._run(token, key, pending))
        return await asyncio.shield(pending)

    async def _run(self, token: str, key: bytes, done: asyncio.Future[Introspected | IdpError]) -> None:
        result: Introspected | IdpError
        try:
            result = await self._call(token)
        except IdpError as exc:
            result = exc
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request gets 503, not a hang
            result = IdpError(f"introspection failed: {type(exc).__name__}")
        finally:
            self._inflight.pop(key, None)
        if isinstance(result, Introspected) and self.settings.cache_enabled and result.until > time.time():
            self.cache[key] = result
            self.cache.move_to_end(key)
            if len(self.cache) > MAX_ENTRIES:
                self.cache.popitem(last=False)
        if not done.done():
            done.set_result(result)

    async def _call(self, token: str) -> Introspected:
        if self._slots is None:
            self._slots = asyncio.Semaphore(MAX_CONCURRENT_CALLS)
        try:
            await asyncio.wait_for(self._slots.acquire(), self.read_timeout)
        except asyncio.TimeoutError:
            raise IdpError("too many introspection calls in flight") from None
        try:
            self.calls += 1
            CALLS[0] += 1
            response = await idp_request(
                self.settings.url, method="POST", body=self._form(token), headers=self._headers,
                connect_timeout=self.connect_timeout, read_timeout=self.read_timeout, max_bytes=MAX_RESPONSE_BYTES,
            )
        except Exception:
            CALLS[1] += 1
            raise
        finally:
            self._slots.release()
        try:
            if response.status != 200:
                raise IdpError(f"the introspection endpoint answered {response.status}")
            return parse_answer(response.body, self.settings.cache_timeout, time.time())
        except IdpError:
            CALLS[1] += 1
            raise

    def _form(self, token: str) -> bytes:
        fields = [("token", token)]
        if not self.settings.basic_auth:
            fields += [("client_id", self.settings.client_id), ("client_secret", self.settings.client_secret)]
        return urlencode(fields).encode()


def parse_answer(body: bytes, cache_timeout: float, now: float) -> Introspected:
    """An introspection answer with how long it may be cached; raises ``IdpError`` for garbage."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise IdpError("the introspection answer is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("active"), bool):
        raise IdpError('the introspection answer has no boolean "active"')
    if not doc["active"]:
        ttl = min(NEGATIVE_TTL, cache_timeout) if cache_timeout > 0 else NEGATIVE_TTL
        return Introspected(False, {}, now + ttl)
    until = now + cache_timeout if cache_timeout > 0 else math.inf
    exp = doc.get("exp")
    if type(exp) in (int, float) and math.isfinite(exp):
        until = min(until, float(exp))
    elif exp is not None:
        raise IdpError('the introspection answer\'s "exp" is not a number')
    if until == math.inf:
        until = now + NO_EXP_TTL
    return Introspected(True, doc, until)
