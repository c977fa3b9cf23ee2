"""Analytics records as Tyk writes them, read back from Redis and decoded with msgpack into Tyk
Pump's Go field names; per-API ``do_not_track`` and ``tag_headers``; ``auth_report_only``."""

from __future__ import annotations

import time

import msgpack
import pytest
import redis
import requests

from tests.kit.apis import classic_api, rights, token_api
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.gateway_api import create_key

LIST = "analytics-tyk-system-analytics"
STRINGS = ("Method", "Host", "Path", "RawPath", "UserAgent", "APIKey", "APIVersion", "APIName", "APIID", "OrgID",
           "OauthID", "IPAddress", "Alias")
INTEGERS = ("ContentLength", "Day", "Month", "Year", "Hour", "ResponseCode", "RequestTime")


def read_records(count: int, timeout: float = 5.0) -> list[tuple[bytes, dict]]:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=2)
    try:
        deadline = time.monotonic() + timeout
        while client.llen(LIST) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # nothing more arrives
        raw = client.lrange(LIST, 0, -1)
    finally:
        client.close()
    return [(r, msgpack.unpackb(r, raw=False)) for r in raw]


def test_records_in_tyk_pump_shape(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    gw = make_gateway([token_api("an", upstream.url)],
                      {"enable_analytics": True, "storage": {"url": REDIS_TEST_URL}})
    made = create_key(gw, {"access_rights": rights("an"), "org_id": "default", "alias": "alice", "tags": ["gold"]})
    key = made["key"]
    started = time.time()
    ua = {"User-Agent": "client-analytics/1.0"}
    assert requests.get(gw.url + "/an/widgets?colour=red", headers={**ua, "Authorization": key},
                        timeout=5).status_code == 200
    assert requests.get(gw.url + "/an/widgets", headers=ua, timeout=5).status_code == 401
    assert requests.get(gw.url + "/hello", timeout=5).status_code == 200
    records = read_records(2)
    assert len(records) == 2
    by_code = {rec["ResponseCode"]: (raw, rec) for raw, rec in records}
    assert set(by_code) == {200, 401}
    for raw, rec in by_code.values():
        assert key.encode() not in raw
        for name in STRINGS:
            assert isinstance(rec[name], str), name
        for name in INTEGERS:
            assert isinstance(rec[name], int) and not isinstance(rec[name], bool), name
        assert isinstance(rec["TrackPath"], bool) and (rec["Tags"] is None or isinstance(rec["Tags"], list))
        assert set(rec["Latency"]) >= {"Total", "Upstream"}
        for name in ("TimeStamp", "ExpireAt"):
            assert isinstance(rec[name], list) and len(rec[name]) == 2 and all(isinstance(v, int) for v in rec[name])
        assert abs(rec["TimeStamp"][0] - started) < 300 and 0 <= rec["TimeStamp"][1] < 10**9
        assert 1 <= rec["Month"] <= 12 and rec["RequestTime"] >= 0
        assert (rec["Method"], rec["APIID"], rec["APIName"], rec["OrgID"]) == ("GET", "an", "an", "default")
        assert rec["UserAgent"] == "client-analytics/1.0" and rec["IPAddress"] == "127.0.0.1"
        assert rec["Path"].endswith("/widgets") and rec["RawPath"].endswith("/widgets") and "?" not in rec["Path"]
    ok = by_code[200][1]
    assert ok["APIKey"] == made["key_hash"] and ok["APIKey"]
    assert ok["Alias"] == "alice" and "gold" in ok["Tags"]
    assert ok["Latency"]["Upstream"] <= ok["Latency"]["Total"]
    assert by_code[401][1]["APIKey"] == ""
    flush_redis_db(REDIS_TEST_URL)


def test_do_not_track_and_tag_headers(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    gw = make_gateway([classic_api("quiet", "/quiet/", upstream.url, do_not_track=True),
                       classic_api("tagged", "/tagged/", upstream.url, tag_headers=["X-Team"])],
                      {"enable_analytics": True, "storage": {"url": REDIS_TEST_URL}})
    assert requests.get(gw.url + "/quiet/echo", timeout=5).status_code == 200
    assert requests.get(gw.url + "/tagged/echo", headers={"X-Team": "blue"}, timeout=5).status_code == 200
    records = read_records(1)
    assert [rec["APIID"] for _, rec in records] == ["tagged"]
    assert records[0][1]["Tags"] == ["x-team-blue"]
    flush_redis_db(REDIS_TEST_URL)


def test_analytics_needs_redis(tmp_path):
    from tests.kit.procs import run_cli, write_config

    config = write_config(tmp_path, {"enable_analytics": True, "secret": "x" * 24})
    done = run_cli("check", "--config", str(config))
    assert done.returncode != 0 and "enable_analytics" in (done.stdout + done.stderr)


def test_report_only_passes_a_bad_credential_and_counts_it(make_gateway, upstream):
    from tests.integration.test_metrics import samples, scrape
    from tests.kit.procs import free_port

    control = free_port()
    gw = make_gateway([token_api("ro", upstream.url, auth_report_only=True)], {"control_api_port": control})
    assert "auth_report_only is ON" in gw.log
    upstream.reset()
    assert requests.get(gw.url + "/ro/echo", headers={"Authorization": "not-a-key"}, timeout=5).status_code == 200
    assert requests.get(gw.url + "/ro/echo", timeout=5).status_code == 200
    assert len(upstream.seen()) == 2
    families = scrape(control)
    reported = {dict(k)["reason"]: v for k, v in samples(families, "fastgate_auth_decisions", api_id="ro",
                                                          outcome="report_only").items()}
    assert sum(reported.values()) == 2 and "Authorization field missing" in reported
    assert "report-only: API 'ro'" in gw.log and "not-a-key" not in gw.log


def test_check_warns_about_report_only(tmp_path):
    import json

    from tests.kit.procs import run_cli, write_config

    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "ro.json").write_text(json.dumps(token_api("ro", "http://127.0.0.1:9/", auth_report_only=True)))
    config = write_config(tmp_path, {"secret": "x" * 24, "app_path": "apps"})
    done = run_cli("check", "--config", str(config))
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "ro.json: auth_report_only: true" in out, out


def test_analytics_on_a_url_with_the_stores_own_options(make_gateway, upstream):
    """The store's query parameters (prefix, breaker_seconds, ...) are not redis-py's: the
    analytics client is built by the store's code, so the URL works for both."""
    flush_redis_db(REDIS_TEST_URL)
    url = REDIS_TEST_URL + "?prefix=tenant1:&breaker_seconds=0.5&socket_timeout=2&fast_path=false"
    gw = make_gateway([classic_api("opts", "/opts/", upstream.url)],
                      {"enable_analytics": True, "storage": {"url": url}})
    for _ in range(3):
        assert requests.get(gw.url + "/opts/echo", timeout=5).status_code == 200
    records = read_records(3)
    assert [rec["APIID"] for _, rec in records] == ["opts"] * 3
    flush_redis_db(REDIS_TEST_URL)


@pytest.mark.redis
def test_analytics_on_a_redis_cluster(make_gateway, upstream):
    """``redis+cluster://``: the records land in the cluster (on the node owning the list's slot),
    read back with a cluster client."""
    from redis.cluster import ClusterNode, RedisCluster

    from tests.kit.redis_topologies import RedisClusterServers

    servers = RedisClusterServers()
    try:
        gw = make_gateway([classic_api("cl", "/cl/", upstream.url)],
                          {"enable_analytics": True, "storage": {"url": servers.url(servers.ports[0])}})
        for _ in range(4):
            assert requests.get(gw.url + "/cl/echo", timeout=5).status_code == 200
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", servers.ports[0])], socket_timeout=2)
        try:
            deadline = time.monotonic() + 5
            while client.llen(LIST) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            raw = client.lrange(LIST, 0, -1)
            assert client.ttl(LIST) > 0
        finally:
            client.close()
        assert [msgpack.unpackb(r, raw=False)["APIID"] for r in raw] == ["cl"] * 4
        assert "analytics" not in gw.log.lower() or "dropped" not in gw.log
    finally:
        servers.stop()
