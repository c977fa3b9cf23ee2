"""Auth work on the request body while it streams: digest checks and credentials read from it.

The gateway forwards a body as it arrives and never holds it whole, yet two auth features need
to see it:

* an HMAC API with ``hmac_validate_digest`` must refuse a body that does not match its signed
  ``Digest`` header, and the upstream must never receive such a body whole;
* basic auth with ``extract_from_body`` reads the user name and password from the body before
  it can decide anything.

A ``BodyTap`` is made for a request when its head is complete (``CompiledApi.body_tap``, only on
APIs that use one of these), so it sees every body byte, including bytes that arrive while the
request waits behind a pipelined one. The exchange hands it each piece *before* forwarding it:

* digest: the pieces are hashed as they pass. The verdict comes with the body's last bytes (the
  piece that completes a Content-Length body, or the end of a chunked one), and ``feed``/``end``
  return False on a mismatch *before* those last bytes (or the terminating chunk) go out, so the
  upstream only ever sees a truncated request on a connection that is then closed. The client
  gets 400 if no response has started, else both connections are dropped.
* credentials: up to ``limit`` bytes are kept, and ``body()`` waits for the body's end (or the
  limit) so the basic-auth stage can search it; the body still reaches the upstream unchanged.
  The exchange buffers up to the limit before it pauses the client's reads (its high-water
  mark, or the limit when larger), so the wait can never stall behind a paused read.
* plugin hooks (``pre``, ``auth_check``, ``post_key_auth``, ``post``): the same keeping, up to the
  API's plugin body limit, so a hook sees the whole body (``object.body``); see
  ``fastgate.plugins.hooks.compile_body_stage``.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from fastgate.pipeline.stage import Denial

__all__ = ["BodyTap", "DIGEST_MISMATCH", "CREDENTIALS_BODY_LIMIT"]

DIGEST_MISMATCH = Denial(400, "Request body does not match its Digest header")
CREDENTIALS_BODY_LIMIT = 64 * 1024  # below the exchange's BODY_HIGH_WATER (256 KiB)


class BodyTap:
    """Watches one request body: hashes it against a digest and/or keeps its start."""

    __slots__ = ("_length", "_seen", "_hasher", "_expected", "_verdict", "_limit", "_kept",
                 "_waiter", "_joined", "complete", "too_large", "refusal")

    def __init__(self, *, length: int | None, digest: tuple[Any, bytes] | None = None,
                 keep: int = 0) -> None:
        self._length = length  # Content-Length, None for a chunked body
        self._seen = 0
        self._hasher = digest[0]() if digest is not None else None
        self._expected = digest[1] if digest is not None else b""
        self._verdict: bool | None = None
        self._limit = keep
        self._kept: list[bytes] | None = [] if keep else None
        self._waiter: asyncio.Future[None] | None = None
        self._joined: bytes | None = None
        self.complete = False
        self.too_large = False
        self.refusal = DIGEST_MISMATCH

    @property
    def checks_digest(self) -> bool:
        return self._hasher is not None

    @property
    def keeps_body(self) -> bool:
        """True when the request's credentials are to be read from its body."""
        return self._kept is not None

    @property
    def limit(self) -> int:
        """The most body bytes kept (0: none)."""
        return self._limit

    # ---- called by the exchange --------------------------------------------------------------

    def feed(self, data: bytes) -> bool:
        """One body piece, before it is forwarded; False: refuse the request (digest mismatch)."""
        self._seen += len(data)
        kept = self._kept
        if kept is not None and not self.too_large:
            if self._seen > self._limit:
                self.too_large = True
                self._kept = None
                self._wake()
            else:
                kept.append(data)
        hasher = self._hasher
        if hasher is None:
            return True
        hasher.update(data)
        if self._length is not None and self._seen >= self._length:
            return self._verify()
        return True

    def end(self) -> bool:
        """The body is complete; False: refuse the request (digest mismatch)."""
        self.complete = True
        self._wake()
        return self._verify() if self._hasher is not None else True

    # ---- used by auth stages -----------------------------------------------------------------

    async def body(self, timeout: float) -> bytes | None:
        """The whole body once it has arrived, or None when it is longer than the limit.

        Raises ``TimeoutError`` when the body does not complete within ``timeout`` (the client
        went quiet or away)."""
        if not (self.complete or self.too_large):
            self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._waiter, timeout)
        return self.kept()

    def kept(self) -> bytes | None:
        """The body kept so far (all of it once ``complete``), or None when it was too large."""
        if self.too_large or self._kept is None:
            return None
        if not self.complete:
            return b"".join(self._kept)
        if self._joined is None:
            self._joined = b"".join(self._kept)
            self._kept = [self._joined]
        return self._joined

    # ---- internals ---------------------------------------------------------------------------

    def _verify(self) -> bool:
        if self._verdict is None:
            assert self._hasher is not None
            self._verdict = hmac.compare_digest(self._hasher.digest(), self._expected)
        return self._verdict

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
