"""Upstream connections: keep-alive pools per target and the protocol that reads responses.

Pool rules (aiohttp's connector, httpcore's pool, without their list scans):
- one ``UpstreamPool`` per ``(scheme, host, port)``, shared across reloads;
- ``acquire()`` is synchronous and returns the most recently used idle connection (warm, least
  likely to have been closed by the upstream), skipping ones that died or sat idle too long;
- only when no idle connection exists does a request wait for ``connect()``; with a per-host
  limit, requests beyond it wait FIFO for a released connection;
- a connection goes back to the pool only after a complete response on a keep-alive exchange
  whose request was fully sent; anything else closes it.

The response bytes are parsed by httptools and handed to the ``Exchange`` that owns the
connection (``fastgate.server.exchange``). Of the client it only touches the connection's cork:
everything one upstream read produces leaves in one write to the client.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, Final, TYPE_CHECKING

import httptools

from fastgate.clock import CLOCK
from fastgate.http.h1 import (
    FIELD_CONNECTION,
    FIELD_DATE,
    FIELD_LENGTH,
    FIELD_PASS,
    FIELD_TRANSFER_ENCODING,
    response_field_kind,
)

if TYPE_CHECKING:
    from fastgate.pipeline.compile import UpstreamTarget
    from fastgate.server.exchange import Exchange

__all__ = ["UpstreamPool", "UpstreamConnection", "PoolSet"]


class _Unsolicited(Exception):
    """Raised from ``on_message_begin``: the upstream sent a response nobody asked for."""


class _HeadTooLarge(Exception):
    """Raised from ``on_header``: the upstream's response head is over ``MAX_RESPONSE_HEAD``."""


# An upstream's response head (status line and headers) larger than this is refused with 502, so
# a broken or hostile upstream cannot make the gateway buffer without bound. nginx refuses at its
# proxy_buffer_size (4-8 KiB); big Set-Cookie headers are common, so the bound here is generous.
MAX_RESPONSE_HEAD: Final = 256 * 1024


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream, bound to at most one exchange at a time."""

    __slots__ = (
        "pool",
        "transport",
        "parser",
        "exchange",
        "released_at",
        "alive",
        "reused",
        "status",
        "reason",
        "lines",
        "length",
        "transfer_encoding",
        "listed",
        "dated",
        "paused",
        "answered",
        "head_size",
        "in_head",
    )

    def __init__(self, pool: "UpstreamPool") -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.released_at = 0.0
        self.alive = False
        self.reused = False
        self.reason = b""
        # The response head, sorted while httptools reports it (one pass, no list of pairs):
        # ``lines`` holds the forwarded field lines after a slot for the status line; the
        # framing and hop-by-hop fields are kept apart for the exchange to decide on.
        self.lines: list[bytes] = [b""]
        self.length: bytes | None = None  # the last Content-Length value
        self.transfer_encoding: bytes | None = None  # the last Transfer-Encoding value
        self.listed: list[bytes] = []  # names the upstream's Connection header lists
        self.dated = False
        self.paused = False
        self.head_size = 0  # bytes of the current response head so far
        self.in_head = True  # between requests and until a response head is complete
        # A response completed during the current read. The connection may already have been
        # handed to the next request (a pipelined one, or a pool waiter): any byte after that
        # response in the same read was sent before that request could have arrived.
        self.answered = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.alive = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.pool.forget(self)
        exchange = self.exchange
        if exchange is not None:
            self.exchange = None
            exchange.on_upstream_lost(self)

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            # An idle connection has nothing to say; bytes here mean it is unusable.
            self.close()
            return
        client = self.exchange.client
        corked = client.cork()
        try:
            self._feed(data)
        finally:
            if corked:
                client.uncork()

    def _feed(self, data: bytes) -> None:
        self.answered = False
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            # Garbage, or a 101 we never asked for (Upgrade is not forwarded): unusable.
            self._unusable()
            return
        if self.in_head:
            # httptools keeps an unterminated header line in memory: count what arrived while the
            # head is still incomplete after a whole read.
            self.head_size += len(data)
            if self.head_size > 2 * MAX_RESPONSE_HEAD:
                self._unusable()
                return
        exchange = self.exchange
        if exchange is not None and exchange.head_only_done:
            # A HEAD response announces a length it never sends; llhttp cannot be told the
            # request method, so the message ends here and the parser starts over.
            self.parser = httptools.HttpResponseParser(self)
            exchange.on_response_complete()

    def _unusable(self) -> None:
        """The upstream broke the protocol: close, and tell the exchange it got no answer."""
        exchange = self.exchange
        self.exchange = None
        self.close()
        if exchange is not None:
            exchange.on_upstream_garbage()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost ends any read-until-close body

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_pause()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.on_upstream_resume()

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.answered:
            # A second response in the read that ended ours: never let it answer whoever has
            # the connection now (response desync); the connection is dropped as garbage.
            raise _Unsolicited
        self.lines = [b""]
        self.length = None
        self.transfer_encoding = None
        self.listed = []
        self.dated = False
        self.reason = b""
        self.head_size = 0
        self.in_head = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > MAX_RESPONSE_HEAD:
            raise _HeadTooLarge
        kind = response_field_kind(name)
        if kind == FIELD_PASS:
            self.lines.append(b"%b: %b\r\n" % (name, value))
        elif kind == FIELD_DATE:
            self.dated = True
            self.lines.append(b"%b: %b\r\n" % (name, value))
        elif kind == FIELD_LENGTH:
            self.length = value
        elif kind == FIELD_TRANSFER_ENCODING:
            self.transfer_encoding = value
        elif kind == FIELD_CONNECTION:
            lvalue = value.lower()
            # "keep-alive" and "close" name no header: the common case costs no split.
            if lvalue != b"keep-alive" and lvalue != b"close":
                self.listed.extend(t.strip() for t in lvalue.split(b","))
        # FIELD_HOP: never forwarded

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.exchange is not None:
            self.exchange.on_response_head(self.parser.get_status_code(), self.reason, self)

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.on_response_body(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.on_response_complete()
            if self.exchange is not exchange:  # its response is over (not a 1xx)
                self.answered = True

    # used by the exchange
    def write(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, data: list[bytes]) -> None:
        self.transport.writelines(data)  # type: ignore[union-attr]

    def keep_alive(self) -> bool:
        return self.alive and self.parser.should_keep_alive()

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.alive = False
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle and waiting bookkeeping for one upstream address."""

    __slots__ = (
        "scheme",
        "host",
        "port",
        "ssl_context",
        "connect_timeout",
        "idle_timeout",
        "limit",
        "idle",
        "open",
        "waiters",
        "loop",
    )

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        idle_timeout: float,
        limit: int = 0,
    ) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.ssl_context = ssl.create_default_context() if scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.limit = limit
        self.idle: deque[UpstreamConnection] = deque()
        self.open: set[UpstreamConnection] = set()
        self.waiters: deque[Exchange] = deque()
        self.loop = asyncio.get_event_loop()

    def acquire(self) -> UpstreamConnection | None:
        """An idle, live connection, or ``None`` when the caller must ``connect()``."""
        idle = self.idle
        stale_before = CLOCK.now - self.idle_timeout
        while idle:
            conn = idle.pop()
            if conn.alive and conn.released_at > stale_before:
                conn.reused = True
                return conn
            conn.close()
        return None

    def connect(self, exchange: "Exchange") -> None:
        """Open a connection for ``exchange`` (or queue it behind the per-host limit)."""
        if self.limit and len(self.open) >= self.limit:
            self.waiters.append(exchange)
            return
        conn = UpstreamConnection(self)
        self.open.add(conn)
        self.loop.create_task(self._connect(conn, exchange))

    async def _connect(self, conn: UpstreamConnection, exchange: "Exchange") -> None:
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.host if self.ssl_context else None,
                ),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            self.forget(conn)
            exchange.on_connect_failed(exc)
            return
        if exchange.wants_connection():
            exchange.attach(conn)
        else:
            self.release(conn)

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose exchange ended cleanly."""
        conn.exchange = None
        conn.resume_reading()
        while self.waiters:
            exchange = self.waiters.popleft()
            if exchange.wants_connection():
                conn.reused = True
                exchange.attach(conn)
                return
        conn.released_at = CLOCK.now
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it, and let a waiter open a new one."""
        if conn in self.open:
            self.open.discard(conn)
            while self.waiters:
                exchange = self.waiters.popleft()
                if exchange.wants_connection():
                    self.connect(exchange)
                    break

    def sweep(self) -> None:
        """Close idle connections past ``idle_timeout`` (called by the clock tick)."""
        stale_before = CLOCK.now - self.idle_timeout
        while self.idle and self.idle[0].released_at <= stale_before:
            self.idle.popleft().close()

    def close_all(self) -> None:
        for conn in list(self.open):
            conn.close()
        self.idle.clear()


class PoolSet:
    """The gateway's pools by upstream address; survives API reloads so warm connections stay."""

    __slots__ = ("pools", "connect_timeout", "idle_timeout", "limit")

    def __init__(self, *, connect_timeout: float, idle_timeout: float, limit: int = 0) -> None:
        # By ``UpstreamTarget.pool_key``: one str object per target whose hash is kept, so a
        # request's lookup builds and hashes nothing.
        self.pools: dict[str, UpstreamPool] = {}
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.limit = limit

    def get(self, target: "UpstreamTarget") -> UpstreamPool:
        """The pool of ``target``'s address (made on first use)."""
        pool = self.pools.get(target.pool_key)
        if pool is None:
            pool = self.pools[target.pool_key] = UpstreamPool(
                target.scheme,
                target.host,
                target.port,
                connect_timeout=self.connect_timeout,
                idle_timeout=self.idle_timeout,
                limit=self.limit,
            )
        return pool

    def sweep(self) -> None:
        for pool in self.pools.values():
            pool.sweep()

    def close_all(self) -> None:
        for pool in self.pools.values():
            pool.close_all()

    def stats(self) -> dict[str, Any]:
        return {
            f"{pool.scheme}://{pool.host}:{pool.port}": {"open": len(pool.open), "idle": len(pool.idle),
                                                         "waiting": len(pool.waiters)}
            for pool in self.pools.values()
        }
