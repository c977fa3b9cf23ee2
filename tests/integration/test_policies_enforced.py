"""Policies applied to keys on every request (tyk-reference §17 auth-token scenarios 10 and 15)."""

from __future__ import annotations

import json

import requests

from tests.kit.apis import token_api
from tests.kit.gateway_api import ADMIN


def policy(pid: str, apis: list[str], rate: int, quota: int, **extra):
    return {
        "id": pid,
        "org_id": "default",
        "rate": rate,
        "per": 1,
        "quota_max": quota,
        "quota_renewal_rate": 3600,
        "active": True,
        "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in apis},
        **extra,
    }


def remaining(gw, path, key):
    r = requests.get(gw.url + path, headers={"Authorization": key}, timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)
    return int(r.headers["X-RateLimit-Remaining"])


def test_multi_policy_key_has_one_counter_per_policy(make_gateway, upstream, store_url):
    gw = make_gateway(
        [token_api(a, upstream.url) for a in ("api1", "api2", "api3")],
        {"storage": {"url": store_url}},
        policies={"p1": policy("p1", ["api1"], 1000, 50), "p2": policy("p2", ["api2", "api3"], 100, 100)},
    )
    r = requests.post(gw.url + "/tyk/keys/create", json={"org_id": "default", "apply_policies": ["p1", "p2"]},
                      headers=ADMIN, timeout=5)
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    assert [remaining(gw, "/api1/", key) for _ in range(2)] == [49, 48]
    assert [remaining(gw, "/api2/", key) for _ in range(3)] == [99, 98, 97]
    assert [remaining(gw, "/api3/", key) for _ in range(3)] == [96, 95, 94]
    info = requests.get(gw.url + f"/tyk/keys/{key}?org_id=default", headers=ADMIN, timeout=5).json()
    limits = {api: right["limit"]["quota_remaining"] for api, right in info["access_rights"].items()}
    assert limits == {"api1": 48, "api2": 94, "api3": 94}

    # Updating the key resets its counters.
    put = requests.put(gw.url + f"/tyk/keys/{key}", json={"org_id": "default", "apply_policies": ["p1", "p2"]},
                       headers=ADMIN, timeout=5)
    assert put.status_code == 200
    assert remaining(gw, "/api1/", key) == 49

    # Lowering p1's rate to 1 per second and reloading takes effect for the existing key.
    (gw.dir / "policies" / "p1.json").write_text(json.dumps(policy("p1", ["api1"], 1, 50)))
    assert requests.get(gw.url + "/tyk/reload", headers=ADMIN, timeout=5).status_code == 200
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
    limited = requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5)
    assert limited.status_code == 429 and limited.json()["error"] == "Rate Limit Exceeded"


def test_granular_access_from_key_and_from_policy(make_gateway, upstream, store_url):
    rules = [{"url": "^/valid_path", "methods": ["GET"]}, {"url": "^/test/try_valid_path", "methods": ["GET"]}]
    gw = make_gateway(
        [token_api("test", upstream.url, "/test")],
        {"storage": {"url": store_url}, "http_server_options": {"enable_path_prefix_matching": True}},
        policies={"acl": policy("acl", ["test"], 0, -1, access_rights={
            "test": {"api_id": "test", "versions": ["Default"], "allowed_urls": rules}})},
    )
    own = requests.post(gw.url + "/tyk/keys/create", json={"org_id": "default", "access_rights": {
        "test": {"api_id": "test", "versions": ["Default"], "allowed_urls": rules}}}, headers=ADMIN, timeout=5)
    from_policy = requests.post(gw.url + "/tyk/keys/create", json={"org_id": "default", "apply_policies": ["acl"]},
                                headers=ADMIN, timeout=5)
    for created in (own, from_policy):
        assert created.status_code == 200, created.text
        key = created.json()["key"]
        h = {"Authorization": key}
        assert requests.get(gw.url + "/test/valid_path", headers=h, timeout=5).status_code == 200
        post = requests.post(gw.url + "/test/valid_path", headers=h, timeout=5)
        assert post.status_code == 403 and post.json()["error"] == "Access to this resource has been disallowed"
        assert requests.get(gw.url + "/test/invalid_path", headers=h, timeout=5).status_code == 403
        assert requests.get(gw.url + "/test/try_valid_path", headers=h, timeout=5).status_code == 200


def test_unknown_single_policy_makes_the_key_unusable(make_gateway, upstream, store_url):
    gw = make_gateway(
        [token_api("api1", upstream.url)],
        {"storage": {"url": store_url}},
        policies={"p1": policy("p1", ["api1"], 100, -1)},
    )
    key = requests.post(gw.url + "/tyk/keys/create", json={"org_id": "default", "apply_policies": ["p1"]},
                        headers=ADMIN, timeout=5).json()["key"]
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
    (gw.dir / "policies" / "p1.json").unlink()
    assert requests.get(gw.url + "/tyk/reload", headers=ADMIN, timeout=5).status_code == 200
    gone = requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5)
    assert gone.status_code == 403 and gone.json()["error"] == "Access to this API has been disallowed"
