"""``/metrics`` on the control listener, parsed with prometheus-client's own parser after known
traffic: exact counts per API, method and status class, auth decisions by deciding stage,
latency histograms; every worker counted with ``workers > 1``; never on the public port."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.apis import classic_api, rights, token_api
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.gateway_api import ADMIN
from tests.kit.procs import free_port


def create_key_on(control: int, body: dict) -> str:
    """A key made through the Gateway API on the control listener."""
    resp = requests.post(f"http://127.0.0.1:{control}/tyk/keys/create", json=body, headers=ADMIN, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()["key"]


def scrape(port: int) -> dict:
    resp = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)  # no X-Tyk-Authorization
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def samples(families: dict, family: str, suffix: str = "_total", **labels: str) -> dict:
    """{labels tuple: value} of ``family``'s samples named family+suffix matching ``labels``."""
    out = {}
    for s in families[family].samples if family in families else ():
        if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            out[tuple(sorted(s.labels.items()))] = s.value
    return out


def by_class(families: dict, api_id: str) -> dict:
    totals: dict = {}
    for labels, value in samples(families, "fastgate_requests", api_id=api_id).items():
        klass = dict(labels)["status_class"]
        totals[klass] = totals.get(klass, 0) + value
    return totals


def test_exact_counts_on_the_control_listener(make_gateway, upstream):
    control = free_port()
    gw = make_gateway([token_api("m", upstream.url), classic_api("open", "/open/", upstream.url)],
                      {"control_api_port": control})
    key = create_key_on(control, {"access_rights": rights("m"), "org_id": "default"})
    for _ in range(3):
        assert requests.get(gw.url + "/m/echo", headers={"Authorization": key}, timeout=5).status_code == 200
    for _ in range(2):
        assert requests.get(gw.url + "/m/echo", timeout=5).status_code == 401
    assert requests.post(gw.url + "/open/echo", data=b"x", timeout=5).status_code == 200

    families = scrape(control)
    assert families["fastgate_requests"].type == "counter"
    assert by_class(families, "m") == {"2xx": 3, "4xx": 2}
    assert samples(families, "fastgate_requests", api_id="open", method="POST", status_class="2xx")
    decisions = {(dict(k)["stage"], dict(k)["outcome"], dict(k)["reason"]): v
                 for k, v in samples(families, "fastgate_auth_decisions", api_id="m").items()}
    assert decisions == {("auth", "allowed", ""): 3, ("token", "refused", "Authorization field missing"): 2}
    assert "open" not in {dict(k)["api_id"] for k in samples(families, "fastgate_auth_decisions")}  # keyless
    upstream_count = samples(families, "fastgate_upstream_latency_seconds", "_count", api_id="m")
    assert list(upstream_count.values()) == [3]
    overhead = samples(families, "fastgate_gateway_overhead_seconds", "_bucket", api_id="m", le="+Inf")
    assert list(overhead.values()) == [3]
    assert list(samples(families, "fastgate_open_connections", "").values())[0] >= 0
    info = families["fastgate_build_info"].samples[0]
    assert info.value == 1 and info.labels["version"]

    resp = requests.get(gw.url + "/metrics", timeout=5)  # the public listener: never metrics
    assert resp.status_code == 404 and "# TYPE" not in resp.text and "# HELP" not in resp.text


def test_rate_limit_refusals_are_counted(make_gateway, upstream):
    control = free_port()
    gw = make_gateway([token_api("rl", upstream.url)], {"control_api_port": control})
    key = create_key_on(control, {"access_rights": rights("rl"), "org_id": "default", "rate": 2, "per": 60})
    codes = [requests.get(gw.url + "/rl/echo", headers={"Authorization": key}, timeout=5).status_code
             for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    families = scrape(control)
    assert list(samples(families, "fastgate_limit_refusals", api_id="rl", kind="rate").values()) == [2]
    assert by_class(families, "rl") == {"2xx": 2, "4xx": 2}


def test_no_metrics_without_a_control_listener_unless_switched_on(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    resp = requests.get(gw.url + "/metrics", timeout=5)
    assert resp.status_code == 404 and "# TYPE" not in resp.text
    on = make_gateway([classic_api("k", "/k/", upstream.url)], {"metrics_on_main": True})
    requests.get(on.url + "/k/echo", timeout=5)
    families = scrape(on.port)
    assert by_class(families, "k") == {"2xx": 1}


def test_every_worker_is_counted(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    control = free_port()
    gw = make_gateway([classic_api("w", "/w/", upstream.url)],
                      {"control_api_port": control, "workers": 2, "storage": {"url": REDIS_TEST_URL}})
    total = 40
    for _ in range(total):  # a new connection each: the kernel spreads them over both workers
        assert requests.get(gw.url + "/w/echo", headers={"Connection": "close"}, timeout=5).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        counted = by_class(scrape(control), "w").get("2xx", 0)
        if counted == total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counted == total
    flush_redis_db(REDIS_TEST_URL)


def test_jwks_fetches_and_failures_are_counted(make_gateway, upstream):
    from tests.kit.jwks import JwksServer, RsaKey

    good, down = JwksServer(), JwksServer()
    try:
        good.keys = [RsaKey("k1").jwk()]
        down.down = True
        control = free_port()
        make_gateway([classic_api(name, f"/{name}/", upstream.url, use_keyless=False, enable_jwt=True,
                                  jwt_signing_method="rsa", jwt_source=url)
                      for name, url in (("good", good.url), ("down", down.url))],
                     {"control_api_port": control, "jwks": {"fetch_timeout": 2.0}})
        families = scrape(control)
        fetches = samples(families, "fastgate_jwks_fetches")
        failures = samples(families, "fastgate_jwks_fetches_failures")
        assert list(fetches.values())[0] >= 2 and list(failures.values())[0] >= 1
        assert list(samples(families, "fastgate_bcrypt_checks_in_flight", "").values()) == [0]
    finally:
        good.stop()
        down.stop()
