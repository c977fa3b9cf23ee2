"""The client side of the listener: one asyncio Protocol per connection, fed by httptools.

This shell owns bytes, keep-alive, pipelining order, flow control and the connection's
timeouts; what a request means is decided in ``fastgate.http.h1`` (rules) and ``Exchange`` (stages, proxy).

Reading is paused for any of four reasons, kept as bits in ``blocked`` so that one reason
clearing never resumes reading while another still holds: too many pipelined requests queued,
a request body buffered faster than it can be sent, the upstream not accepting body bytes, or a
request still being checked (the next pipelined head may wait in the kernel, not in memory).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from fastgate.clock import CLOCK
from fastgate.server.exchange import Exchange
from fastgate.certs.peer import peer_certificate
from fastgate.http.h1 import (
    MAX_CHUNK_EXCESS,
    ProtocolError,
    canonical_host,
    chunk_framing_excess,
    error_response,
    length_bits,
    normalize_target,
)
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.config import HttpServerOptions
    from fastgate.pipeline.stage import Denial
    from fastgate.server.upstream import PoolSet

__all__ = ["GatewayHost", "HttpConnection"]


class GatewayHost:
    """What a connection and its exchanges need of the gateway they run in: the gateway
    (``fastgate.gateway.Gateway``) subclasses it and is handed down, never imported.

    A base class rather than a ``typing.Protocol``: compiled with mypyc, every attribute read and
    method call through a native class is a field load or a direct call, where a Protocol's are
    lookups by name (about 20 a request, ≈ 10 % of a keyless request's instructions by
    ``bench/instr.py``). The per-request limits of ``[http_server_options]`` are copied here as
    native numbers for the same reason (``set_limits``; the options never change after start)."""

    loop: asyncio.AbstractEventLoop
    options: "HttpServerOptions"
    connections: "set[HttpConnection]"
    pools: "PoolSet"
    admin_body_limit: int
    upstream_timeout: float
    read_header_timeout: float
    read_timeout: float
    write_timeout: float
    idle_timeout: float
    max_header_bytes: int
    max_header_count: int
    max_pipelined_requests: int
    forward_client_cert: bool

    def set_limits(self, options: "HttpServerOptions") -> None:
        """Copy the per-request numbers of ``options`` (called once, by the gateway's __init__)."""
        self.options = options
        self.upstream_timeout = float(options.upstream_timeout)
        self.read_header_timeout = float(options.read_header_timeout)
        self.read_timeout = float(options.read_timeout)
        self.write_timeout = float(options.write_timeout)
        self.idle_timeout = float(options.idle_timeout)
        self.max_header_bytes = int(options.max_header_bytes)
        self.max_header_count = int(options.max_header_count)
        self.max_pipelined_requests = int(options.max_pipelined_requests)
        self.forward_client_cert = bool(options.set_forwarded_client_cert)

    def route(self, req: Request) -> bool:
        """Find the API for ``req``; False when nothing serves it."""
        raise NotImplementedError

    def upstream_head(self, exchange: Exchange) -> bytes:
        """The request line and headers the upstream receives."""
        raise NotImplementedError

    def handle_local(self, exchange: Exchange) -> None:
        """Answer a request meant for the gateway itself."""
        raise NotImplementedError

    def run_local(self, exchange: Exchange) -> None:
        """Start the local handler once the body is complete."""
        raise NotImplementedError

    def stage_failed(self, exchange: Exchange, exc: BaseException) -> "Denial":
        """The answer when a stage raised."""
        raise NotImplementedError

    def record(self, exchange: Exchange) -> None:
        """Bookkeeping after a response (the access log)."""
        raise NotImplementedError


QUEUE_FULL: Final = 1
BODY_BACKLOG: Final = 2
UPSTREAM_FULL: Final = 4
STREAM_BROKEN: Final = 8

# Deadline kinds: what happens when ``read_deadline`` passes.
IDLE: Final = 0
HEAD: Final = 1
BODY: Final = 2


class _StopParsing(Exception):
    """Raised from ``on_message_begin`` to stop llhttp at a request we must not process."""


_SPECIAL: Final = frozenset(
    {b"host", b"transfer-encoding", b"content-length", b"connection", b"expect", b"x-forwarded-for", b"forwarded"}
)
_SPECIAL_LENGTHS: Final = length_bits(_SPECIAL)


class HttpConnection(asyncio.Protocol):
    """One client connection (plain TCP or TLS) and the requests it carries."""

    __slots__ = (
        "gateway",
        "transport",
        "parser",
        "client_ip",
        "scheme",
        "peer_cert",
        "parsing",
        "parsing_exchange",
        "active",
        "queue",
        "blocked",
        "reading_paused",
        "write_paused",
        "closing",
        "closed",
        "head_size",
        "host_count",
        "header_count",
        "body_started",
        "paused_at",
        "chunks",
        "chunk_excess",
        "framing_bytes",
        "read_deadline",
        "read_kind",
        "write_deadline",
        "admin",
        "final_seen",
        "messages",
        "out",
        "forwarded_host",
        "forwarded_request_host",
        "forwarded_block",
    )

    def __init__(self, gateway: GatewayHost, *, admin: bool = False) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.scheme = "http"
        self.peer_cert: object = None
        self.parsing: Request | None = None
        self.parsing_exchange: Exchange | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.blocked = 0
        self.reading_paused = False
        self.write_paused = False
        self.closing = False
        self.closed = False
        self.head_size = 0
        self.host_count = 0
        self.header_count = 0
        self.body_started = 0.0  # when the current body's first byte came (minimum-rate check)
        self.paused_at = 0.0  # when we stopped reading: our pauses are not the client's slowness
        self.chunks = 0  # chunk-size lines in the current read
        self.chunk_excess = 0  # framing not paid for by data, in the current chunked body
        self.framing_bytes = 0  # chunk framing bytes of the current body, counted as body
        self.read_deadline = 0.0
        self.read_kind = IDLE
        self.write_deadline = 0.0
        self.admin = admin  # the Gateway API's own listener
        self.out: list[bytes] | None = None  # writes held back while corked
        # A request that ends the connection (close, HTTP/1.0, refused head) was parsed: nothing
        # after it may be processed (RFC 9112 §9.6), even bytes already in the same segment.
        self.final_seen = False
        self.messages = 0  # requests completely parsed on this connection
        # The upstream's Host and X-Forwarded-* lines, built by the gateway for the first request
        # and reused while the two hosts stay the same (client address and scheme cannot change).
        self.forwarded_host: bytes | None = None  # None: nothing built yet
        self.forwarded_request_host = ""
        self.forwarded_block = b""

    # ---- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
            # The verified client certificate (or None), hashed once for every request on it.
            self.peer_cert = peer_certificate(transport.get_extra_info("ssl_object"))
        self.gateway.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
        if self.active is not None:
            self.active.cancel()
            self.active = None
        for exchange in self.queue:
            exchange.cancel()
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing and self.active is None and not self.queue:
            return
        if self.parsing is None and self.read_kind == IDLE and self.active is None:
            self.read_kind = HEAD
            self.read_deadline = CLOCK.now + self.gateway.read_header_timeout
        messages = self.messages
        req = self.parsing
        metered = req is not None and req.chunked and self.parsing_exchange is not None
        if metered:
            received = req.body_received  # type: ignore[union-attr]
            self.chunks = 0
        rest: bytes | None = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # We never switch protocols (Upgrade is hop-by-hop and dropped); the request was
            # complete, so parse what follows as the next request with a fresh parser.
            self.parser = httptools.HttpRequestParser(self)
            rest = data[upgrade.args[0] :] if upgrade.args else b""
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, ProtocolError):
                self._refuse(cause.status, cause.message)
            elif not isinstance(cause, _StopParsing):
                raise
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"Malformed request: {exc}")
            return
        if rest is not None:
            # Outside the except block: a callback error of the next request must carry its own
            # cause as __context__ (httptools chains it so), not the Upgrade being handled.
            if rest:
                self.data_received(rest)
            return
        if metered and self.parsing is req and self.messages == messages and not self.closed:
            # Every byte of this read belonged to the chunked body: what was not data was framing.
            carried = req.body_received - received  # type: ignore[union-attr]
            self._meter_framing(req, len(data) - carried, carried)  # type: ignore[arg-type]
        elif self.parsing is not None and self.parsing_exchange is None and self.messages == messages:
            # A head still in progress, and every byte of this read belongs to it (no request
            # ended in it): llhttp holds an unfinished header line in memory and reports it
            # only when it ends, so the raw bytes are what bounds it, pipelined or not.
            self.head_size += len(data)
            if self.head_size > 2 * self.gateway.max_header_bytes:
                self._refuse(431, "Request header fields too large")

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_deadline = CLOCK.now + self.gateway.write_timeout
        if self.active is not None:
            self.active.on_client_pause()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.active is not None:
            self.active.on_client_resume()

    # ---- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.final_seen or self.closed:
            # Pipelined bytes after a request that closes the connection, or after we closed it
            # (a refusal that left a body unread): a request nobody will get the answer to, or
            # one smuggled behind a refused head, must never reach an upstream.
            raise _StopParsing
        req = self.parsing = Request()
        req.client_ip = self.client_ip
        req.scheme = self.scheme
        req.peer_cert = self.peer_cert
        self.head_size = 0
        self.host_count = 0
        self.header_count = 0
        self.body_started = 0.0
        self.chunk_excess = 0
        self.framing_bytes = 0
        if self.read_kind != HEAD and self.active is None:
            self.read_kind = HEAD
            self.read_deadline = CLOCK.now + self.gateway.read_header_timeout

    def on_url(self, url: bytes) -> None:
        self.parsing.target += url  # type: ignore[union-attr]
        self.head_size += len(url)
        if self.head_size > self.gateway.max_header_bytes:
            raise ProtocolError(431, "Request header fields too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.parsing_exchange is not None:
            # llhttp reports trailer fields (after a chunked body) here too. Trailers never
            # become headers: a queued request would otherwise be authorised and forwarded with
            # fields its client sent after the body.
            return
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.gateway.max_header_bytes:
            raise ProtocolError(431, "Request header fields too large")
        self.header_count += 1
        if self.header_count > self.gateway.max_header_count:
            raise ProtocolError(431, "Too many request header fields")
        req = self.parsing
        req.headers.append((name, value))  # type: ignore[union-attr]
        if (_SPECIAL_LENGTHS >> len(name)) & 1:  # else no special name: no lower(), no hash
            if name == b"Host":
                _special_header(self, req, b"host", value)  # type: ignore[arg-type]
            else:
                lname = name.lower()
                if lname in _SPECIAL:
                    _special_header(self, req, lname, value)  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        req = self.parsing
        assert req is not None
        parser = self.parser
        req.method = parser.get_method().decode("ascii")
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive() and not self.closing
        if req.error is None:
            try:
                self._check_head(req)
            except ProtocolError as exc:
                req.error = (exc.status, exc.message)
        if req.error is not None:
            # Nothing after a malformed head can be trusted to be framed the way we think.
            req.keep_alive = False
        elif not (self.admin or self.gateway.route(req)):
            req.error = (404, "No API is served at this path")
        if req.error is None:
            limit = req.api.max_body_bytes if req.api is not None else self.gateway.admin_body_limit
            if limit and req.content_length is not None and req.content_length > limit:
                req.error = (413, "Request is too large")
                req.keep_alive = False
        if req.conn_tokens is not None:
            # The client made its own chain hop-by-hop; ours stays.
            if b"x-forwarded-for" in req.conn_tokens:
                req.forwarded_for = b""
            if b"forwarded" in req.conn_tokens:
                req.forwarded = b""
        if not req.keep_alive:
            self.final_seen = True
        exchange = Exchange(self, req)
        self.parsing_exchange = exchange
        if req.has_body:
            self.read_kind = BODY
            self.read_deadline = CLOCK.now + self.gateway.read_timeout
        if self.active is None:
            self.active = exchange
            exchange.begin()
        else:
            self.queue.append(exchange)
            if len(self.queue) >= self.gateway.max_pipelined_requests:
                self._block(QUEUE_FULL)

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        exchange = self.parsing_exchange
        if req is None or exchange is None:
            return
        if not req.body_received:
            self.body_started = CLOCK.now
        req.body_received += len(body)
        self.read_deadline = CLOCK.now + self.gateway.read_timeout
        limit = exchange.api.max_body_bytes if exchange.api is not None else self.gateway.admin_body_limit
        if limit and req.body_received + self.framing_bytes > limit:
            # Chunked bodies have no announced length; they are cut off when they cross it.
            raise ProtocolError(413, "Request is too large")
        exchange.feed_body(body)

    def on_chunk_header(self) -> None:
        self.chunks += 1

    def on_message_complete(self) -> None:
        req = self.parsing
        exchange = self.parsing_exchange
        self.parsing = None
        self.parsing_exchange = None
        self.messages += 1
        if req is None or exchange is None:
            return
        req.complete = True
        exchange.body_complete()
        if self.final_seen:
            self._block(STREAM_BROKEN)  # nothing more will be read; let the kernel hold it
        if self.active is None and not self.queue:
            self._arm_idle()
        else:
            self.read_kind = IDLE
            self.read_deadline = 0.0

    # ---- used by exchanges -------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        out = self.out
        if out is not None:
            out.append(data)
        else:
            self.transport.write(data)  # type: ignore[union-attr]

    def writelines(self, data: list[bytes]) -> None:
        if self.closed:
            return
        out = self.out
        if out is not None:
            out.extend(data)
        else:
            self.transport.writelines(data)  # type: ignore[union-attr]

    def cork(self) -> bool:
        """Collect writes until ``uncork``: a response head and body produced by one upstream
        read go out in one send (a send is about 10 µs on loopback; 2-3 per response were the
        largest cost in a profile of a small-response proxy). Returns False when already corked."""
        if self.out is not None:
            return False
        self.out = []
        return True

    def uncork(self) -> None:
        out = self.out
        self.out = None
        if out and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]

    def exchange_done(self, exchange: Exchange, keep_alive: bool) -> None:
        """``exchange`` has written its whole response; start the next one or close."""
        if exchange is not self.active:
            return
        self.active = None
        self.gateway.record(exchange)
        if not keep_alive or self.closing:
            self.close()
            return
        if self.blocked & (BODY_BACKLOG | UPSTREAM_FULL):
            self._unblock(BODY_BACKLOG | UPSTREAM_FULL)
            self._refresh_read_deadline()
        if self.queue:
            nxt = self.queue.popleft()
            if self.blocked & QUEUE_FULL and len(self.queue) <= self.gateway.max_pipelined_requests // 2:
                self._unblock(QUEUE_FULL)
            self.active = nxt
            nxt.begin()
        elif self.parsing is None:
            self._arm_idle()
        else:
            # A head pipelined behind the finished request is still arriving: it is the current
            # request now, and read_header_timeout applies to it (else it could stall forever).
            self.read_kind = HEAD
            self.read_deadline = CLOCK.now + self.gateway.read_header_timeout

    def block_body(self) -> None:
        self._block(BODY_BACKLOG)

    def unblock_body(self) -> None:
        self._unblock(BODY_BACKLOG)

    def block_upstream(self) -> None:
        self._block(UPSTREAM_FULL)

    def unblock_upstream(self) -> None:
        self._unblock(UPSTREAM_FULL)

    def close(self) -> None:
        """Close after what has been written is flushed."""
        if self.out is not None:
            self.uncork()
        if not self.closed:
            self.closed = True
            self.transport.close()  # type: ignore[union-attr]

    def abort(self) -> None:
        """Drop the connection now (a response that cannot be completed)."""
        self.out = None
        if not self.closed:
            self.closed = True
            self.transport.abort()  # type: ignore[union-attr]

    # ---- timeouts and shutdown ---------------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Called by the clock tick for every connection, with the fresh ``CLOCK.now``."""
        # Deadlines were armed from a clock as stale as the longest recent tick gap; comparing
        # them with a time that far back means a timeout does not fire early (see ``clock``).
        now -= CLOCK.slack
        if self.read_deadline and not self.reading_paused and now > self.read_deadline:
            self._read_timed_out()
        elif self.body_started and self.read_kind == BODY and not self.reading_paused:
            opts = self.gateway.options
            rate = opts.min_request_body_rate
            req = self.parsing
            if rate and req is not None and now > self.body_started + opts.request_body_rate_grace + req.body_received / rate:
                self._read_timed_out("Request body arrived too slowly")
        if self.write_paused and now > self.write_deadline:
            self.abort()
            return
        if self.active is not None:
            self.active.check_deadline(now)

    def _read_timed_out(self, message: str = "Request timed out") -> None:
        self.read_deadline = 0.0
        kind = self.read_kind
        if kind == IDLE:
            if self.active is None and not self.queue:
                self.close()
        elif self.active is None or (self.active.req is self.parsing and self.active.status == 0):
            if self.active is not None:
                self.active.cancel()
                self.active = None
            self.write(error_response(408, message, keep_alive=False))
            self.close()
        else:
            self.abort()

    def shut_down(self) -> None:
        """Stop taking requests: idle connections close now, busy ones after their response."""
        self.closing = True
        if self.active is None and self.parsing is None and not self.queue:
            self.close()

    # ---- internals ---------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        self.read_kind = IDLE
        self.read_deadline = CLOCK.now + self.gateway.idle_timeout

    def _check_head(self, req: Request) -> None:
        if req.version not in ("1.1", "1.0"):
            raise ProtocolError(505 if req.version.startswith(("2", "3")) else 400, "HTTP version not supported")
        if req.method == "CONNECT":
            raise ProtocolError(405, "CONNECT is not supported")
        if req.version == "1.1" and self.host_count != 1:
            raise ProtocolError(400, "Exactly one Host header is required")
        if req.chunked and req.version == "1.0":
            raise ProtocolError(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        if req.conn_tokens is not None and b"upgrade" in req.conn_tokens and req.has_body and self.parser.should_upgrade():
            # httptools ends an upgrade request at its head and hands what follows over as the
            # new protocol's bytes; we never switch protocols, so its body would be parsed as
            # requests of its own (a front proxy would see one request where we see two).
            raise ProtocolError(400, "Upgrade is not supported on a request with a body")
        if req.host:
            req.host = canonical_host(req.host)
        target_host, req.path, req.query = normalize_target(req.target)
        if target_host:
            if self.scheme == "http" and req.target[:6].lower() == b"https:":
                raise ProtocolError(400, "An https:// request target was sent to a plain HTTP listener")
            req.host = canonical_host(target_host)

    def _refuse(self, status: int, message: str) -> None:
        """The byte stream is broken: answer in order, then close; never read again."""
        self.parser = httptools.HttpRequestParser(self)
        req = self.parsing
        exchange = self.parsing_exchange
        self.parsing = None
        self.parsing_exchange = None
        self._block(STREAM_BROKEN)
        if exchange is not None and req is not None:
            # The head was fine; the body is not (too large, or broken chunking).
            req.keep_alive = False
            exchange.keep_alive = False
            if exchange is self.active:
                if exchange.status == 0 and exchange.state < 4:
                    exchange.respond_error(status, message, close=True)
                else:
                    exchange.abort()
            else:
                req.error = (status, message)
            return
        req = req or Request()
        req.error = (status, message)
        req.keep_alive = False
        req.complete = True
        exchange = Exchange(self, req)
        if self.active is None:
            self.active = exchange
            exchange.begin()
        else:
            self.queue.append(exchange)

    def _meter_framing(self, req: Request, framing: int, carried: int) -> None:
        """Count ``framing`` bytes of chunk framing read with ``self.chunks`` size lines and
        ``carried`` data bytes."""
        self.chunk_excess = chunk_framing_excess(self.chunk_excess, framing, self.chunks, carried)
        self.framing_bytes += framing
        if self.chunk_excess > MAX_CHUNK_EXCESS:
            self._refuse(400, "Chunk extensions or chunk framing too large for the data they carry")
            return
        limit = req.api.max_body_bytes if req.api is not None else self.gateway.admin_body_limit
        if limit and req.body_received + self.framing_bytes > limit:
            self._refuse(413, "Request is too large")

    def _refresh_read_deadline(self) -> None:
        # Time spent paused by us is not the client's slowness.
        if self.read_kind == BODY:
            self.read_deadline = CLOCK.now + self.gateway.read_timeout
        elif self.read_kind == HEAD:
            self.read_deadline = CLOCK.now + self.gateway.read_header_timeout

    def _block(self, reason: int) -> None:
        self.blocked |= reason
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.paused_at = CLOCK.now
            self.transport.pause_reading()

    def _unblock(self, reason: int) -> None:
        self.blocked &= ~reason
        if not self.blocked and self.reading_paused and not self.closed:
            self.reading_paused = False
            if self.body_started:
                self.body_started += CLOCK.now - self.paused_at
            self._refresh_read_deadline()
            self.transport.resume_reading()  # type: ignore[union-attr]


def _special_header(conn: HttpConnection, req: Request, lname: bytes, value: bytes) -> None:
    if lname == b"host":
        conn.host_count += 1
        req.host = value.decode("latin-1").strip().lower()
    elif lname == b"transfer-encoding":
        # llhttp accepts "gzip, chunked"; we accept exactly one coding, chunked, so that no
        # upstream can disagree with us about where the body ends.
        if value.strip().lower() != b"chunked":
            raise ProtocolError(400, "Unsupported Transfer-Encoding")
        req.chunked = True
    elif lname == b"content-length":
        req.content_length = int(value)  # llhttp has checked: digits only, and only one
    elif lname == b"connection":
        tokens = [t.strip().lower() for t in value.split(b",")]
        if req.conn_tokens is None:
            req.conn_tokens = tokens
        else:
            req.conn_tokens.extend(tokens)
    elif lname == b"expect":
        if value.strip().lower() != b"100-continue":
            raise ProtocolError(417, "Expectation failed")
        req.expect_continue = True
    elif lname == b"x-forwarded-for":
        req.forwarded_for = value if not req.forwarded_for else req.forwarded_for + b", " + value
    elif lname == b"forwarded":
        req.forwarded = value if not req.forwarded else req.forwarded + b", " + value
