"""Several gateway nodes on one Redis: shared keys, exact shared quotas, propagated deletes, and a
Redis outage under traffic (503 while down, never a 200 for a deleted key, recovery after)."""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.kit.procs import free_port, wait_port
from tests.kit.apis import classic_api, rights, token_api
from tests.kit.gateway_api import ADMIN, create_key


@pytest.fixture
def two_nodes(make_gateway, upstream, redis_db):
    settings = {"storage": {"url": redis_db}}
    nodes = [make_gateway([token_api("shared", upstream.url)], settings, wait=False) for _ in range(2)]
    for node in nodes:  # started side by side
        node.ready()
    return tuple(nodes)


def test_key_created_on_one_node_works_on_the_other(two_nodes):
    a, b = two_nodes
    key = create_key(a, {"access_rights": rights("shared")})["key"]
    assert requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200


def test_delete_on_one_node_is_refused_on_the_other_within_a_second(two_nodes):
    a, b = two_nodes
    key = create_key(a, {"access_rights": rights("shared")})["key"]
    # Node B has the key in its local cache now.
    for _ in range(3):
        assert requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200
    assert requests.delete(a.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5).status_code == 200
    deadline = time.monotonic() + 1.0
    status = 200
    while time.monotonic() < deadline:
        status = requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code
        if status == 403:
            break
        time.sleep(0.02)
    assert status == 403


def test_quota_is_shared_exactly_across_nodes(two_nodes):
    a, b = two_nodes
    key = create_key(a, {"access_rights": rights("shared"), "quota_max": 40, "quota_renewal_rate": 3600})["key"]
    urls = [(a if i % 2 else b).url + "/shared/" for i in range(70)]

    def hit(url: str) -> int:
        with requests.Session() as s:
            return s.get(url, headers={"Authorization": key}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=14) as pool:
        codes = list(pool.map(hit, urls))
    assert codes.count(200) == 40
    assert codes.count(403) == 30


def test_update_on_one_node_applies_on_the_other(two_nodes):
    a, b = two_nodes
    key = create_key(a, {"access_rights": rights("shared")})["key"]
    assert requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200
    r = requests.put(a.url + f"/tyk/keys/{key}", json={"access_rights": rights("shared"), "is_inactive": True},
                     headers=ADMIN, timeout=5)
    assert r.status_code == 200
    deadline = time.monotonic() + 1.0  # the event reaches node B in milliseconds; allow a loaded machine
    while True:
        refused = requests.get(b.url + "/shared/", headers={"Authorization": key}, timeout=5)
        if refused.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert refused.status_code == 403 and refused.json()["error"] == "Key is inactive, please renew"


class OwnRedis:
    """A redis-server of the test's own, so it can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is required for the cluster tests"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis():
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


def test_redis_outage_fails_closed_and_recovers(make_gateway, upstream, own_redis):
    gw = make_gateway([token_api("shared", upstream.url)], {"storage": {"url": own_redis.url}})
    limited = create_key(gw, {"access_rights": rights("shared"), "quota_max": 1000, "quota_renewal_rate": 3600})["key"]
    plain = create_key(gw, {"access_rights": rights("shared")})["key"]
    doomed = create_key(gw, {"access_rights": rights("shared")})["key"]
    for key in (limited, plain, doomed):
        assert requests.get(gw.url + "/shared/", headers={"Authorization": key}, timeout=5).status_code == 200
    assert requests.delete(gw.url + f"/tyk/keys/{doomed}", headers=ADMIN, timeout=5).status_code == 200

    own_redis.stop()
    time.sleep(0.3)
    for key in (limited, plain, doomed):
        r = requests.get(gw.url + "/shared/", headers={"Authorization": key}, timeout=5)
        assert r.status_code != 200, f"a request was let through while the store was down ({r.status_code})"
    down = requests.get(gw.url + "/shared/", headers={"Authorization": limited}, timeout=5)
    assert down.status_code == 503
    assert "unavailable" in down.json()["error"]
    admin_down = requests.post(gw.url + "/tyk/keys/create", json={"access_rights": rights("shared")}, headers=ADMIN, timeout=5)
    assert admin_down.status_code == 503
    assert gw.proc.poll() is None  # still running

    own_redis.start()  # empty: nothing survives a Redis restart without persistence
    deadline = time.monotonic() + 10
    fresh = None
    while time.monotonic() < deadline:
        r = requests.post(gw.url + "/tyk/keys/create", json={"access_rights": rights("shared")}, headers=ADMIN, timeout=5)
        if r.status_code == 200:
            fresh = r.json()["key"]
            break
        time.sleep(0.2)
    assert fresh is not None, "the gateway did not recover when Redis came back"
    assert requests.get(gw.url + "/shared/", headers={"Authorization": fresh}, timeout=5).status_code == 200
    assert requests.get(gw.url + "/shared/", headers={"Authorization": doomed}, timeout=5).status_code == 403


def test_reload_group_reloads_every_node(two_nodes, upstream):
    a, b = two_nodes
    new_api = classic_api("late", "/late/", upstream.url)
    for node in (a, b):
        (node.dir / "apps" / "late.json").write_text(__import__("json").dumps(new_api))
    assert requests.get(b.url + "/late/", timeout=5).status_code == 404
    r = requests.get(a.url + "/tyk/reload/group", headers=ADMIN, timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok", "message": ""}
    deadline = time.monotonic() + 3
    status = 404
    while time.monotonic() < deadline and status != 200:
        status = requests.get(b.url + "/late/", timeout=5).status_code
        time.sleep(0.05)
    assert status == 200
    assert requests.get(a.url + "/late/", timeout=5).status_code == 200
