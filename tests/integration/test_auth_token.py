"""Auth token APIs end to end: keys made through the Gateway API, on the memory and Redis stores.

Scenarios follow Tyk's own tests (tyk-reference §17, "Auth token"): statuses and messages are
Tyk's, literally.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.kit.apis import rights, token_api
from tests.kit.gateway_api import ADMIN, create_key, error_of
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request, tmp_path_factory, upstream):
    """One gateway per store for the module: every test works on keys of its own (random ids,
    one fixed custom id used once)."""
    yield from module_gateway(
        request.param,
        tmp_path_factory.mktemp("auth-token"),
        [
            token_api("api1", upstream.url),
            token_api("api2", upstream.url),
            token_api(
                "params",
                upstream.url,
                auth_configs={
                    "authToken": {
                        "auth_header_name": "authorization",
                        "use_param": True,
                        "param_name": "token",
                        "use_cookie": True,
                        "cookie_name": "oreo",
                    }
                },
            ),
            token_api("hdrparam", upstream.url, auth_configs={"authToken": {"auth_header_name": "token", "use_param": True}}),
        ],
    )


def test_key_lifecycle_statuses_and_messages(gw):
    key = create_key(gw, {"access_rights": rights("api1")})["key"]
    ok = requests.get(gw.url + "/api1/echo", headers={"Authorization": key}, timeout=5)
    assert ok.status_code == 200 and ok.json()["path"] == "/echo"

    missing = requests.get(gw.url + "/api1/echo", timeout=5)
    assert missing.status_code == 401 and error_of(missing) == "Authorization field missing"
    assert missing.headers["Content-Type"] == "application/json"

    wrong = requests.get(gw.url + "/api1/echo", headers={"Authorization": "wrong"}, timeout=5)
    assert wrong.status_code == 403 and error_of(wrong) == "Access to this API has been disallowed"

    junk = requests.get(gw.url + "/api1/echo", headers={"Authorization": key + "abc"}, timeout=5)
    assert junk.status_code == 403

    other_api = requests.get(gw.url + "/api2/echo", headers={"Authorization": key}, timeout=5)
    assert other_api.status_code == 403 and error_of(other_api) == "Access to this API has been disallowed"


@pytest.mark.parametrize("prefix,status", [("Bearer ", 200), ("bearer ", 200), ("bEaReR ", 200), ("Bearer: ", 403)])
def test_bearer_prefix(gw, prefix, status):
    key = create_key(gw, {"access_rights": rights("api1")})["key"]
    r = requests.get(gw.url + "/api1/", headers={"Authorization": prefix + key}, timeout=5)
    assert r.status_code == status


def test_credential_from_query_and_cookie(gw):
    key = create_key(gw, {"access_rights": rights("params", "hdrparam")})["key"]
    assert requests.get(gw.url + "/params/?token=" + key, timeout=5).status_code == 200
    assert requests.get(gw.url + "/params/?token=", headers={"Authorization": key}, timeout=5).status_code == 200
    assert requests.get(gw.url + "/params/", cookies={"oreo": key}, timeout=5).status_code == 200
    assert requests.get(gw.url + "/params/", timeout=5).status_code == 401
    # use_param without a name: the parameter is named like the header.
    assert requests.get(gw.url + "/hdrparam/?token=" + key, timeout=5).status_code == 200


def test_session_update_invalidates_cache(gw):
    key = create_key(gw, {"access_rights": rights("api1")})["key"]
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
    r = requests.put(gw.url + f"/tyk/keys/{key}", json={"access_rights": rights("api1"), "is_inactive": True},
                     headers=ADMIN, timeout=5)
    assert r.status_code == 200 and r.json()["action"] == "modified"
    inactive = requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5)
    assert inactive.status_code == 403 and error_of(inactive) == "Key is inactive, please renew"


def test_expired_key(gw):
    key = create_key(gw, {"access_rights": rights("api1"), "expires": int(time.time()) + 2})["key"]
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
    time.sleep(2.2)
    r = requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5)
    assert r.status_code == 401 and error_of(r) == "Key has expired, please renew"


def test_delete_key(gw):
    key = create_key(gw, {"access_rights": rights("api1")})["key"]
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
    r = requests.delete(gw.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5)
    assert r.status_code == 200 and r.json() == {"key": key, "status": "ok", "action": "deleted"}
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 403
    again = requests.delete(gw.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5)
    assert again.status_code == 404 and again.json() == {"status": "error", "message": "There is no such key found"}


def test_a_remembered_credential_stops_working_as_soon_as_its_key_is_deleted(gw):
    # Several requests on one connection: the first finds the key in the store, the next ones are
    # answered from the stage's credential memo; the deletion must end that at once.
    key = create_key(gw, {"access_rights": rights("api1")})["key"]
    other = create_key(gw, {"access_rights": rights("api1")})["key"]
    with requests.Session() as client:
        for _ in range(5):
            assert client.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200
            assert client.get(gw.url + "/api1/", headers={"Authorization": other}, timeout=5).status_code == 200
        r = requests.delete(gw.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5)
        assert r.status_code == 200
        for _ in range(3):
            denied = client.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5)
            assert denied.status_code == 403 and error_of(denied) == "Access to this API has been disallowed"
            assert client.get(gw.url + "/api1/", headers={"Authorization": other}, timeout=5).status_code == 200
        # A changed key is seen at once too.
        r = requests.put(gw.url + f"/tyk/keys/{other}", json={"access_rights": rights("api2")}, headers=ADMIN, timeout=5)
        assert r.status_code == 200
        moved = client.get(gw.url + "/api1/", headers={"Authorization": other}, timeout=5)
        assert moved.status_code == 403 and error_of(moved) == "Access to this API has been disallowed"
        assert client.get(gw.url + "/api2/", headers={"Authorization": other}, timeout=5).status_code == 200


def test_rate_limit_429_with_headers(gw):
    key = create_key(gw, {"access_rights": rights("api1"), "rate": 3, "per": 60})["key"]
    codes = [requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    limited = codes[-1]
    assert error_of(limited) == "Rate Limit Exceeded"
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1
    assert int(limited.headers["X-RateLimit-Reset"]) > time.time()


def test_quota_exceeded_with_remaining_headers(gw):
    key = create_key(gw, {"access_rights": rights("api1"), "quota_max": 3, "quota_renewal_rate": 3600})["key"]
    responses = [requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 403]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert error_of(responses[3]) == "Quota exceeded"
    assert responses[0].headers["X-RateLimit-Limit"] == "3"
    info = requests.get(gw.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5).json()
    assert info["quota_remaining"] == 0
    # An update without suppress_reset renews the quota, as in Tyk.
    requests.put(gw.url + f"/tyk/keys/{key}", json={"access_rights": rights("api1"), "quota_max": 3,
                                                     "quota_renewal_rate": 3600}, headers=ADMIN, timeout=5)
    assert requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5).status_code == 200


def test_rate_and_quota_together_rate_first_quota_headers(gw):
    """Both limits on one key: successes carry the quota's headers (as Tyk reports them); a
    request the rate limit refuses answers 429 with the rate limit's values and uses no quota."""
    key = create_key(gw, {"access_rights": rights("api1"), "rate": 2, "per": 60,
                          "quota_max": 10, "quota_renewal_rate": 3600})["key"]
    responses = [requests.get(gw.url + "/api1/", headers={"Authorization": key}, timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in responses] == ["10", "10", "2"]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["9", "8", "0"]
    renews = int(responses[0].headers["X-RateLimit-Reset"])
    assert time.time() + 3500 < renews <= time.time() + 3601
    assert error_of(responses[2]) == "Rate Limit Exceeded"
    info = requests.get(gw.url + f"/tyk/keys/{key}", headers=ADMIN, timeout=5).json()
    assert info["quota_remaining"] == 8  # the refused request counted nothing


def test_custom_key_id_works_raw_and_as_token(gw):
    r = requests.post(gw.url + "/tyk/keys/my-custom-key", json={"org_id": "default", "access_rights": rights("api1")},
                      headers=ADMIN, timeout=5)
    assert r.status_code == 200
    token = r.json()["key"]
    assert token != "my-custom-key"
    assert requests.get(gw.url + "/api1/", headers={"Authorization": "my-custom-key"}, timeout=5).status_code == 200
    assert requests.get(gw.url + "/api1/", headers={"Authorization": token}, timeout=5).status_code == 200


def test_gateway_api_refusals_store_nothing(gw):
    listing = lambda: requests.get(gw.url + "/tyk/keys/preview", headers=ADMIN, timeout=5)  # noqa: E731
    assert listing().status_code == 405
    bad_json = requests.post(gw.url + "/tyk/keys/create", data=b"{nope", headers=ADMIN, timeout=5)
    assert bad_json.status_code == 400 and bad_json.json()["status"] == "error"
    wrong_type = requests.post(gw.url + "/tyk/keys/create", json={"rate": "fast", "access_rights": rights("api1")},
                               headers=ADMIN, timeout=5)
    assert wrong_type.status_code == 400 and "rate" in wrong_type.json()["message"]
    no_rights = requests.post(gw.url + "/tyk/keys/create", json={"rate": 1}, headers=ADMIN, timeout=5)
    assert no_rights.status_code == 400
    assert no_rights.json()["message"] == "Failed to create key, keys must have at least one Access Rights record set."
    short = requests.post(gw.url + "/tyk/keys/ab", json={"access_rights": rights("api1")}, headers=ADMIN, timeout=5)
    assert short.status_code == 400
    denied = requests.post(gw.url + "/tyk/keys/create", json={"access_rights": rights("api1")},
                           headers={"X-Tyk-Authorization": "wrong"}, timeout=5)
    assert denied.status_code == 403
    assert denied.json() == {"status": "error", "message": "Attempted administrative access with invalid or missing key!"}
    missing = requests.get(gw.url + "/tyk/keys/does-not-exist", headers=ADMIN, timeout=5)
    assert missing.status_code == 404 and missing.json()["message"] == "Key not found"


def test_get_key_hides_nothing_it_should_not_and_hashed_lookup(gw):
    r = requests.post(gw.url + "/tyk/keys/create", json={"access_rights": rights("api1"), "meta_data": {"team": "a"}},
                      headers=ADMIN, timeout=5)
    body = r.json()
    assert "key_hash" in body and len(body["key_hash"]) == 64  # sha256 by default
    by_hash = requests.get(gw.url + f"/tyk/keys/{body['key_hash']}?hashed=1", headers=ADMIN, timeout=5)
    assert by_hash.status_code == 200 and by_hash.json()["meta_data"] == {"team": "a"}
    listing = requests.get(gw.url + "/tyk/keys", headers=ADMIN, timeout=5)
    assert listing.status_code == 404  # hashed listing is off unless enable_hashed_keys_listing


def test_strip_auth_data_removes_header_param_and_cookie(make_gateway, upstream, store_url):
    gw = make_gateway(
        [
            token_api(
                "strip",
                upstream.url,
                strip_auth_data=True,
                auth_configs={"authToken": {"auth_header_name": "X-Api-Key", "use_param": True, "param_name": "k",
                                            "use_cookie": True, "cookie_name": "kc"}},
            )
        ],
        {"storage": {"url": store_url}},
    )
    key = create_key(gw, {"access_rights": rights("strip")})["key"]
    seen = requests.get(gw.url + "/strip/echo?k=" + key + "&keep=1", headers={"X-Api-Key": key},
                        cookies={"kc": key, "other": "v"}, timeout=5).json()
    names = {n.lower(): v for n, v in seen["headers"]}
    assert "x-api-key" not in names
    assert seen["query"] == "keep=1"
    assert names["cookie"] == "other=v"
    assert key not in str(seen)


def test_oas_api_key_scheme_in_a_custom_header(make_gateway, upstream, store_url):
    oas = {
        "openapi": "3.0.3",
        "info": {"title": "OAS keys", "version": "1"},
        "paths": {},
        "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": [{"key": []}],
        "x-tyk-api-gateway": {
            "info": {"id": "oas-keys", "name": "OAS keys", "orgId": "default", "state": {"active": True}},
            "upstream": {"url": upstream.url},
            "server": {
                "listenPath": {"value": "/oas/", "strip": True},
                "authentication": {"enabled": True, "stripAuthorizationData": True,
                                   "securitySchemes": {"key": {"enabled": True}}},
            },
        },
    }
    gw = make_gateway([oas], {"storage": {"url": store_url}})
    key = create_key(gw, {"org_id": "default", "access_rights": rights("oas-keys")})["key"]
    assert requests.get(gw.url + "/oas/echo", headers={"Authorization": key}, timeout=5).status_code == 401
    seen = requests.get(gw.url + "/oas/echo", headers={"X-API-Key": key}, timeout=5)
    assert seen.status_code == 200
    assert "x-api-key" not in {n.lower() for n, _ in seen.json()["headers"]}  # stripAuthorizationData
