"""Storage URLs: each Redis topology parsed, and every malformed URL refused with what is wrong
(and never with the password in the message)."""

from __future__ import annotations

import pytest

from fastgate.store import open_store
from fastgate.store.urls import parse_topology


def test_standalone_urls_go_to_redis_py_as_they_are():
    for url in ("redis://127.0.0.1:6379/3", "rediss://user:pw@cache.example:6380/0?ssl_ca_certs=/ca.pem"):
        t = parse_topology(url)
        assert (t.kind, t.url) == ("standalone", url)
        assert "pw" not in t.where


def test_sentinel_url():
    t = parse_topology("redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/4?x=1")
    assert t.kind == "sentinel"
    assert t.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (t.service_name, t.db, t.username, t.password) == ("mymaster", 4, "app", "s3cret")
    assert "s3cret" not in t.where
    assert parse_topology("redis+sentinel://h:1/fg").db == 0


def test_cluster_url():
    t = parse_topology("redis+cluster://:pw%40x@n1:7000,n2:7001")
    assert t.kind == "cluster"
    assert t.nodes == (("n1", 7000), ("n2", 7001))
    assert (t.username, t.password, t.db) == (None, "pw@x", 0)
    assert parse_topology("redis+cluster://n1/0").nodes == (("n1", 6379),)


@pytest.mark.parametrize("url, problem", [
    ("redis+sentinel://h:26379", "service_name"),
    ("redis+sentinel://h:26379/fg/x", "database 'x' is not a number"),
    ("redis+sentinel://h:26379/fg/0/extra", "service_name"),
    ("redis+cluster://h:7000/2", "only database 0"),
    ("redis+cluster://h:port", "port 'port' is not a number"),
    ("redis+cluster://:7000", "a host is missing"),
    ("redis+cluster://a:1,,b:2", "a host is missing"),
    ("redis+clusters://user:topsecret@h:7000", "the scheme must be one of"),
    ("mongodb://h", "the scheme must be one of"),
])
def test_malformed_urls_say_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match=problem) as caught:
        parse_topology(url)
    assert "topsecret" not in str(caught.value)


def test_open_store_refuses_what_it_cannot_open_before_connecting():
    with pytest.raises(ValueError, match="redis\\+sentinel://"):
        open_store("redis+sentinels://user:topsecret@h/fg")
    with pytest.raises(ValueError, match="only database 0"):
        open_store("redis+cluster://127.0.0.1:7000/5")


def test_analytics_client_for_every_kind_of_url():
    """``open_redis_client`` (the analytics pusher's client) for each URL the store accepts:
    TLS options reach redis-py, the store's own parameters do not, Sentinel gives the named
    master, Cluster the cluster client; nothing connects here."""
    import ssl

    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from fastgate.store import open_redis_client

    tls = open_redis_client("rediss://u:pw@cache.example:6380/2?ssl_cert_reqs=required&prefix=t:&breaker_seconds=1",
                            timeout=0.5)
    kwargs = tls.connection_pool.connection_kwargs
    assert isinstance(tls, Redis) and kwargs["db"] == 2 and kwargs["ssl_cert_reqs"] in ("required", ssl.CERT_REQUIRED)
    assert "prefix" not in kwargs and "breaker_seconds" not in kwargs and kwargs["socket_timeout"] == 0.5
    master = open_redis_client("redis+sentinel://s1:26379,s2/fg/3?socket_timeout=2", timeout=0.5)
    assert isinstance(master, Redis) and master.connection_pool.service_name == "fg"
    assert master.connection_pool.connection_kwargs["db"] == 3
    assert master.connection_pool.connection_kwargs["socket_timeout"] == 2.0
    cluster = open_redis_client("redis+cluster://n1:7000,n2:7001", timeout=0.5)
    assert isinstance(cluster, RedisCluster)
    for url in ("memory://", "http://x"):
        with pytest.raises(ValueError):
            open_redis_client(url, timeout=0.5)
