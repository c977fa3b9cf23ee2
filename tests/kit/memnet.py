"""Driving the gateway's connection code without sockets: fake transports and an in-memory
upstream "network", around a real ``Gateway`` on the memory store.

The client side is a real ``HttpConnection`` whose transport is a ``FakeTransport`` (a plain
object that records what is written); the upstream side is the real ``UpstreamPool`` whose
``loop.create_connection`` is replaced by ``MemoryUpstreams``, which hands every new
``UpstreamConnection`` a ``FakeTransport`` too. A test feeds request bytes with ``send`` and
upstream response bytes with ``conn.data_received``, and reads what each side was sent: the
whole exchange state machine runs (stages, pipelining, 100-continue, retries, local answers)
with nothing mocked but the sockets.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Coroutine

from fastgate import clock
from fastgate.config import config_from_mapping
from fastgate.gateway import Gateway
from fastgate.pipeline.compile import UpstreamTarget
from fastgate.server.protocol import HttpConnection
from fastgate.server.upstream import UpstreamConnection
from fastgate.services import start_services
from tests.kit.procs import SECRET

__all__ = ["FakeTransport", "MemoryUpstreams", "Wire", "run"]

UPSTREAM_HOST, UPSTREAM_PORT = "127.0.0.1", 9  # never dialled: MemoryUpstreams answers instead
UPSTREAM_URL = f"http://{UPSTREAM_HOST}:{UPSTREAM_PORT}"


class FakeTransport:
    """An asyncio transport as a plain object: writes are recorded, reading can be paused."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        self.peer = peer
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Only the peer and local addresses: no TLS on a fake transport."""
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes) -> None:
        """Record ``data``."""
        assert not self.closed, "write after close"
        self.writes.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        """Record the pieces as one write."""
        self.write(b"".join(data))

    def take(self) -> bytes:
        """Everything written since the last ``take``."""
        out = b"".join(self.writes)
        self.writes.clear()
        return out

    def pause_reading(self) -> None:
        """The protocol stopped reading."""
        self.reading = False

    def resume_reading(self) -> None:
        """The protocol reads again."""
        self.reading = True

    def is_closing(self) -> bool:
        """Whether ``close`` or ``abort`` was called."""
        return self.closed

    def close(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def abort(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Nothing to limit: writes never block."""


class MemoryUpstreams:
    """Stands in for the event loop an ``UpstreamPool`` dials with: each new upstream connection
    gets a ``FakeTransport`` at once. ``connections`` lists them in the order they were opened."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.connections: list[tuple[UpstreamConnection, FakeTransport]] = []

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run the pool's connect coroutine on the real loop."""
        return self.loop.create_task(coro)

    async def create_connection(self, factory: Callable[[], UpstreamConnection], host: str, port: int,
                                **_: Any) -> tuple[FakeTransport, UpstreamConnection]:
        """A connected upstream connection with a fake transport (no socket)."""
        conn = factory()
        transport = FakeTransport((host, port))
        conn.connection_made(transport)
        self.connections.append((conn, transport))
        return transport, conn


class Wire:
    """A real gateway on the memory store with one client connection over a fake transport."""

    def __init__(self, gateway: Gateway, upstreams: MemoryUpstreams) -> None:
        self.gateway = gateway
        self.upstreams = upstreams
        self.client = FakeTransport()
        self.conn = HttpConnection(gateway)
        self.conn.connection_made(self.client)

    @classmethod
    async def start(cls, directory: Path, apis: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> "Wire":
        """Write ``apis`` under ``directory``, build and start the gateway (services, APIs) and
        connect one client. Every API's upstream must be ``UPSTREAM_URL``."""
        (directory / "apps").mkdir()
        (directory / "policies").mkdir()
        for api in apis:
            (directory / "apps" / f"{api['api_id']}.json").write_text(json.dumps(api))
        raw = {"listen_port": 1, "secret": SECRET, "app_path": str(directory / "apps"),
               "policies": {"policy_path": str(directory / "policies")}, "storage": {"url": "memory://"},
               **(settings or {})}
        gateway = Gateway(config_from_mapping(raw, environ={}))
        await start_services(gateway.services, gateway.reload)
        clock.reset()  # no tick runs: no deadline can fire while a test drives the wire
        gateway.load_apis()
        assert not gateway.load_problems, gateway.load_problems
        upstreams = MemoryUpstreams(gateway.loop)
        gateway.pools.get(UpstreamTarget.from_url(UPSTREAM_URL)).loop = upstreams  # type: ignore[assignment]
        return cls(gateway, upstreams)

    def send(self, data: bytes) -> None:
        """Bytes from the client."""
        self.conn.data_received(data)

    def upstream(self, index: int) -> tuple[UpstreamConnection, FakeTransport]:
        """The ``index``-th upstream connection opened."""
        return self.upstreams.connections[index]

    async def settle(self, done: Callable[[], Any], what: str) -> None:
        """Let the loop run (stages, local handlers, connects) until ``done()`` is true."""
        for _ in range(2000):
            if done():
                return
            await asyncio.sleep(0)
        raise AssertionError(f"never happened: {what}")

    async def upstream_request(self, index: int) -> bytes:
        """Wait for the ``index``-th upstream connection to be opened and written to; its bytes."""
        await self.settle(lambda: len(self.upstreams.connections) > index and self.upstream(index)[1].writes,
                          f"a request on upstream connection {index}")
        return self.upstream(index)[1].take()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one test coroutine on a fresh event loop."""
    return asyncio.run(coro)
