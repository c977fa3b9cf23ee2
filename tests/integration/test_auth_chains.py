"""Several auth methods on one API (contract auth-wave2 §D; tyk-reference §12), end to end.

Classic AND in Tyk's fixed order with ``base_identity_provided_by`` (custom plugins included),
``strip_auth_data`` over every method, Tyk OAS compliant mode (OR: requirements in order, the
last one's error) and legacy mode (the first requirement only), and fastgate's Classic OR
extension with the anonymous fallback. Real clients: PyJWT-minted tokens, httpsig signatures,
requests; memory store and Redis.
"""

from __future__ import annotations

import base64
import json
import time
from email.utils import formatdate
from pathlib import Path

import jwt
import pytest
import requests
from httpsig.requests_auth import HTTPSignatureAuth

from tests.kit.apis import classic_api, oas_api, rights
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway
from tests.kit.gateway_api import create_key, error_of
from tests.kit.procs import headers_of

SECRET = "chain-jwt-secret-0123456789abcdef0123"  # HMAC JWT secret, over 32 bytes
MISSING = "Authorization field missing"
DISALLOWED = "Access to this API has been disallowed"
PLUGIN = '''
from tyk.decorators import *

@Hook
def TeamAuth(request, session, metadata, spec):
    team = request.get_header("X-Team")
    if team == "blue":
        session.rate = 1000; session.per = 1
        metadata["token"] = "team-blue-0001"
    else:
        request.object.return_overrides.response_code = 401
        request.object.return_overrides.response_error = "no team"
    return request, session, metadata
'''


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def keyed(api_id: str, up: str, **fields) -> dict:
    return classic_api(api_id, f"/{api_id}/", up, use_keyless=False, **fields)


def oas_or(api_id: str, up: str, requirements: list, mode: str | None = "compliant", **auth) -> dict:
    authentication = {
        "enabled": True,
        "securitySchemes": {
            "jwtAuth": {"enabled": True, "source": b64(SECRET), "signingMethod": "hmac", "identityBaseField": "sub",
                        "defaultPolicies": ["orpol"], "header": {"enabled": True, "name": "Authorization"}},
            "apiKey": {"enabled": True, "header": {"enabled": True, "name": "X-API-Key"}},
        },
        **auth,
    }
    if mode:
        authentication["securityProcessingMode"] = mode
    return oas_api(api_id, f"/{api_id}/", up, server={"authentication": authentication}, document={
        "components": {"securitySchemes": {
            "jwtAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": requirements,
    })


def the_apis(up: str, plugin: Path) -> list[dict]:
    basic_token = {"use_basic_auth": True, "use_standard_auth": True,
                   "auth_configs": {"basic": {"auth_header_name": "Authorization"}, "authToken": {"auth_header_name": "X-Api-Key"}}}
    return [
        keyed("bt", up, **basic_token),
        keyed("bts", up, strip_auth_data=True, **basic_token),
        keyed("bib", up, base_identity_provided_by="basic_auth_user", **basic_token),
        keyed("bit", up, base_identity_provided_by="auth_token", **basic_token),
        keyed("jt", up, enable_jwt=True, use_standard_auth=True, jwt_signing_method="hmac", jwt_source=b64(SECRET),
              jwt_identity_base_field="sub", jwt_default_policies=["jwtpol"], base_identity_provided_by="auth_token",
              auth_configs={"jwt": {"auth_header_name": "Auth-JWT"}, "authToken": {"auth_header_name": "Auth-Token"}}),
        keyed("ht", up, enable_signature_checking=True, use_standard_auth=True, hmac_allowed_clock_skew=60000,
              base_identity_provided_by="hmac_key",
              auth_configs={"hmac": {"auth_header_name": "Authorization"}, "authToken": {"auth_header_name": "X-Api-Key"}}),
        keyed("pt", up, custom_plugin_auth_enabled=True, use_standard_auth=True, base_identity_provided_by="custom_auth",
              custom_middleware={"driver": "python", "auth_check": {"name": "TeamAuth", "path": str(plugin)}},
              auth_configs={"authToken": {"auth_header_name": "X-Api-Key"}}),
        oas_or("or1", up, [{"jwtAuth": []}, {"apiKey": []}]),
        oas_or("or2", up, [{"apiKey": []}, {"jwtAuth": []}]),
        oas_or("leg", up, [{"jwtAuth": []}, {"apiKey": []}], mode=None),
        oas_or("nohmac", up, [{"apiKey": []}], security=[["hmac"]]),
        keyed("cor", up, enable_jwt=True, use_standard_auth=True, jwt_signing_method="hmac", jwt_source=b64(SECRET),
              jwt_identity_base_field="sub", jwt_default_policies=["jwtpol"],
              auth_configs={"jwt": {"auth_header_name": "Authorization"}, "authToken": {"auth_header_name": "X-Api-Key"}},
              fastgate_security={"requirements": [["jwt"], ["auth_token"]]}),
        keyed("anon", up, use_standard_auth=True,
              fastgate_security={"requirements": [["auth_token"], ["anonymous"]], "anonymous": {"policy_id": "anonpol"}}),
    ]


POLICIES = {
    "jwtpol": {"id": "jwtpol", "org_id": "default", "rate": 1000, "per": 1, "quota_max": -1, "access_rights": rights("jt", "cor")},
    "orpol": {"id": "orpol", "org_id": "default", "rate": 1000, "per": 1, "quota_max": -1, "access_rights": rights("or1", "or2", "leg")},
    "anonpol": {"id": "anonpol", "org_id": "default", "rate": 2, "per": 60, "quota_max": -1, "access_rights": rights("anon")},
}


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request, tmp_path_factory, upstream):
    directory = tmp_path_factory.mktemp("chains")
    plugin = directory / "team_plugin.py"
    plugin.write_text(PLUGIN)
    (directory / "policies").mkdir()
    for pol_id, pol in POLICIES.items():
        (directory / "policies" / f"{pol_id}.json").write_text(json.dumps(pol))
    yield from module_gateway(request.param, directory, the_apis(upstream.url, plugin))


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def token(sub: str = "user-1") -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, SECRET, algorithm="HS256")


def call(gw, path: str, **headers: str) -> requests.Response:
    return requests.get(gw.url + path, headers={k.replace("_", "-"): v for k, v in headers.items()}, timeout=10)


def outcome(r: requests.Response) -> tuple[int, str]:
    return r.status_code, ("" if r.status_code == 200 else error_of(r))


def test_basic_and_token(gw, up):
    create_key(gw, {"org_id": "default", "basic_auth_data": {"password": "pw-1"}, "rate": 1000, "per": 1,
                    "access_rights": rights("bt", "bts", "bib", "bit")}, "chainuser")
    key = create_key(gw, {"org_id": "default", "rate": 2, "per": 60, "access_rights": rights("bt", "bts", "bib", "bit")})["key"]
    good = basic("chainuser", "pw-1")
    assert outcome(call(gw, "/bt/echo", Authorization=good, X_Api_Key=key)) == (200, "")
    assert outcome(call(gw, "/bt/echo", Authorization=basic("chainuser", "nope"), X_Api_Key=key)) == (401, "User not authorised")
    assert outcome(call(gw, "/bt/echo", Authorization=good, X_Api_Key="unknown-key-1")) == (403, DISALLOWED)
    assert outcome(call(gw, "/bt/echo", X_Api_Key=key)) == (401, MISSING)
    assert outcome(call(gw, "/bt/echo", Authorization=good)) == (401, MISSING)
    assert outcome(call(gw, "/bt/echo")) == (401, MISSING)
    # Base identity: the user's limit (1000/s) on bib, the key's (2 per 60 s) on bit.
    key = create_key(gw, {"org_id": "default", "rate": 2, "per": 60, "access_rights": rights("bib", "bit")})["key"]
    assert [call(gw, "/bib/echo", Authorization=good, X_Api_Key=key).status_code for _ in range(5)] == [200] * 5
    bit = [call(gw, "/bit/echo", Authorization=good, X_Api_Key=key) for _ in range(3)]
    assert [outcome(r) for r in bit] == [(200, ""), (200, ""), (429, "Rate Limit Exceeded")]
    assert call(gw, "/bib/echo", Authorization=good, X_Api_Key=key).status_code == 200
    # strip_auth_data strips every method's credential (bts has its own rate limit scope: the key's is spent).
    up.reset()
    other = create_key(gw, {"org_id": "default", "access_rights": rights("bts")})["key"]
    stripped = call(gw, "/bts/echo", Authorization=good, X_Api_Key=other, X_Other="kept")
    assert stripped.status_code == 200
    seen = headers_of(stripped.json())
    assert "authorization" not in seen and "x-api-key" not in seen and seen["x-other"] == "kept"


def test_jwt_and_token(gw, up):
    key = create_key(gw, {"org_id": "default", "rate": 1000, "per": 1, "access_rights": rights("jt")})["key"]
    for _ in range(2):
        assert outcome(call(gw, "/jt/echo", Auth_JWT=token(), Auth_Token=key)) == (200, "")
    assert outcome(call(gw, "/jt/echo", Auth_JWT=token())) == (401, MISSING)
    assert outcome(call(gw, "/jt/echo", Auth_Token=key)) == (400, MISSING)
    assert outcome(call(gw, "/jt/echo", Auth_JWT="junk", Auth_Token=key)) == (403, "Key not authorized")


def test_hmac_and_token(gw, up):
    create_key(gw, {"org_id": "default", "hmac_enabled": True, "rate": 2, "per": 60, "access_rights": rights("ht")}, "signer1")
    secret = gw.admin("GET", "/tyk/keys/signer1?org_id=default")[1]["hmac_string"]
    key = create_key(gw, {"org_id": "default", "rate": 1000, "per": 1, "access_rights": rights("ht")})["key"]

    def signed(key_id: str, **headers: str) -> requests.Response:
        auth = HTTPSignatureAuth(key_id=key_id, secret=secret.encode(), algorithm="hmac-sha256", headers=["date"])
        return requests.get(gw.url + "/ht/echo", auth=auth, timeout=10,
                            headers={"Date": formatdate(usegmt=True), **{k.replace("_", "-"): v for k, v in headers.items()}})

    assert outcome(signed("signer1")) == (401, MISSING)
    assert outcome(signed("nobody", X_Api_Key=key)) == (400, "Authorization field missing, malformed or invalid")
    assert [outcome(signed("signer1", X_Api_Key=key)) for _ in range(3)] == [(200, ""), (200, ""), (429, "Rate Limit Exceeded")]


def test_custom_plugin_in_an_and_chain_provides_the_identity(gw, up):
    key = create_key(gw, {"org_id": "default", "rate": 1, "per": 60, "access_rights": rights("pt")})["key"]
    # The key allows 1 request a minute, but the plugin's session (1000/s) is the base identity.
    assert [call(gw, "/pt/echo", X_Team="blue", X_Api_Key=key).status_code for _ in range(3)] == [200, 200, 200]
    assert outcome(call(gw, "/pt/echo", X_Team="red", X_Api_Key=key)) == (401, "no team")
    assert outcome(call(gw, "/pt/echo", X_Team="blue")) == (401, MISSING)
    assert outcome(call(gw, "/pt/echo", X_Team="blue", X_Api_Key="unknown-key-2")) == (403, DISALLOWED)


def test_oas_compliant_mode_or(gw, up):
    key = create_key(gw, {"org_id": "default", "rate": 1000, "per": 1, "access_rights": rights("or1", "or2", "leg")})["key"]
    bearer = "Bearer " + token("or-user")
    for headers in ({"Authorization": bearer}, {"X_API_Key": key}, {"Authorization": bearer, "X_API_Key": key},
                    {"Authorization": "Bearer junk", "X_API_Key": key}):
        assert outcome(call(gw, "/or1/echo", **headers)) == (200, ""), headers
    assert outcome(call(gw, "/or1/echo")) == (401, MISSING)
    assert outcome(call(gw, "/or1/echo", Authorization="Bearer junk")) == (401, MISSING)
    assert outcome(call(gw, "/or1/echo", X_API_Key="unknown-key-3")) == (403, DISALLOWED)
    assert outcome(call(gw, "/or2/echo")) == (400, MISSING)
    assert outcome(call(gw, "/or2/echo", Authorization="Bearer junk")) == (403, "Key not authorized")
    assert outcome(call(gw, "/or2/echo", X_API_Key=key)) == (200, "")
    assert outcome(call(gw, "/or2/echo", Authorization=bearer)) == (200, "")
    # Legacy mode: only the first requirement (JWT) is enforced.
    assert outcome(call(gw, "/leg/echo", Authorization=bearer)) == (200, "")
    assert outcome(call(gw, "/leg/echo", X_API_Key=key)) == (400, MISSING)


def test_a_failed_requirement_leaves_nothing_behind(gw, up):
    # Bearer junk fails the JWT group; the key group then passes with the key's own session.
    key = create_key(gw, {"org_id": "default", "rate": 2, "per": 60, "access_rights": rights("or1")})["key"]
    answers = [call(gw, "/or1/echo", Authorization="Bearer junk", X_API_Key=key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "2"


def test_unconfigured_scheme_answers_500(gw, up):
    assert outcome(call(gw, "/nohmac/echo", X_API_Key="anything")) == (500, "security scheme hmac is not configured")
    assert up.seen() == []


def test_classic_or_extension_and_anonymous_fallback(gw, up):
    key = create_key(gw, {"org_id": "default", "rate": 1000, "per": 1, "access_rights": rights("cor", "anon")})["key"]
    assert outcome(call(gw, "/cor/echo", Authorization=token())) == (200, "")
    assert outcome(call(gw, "/cor/echo", X_Api_Key=key)) == (200, "")
    assert outcome(call(gw, "/cor/echo", Authorization="junk", X_Api_Key=key)) == (200, "")
    assert outcome(call(gw, "/cor/echo", Authorization="junk")) == (401, MISSING)  # the last requirement's error
    # Anonymous: a key keeps its own limit; without one, callers share the anonymous policy's 2 per minute.
    assert [call(gw, "/anon/echo", Authorization=key).status_code for _ in range(4)] == [200] * 4
    anonymous = [outcome(call(gw, "/anon/echo")) for _ in range(3)]
    assert anonymous == [(200, ""), (200, ""), (429, "Rate Limit Exceeded")]
    assert outcome(call(gw, "/anon/echo", Authorization="unknown-key-4")) == (429, "Rate Limit Exceeded")
