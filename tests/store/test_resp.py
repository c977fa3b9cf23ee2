"""The store's pipelined Redis client (`fastgate.store.resp`) and the Redis store's fast path.

Real sockets throughout: the test Redis database, and for the silent-server cases a listening
socket that accepts connections (the kernel completes the handshake) but never answers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Iterator

import pytest
import redis

from fastgate.store import StoreError, StoreUnavailable, open_store
from fastgate.store.limits import rate_params
from fastgate.store.redis import RedisStore, _fast_client
from fastgate.store.resp import Overloaded, ReplyError, RespClient, encode_command
from tests.store.conftest import REDIS_URL, flush

pytestmark = pytest.mark.redis

DB = int(REDIS_URL.rsplit("/", 1)[1])


@pytest.fixture(autouse=True)
def clean_db() -> Iterator[None]:
    flush()
    yield
    flush()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def client(**kw: Any) -> RespClient:
    return RespClient("127.0.0.1", 6379, db=DB, **kw)


def cmd(*args: bytes | str | int) -> bytes:
    return encode_command(args)


# -- encoding and URL choice (no sockets) ---------------------------------------------------------

def test_encode_command_is_resp2_bulk_strings() -> None:
    assert encode_command(["SET", "k", b"v\r\n", 42]) == \
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\n42\r\n"
    assert encode_command(["GET", "clé"]) == b"*2\r\n$3\r\nGET\r\n$4\r\ncl\xc3\xa9\r\n"


def test_fast_path_only_for_plain_redis_urls() -> None:
    fast = _fast_client("redis://user:p%40ss@10.0.0.1:6380/3", 0.5, 0.7)
    assert fast is not None
    assert (fast.host, fast.port, fast.timeout, fast.connect_timeout) == ("10.0.0.1", 6380, 0.5, 0.7)
    assert fast.where == "10.0.0.1:6380/3"  # never the password
    assert fast._handshake == [cmd("AUTH", "user", "p@ss"), cmd("SELECT", 3)]
    default = _fast_client("redis://localhost", 1, 1)
    assert default is not None and (default.port, default._handshake) == (6379, [])
    for url in ("rediss://localhost:6379/0",  # TLS: redis-py
                "redis://localhost:6379/0?health_check_interval=5",  # redis-py options
                "redis://user@localhost:6379/0"):  # a user without a password: redis-py's rules
        assert _fast_client(url, 1, 1) is None, url
    assert open_store("redis://127.0.0.1:6379/0?fast_path=false")._fast is None  # type: ignore[attr-defined]
    assert open_store("redis://127.0.0.1:6379/0")._fast is not None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="fast_path='maybe'"):
        open_store("redis://127.0.0.1:6379/0?fast_path=maybe")


# -- batching -----------------------------------------------------------------------------------

async def test_commands_of_one_iteration_leave_in_one_write() -> None:
    c = client()
    await c.execute(cmd("PING"))  # connected
    before = c.writes
    replies = await asyncio.gather(*[c.execute(cmd("INCR", "counter")) for _ in range(200)])
    assert sorted(replies) == list(range(1, 201))
    assert replies == list(range(1, 201))  # and in order: first in, first answered
    assert c.writes == before + 1
    await c.close()


async def test_many_concurrent_limit_steps_in_one_iteration() -> None:
    store = open_store(REDIS_URL)
    assert isinstance(store, RedisStore) and store._fast is not None
    params = rate_params(1000, 60)
    assert params is not None
    await store.ping()
    await store.limits_hit("warm", params, "warm", 5, 60)  # script cached, connection open
    before = store._fast.writes
    results = await asyncio.gather(*[store.limits_hit("r", params, "q", 150, 60)
                                     for _ in range(200)])
    assert store._fast.writes == before + 1
    quotas = [q for _, q in results]
    assert sum(1 for q in quotas if q is not None and q.allowed) == 150
    assert sorted(q.remaining for q in quotas if q is not None) == [0] * 51 + list(range(1, 150))
    assert all(r is not None and r.allowed for r, _ in results)
    await store.close()


async def test_a_reply_error_fails_only_its_own_command() -> None:
    c = client()
    await c.execute(cmd("SET", "text", "abc"))
    got = await asyncio.gather(c.execute(cmd("INCR", "n")), c.execute(cmd("INCR", "text")),
                               c.execute(cmd("INCR", "n")))
    assert got[0] == 1 and got[2] == 2
    assert isinstance(got[1], ReplyError) and "not an integer" in str(got[1])
    await c.close()


async def test_a_failing_limits_step_in_a_batch_leaves_the_others_alone() -> None:
    store = open_store(REDIS_URL)
    raw = redis.Redis.from_url(REDIS_URL)
    raw.set("quota-broken", "abc", px=60_000)  # not a number: the script fails on this key
    params = rate_params(100, 1)
    assert params is not None
    got = await asyncio.gather(store.limits_hit("a", params, "ok", 10, 60),
                               store.limits_hit("b", params, "broken", 10, 60),
                               store.limits_hit("c", params, "ok", 10, 60),
                               return_exceptions=True)
    assert isinstance(got[1], StoreError) and not isinstance(got[1], StoreUnavailable)
    assert [q.remaining for _, q in got[0::2]] == [9, 8]  # type: ignore[union-attr,misc]
    raw.close()
    await store.close()


async def test_a_cancelled_caller_does_not_shift_the_replies() -> None:
    c = client()
    await c.execute(cmd("SET", "a", "1"))
    first = asyncio.ensure_future(c.execute(cmd("GET", "a")))
    second = asyncio.ensure_future(c.execute(cmd("INCR", "a")))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    assert await second == 2
    assert await c.execute(cmd("GET", "a")) == b"2"
    await c.close()


async def test_noscript_after_script_flush_reloads_the_limits_script() -> None:
    store = open_store(REDIS_URL)
    raw = redis.Redis.from_url(REDIS_URL)
    params = rate_params(100, 1)
    assert params is not None
    _, quota = await store.limits_hit("r", params, "q", 10, 60)
    assert quota is not None and quota.remaining == 9
    raw.script_flush()
    got = await asyncio.gather(*[store.limits_hit("r", params, "q", 10, 60) for _ in range(3)])
    assert sorted(q.remaining for _, q in got) == [6, 7, 8]  # type: ignore[union-attr]
    assert raw.script_exists(store._limits_sha) == [True]  # type: ignore[attr-defined]
    raw.close()
    await store.close()


# -- failures -----------------------------------------------------------------------------------

async def test_a_dropped_connection_fails_only_the_commands_in_flight() -> None:
    c = client()
    killer = redis.Redis.from_url(REDIS_URL)
    my_id = await c.execute(cmd("CLIENT", "ID"))
    await c.execute(cmd("SET", "x", "1"))
    first = asyncio.ensure_future(c.execute(cmd("GET", "x")))
    blocked = asyncio.ensure_future(c.execute(cmd("BLPOP", "nothing", 5)))  # holds the line
    after = asyncio.ensure_future(c.execute(cmd("GET", "x")))
    assert await first == b"1"
    await asyncio.sleep(0.05)
    killer.execute_command("CLIENT", "KILL", "ID", my_id)
    for future in (blocked, after):
        with pytest.raises(StoreUnavailable, match="connection lost"):
            await future
    assert await c.execute(cmd("GET", "x")) == b"1"  # a new connection
    assert await c.execute(cmd("CLIENT", "ID")) != my_id
    killer.close()
    await c.close()


async def test_a_dropped_connection_through_the_store_fails_closed_then_recovers() -> None:
    store = open_store(REDIS_URL, breaker_seconds=0.0)
    assert isinstance(store, RedisStore) and store._fast is not None
    killer = redis.Redis.from_url(REDIS_URL)
    my_id = await store._fast.execute(cmd("CLIENT", "ID"))
    params = rate_params(100, 1)
    assert params is not None
    blocked = asyncio.ensure_future(store._fast.execute(cmd("BLPOP", "nothing", 5)))
    steps = [asyncio.ensure_future(store.limits_hit("r", params, "q", 10, 60)) for _ in range(3)]
    await asyncio.sleep(0.05)
    killer.execute_command("CLIENT", "KILL", "ID", my_id)
    for step in steps:
        with pytest.raises(StoreUnavailable):
            await step
    with pytest.raises(StoreUnavailable):
        await blocked
    _, quota = await store.limits_hit("r", params, "q", 10, 60)
    # Redis had not run the steps queued behind the blocked command: none counted.
    assert quota is not None and quota.remaining == 9
    killer.close()
    await store.close()


async def test_a_late_reply_breaks_the_connection_after_the_timeout() -> None:
    c = client(timeout=0.2)
    await c.execute(cmd("PING"))
    started = time.monotonic()
    blocked = asyncio.ensure_future(c.execute(cmd("BLPOP", "nothing", 5)))
    behind = asyncio.ensure_future(c.execute(cmd("PING")))
    for future in (blocked, behind):
        with pytest.raises(StoreUnavailable, match="no reply within 0.2 s"):
            await future
    assert 0.19 < time.monotonic() - started < 0.6
    assert await c.execute(cmd("PING")) == b"PONG"  # a new connection
    await c.close()


async def test_every_wait_is_bounded_on_a_silent_server(silent_port: int) -> None:
    with_db = RespClient("127.0.0.1", silent_port, db=1, timeout=0.2, connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable"):  # SELECT never answered
        await with_db.execute(cmd("PING"))
    assert time.monotonic() - started < 0.6
    no_handshake = RespClient("127.0.0.1", silent_port, timeout=0.2, connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no reply within"):
        await no_handshake.execute(cmd("PING"))
    assert time.monotonic() - started < 0.6
    store = open_store(f"redis://127.0.0.1:{silent_port}/0", socket_timeout=0.2,
                       socket_connect_timeout=0.2)
    params = rate_params(1, 1)
    assert params is not None
    started = time.monotonic()
    for call in (store.limits_hit("r", params, "q", 1, 1), store.get_sessions(["a"])):
        with pytest.raises(StoreUnavailable):
            await call
    assert time.monotonic() - started < 0.8  # the second is refused by the breaker
    await with_db.close()
    await no_handshake.close()
    await store.close()


async def test_connect_failure_and_concurrent_first_calls() -> None:
    dead = RespClient("127.0.0.1", 1, timeout=0.2, connect_timeout=0.2)
    got = await asyncio.gather(*[dead.execute(cmd("PING")) for _ in range(5)],
                               return_exceptions=True)
    assert all(isinstance(e, StoreUnavailable) for e in got)
    live = client()
    assert await asyncio.gather(*[live.execute(cmd("PING")) for _ in range(5)]) == [b"PONG"] * 5
    await live.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await live.execute(cmd("PING"))


async def test_wrong_password_is_a_store_error() -> None:
    c = RespClient("127.0.0.1", 6379, db=DB, password="not-the-password")
    with pytest.raises(StoreError, match="AUTH"):
        await c.execute(cmd("PING"))
    await c.close()


async def test_too_many_waiting_commands_are_shed() -> None:
    c = client(max_pending=10)
    await c.execute(cmd("PING"))
    got = await asyncio.gather(*[c.execute(cmd("PING")) for _ in range(15)],
                               return_exceptions=True)
    assert got[:10] == [b"PONG"] * 10
    assert all(isinstance(e, Overloaded) for e in got[10:])
    assert await c.execute(cmd("PING")) == b"PONG"
    await c.close()
