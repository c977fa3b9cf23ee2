"""The decision trace (``/tyk/debug``): for each auth method's refusal it names the stage that
decided and its message, for a good key the identity, policies and limits; never a credential,
and nothing is proxied or counted."""

from __future__ import annotations

import base64
import time

import jwt
import pytest
import requests

from tests.kit.apis import classic_api, rights, token_api
from tests.kit.fixtures import shared_gateway
from tests.kit.gateway_api import ADMIN, create_key

SECRET = b"a-jwt-secret-of-at-least-32-bytes!!"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream):
    apis = [
        token_api("tok", upstream.url),
        classic_api("basic", "/basic/", upstream.url, use_keyless=False, use_basic_auth=True),
        classic_api("jwt", "/jwt/", upstream.url, use_keyless=False, enable_jwt=True, jwt_signing_method="hmac",
                    jwt_source=base64.b64encode(SECRET).decode(), jwt_identity_base_field="sub"),
        classic_api("hmac", "/hmac/", upstream.url, use_keyless=False, enable_signature_checking=True),
        classic_api("open", "/open/", upstream.url),
    ]
    yield from shared_gateway(tmp_path_factory, "debug", apis)


def debug(gw, api_id: str, path: str, headers: dict | None = None, method: str = "GET") -> dict:
    resp = requests.post(gw.url + "/tyk/debug", headers=ADMIN, timeout=5, json={
        "api_id": api_id, "request": {"method": method, "path": path, "headers": headers or {}}})
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.parametrize("api_id, headers, stage, status, message", [
    ("tok", {}, "token", 401, "Authorization field missing"),
    ("tok", {"Authorization": "no-such-key"}, "token", 403, "Access to this API has been disallowed"),
    ("basic", {}, "basic", 401, "Authorization field missing"),
    ("basic", {"Authorization": "Basic " + base64.b64encode(b"nobody:pw").decode()}, "basic", 401,
     "User not authorised"),
    ("jwt", {"Authorization": "Bearer not.a.jwt"}, "jwt", 403, None),
    ("hmac", {"Authorization": "Signature nonsense"}, "hmac", 400, None),
])
def test_each_method_refusal_is_named(gw, upstream, api_id, headers, stage, status, message):
    upstream.reset()
    trace = debug(gw, api_id, f"/{api_id}/widgets", headers)
    assert trace["decision"] == "refused" and trace["decided_by"] == stage, trace
    assert trace["status"] == status and (message is None or trace["message"] == message), trace
    assert trace["stages"][-1]["result"] == "refused" and trace["identity"] is None
    assert upstream.seen() == []  # nothing proxied
    for value in headers.values():
        assert value.split()[-1] not in str(trace)  # the credential is never echoed


def test_good_key_shows_identity_policies_and_limits_without_counting(gw):
    made = create_key(gw, {"access_rights": rights("tok"), "org_id": "default", "alias": "bob",
                           "rate": 7, "per": 60, "quota_max": 3, "quota_renewal_rate": 3600})
    key = made["key"]
    for _ in range(5):  # a trace never spends the quota of 3
        trace = debug(gw, "tok", "/tok/widgets", {"Authorization": key})
    assert trace["decision"] == "allowed" and trace["decided_by"] is None
    skipped = [s for s in trace["stages"] if s["result"] == "skipped"]
    assert skipped and all("quota" in s["why"] for s in skipped)
    ident = trace["identity"]
    assert ident["key_hash"] == made["key_hash"] and ident["alias"] == "bob"
    assert ident["rate"] == {"rate": 7, "per": 60} and ident["quota"]["max"] == 3
    assert key not in str(trace)
    assert requests.get(gw.url + "/tok/echo", headers={"Authorization": key}, timeout=5).status_code == 200


def test_get_form_traces_with_the_callers_headers(gw):
    token = jwt.encode({"sub": "user-1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    resp = requests.get(gw.url + "/tyk/debug", params={"api_id": "jwt", "path": "/jwt/x"},
                        headers={**ADMIN, "Authorization": f"Bearer {token}"}, timeout=5)
    assert resp.status_code == 200, resp.text
    trace = resp.json()
    # The signature is good, but the token names no policy and the API has no default one.
    assert trace["decision"] == "refused" and trace["decided_by"] == "jwt" and token not in resp.text
    assert trace["stages"][0]["result"] == "passed"  # the credential was found


def test_bad_debug_requests(gw):
    assert requests.post(gw.url + "/tyk/debug", headers=ADMIN, json={"request": {}}, timeout=5).status_code == 400
    resp = requests.post(gw.url + "/tyk/debug", headers=ADMIN, json={"api_id": "ghost"}, timeout=5)
    assert resp.status_code == 404 and "ghost" in resp.json()["message"]
    assert requests.post(gw.url + "/tyk/debug", json={"api_id": "tok"}, timeout=5).status_code == 403
    trace = debug(gw, "open", "/open/x")
    assert trace["decision"] == "allowed" and trace["keyless"] is True
