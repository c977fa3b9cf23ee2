"""The store contract, on both backends, plus the session cache that sits in front of it."""

from __future__ import annotations

import asyncio
import time
from typing import Sequence

import pytest
import redis

from fastgate.store.limits import rate_params
from fastgate.sessions.session import AccessDefinition, SessionState, encode_session
from fastgate.sessions.cache import MISS, SessionCache
from fastgate.store import (
    CLUSTER_CHANNEL, NOTICE_KEY_UPDATED, StoreError, StoreUnavailable, decode_event,
    encode_event, open_store,
)
from fastgate.store.memory import MemoryStore
from tests.store.conftest import REDIS_URL, PrivateRedis, Stores


async def eventually(check, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# -- sessions -----------------------------------------------------------------------------------

async def test_session_crud_and_listing(stores: Stores) -> None:
    s = stores.open()
    assert await s.get_session("k1") is None
    await s.set_session("defaultk1", b'{"rate":1}')
    await s.set_session("defaultk2", b'{"rate":2}')
    await s.set_session("otherk3", b"{}")
    assert await s.get_session("defaultk1") == b'{"rate":1}'
    assert await s.get_sessions(["defaultk2", "nope", "defaultk1"]) == [
        b'{"rate":2}', None, b'{"rate":1}']
    assert await s.get_sessions([]) == []
    assert sorted(await s.list_sessions()) == ["defaultk1", "defaultk2", "otherk3"]
    assert sorted(await s.list_sessions("default")) == ["defaultk1", "defaultk2"]
    assert await s.list_sessions("no*such[") == []  # glob characters are literal
    assert await s.delete_session("defaultk1") is True
    assert await s.delete_session("defaultk1") is False
    assert await s.get_session("defaultk1") is None


async def test_session_ttl_expiry_and_removal(stores: Stores) -> None:
    s = stores.open()
    await s.set_session("short", b"1", ttl=0.15)
    await s.set_session("kept", b"2", ttl=0.15)
    await s.set_session("kept", b"3")  # a write without TTL makes it permanent
    assert await s.get_session("short") == b"1"
    await asyncio.sleep(0.25)
    assert await s.get_session("short") is None
    assert await s.list_sessions() == ["kept"]
    assert await s.get_session("kept") == b"3"
    await s.set_session("forever", b"4", ttl=-1)  # Tyk's -1: never delete
    assert await s.get_session("forever") == b"4"


async def test_redis_keys_use_tyk_prefixes_and_extra_prefix() -> None:
    from tests.store.conftest import flush
    flush()
    store = open_store(REDIS_URL + "?prefix=fg:")
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await store.set_session("abc", b"{}")
        await store.quota_hit("p1-abc", 10, 60)
        params = rate_params(10, 1)
        assert params is not None
        await store.rate_hit("p1-abc", params)
        await store.kv_set("oauth-token-x", b"t")
        assert sorted(raw.keys("*")) == [
            "fg:apikey-abc", "fg:oauth-token-x", "fg:quota-p1-abc", "fg:rate-limit-p1-abc"]
        assert 0 < raw.pttl("fg:quota-p1-abc") <= 60_000
        assert await store.list_sessions() == ["abc"]
    finally:
        await store.close()
        raw.close()
        flush()


# -- rate limits --------------------------------------------------------------------------------

async def test_rate_limit_burst_headers_and_reset(stores: Stores) -> None:
    s = stores.open()
    params = rate_params(5, 10)
    assert params is not None
    decisions = [await s.rate_hit("key1", params) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    assert 1.5 < decisions[-1].retry_after <= 2.0  # one interval (2 s) minus elapsed time
    assert 9.0 < decisions[-1].reset <= 10.0
    assert (await s.rate_hit("key2", params)).allowed  # another limiter is independent
    await s.reset_limits([], ["key1"])
    assert (await s.rate_hit("key1", params)).allowed


async def test_rate_limit_recovers_after_an_interval(stores: Stores) -> None:
    s = stores.open()
    params = rate_params(10, 1)  # one per 100 ms after the burst
    assert params is not None
    for _ in range(10):
        assert (await s.rate_hit("k", params)).allowed
    assert not (await s.rate_hit("k", params)).allowed
    await asyncio.sleep(0.12)
    assert (await s.rate_hit("k", params)).allowed
    assert not (await s.rate_hit("k", params)).allowed


async def test_parallel_rate_hits_from_two_stores_share_one_limit(stores: Stores) -> None:
    a, b = stores.open(max_connections=16), stores.open(max_connections=16)
    params = rate_params(20, 60)
    assert params is not None
    results = await asyncio.gather(*[(a if i % 2 else b).rate_hit("shared", params)
                                     for i in range(100)])
    assert sum(r.allowed for r in results) == 20


# -- quotas -------------------------------------------------------------------------------------

async def test_quota_counts_and_resets(stores: Stores) -> None:
    s = stores.open()
    seen = [await s.quota_hit("p1-key", 3, 3600) for _ in range(4)]
    assert [(q.allowed, q.remaining, q.limit) for q in seen] == [
        (True, 2, 3), (True, 1, 3), (True, 0, 3), (False, 0, 3)]
    now = time.time()
    assert now + 3590 < seen[0].renews_at <= now + 3601
    status = await s.quota_status("p1-key", 3)
    assert (status.allowed, status.remaining) == (False, 0)
    fresh = await s.quota_status("never-used", 3)
    assert (fresh.allowed, fresh.remaining, fresh.renews_at) == (True, 3, 0)
    await s.reset_limits(["p1-key"])
    assert (await s.quota_status("p1-key", 3)).remaining == 3
    assert (await s.quota_hit("p1-key", 3, 3600)).remaining == 2


async def test_quota_renews_after_its_period(stores: Stores) -> None:
    s = stores.open()
    assert (await s.quota_hit("q", 1, 1)).allowed
    assert not (await s.quota_hit("q", 1, 1)).allowed
    await asyncio.sleep(1.05)
    again = await s.quota_hit("q", 1, 1)
    assert again.allowed and again.remaining == 0


async def test_quota_without_renewal_never_renews(stores: Stores) -> None:
    s = stores.open()
    first = await s.quota_hit("once", 2, 0)
    assert first.allowed and first.renews_at == 0
    assert (await s.quota_hit("once", 2, 0)).allowed
    assert not (await s.quota_hit("once", 2, 0)).allowed


async def test_parallel_quota_hits_from_two_stores_never_exceed_max(stores: Stores) -> None:
    # two nodes (the memory backend: one process), each with a small pool
    a, b = stores.open(max_connections=16), stores.open(max_connections=16)
    results = await asyncio.gather(*[(a if i % 2 else b).quota_hit("shared", 50, 3600)
                                     for i in range(200)])
    assert sum(r.allowed for r in results) == 50
    assert sorted(r.remaining for r in results if r.allowed) == list(range(50))
    assert (await a.quota_status("shared", 50)).remaining == 0


async def test_limits_hit_checks_rate_then_quota_in_one_step(stores: Stores) -> None:
    s = stores.open()
    params = rate_params(2, 60)
    assert params is not None
    rate, quota = await s.limits_hit("r", params, "q", 10, 3600)
    assert rate is not None and rate.allowed and quota is not None and quota.remaining == 9
    await s.limits_hit("r", params, "q", 10, 3600)
    rate, quota = await s.limits_hit("r", params, "q", 10, 3600)
    assert rate is not None and not rate.allowed and quota is None  # 429: quota not consumed
    assert (await s.quota_status("q", 10)).remaining == 8
    rate, quota = await s.limits_hit(None, None, "q", 10, 3600)  # unlimited rate
    assert rate is None and quota is not None and quota.remaining == 7
    rate, quota = await s.limits_hit("r2", params, None, 0, 0)  # unlimited quota
    assert rate is not None and rate.allowed and quota is None
    assert await s.limits_hit(None, None, None, 0, 0) == (None, None)


# -- key/value ----------------------------------------------------------------------------------

async def test_kv_and_set_if_absent(stores: Stores) -> None:
    s = stores.open()
    assert await s.kv_get("oauth-token-1") is None
    await s.kv_set("oauth-token-1", b"client=1")
    assert await s.kv_get("oauth-token-1") == b"client=1"
    assert await s.kv_delete("oauth-token-1") is True
    assert await s.kv_delete("oauth-token-1") is False
    results = await asyncio.gather(*[s.kv_set_if_absent("nonce-1", b"%d" % i, ttl=60)
                                     for i in range(50)])
    assert sum(results) == 1  # exactly one request wins the replay slot
    assert await s.kv_set_if_absent("nonce-1", b"again") is False
    assert await s.kv_set_if_absent("nonce-2", b"v", ttl=0.15) is True
    await s.kv_set("plain", b"v", ttl=0.15)
    await asyncio.sleep(0.25)
    assert await s.kv_get("nonce-2") is None and await s.kv_get("plain") is None
    assert await s.kv_set_if_absent("nonce-2", b"again") is True


async def test_kv_keys_lists_live_keys_by_prefix(stores: Stores) -> None:
    s = stores.open()
    await s.kv_set("cert-raw-org1aa", b"1")
    await s.kv_set("cert-raw-org1bb", b"2")
    await s.kv_set("cert-raw-*[?", b"glob characters are literal")
    await s.kv_set("cert-other", b"3")
    await s.kv_set("cert-raw-short", b"4", ttl=0.1)
    await s.set_session("cert-raw-session", b"{}")  # sessions are not key/value entries
    assert sorted(await s.kv_keys("cert-raw-")) == ["cert-raw-*[?", "cert-raw-org1aa", "cert-raw-org1bb",
                                                   "cert-raw-short"]
    assert await s.kv_keys("cert-raw-*") == ["cert-raw-*[?"]
    await asyncio.sleep(0.2)
    assert "cert-raw-short" not in await s.kv_keys("cert-raw-")
    await s.kv_delete("cert-raw-org1aa")
    assert sorted(await s.kv_keys("cert-raw-org1")) == ["cert-raw-org1bb"]
    assert await s.kv_keys("nothing-") == []


async def test_redis_kv_keys_strip_the_extra_prefix() -> None:
    store = open_store(REDIS_URL + "?prefix=fg:")
    other = open_store(REDIS_URL)
    try:
        await store.kv_set("cert-raw-x", b"1")
        await other.kv_set("cert-raw-y", b"2")  # another deployment sharing the database
        assert await store.kv_keys("cert-raw-") == ["cert-raw-x"]
    finally:
        await store.kv_delete("cert-raw-x")
        await other.kv_delete("cert-raw-y")
        await store.close()
        await other.close()


# -- events -------------------------------------------------------------------------------------

async def test_publish_reaches_subscribers_on_other_stores(stores: Stores) -> None:
    node_a, node_b = stores.open(), stores.open()
    got_a: list[bytes] = []
    got_async: list[bytes] = []

    async def slow_callback(message: bytes) -> None:
        await asyncio.sleep(0)
        got_async.append(message)

    def broken(_: bytes) -> None:
        raise RuntimeError("a bad subscriber")

    sub_a = await node_a.subscribe("events", got_a.append)
    await node_a.subscribe("events", broken)
    await node_a.subscribe("events", slow_callback)
    assert sub_a.live
    await node_b.publish("events", b"one")
    await node_b.publish("other-channel", b"not for us")
    await eventually(lambda: got_a == [b"one"] and got_async == [b"one"])
    await sub_a.unsubscribe()
    await sub_a.unsubscribe()  # idempotent
    assert not sub_a.live
    await node_b.publish("events", b"two")
    await eventually(lambda: got_async == [b"one", b"two"])
    assert got_a == [b"one"]


async def test_channels_are_independent_and_resubscribable(stores: Stores) -> None:
    node, publisher = stores.open(), stores.open()
    got: list[tuple[str, bytes]] = []
    one = await node.subscribe("one", lambda m: got.append(("one", m)))
    two = await node.subscribe("two", lambda m: got.append(("two", m)))
    await one.unsubscribe()
    await publisher.publish("one", b"a")
    await publisher.publish("two", b"b")
    await eventually(lambda: got == [("two", b"b")])
    await two.unsubscribe()  # nothing left: the listener stops
    again = await node.subscribe("one", lambda m: got.append(("again", m)))
    assert again.live
    await publisher.publish("one", b"c")
    await eventually(lambda: got[-1] == ("again", b"c"))
    assert len(got) == 2


async def test_cluster_event_encoding() -> None:
    data = encode_event(NOTICE_KEY_UPDATED, "abc")
    assert data == b'{"command":"KeySpaceUpdateNotification","payload":"abc"}'
    event = decode_event(data)
    assert event is not None and (event.command, event.payload) == (NOTICE_KEY_UPDATED, "abc")
    assert decode_event(b"garbage") is None


# -- availability -------------------------------------------------------------------------------

async def test_unreachable_redis_raises_store_unavailable_quickly() -> None:
    store = open_store("redis://127.0.0.1:1/0", socket_timeout=0.2, socket_connect_timeout=0.2)
    params = rate_params(1, 1)
    assert params is not None
    calls = [store.ping(), store.get_session("k"), store.get_sessions(["a", "b"]),
             store.set_session("k", b"v"), store.delete_session("k"), store.list_sessions(),
             store.rate_hit("r", params), store.quota_hit("q", 1, 1), store.quota_status("q", 1),
             store.reset_limits(["q"], ["r"]), store.kv_get("x"), store.kv_set("x", b"v"),
             store.kv_delete("x"), store.kv_set_if_absent("x", b"v"), store.publish("c", b"m"),
             store.subscribe("c", lambda m: None)]
    started = time.monotonic()
    for call in calls:
        with pytest.raises(StoreUnavailable):
            await call
    assert time.monotonic() - started < 2.0
    await store.close()


async def test_closed_store_refuses_calls(stores: Stores) -> None:
    s = stores.open()
    await s.ping()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await s.get_session("k")
    assert issubclass(StoreUnavailable, StoreError)


def test_open_store_urls() -> None:
    with pytest.raises(ValueError, match="use memory:// or redis://"):
        open_store("mongodb://localhost")
    with pytest.raises(ValueError, match="socket_timeout='soon' is not a number"):
        open_store("redis://127.0.0.1:6379/0?socket_timeout=soon")


async def test_redis_store_recovers_when_redis_returns(private_redis: PrivateRedis) -> None:
    store = open_store(private_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2,
                       breaker_seconds=0.1)
    observer = open_store(private_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    got: list[bytes] = []
    gaps: list[float] = []
    sub = await store.subscribe("events", got.append, lambda: gaps.append(time.monotonic()))
    await store.set_session("k", b"before")
    await store.quota_hit("q", 5, 60)  # the Lua script is now cached by this server
    private_redis.stop()
    with pytest.raises(StoreUnavailable):
        await store.get_session("k")
    with pytest.raises(StoreUnavailable):  # within the breaker window: refused at once
        await store.get_session("k")
    await eventually(lambda: not sub.live and len(gaps) >= 1)
    private_redis.start()  # same port, empty data (no persistence)
    await asyncio.sleep(0.15)
    await store.set_session("k", b"after")
    assert await store.get_session("k") == b"after"
    params = rate_params(5, 1)
    assert params is not None
    rate, quota = await store.limits_hit("r", params, "q", 5, 60)  # script reloaded after restart
    assert rate is not None and rate.allowed and quota is not None and quota.remaining == 4
    await eventually(lambda: sub.live, timeout=4.0)
    assert len(gaps) >= 2  # on loss, and again once resubscribed
    await observer.publish("events", b"after-restart")
    await eventually(lambda: got == [b"after-restart"])
    await observer.close()
    await store.close()


# -- session cache ------------------------------------------------------------------------------

def key_session(**kw: object) -> SessionState:
    return SessionState(org_id="default", access_rights={"api": AccessDefinition()},
                        **kw)  # type: ignore[arg-type]


async def test_cache_serves_hits_without_the_store(stores: Stores) -> None:
    store = stores.open()
    cache = SessionCache(store, ttl=5)
    assert cache.peek("k1") is MISS  # not started: nothing is known
    await cache.start()
    assert cache.live
    await cache.put_session("k1", key_session(rate=7))
    assert cache.peek("k1") is MISS
    first = await cache.get("k1")
    assert first is not None and first.rate == 7
    assert cache.peek("k1") is first  # known now: no await needed
    assert await cache.get("absent") is None
    assert cache.peek("absent") is None  # known absent
    await store.set_session("k1", encode_session(key_session(rate=8)))  # bypassing the cache
    again = await cache.get("k1")
    assert again is first  # served from the cache until told otherwise
    await cache.notify_changed("k1")
    assert (await cache.get("k1")).rate == 8  # type: ignore[union-attr]
    await cache.close()


async def test_key_deleted_on_node_a_is_refused_on_node_b(stores: Stores) -> None:
    node_a, node_b = SessionCache(stores.open()), SessionCache(stores.open(), ttl=60)
    await node_a.start()
    await node_b.start()
    await node_a.put_session("k1", key_session())
    assert await node_b.get("k1") is not None  # now cached on B for up to 60 s
    deleted_at = time.monotonic()
    assert await node_a.delete_session("k1")

    async def refused_on_b() -> None:
        while await node_b.get("k1") is not None:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(refused_on_b(), timeout=1.0)
    assert time.monotonic() - deleted_at < 1.0
    await node_a.close()
    await node_b.close()


async def test_cache_candidates_absence_and_creation(stores: Stores) -> None:
    cache = SessionCache(stores.open(), negative_ttl=30)
    await cache.start()
    await cache.put_session("user1", key_session(alias="raw"))
    found = await cache.get_first(["defaultuser1", "user1"])
    assert found is not None and found[0] == "user1" and found[1].alias == "raw"
    # the org-prefixed candidate was absent and that is cached; creating it invalidates that
    await cache.put_session("defaultuser1", key_session(alias="prefixed"))
    found = await cache.get_first(["defaultuser1", "user1"])
    assert found is not None and found[0] == "defaultuser1"
    assert await cache.get_first(["nobody", "nothing"]) is None
    await cache.close()


async def test_cache_is_bounded_and_expires(stores: Stores) -> None:
    cache = SessionCache(stores.open(), max_entries=3, ttl=0.1)
    await cache.start()
    for i in range(5):
        await cache.put_session(f"k{i}", key_session(rate=i))
        assert await cache.get(f"k{i}") is not None
    assert len(cache._entries) == 3 and list(cache._entries) == ["k2", "k3", "k4"]
    await asyncio.sleep(0.15)
    assert cache._lookup("k4") is None  # expired: the next get goes to the store
    await cache.close()


async def test_cache_is_bypassed_until_started_and_single_flights(stores: Stores) -> None:
    store = stores.open()
    cache = SessionCache(store)
    await store.set_session("k", encode_session(key_session()))
    assert not cache.live
    assert await cache.get("k") is not None
    assert cache._entries == {}  # no events, no caching
    await cache.start()
    results = await asyncio.gather(*[cache.get("k") for _ in range(20)])
    assert all(r is results[0] for r in results)  # one store read shared by all
    await store.set_session("bad", b"{not json")
    assert await cache.get("bad") is None  # unreadable: treated as not found
    await cache.close()


async def test_cache_events_on_the_cluster_channel(stores: Stores) -> None:
    cache = SessionCache(stores.open())
    await cache.start()
    await cache.put_session("k", key_session())
    assert await cache.get("k") is not None and "k" in cache._entries
    other = stores.open()
    await other.publish(CLUSTER_CHANNEL, encode_event(NOTICE_KEY_UPDATED, "k"))
    await eventually(lambda: "k" not in cache._entries)
    await other.publish(CLUSTER_CHANNEL, b"not an event")  # ignored
    await cache.close()


async def test_cache_store_down_raises_unavailable() -> None:
    cache = SessionCache(open_store("redis://127.0.0.1:1/0", socket_timeout=0.2,
                                    socket_connect_timeout=0.2))
    with pytest.raises(StoreUnavailable):
        await cache.start()
    with pytest.raises(StoreUnavailable):
        await cache.get("k")
    await cache._store.close()


class SlowStore(MemoryStore):
    """A memory store whose reads wait for a gate, to hold a read in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.reads = 0

    async def get_sessions(self, key_ids: Sequence[str]) -> list[bytes | None]:
        self.reads += 1
        await self.gate.wait()
        return await super().get_sessions(key_ids)


async def test_cache_follower_survives_a_cancelled_leader() -> None:
    store = SlowStore()
    cache = SessionCache(store)
    await cache.start()
    await store.set_session("k", encode_session(key_session()))
    leader = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    leader.cancel()  # e.g. the client of the first request went away
    await asyncio.sleep(0)
    store.gate.set()
    assert await follower is not None
    assert leader.cancelled() and store.reads == 2
    await cache.close()
    await store.close()


async def test_cache_drops_a_read_that_raced_an_invalidation() -> None:
    store = SlowStore()
    cache = SessionCache(store)
    await cache.start()
    await store.set_session("k", encode_session(key_session(rate=1)))
    reading = asyncio.ensure_future(cache.get("k"))
    await asyncio.sleep(0)
    cache.invalidate("k")  # an update event arrives while the old value is being read
    store.gate.set()
    assert (await reading) is not None
    assert "k" not in cache._entries  # the possibly stale value was not cached
    await cache.close()
    await store.close()
