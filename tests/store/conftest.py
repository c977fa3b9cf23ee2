"""Store fixtures: every test runs against both backends, the Redis one on a real server.

Redis runs twice: with the store's own pipelined client for the per-request commands (`redis`,
the default) and with redis-py for everything (`redis-py`: `fast_path=False`, what `rediss://`
and URLs with redis-py options get).

Redis tests use their own database (tests/kit/redisdb.py) of the server on 127.0.0.1:6379, flushed before and after each test,
and are never skipped: if the server is unreachable they fail. `async def` tests run on a fresh
event loop each; stores opened through the `stores` fixture are closed on that same loop.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
import tempfile
import time
from typing import Any, Iterator

import pytest
import redis

from fastgate.store import Store, open_store
from tests.kit.redisdb import STORE_TESTS_URL

REDIS_URL = STORE_TESTS_URL


class Stores:
    """Opens stores of one backend; all are closed when the test's coroutine ends."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.opened: list[Store] = []
        self._memory: Store | None = None

    def open(self, **options: Any) -> Store:
        """A store of this backend. For memory every call returns the same (one process)."""
        if self.backend == "memory":
            if self._memory is None:
                self._memory = open_store("memory://")
                self.opened.append(self._memory)
            return self._memory
        if self.backend == "redis-py":
            options = {"fast_path": False, **options}
        store = open_store(REDIS_URL, **options)
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-py", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    """Stores of each backend in turn; the Redis test database is flushed around the test."""
    if request.param != "memory":
        flush()
    yield Stores(request.param)
    if request.param != "memory":
        flush()


def flush() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests to completion on a new event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def run() -> None:
        try:
            await asyncio.wait_for(pyfuncitem.obj(**kwargs), timeout=15)
        finally:
            for value in kwargs.values():
                if isinstance(value, Stores):
                    await value.close_all()
    asyncio.run(run())
    return True


class PrivateRedis:
    """A redis-server of our own on a free port, to stop and restart (recovery tests)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="fastgate-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1):
                    return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
        self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A stoppable Redis server (started), always stopped after the test."""
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        for name in os.listdir(server.dir):
            os.unlink(os.path.join(server.dir, name))
        os.rmdir(server.dir)
