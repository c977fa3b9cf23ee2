"""The Redis store on the other topologies, on real servers: `rediss://` with a CA and a client
certificate, and a 3-master Redis Cluster (keys spread over the nodes, the limits script in one
slot, Pub/Sub heard across nodes, a dead node answered with StoreUnavailable)."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Iterator

import pytest
import redis

from fastgate.store import StoreUnavailable, open_store
from fastgate.store.limits import rate_params
from tests.kit.procs import free_port, wait_port
from tests.kit.redis_topologies import RedisClusterServers
from tests.kit.tls import Pki

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Pki]]:
    """A redis-server with TLS only, requiring a client certificate from the Pki's client CA."""
    directory = tmp_path_factory.mktemp("redis-tls")
    pki = Pki(directory)
    client_ca = pki.ca()
    client_ca_path = pki.ca_file(client_ca, "client-ca")
    # one CA file for the server to check clients against; the client CA signs client certs
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--tls-cert-file", str(pki.server.cert_path),
         "--tls-key-file", str(pki.server.key_path), "--tls-ca-cert-file", str(client_ca_path),
         "--tls-auth-clients", "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        pki.redis_client = pki.client(client_ca)  # type: ignore[attr-defined]
        yield port, pki
    finally:
        proc.terminate()
        proc.wait(5)


def _tls_url(port: int, pki: Pki, with_client_cert: bool = True) -> str:
    url = f"rediss://localhost:{port}/0?ssl_ca_certs={pki.server_ca_path}&ssl_cert_reqs=required"
    if with_client_cert:
        cert = pki.redis_client  # type: ignore[attr-defined]
        url += f"&ssl_certfile={cert.cert_path}&ssl_keyfile={cert.key_path}"
    return url


async def test_rediss_with_a_ca_and_a_client_certificate(tls_redis):
    port, pki = tls_redis
    store = open_store(_tls_url(port, pki))
    try:
        await store.set_session("tls-key", b"{}")
        assert await store.get_session("tls-key") == b"{}"
        _, quota = await store.limits_hit(None, None, "tls-key", 2, 60)
        assert quota is not None and quota.allowed and quota.remaining == 1
        got: list[bytes] = []
        await store.subscribe("events", got.append)
        await store.publish("events", b"over tls")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got == [b"over tls"]
    finally:
        await store.close()


async def test_rediss_fails_closed_without_the_client_certificate_or_the_ca(tls_redis):
    port, pki = tls_redis
    for url in (_tls_url(port, pki, with_client_cert=False),  # the server refuses the handshake
                f"rediss://localhost:{port}/0?ssl_cert_reqs=required"):  # the server is not trusted
        store = open_store(url)
        try:
            with pytest.raises(StoreUnavailable):
                await store.get_session("tls-key")
        finally:
            await store.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers()
    try:
        yield servers
    finally:
        servers.stop()


def _keys_by_node(cluster: RedisClusterServers) -> dict[int, list[bytes]]:
    found = {}
    for port in cluster.ports:
        with cluster.client(port) as c:
            found[port] = list(c.scan_iter(count=1000))
    return found


async def test_cluster_spreads_sessions_and_reads_them_in_one_call(cluster):
    store = open_store(cluster.url())
    try:
        ids = [f"spread-{i}" for i in range(30)]
        for i, key_id in enumerate(ids):
            await store.set_session(key_id, b"%d" % i)
        assert await store.get_sessions([*ids, "absent"]) == [b"%d" % i for i in range(30)] + [None]
        per_node = {port: sum(k.startswith(b"apikey-spread-") for k in keys)
                    for port, keys in _keys_by_node(cluster).items()}
        assert sum(per_node.values()) == 30 and sum(1 for n in per_node.values() if n) >= 2, per_node
        assert set(ids) <= set(await store.list_sessions("spread-"))
        await store.reset_limits(["spread-1", "spread-2"], ["spread-3"])  # keys in several slots
    finally:
        await store.close()


async def test_cluster_limits_keys_share_one_slot_and_count_exactly(cluster):
    store = open_store(cluster.url())
    try:
        params = rate_params(100, 1)
        decisions = [await store.limits_hit("k1", params, "k1", 3, 60) for _ in range(5)]
        assert [q.allowed for _, q in decisions if q is not None] == [True, True, True, False, False]
        names = [k for keys in _keys_by_node(cluster).values() for k in keys if b"{k1}" in k]
        assert sorted(names) == [b"quota-{k1}", b"rate-limit-{k1}"]
        with cluster.client(cluster.ports[0]) as c:
            slots = {c.execute_command("CLUSTER", "KEYSLOT", n) for n in names}
        assert len(slots) == 1
        status = await store.quota_status("k1", 3)
        assert (status.allowed, status.remaining) == (False, 0)
        await store.reset_limits(["k1"], ["k1"])
        assert (await store.quota_status("k1", 3)).remaining == 3
        # names that differ (never from one key, but the store accepts them): two scripts
        split = [await store.limits_hit("r-other", rate_params(2, 60), "q-other", 1, 60) for _ in range(3)]
        assert [(r.allowed, q.allowed if q else None) for r, q in split] == [
            (True, True), (True, False), (False, None)]
    finally:
        await store.close()


async def test_cluster_events_published_on_one_node_reach_a_subscriber_on_another(cluster):
    p1, p2, p3 = cluster.ports
    listener, sender = open_store(cluster.url(p1)), open_store(cluster.url(p3))
    try:
        got: list[bytes] = []
        await listener.subscribe("events", got.append)
        for i in range(5):  # PUBLISH lands on whichever node the client picks: all must arrive
            await sender.publish("events", b"m%d" % i)
        for _ in range(200):
            if len(got) == 5:
                break
            await asyncio.sleep(0.01)
        assert got == [b"m%d" % i for i in range(5)]
    finally:
        await listener.close()
        await sender.close()


async def test_cluster_with_a_dead_master_is_unavailable_not_an_error():
    servers = RedisClusterServers()
    store = open_store(servers.url(), socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        ids = [f"dead-{i}" for i in range(12)]
        for key_id in ids:
            await store.set_session(key_id, b"x")
        servers.kill(servers.ports[2])
        for key_id in ids:  # some slots live on the dead node: 503 for those, never another error
            try:
                assert await store.get_session(key_id) == b"x"
            except StoreUnavailable:
                pass
        with pytest.raises(StoreUnavailable):
            await store.get_sessions(ids)
    finally:
        await store.close()
        servers.stop()


@pytest.mark.parametrize("fast_path", [True, False], ids=["pipelined", "redis-py"])
async def test_a_redis_loading_its_data_is_unavailable_then_back(tmp_path, fast_path):
    """Redis answers LOADING while it reads its data after a restart (found by bench/soak.py as a
    500): that is StoreUnavailable (503), and the store works once loading is over."""
    port = free_port()
    base = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "",
            "--appendonly", "no"]
    first = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=first)
    with redis.Redis(port=port) as c:
        c.eval("for i = 1, 3000 do redis.call('SET', 'apikey-k' .. i, 'v') end", 0)
        c.save()
    first.terminate()
    first.wait(5)
    slow = subprocess.Popen([*base, "--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = open_store(f"redis://127.0.0.1:{port}/0", fast_path=fast_path, breaker_seconds=0.05)
    try:
        wait_port(port, proc=slow)
        with pytest.raises(StoreUnavailable, match="(?i)loading"):
            await store.get_sessions(["k1", "k2"])
        for _ in range(200):
            await asyncio.sleep(0.05)
            try:
                assert await store.get_session("k1") == b"v"
                break
            except StoreUnavailable:
                continue
        else:
            pytest.fail("the store did not come back after loading")
    finally:
        await store.close()
        slow.terminate()
        slow.wait(5)


async def test_cluster_subscriber_moves_to_another_node_when_its_node_dies():
    """The Pub/Sub connection sits on one node of the URL; when that node dies the store reports
    the gap (caches drop everything) and listens on the next node, where events still arrive."""
    servers = RedisClusterServers()
    p1, p2, p3 = servers.ports
    store = open_store(servers.url(p1, p2, p3), socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        got: list[bytes] = []
        gaps: list[bool] = []
        await store.subscribe("events", got.append, on_gap=lambda: gaps.append(True))
        servers.kill(p1)  # the first node of the URL: the one the subscriber uses
        for _ in range(200):
            if gaps:
                break
            await asyncio.sleep(0.02)
        assert gaps, "the lost subscription was not reported"
        for _ in range(200):  # published on a live node until the new subscription hears it
            with servers.client(p3) as c:
                c.publish("events", b"after")
            if got:
                break
            await asyncio.sleep(0.05)
        assert got and set(got) == {b"after"}
    finally:
        await store.close()
        servers.stop()
