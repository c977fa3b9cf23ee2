"""One request's journey after its head is parsed: stages, then proxy (or a local answer).

An ``Exchange`` is created for every request when its head is complete and queued on the client
connection; it becomes active when the requests before it have been answered (pipelining keeps
order). State moves one way::

    QUEUED -> CHECKING -> CONNECTING -> SENT -> RESPONDING -> DONE
                   \\-> DONE (denied, answered locally)

Request body bytes that arrive before the upstream connection is attached are buffered here
(bounded: the client connection stops reading above ``BODY_HIGH_WATER``); after that they are
written straight through, so a 1 GiB upload never sits in memory. Response bytes go straight to
the client transport; when the client stops reading, the upstream connection stops being read.

An API with response hooks (``CompiledApi.response_hooks``) is the exception: its upstream
response is held whole (bounded by ``[plugins] response_body_limit``; larger: 502, nothing of it
sent), the hooks run, and the head and body they leave are sent with our own framing
(``Content-Length``). Other APIs never take that path.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, Final, TYPE_CHECKING

from fastgate.clock import CLOCK
from fastgate.pipeline.stage import Denial
from fastgate.http.h1 import LAST_CHUNK, CONTINUE_100, chunk, error_response, http_date, upstream_status_line
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.pipeline.compile import CompiledApi
    from fastgate.server.protocol import HttpConnection
    from fastgate.server.upstream import UpstreamConnection, UpstreamPool

__all__ = ["Exchange", "BODY_HIGH_WATER"]

# Final literals: mypyc folds them into the code (a plain module global is a dict lookup per use).
QUEUED: Final = 0
CHECKING: Final = 1
CONNECTING: Final = 2
SENT: Final = 3
RESPONDING: Final = 4
DONE: Final = 5
LOCAL: Final = 6
BODY_HIGH_WATER: Final = 256 * 1024

FRAME_NONE: Final = 0
FRAME_LENGTH: Final = 1
FRAME_CHUNKED: Final = 2
FRAME_CLOSE: Final = 3
FRAME_HOLD: Final = 4
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

BAD_GATEWAY: Final = "There was a problem proxying the request"
GATEWAY_TIMEOUT: Final = "Upstream service reached hard timeout."
RESPONSE_TOO_LARGE: Final = "Upstream response too large for the API's response plugins"


class Exchange:
    """Processing state of one request on one client connection."""

    __slots__ = (
        "client",
        "req",
        "api",
        "state",
        "upstream",
        "pool",
        "body_chunks",
        "body_buffered",
        "body_sent",
        "framing",
        "until_close",
        "skip_informational",
        "head_only_done",
        "deadline",
        "retried",
        "status",
        "started",
        "keep_alive",
        "local",
        "sent_at",
        "head_at",
        "decided_by",
        "denial",
        "held",
        "held_size",
        "held_head",
    )

    def __init__(self, client: "HttpConnection", req: Request) -> None:
        self.client = client
        self.req = req
        self.api: CompiledApi | None = req.api
        if self.api is not None and self.api.body_tap is not None:
            req.body_tap = self.api.body_tap(req)  # made before any body byte arrives
        self.state = QUEUED
        self.upstream: UpstreamConnection | None = None
        self.pool: UpstreamPool | None = None
        self.body_chunks: list[bytes] = []
        self.body_buffered = 0
        self.body_sent = False  # every body byte (and the last chunk) handed to the upstream
        self.framing = FRAME_NONE
        self.until_close = False
        self.skip_informational = False
        self.head_only_done = False
        self.deadline = 0.0
        self.retried = False
        self.status = 0
        self.started = 0.0  # set by begin(): one clock read per request
        self.keep_alive = req.keep_alive
        self.local = False  # answered by the gateway itself (Gateway API, /hello)
        # For the metrics (fastgate.observe.metrics): when the head went upstream and the answer's
        # head came back (0.0: not proxied), and the index of the stage that refused (-1: none).
        self.sent_at = 0.0
        self.head_at = 0.0
        self.decided_by = -1
        self.denial: Denial | None = None
        # An API with response hooks: the upstream response's body pieces, their size, and its
        # head (status, reason, header lines, Content-Length as sent or None).
        self.held: list[bytes] = []
        self.held_size = 0
        self.held_head: Any = None

    # ---- start -------------------------------------------------------------------------------

    def begin(self) -> None:
        """Run the API's stages; answer locally on a denial, else proxy."""
        req = self.req
        self.state = CHECKING
        self.started = monotonic()
        if req.error is not None:
            status, message = req.error
            self.respond_error(status, message, close=not req.keep_alive)
            return
        api = self.api
        if api is None:
            # The Gateway API reads the whole body before it answers: ask for it.
            if req.expect_continue and req.has_body:
                self._continue()
            self.client.gateway.handle_local(self)
            return
        if req.expect_continue and req.body_tap is not None and req.body_tap.keeps_body:
            # The credentials are in the body: the client must send it before auth can run.
            self._continue()
        stages = api.stages
        for i in range(len(stages)):
            result = stages[i](req)
            if result is None:
                continue
            if type(result) is Denial:
                self.decided_by = i
                self.deny(result)
                return
            self.client.gateway.loop.create_task(self._finish_checks(result, i + 1))
            return
        self.proxy()

    async def _finish_checks(self, pending: Any, next_stage: int) -> None:
        try:
            self.decided_by = next_stage - 1
            result = await pending
            stages = self.api.stages  # type: ignore[union-attr]
            while result is None and next_stage < len(stages):
                self.decided_by = next_stage
                result = stages[next_stage](self.req)
                next_stage += 1
                if result is not None and type(result) is not Denial:
                    result = await result  # type: ignore[misc]  # not a Denial: the awaitable
        except Exception as exc:  # a stage bug or store failure must not kill the connection
            result = self.client.gateway.stage_failed(self, exc)
        if result is None:
            self.decided_by = -1
        if self.state != CHECKING:
            return  # the client went away meanwhile
        if result is None:
            self.proxy()
        else:
            self.deny(result)

    def deny(self, denial: Denial) -> None:
        self.denial = denial
        self.respond_error(denial.status, denial.message, extra=denial.headers)

    # ---- proxy -------------------------------------------------------------------------------

    def proxy(self) -> None:
        req = self.req
        api = self.api
        assert api is not None
        if req.expect_continue:
            self._continue()
        pool = self.pool = self.client.gateway.pools.get(api.upstream)
        self.state = CONNECTING
        conn = pool.acquire()
        if conn is None:
            pool.connect(self)
        else:
            self.attach(conn)

    def _continue(self) -> None:
        """Answer ``Expect: 100-continue`` once the request is accepted, if the body is awaited."""
        req = self.req
        # An HTTP/1.0 client cannot read interim responses (RFC 9110 §10.1.1).
        if not req.complete and req.body_received == 0 and req.version == "1.1":
            self.client.write(CONTINUE_100)

    def wants_connection(self) -> bool:
        return self.state == CONNECTING

    def attach(self, conn: "UpstreamConnection") -> None:
        """Send the request head and any buffered body on ``conn``."""
        self.upstream = conn
        conn.exchange = self
        self.state = SENT
        # upstream_timeout measures the upstream, so it runs from the end of the request: while
        # the client is still sending the body at its own pace, read_timeout governs instead.
        self.deadline = 0.0
        data = [self.client.gateway.upstream_head(self)]
        req = self.req
        if self.body_chunks:
            if req.chunked:
                data.extend(chunk(c) for c in self.body_chunks)
            else:
                data.extend(self.body_chunks)
            self.body_chunks = []
            self.body_buffered = 0
            self.client.unblock_body()
        if req.complete:
            if req.chunked:
                data.append(LAST_CHUNK)
            self.body_sent = True
            self.deadline = CLOCK.now + self.client.gateway.upstream_timeout
        self.sent_at = monotonic()
        if len(data) == 1:
            conn.write(data[0])  # the common body-less request: no list for uvloop to walk
        else:
            conn.writelines(data)

    def on_connect_failed(self, exc: BaseException) -> None:
        if self.state == CONNECTING:
            self.respond_error(502, BAD_GATEWAY)

    # ---- request body from the client --------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        tap = self.req.body_tap
        if tap is not None and self.state != DONE and not tap.feed(data):
            self.refuse_body(tap.refusal)  # these last bytes are never forwarded
            return
        conn = self.upstream
        if conn is not None and self.state >= SENT:
            conn.write(chunk(data) if self.req.chunked else data)
        elif self.state != DONE:
            self.body_chunks.append(data)
            self.body_buffered += len(data)
            # A local handler needs the whole (size-limited) body; a proxied one can wait.
            if self.body_buffered > BODY_HIGH_WATER and not self.local:
                tap = self.req.body_tap
                # A tap keeping the body (for auth or plugin hooks) is waited for: buffer up to its limit.
                if tap is None or not tap.keeps_body or self.body_buffered > tap.limit:
                    self.client.block_body()

    def body_complete(self) -> None:
        tap = self.req.body_tap
        if tap is not None and self.state != DONE and not tap.end():
            self.refuse_body(tap.refusal)  # the terminating chunk is never forwarded
            return
        if self.local and self.state == CHECKING:
            self.client.gateway.run_local(self)
            return
        conn = self.upstream
        if conn is not None and self.state >= SENT and not self.body_sent:
            if self.req.chunked:
                conn.write(LAST_CHUNK)
            self.body_sent = True
            if self.state == SENT:
                self.deadline = CLOCK.now + self.client.gateway.upstream_timeout

    def refuse_body(self, denial: Denial) -> None:
        """The body tap refused the body at its end (an HMAC digest mismatch): its last bytes were
        held back, so the upstream never receives it whole; the client gets the denial."""
        if self.state == QUEUED:
            self.req.error = (denial.status, denial.message)  # answered in turn by begin()
        elif self.state == RESPONDING:
            self.abort()
        else:
            self.respond_error(denial.status, denial.message, close=True)

    # ---- response from the upstream ---------------------------------------------------------

    def on_response_head(self, status: int, reason: bytes, head: "UpstreamConnection") -> None:
        """The upstream's response head is complete: ``head`` holds its fields, already sorted
        (``UpstreamConnection.on_header``); write ours to the client."""
        if status < 200:
            # 1xx: our own 100 Continue already went to the client; drop the upstream's.
            self.skip_informational = True
            return
        self.state = RESPONDING
        self.status = status
        self.head_at = monotonic()
        self.deadline = CLOCK.now + self.client.gateway.upstream_timeout
        req = self.req
        out = head.lines  # made for this response; slot 0 waits for the status line
        out[0] = upstream_status_line(status, reason)
        length = head.length
        transfer_encoding = head.transfer_encoding
        dated = head.dated
        if head.listed:
            _drop_listed(out, head.listed)
        if self.api is not None and self.api.response_hooks is not None:
            # Held for the hooks (on_response_complete sends what they leave).
            no_body = req.method == "HEAD" or status in (204, 304)
            self.until_close = length is None and transfer_encoding is None and not no_body
            self.framing = FRAME_HOLD
            self.head_only_done = req.method == "HEAD"
            self.held_head = (status, reason, out[1:], length)
            return
        if not dated:
            # A proxy forwarding a response without Date must add one (RFC 9110 §6.6.1).
            out.append(b"Date: %b\r\n" % http_date())
        if req.response_lines:
            out.append(req.response_lines)
        keep_alive = self.keep_alive and not self.client.closing
        if req.method == "HEAD" or status in (204, 304):
            if length is not None and status != 204:  # a 204 never has one (RFC 9110 §8.6)
                out.append(b"Content-Length: %b\r\n" % length)
            self.framing = FRAME_NONE
            self.head_only_done = req.method == "HEAD"
        elif length is not None and transfer_encoding is None:
            out.append(b"Content-Length: %b\r\n" % length)
            self.framing = FRAME_LENGTH
        else:
            self.until_close = transfer_encoding is None
            if req.version == "1.1":
                out.append(b"Transfer-Encoding: chunked\r\n")
                self.framing = FRAME_CHUNKED
            else:
                self.framing = FRAME_CLOSE
                keep_alive = False
        if not keep_alive:
            out.append(b"Connection: close\r\n\r\n")
        elif req.version == "1.0":
            out.append(b"Connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")
        self.keep_alive = keep_alive
        self.client.writelines(out)

    def on_response_body(self, data: bytes) -> None:
        if self.state != RESPONDING or self.framing == FRAME_NONE:
            # FRAME_NONE: a HEAD answer whose upstream sent body bytes anyway; forwarding them
            # would let the upstream inject a response into the client's pipeline.
            return
        self.deadline = CLOCK.now + self.client.gateway.upstream_timeout
        if self.framing == FRAME_HOLD:
            self._hold(data)
            return
        self.client.write(chunk(data) if self.framing == FRAME_CHUNKED else data)

    def _hold(self, data: bytes) -> None:
        head = self.held_head
        if self.req.method == "HEAD" or head[0] in (204, 304):
            return  # no body: see on_response_body
        self.held_size += len(data)
        if self.held_size > self.api.response_hooks.limit:  # type: ignore[union-attr]
            self.held = []
            self.respond_error(502, RESPONSE_TOO_LARGE, close=True)
            return
        self.held.append(data)

    def on_response_complete(self) -> None:
        if self.skip_informational:
            self.skip_informational = False
            return
        if self.state != RESPONDING:
            return
        if self.framing == FRAME_CHUNKED:
            self.client.write(LAST_CHUNK)
        hold = self.framing == FRAME_HOLD
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.exchange = None
            if self.body_sent and self.req.complete and conn.keep_alive() and not self.until_close:
                self.pool.release(conn)  # type: ignore[union-attr]
            else:
                conn.close()
        req = self.req
        if hold:
            self.deadline = 0.0  # the hooks have their own timeout
            self.client.gateway.loop.create_task(self._run_response_hooks())
            return
        self.finish(self.keep_alive and (req.complete or not req.has_body))

    async def _run_response_hooks(self) -> None:
        status, reason, lines, length = self.held_head
        body = b"".join(self.held)
        self.held = []
        try:
            outcome = await self.api.response_hooks.run(self.req, status, reason, lines, body)  # type: ignore[union-attr]
        except Exception as exc:  # a bug here must not kill the connection
            outcome = self.client.gateway.stage_failed(self, exc)
        if self.state != RESPONDING:
            return  # the client went away meanwhile
        if type(outcome) is Denial:
            self.deny(outcome)
            return
        self._send_held(outcome, length)

    def _send_held(self, outcome: Any, length: bytes | None) -> None:
        """Send the response the hooks left, framed by its Content-Length."""
        status, reason, lines, body, changed = outcome
        req = self.req
        self.status = status
        out = [upstream_status_line(status, reason)]
        out.extend(lines)
        if not any(line[:5].lower() == b"date:" for line in lines):
            out.append(b"Date: %b\r\n" % http_date())
        if req.response_lines:
            out.append(req.response_lines)
        head_only = req.method == "HEAD" or status in (204, 304)
        if status == 204:
            pass  # never a Content-Length (RFC 9110 §8.6)
        elif not head_only:
            out.append(b"Content-Length: %d\r\n" % len(body))
        elif changed and req.method == "HEAD":
            out.append(b"Content-Length: %d\r\n" % len(body))
        elif length is not None and not changed:
            out.append(b"Content-Length: %b\r\n" % length)  # a HEAD or 304 announces the upstream's
        keep_alive = self.keep_alive and not self.client.closing and (req.complete or not req.has_body)
        if not keep_alive:
            out.append(b"Connection: close\r\n\r\n")
        elif req.version == "1.0":
            out.append(b"Connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")
        if not head_only and body:
            out.append(body)
        self.client.writelines(out)
        self.finish(keep_alive)

    def on_upstream_lost(self, conn: "UpstreamConnection") -> None:
        self.upstream = None
        if self.state == RESPONDING and self.until_close:
            self.on_response_complete()
            return
        if self.state in (SENT, CONNECTING):
            if conn.reused and not self.retried and self._replayable():
                # The upstream closed a pooled connection just as we reused it; Go's transport
                # and nginx retry such idempotent, body-less requests once, and so do we.
                self.retried = True
                self.state = CONNECTING
                self.pool.connect(self)  # type: ignore[union-attr]
                return
            self.respond_error(502, BAD_GATEWAY)
        elif self.state == RESPONDING:
            self.abort()

    def on_upstream_garbage(self) -> None:
        self.upstream = None
        if self.state == SENT:
            self.respond_error(502, BAD_GATEWAY, close=True)
        elif self.state == RESPONDING:
            self.abort()

    def _replayable(self) -> bool:
        req = self.req
        return req.method in IDEMPOTENT and not req.has_body

    # ---- flow control ------------------------------------------------------------------------

    def on_upstream_pause(self) -> None:
        self.client.block_upstream()
        if self.state == SENT and not self.body_sent:
            # The upstream stopped taking the body: that is the upstream being slow.
            self.deadline = CLOCK.now + self.client.gateway.upstream_timeout

    def on_upstream_resume(self) -> None:
        self.client.unblock_upstream()
        if self.state == SENT and not self.body_sent:
            self.deadline = 0.0

    def on_client_pause(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def on_client_resume(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # ---- endings -----------------------------------------------------------------------------

    def check_deadline(self, now: float) -> None:
        """Called by the tick: give up on an upstream that stopped answering."""
        if now > self.deadline > 0.0 and self.state in (SENT, RESPONDING):
            self._drop_upstream()
            if self.state == SENT:
                self.respond_error(504, GATEWAY_TIMEOUT)
            else:
                self.abort()

    def respond_error(
        self, status: int, message: str, *, close: bool = False, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        req = self.req
        # A request whose body we never read cannot leave the connection reusable.
        keep_alive = (
            self.keep_alive and not close and (req.complete or not req.has_body) and not self.client.closing
        )
        self.status = status
        self.client.write(error_response(status, message, keep_alive=keep_alive, extra=extra))
        self.finish(keep_alive)

    def respond(self, status: int, data: bytes, keep_alive: bool) -> None:
        """Write a complete prebuilt response (local endpoints)."""
        self.status = status
        self.client.write(data)
        self.finish(keep_alive)

    def abort(self) -> None:
        """The response cannot be completed: drop both connections."""
        self.state = DONE
        self._drop_upstream()
        self.client.abort()

    def finish(self, keep_alive: bool) -> None:
        if self.state == DONE:
            return
        self.state = DONE
        self.body_chunks = []
        self._drop_upstream()
        self.client.exchange_done(self, keep_alive)

    def cancel(self) -> None:
        """The client went away: release whatever we hold."""
        if self.state == DONE:
            return
        self.state = DONE
        self._drop_upstream()

    def _drop_upstream(self) -> None:
        """Close the upstream connection this exchange holds, if any (it cannot be reused)."""
        conn = self.upstream
        self.upstream = None
        if conn is not None:
            conn.exchange = None
            conn.close()


def _drop_listed(out: list[bytes], listed: list[bytes]) -> None:
    """Remove headers the upstream named in its ``Connection`` header (they are hop-by-hop)."""
    names = {n for n in listed if n and n not in (b"close", b"keep-alive")}
    if not names:
        return
    out[1:] = [line for line in out[1:] if line.split(b":", 1)[0].lower() not in names]
