"""The shared pytest fixtures (``tests/conftest.py`` imports them): the recording upstream, real
fastgate processes, and the two stores every store-backed gateway test runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.kit.procs import Gateway, Upstream, stop_all
from tests.kit.redisdb import GATEWAY_TESTS_URL

REDIS_TEST_URL = GATEWAY_TESTS_URL


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """One upstream for the whole run (tests that read its log call ``reset()`` first, or use
    ``up``)."""
    up = Upstream()
    yield up
    up.stop()


@pytest.fixture
def up(upstream: Upstream) -> Upstream:
    """The shared upstream with its request log emptied for this test."""
    upstream.reset()
    return upstream


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start fastgate with the given API definitions and settings (``wait=False``: call
    ``ready()`` yourself, to start several side by side); all stopped after the test."""
    started: list[Gateway] = []

    def make(apis: list[dict[str, Any]], settings: dict[str, Any] | None = None, **kwargs: Any) -> Gateway:
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        gw = Gateway(directory, apis, settings, **kwargs)
        started.append(gw)
        return gw

    yield make
    stop_all(started)


def shared_gateway(tmp_path_factory: pytest.TempPathFactory, name: str, apis: list[dict[str, Any]],
                   settings: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[Gateway]:
    """One gateway for every test of a module that only reads through it (a module-scoped
    fixture yields from this): started once, stopped after the module; ``kwargs`` go to
    ``Gateway`` (``policies=...``)."""
    gateway = Gateway(tmp_path_factory.mktemp(name), apis, settings, **kwargs)
    try:
        yield gateway
    finally:
        gateway.stop()


STORES = ["memory://", REDIS_TEST_URL]  # the params of a module-scoped fixture over both stores
STORE_IDS = ["memory", "redis"]


def flush_redis_db(url: str) -> None:
    """Empty the Redis database at ``url`` (fails loudly when Redis is down: tests never skip)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(params=["memory://", REDIS_TEST_URL], ids=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each store-backed gateway test runs on the memory store and on a real Redis database."""
    url = request.param
    if url.startswith("redis"):
        flush_redis_db(url)
    yield url
    if url.startswith("redis"):
        flush_redis_db(url)


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A clean Redis test database for tests that need Redis itself (several nodes on one store),
    emptied again afterwards."""
    flush_redis_db(REDIS_TEST_URL)
    yield REDIS_TEST_URL
    flush_redis_db(REDIS_TEST_URL)


def module_gateway(store_url: str, directory: Path, apis: list[dict[str, Any]],
                   settings: dict[str, Any] | None = None) -> Iterator[Gateway]:
    """A gateway shared by a test module (a module-scoped fixture yields from this), on a clean
    store that is emptied again afterwards; ``settings`` are added to its config."""
    if store_url.startswith("redis"):
        flush_redis_db(store_url)
    gateway = Gateway(directory, apis, {**(settings or {}), "storage": {"url": store_url}})
    try:
        yield gateway
    finally:
        gateway.stop()
        if store_url.startswith("redis"):
            flush_redis_db(store_url)
