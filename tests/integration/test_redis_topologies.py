"""Gateway nodes on a real Redis Cluster (3 masters) and on a Sentinel group (master, replica, 3
sentinels): shared keys, an exact shared quota, a delete seen by the other node within 1 s, and a
Sentinel failover answered with 200 or 503 only, recovered without a restart
(contract: ecosystem-topologies.md, "Redis topologies")."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest
import requests

from tests.kit.apis import rights, token_api
from tests.kit.gateway_api import ADMIN, create_key
from tests.kit.procs import Gateway, Upstream
from tests.kit.redis_topologies import RedisClusterServers, RedisSentinelServers

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def cluster_nodes(make_gateway, up: Upstream, cluster: RedisClusterServers) -> tuple[Gateway, Gateway]:
    """Node A names one cluster node, node B the two others: each discovers the rest."""
    p1, p2, p3 = cluster.ports
    a = make_gateway([token_api("shared", up.url)], {"storage": {"url": cluster.url(p1)}}, wait=False)
    b = make_gateway([token_api("shared", up.url)], {"storage": {"url": cluster.url(p2, p3)}}, wait=False)
    for node in (a, b):
        _wait_hello(node, 20)
    return a, b


def test_cluster_nodes_start_and_store_keys_in_the_cluster(cluster_nodes, cluster):
    a, b = cluster_nodes
    before = cluster.dbsize()
    key = create_key(a, {"access_rights": rights("shared")})["key"]
    assert cluster.dbsize() > before
    assert requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200


def test_cluster_quota_is_exact_across_two_nodes(cluster_nodes, up):
    a, b = cluster_nodes
    key = create_key(a, {"access_rights": rights("shared"), "quota_max": 10, "quota_renewal_rate": 3600,
                         "rate": 1000, "per": 1})["key"]
    up.reset()
    start = threading.Barrier(16)

    def hit(url: str) -> tuple[int, str]:
        with requests.Session() as s:
            start.wait(10)
            r = s.get(url + "/shared/", headers={"Authorization": key}, timeout=10)
            return r.status_code, r.text

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(hit, [a.url] * 8 + [b.url] * 8))
    codes = [c for c, _ in answers]
    assert codes.count(200) == 10, answers
    assert codes.count(403) == 6, answers
    assert all('"Quota exceeded"' in text for c, text in answers if c == 403)
    assert len(up.seen()) == 10


def test_cluster_delete_on_one_node_is_refused_on_the_other_within_a_second(cluster_nodes):
    a, b = cluster_nodes
    key = create_key(a, {"access_rights": rights("shared")})["key"]
    assert requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200
    assert requests.delete(a.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5).status_code == 200
    deadline = time.monotonic() + 1.0
    while True:
        r = requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5)
        if r.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert r.status_code == 403
    assert r.json()["error"] == "Access to this API has been disallowed"


def test_sentinel_failover_answers_200_or_503_and_recovers_by_itself(make_gateway, up):
    servers = RedisSentinelServers()
    try:
        gw = make_gateway([token_api("shared", up.url)], {"storage": {"url": servers.url}}, wait=False)
        _wait_hello(gw, 20)
        key = create_key(gw, {"access_rights": rights("shared")})["key"]
        assert requests.get(gw.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200
        with servers.client(servers.master) as master:
            assert master.dbsize() > 0  # stored in db 0 of the master ...
            assert master.execute_command("WAIT", 1, 5000) == 1  # ... and acknowledged by the replica

        servers.kill(servers.master)
        killed = time.monotonic()
        seen: list[int] = []
        promoted = False
        while time.monotonic() - killed < 20:
            status = requests.get(gw.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code
            seen.append(status)
            promoted = promoted or servers.master_port_by_sentinels() == servers.replica
            if promoted and status == 200:
                break
            time.sleep(0.2)
        assert set(seen) <= {200, 503}, seen
        assert promoted and seen[-1] == 200, seen

        deadline = time.monotonic() + 10
        while True:  # the first write may meet a connection to the old master: 503, then retry
            status, answer = gw.admin("POST", "/tyk/keys/create", {"access_rights": rights("shared")})
            if status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200, answer
        for k in (answer["key"], key):
            assert requests.get(gw.url + "/shared/", headers={"Authorization": k}, timeout=5).status_code == 200
    finally:
        servers.stop()


def _wait_hello(gw: Gateway, timeout: float) -> None:
    gw.ready()
    deadline = time.monotonic() + timeout
    while True:
        status, _ = gw.admin("GET", "/hello", timeout=5)
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200, gw.log[-2000:]
