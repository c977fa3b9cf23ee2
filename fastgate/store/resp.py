"""A small pipelined Redis client for the commands every request sends (limits step, session reads).

Why not redis-py for these: measured in `bench/micro_redis.py`, a limits step through redis-py's
Pipeline object costs about twice the CPU of the same command written on a connection of our own
(command objects, a connection-pool checkout, a lock and response callbacks per command; the
reply parsing is hiredis in both). Everything else (Pub/Sub, admin paths, SCAN, TLS, anything
redis-py options configure) stays on redis-py.

How it works: ONE asyncio connection speaking RESP2. A command is appended to the connection's
write buffer together with the future of its reply; the first command of an event-loop iteration
schedules one write of the whole buffer for the end of that iteration (`call_soon`), so the
commands of all requests woken in one iteration leave in one `send()`. Redis answers in order,
so replies (parsed by hiredis' `Reader`) are matched to futures first in, first out. Nothing waits
for a previous batch: any number of batches may be in flight (Redis runs them in order anyway),
so a request never queues behind a slow batch on our side.

Failure rules (the store fails closed: `StoreUnavailable` becomes 503):

* Every network wait is bounded: connecting (and AUTH / SELECT) by `connect_timeout`; a reply by
  `timeout` from the write that carried its command, checked by one timer per connection (not
  one per request). A reply that is late breaks the connection: replies are matched by position,
  so a connection with a missing reply can never be trusted again.
* A broken connection (reset, closed by Redis, late reply, unparseable bytes) is never reused:
  every command written on it and not yet answered fails with `StoreUnavailable`, and the next
  command opens a new connection. Commands are never retried here (a quota step must not count
  twice).
* A reply error (`-ERR ...`, `-NOSCRIPT ...`) is returned as a `hiredis.ReplyError` value to the
  one command it answers; the commands around it in the batch are unaffected.
* At most `max_pending` commands wait for replies; beyond that a command fails at once with
  `StoreUnavailable` (load shedding instead of unbounded memory).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any, Awaitable, Final, Sequence

import hiredis

from fastgate.store.base import StoreError, StoreUnavailable

__all__ = ["Overloaded", "RespClient", "ReplyError", "encode_command"]

ReplyError: Final = hiredis.ReplyError


class Overloaded(StoreUnavailable):
    """Too many commands already wait for replies: shed this one (Redis itself may be fine)."""


def encode_command(args: Sequence[bytes | str | int]) -> bytes:
    """RESP2 encoding of one command (an array of bulk strings); str is sent as UTF-8."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(out)


class _Connection(asyncio.Protocol):
    """One Redis connection: a write buffer, the futures awaiting replies, a reply deadline."""

    def __init__(self, client: RespClient) -> None:
        self._client = client
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        # (commands answered when this batch is done, write time) per batch in flight
        self._batches: deque[tuple[int, float]] = deque()
        self._written = 0  # commands written so far
        self._answered = 0  # replies read so far
        self._timer: asyncio.TimerHandle | None = None
        self.broken = False

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:  # best effort: the connection works without them
                pass

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            while (reply := reader.gets()) is not False:
                future = waiting.popleft()
                if not future.done():  # its caller may have been cancelled
                    future.set_result(reply)
                self._answered += 1
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self._break(StoreUnavailable(f"redis at {self._client.where}: bad reply stream: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._break(StoreUnavailable(
            f"redis at {self._client.where}: connection lost" + (f": {exc}" if exc else "")))

    # -- commands ------------------------------------------------------------------------------
    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue `command`; its reply (or ReplyError) is the future's result."""
        future = self._loop.create_future()
        if self.broken:  # (only the handshake can hold a connection that broke meanwhile)
            future.set_exception(StoreUnavailable(f"redis at {self._client.where}: connection lost"))
            return future
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(command)
        self._waiting.append(future)
        return future

    @property
    def pending(self) -> int:
        """Commands queued or written and not yet answered."""
        return len(self._waiting)

    def _flush(self) -> None:
        if self.broken or not self._buffer:
            return
        buffer, self._buffer = self._buffer, []
        self._written += len(buffer)
        self._client.writes += 1
        now = self._loop.time()
        self._batches.append((self._written, now))
        assert self._transport is not None
        self._transport.write(b"".join(buffer))
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._client.timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        batches = self._batches
        while batches and batches[0][0] <= self._answered:
            batches.popleft()
        if not batches or self.broken:
            return
        deadline = batches[0][1] + self._client.timeout
        if self._loop.time() >= deadline:
            self._break(StoreUnavailable(
                f"redis at {self._client.where}: no reply within {self._client.timeout:g} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _break(self, exc: StoreUnavailable) -> None:
        """Fail every unanswered command and close: this connection is never used again."""
        if not self.broken:
            self.broken = True
            self._client._forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        self._buffer = []
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # a cancelled caller never reads it: not "never retrieved"
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Close now, failing whatever is unanswered."""
        self._break(StoreUnavailable(f"redis at {self._client.where}: client closed"))


class RespClient:
    """Pipelined commands on one connection to a standalone Redis (plain TCP, RESP2).

    `execute(command)` with a command from `encode_command` returns the reply, a `ReplyError`
    value for an error reply, or raises `StoreUnavailable` (connect failed or timed out, reply
    late, connection lost while the command was unanswered, too many commands waiting).
    """

    def __init__(self, host: str, port: int, *, db: int = 0, username: str | None = None,
                 password: str | None = None, timeout: float = 1.0,
                 connect_timeout: float = 1.0, max_pending: int = 10_000,
                 where: str = "") -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.where = where or f"{host}:{port}"
        self._max_pending = max_pending
        handshake: list[bytes] = []
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            handshake.append(encode_command(auth))
        if db:
            handshake.append(encode_command(("SELECT", db)))
        self._handshake = handshake
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._closed = False
        self.writes = 0  # batches written, all connections (tests and benchmarks read it)

    def execute(self, command: bytes) -> Awaitable[Any]:
        """Send one encoded command (batched with others of this loop iteration); its reply.

        Connected, this is the reply's future itself (no coroutine in between: this runs once
        per request); otherwise a coroutine that connects first.
        """
        conn = self._conn
        if conn is None:
            return self._connect_and_send(command)
        if conn.pending >= self._max_pending:
            shed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            shed.set_exception(Overloaded(f"redis at {self.where}: {self._max_pending} commands waiting"))
            return shed
        return conn.send(command)

    async def _connect_and_send(self, command: bytes) -> Any:
        conn = await self._connect()
        return await conn.send(command)

    async def close(self) -> None:
        """Close the connection (unanswered commands fail); later calls raise StoreUnavailable."""
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.close()

    def _forget(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise StoreUnavailable("redis store is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
            self._connecting.add_done_callback(self._connected)
        # Shielded: one caller giving up (cancelled) does not abort the others' connection.
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._conn = task.result()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self), self.host, self.port)
                replies = await asyncio.gather(*[conn.send(c) for c in self._handshake])
        except (OSError, asyncio.TimeoutError, StoreUnavailable) as exc:
            if conn is not None:
                conn.close()
            raise StoreUnavailable(f"redis at {self.where} is unavailable: "
                                   f"{exc or type(exc).__name__}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        for reply in replies:
            if isinstance(reply, ReplyError):
                conn.close()
                raise StoreError(f"redis at {self.where}: {reply}")
        if self._closed:
            conn.close()
            raise StoreUnavailable("redis store is closed")
        return conn
