"""JWT APIs end to end: a real gateway, a real upstream, and an identity provider in the test.

Scenario numbers are tyk-reference §17 (35-52); statuses and messages are Tyk's, literally. Most
scenarios share one gateway (one API each, fresh identities per test); JWKS life-cycle tests get
their own gateway with short ``[jwks]`` timings; the centralised-session life cycle runs on the
memory store and on Redis (with a second node).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from fastgate.auth.jwt.session import virtual_session_token
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.jwks import EcKey, EdKey, JwksServer, RsaKey, b64, hs256
from tests.kit.procs import Gateway
from tests.kit.apis import classic_api, oas_jwt_api, rights
from tests.kit.gateway_api import ADMIN, create_key


HMAC_SECRET = "integration-hmac-secret-32-bytes!"
RSA = RsaKey("central")
EC = EcKey("ec")
ED = EdKey("ed")

JWT_APIS = (
    "o2o-hmac", "o2o-rsa", "o2o-skip", "o2o-skip-rsa", "central-rsa", "central-azp", "skew0", "skew-small", "skew-big",
    "defaults", "scopes", "scopes-only", "plain", "ecdsa", "eddsa", "bla", "bad-pem", "locations", "jwt-and-token",
    "expiry", "narrow", "revoked",
)


def policy(pid: str, *apis: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "org_id": "default", "rate": 1000, "per": 1, "quota_max": -1, "active": True,
            "access_rights": rights(*(apis or JWT_APIS)), **extra}


POLICIES = {
    "pol-all": policy("pol-all"),
    "d1": policy("d1"),
    "d2": policy("d2"),
    "p1": policy("p1"),
    "p2": policy("p2"),
    "short": policy("short", key_expires_in=1),
    "only-defaults": policy("only-defaults", "defaults"),
}


def jwt_api(api_id: str, upstream_url: str, **fields: Any) -> dict[str, Any]:
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False, enable_jwt=True, **fields)


def central_hmac(api_id: str, upstream_url: str, **fields: Any) -> dict[str, Any]:
    return jwt_api(api_id, upstream_url, jwt_signing_method="hmac", jwt_source=b64(HMAC_SECRET), **fields)


def all_apis(up: str) -> list[dict[str, Any]]:
    skews = lambda n: dict(jwt_expires_at_validation_skew=n, jwt_issued_at_validation_skew=n,  # noqa: E731
                           jwt_not_before_validation_skew=n)
    return [
        jwt_api("o2o-hmac", up, jwt_signing_method="hmac"),
        jwt_api("o2o-rsa", up, jwt_signing_method="rsa"),
        jwt_api("o2o-skip", up, jwt_signing_method="hmac", jwt_skip_kid=True),
        jwt_api("o2o-skip-rsa", up, jwt_signing_method="rsa", jwt_skip_kid=True),
        jwt_api("central-rsa", up, jwt_signing_method="rsa", jwt_source=b64(RSA.public_pem),
                jwt_identity_base_field="user_id", jwt_policy_field_name="policy_id"),
        jwt_api("central-azp", up, jwt_signing_method="rsa", jwt_source=b64(RSA.public_pem), jwt_client_base_field="azp"),
        central_hmac("skew0", up, jwt_policy_field_name="pol"),
        central_hmac("skew-small", up, jwt_policy_field_name="pol", jwt_expires_at_validation_skew=2,
                     jwt_issued_at_validation_skew=1, jwt_not_before_validation_skew=1),
        central_hmac("skew-big", up, jwt_policy_field_name="pol", **skews(1000)),
        central_hmac("defaults", up, jwt_policy_field_name="pol", jwt_default_policies=["d1", "d2"]),
        central_hmac("scopes", up, jwt_policy_field_name="pol", jwt_default_policies=["d1"],
                     scopes={"jwt": {"scope_claim_name": "scope", "scope_to_policy": {"user:read": "p1", "user:write": "p2"}}}),
        central_hmac("scopes-only", up, scopes={"jwt": {"scope_to_policy": {"read": "p1", "write": "p2"}}}),
        central_hmac("plain", up),
        jwt_api("ecdsa", up, jwt_signing_method="ecdsa", jwt_source=b64(EC.public_pem), jwt_policy_field_name="pol"),
        jwt_api("eddsa", up, jwt_signing_method="eddsa", jwt_source=b64(ED.public_pem), jwt_policy_field_name="pol"),
        jwt_api("bla", up, jwt_signing_method="bla", jwt_source=b64(HMAC_SECRET), jwt_policy_field_name="pol"),
        jwt_api("bad-pem", up, jwt_signing_method="rsa", jwt_source=b64("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")),
        central_hmac("locations", up, jwt_policy_field_name="pol",
                     auth_configs={"jwt": {"use_param": True, "param_name": "jwt", "use_cookie": True, "cookie_name": "jwtc"}}),
        central_hmac("jwt-and-token", up, jwt_policy_field_name="pol", use_standard_auth=True, base_identity_provided_by="jwt_claim",
                     auth_configs={"authToken": {"auth_header_name": "x-standard-auth"}, "jwt": {"auth_header_name": "Authorization"}}),
        central_hmac("expiry", up, jwt_policy_field_name="pol"),
        central_hmac("narrow", up, jwt_policy_field_name="pol"),
        central_hmac("revoked", up, jwt_policy_field_name="pol"),
    ]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Any) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("jwt"), all_apis(upstream.url), {}, policies=POLICIES)
    yield gateway
    gateway.stop()


def user() -> str:
    return "user-" + uuid.uuid4().hex[:12]


def soon(seconds: int = 60) -> int:
    return int(time.time()) + seconds


def get(gw: Gateway, path: str, token: str | None = None, *, header: str = "Authorization", **kwargs: Any) -> requests.Response:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers[header] = token
    return requests.get(gw.url + path, headers=headers, timeout=5, **kwargs)


def expect(r: requests.Response, status: int, message: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    if message is not None:
        assert r.json() == {"error": message}


def jwt_key(gw: Gateway, name: str, secret: str | bytes, *apis: str) -> None:
    """Create the key ``name`` holding a one-to-one JWT ``secret`` for ``apis``."""
    secret = secret if isinstance(secret, str) else secret.decode()
    create_key(gw, {"org_id": "default", "access_rights": rights(*apis), "jwt_data": {"secret": secret}}, name)


def virtual_session(gw: Gateway, identity: str) -> dict[str, Any]:
    r = requests.get(gw.url + "/tyk/keys/" + virtual_session_token("default", identity, "sha256"), headers=ADMIN, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


# ---- missing, malformed, one-to-one (35-40) -------------------------------------------------------


def test_missing_and_malformed_tokens(gw: Gateway) -> None:
    expect(get(gw, "/skew0/"), 400, "Authorization field missing")
    expect(get(gw, "/skew0/", ""), 400, "Authorization field missing")
    expect(get(gw, "/skew0/", "junk"), 403, "Key not authorized")
    token = hs256({"sub": user(), "pol": "pol-all"}, HMAC_SECRET)
    expect(get(gw, "/skew0/", "Bearer " + token), 200)
    expect(get(gw, "/skew0/", "bearer " + token), 200)
    for wrong in ("Bearer: " + token, "Bearer bearer" + token, "bearer Bearer" + token):
        expect(get(gw, "/skew0/", wrong), 403, "Key not authorized")
    assert "Traceback" not in gw.log


def test_one_to_one_hmac_key_named_by_kid_scenario_35(gw: Gateway) -> None:
    name = user()
    jwt_key(gw, name, HMAC_SECRET, "o2o-hmac")
    token = hs256({"sub": "whoever"}, HMAC_SECRET, kid=name)
    expect(get(gw, "/o2o-hmac/", token), 200)
    expect(get(gw, "/o2o-hmac/", "Bearer " + token), 200)
    expect(get(gw, "/o2o-hmac/", hs256({"sub": "x"}, HMAC_SECRET, kid="no-such-key")), 403, "Key not authorized")
    expect(get(gw, "/o2o-hmac/", hs256({"sub": "x"}, "another-secret-another-secret-123", kid=name)), 403, "Key not authorized")
    # the key's secret changes: tokens verified with the old one stop working at once
    jwt_key(gw, name, "a-new-secret-a-new-secret-a-new-1", "o2o-hmac")
    expect(get(gw, "/o2o-hmac/", token), 403, "Key not authorized")


def test_skip_kid_scenario_36(gw: Gateway) -> None:
    name = user()
    jwt_key(gw, name, HMAC_SECRET, "o2o-hmac", "o2o-skip")
    token = hs256({"sub": name}, HMAC_SECRET, kid="ignore-this-id")
    expect(get(gw, "/o2o-hmac/", token), 403, "Key not authorized")
    expect(get(gw, "/o2o-skip/", token), 200)
    rsa_name = user()
    jwt_key(gw, rsa_name, RSA.public_pem, "o2o-rsa", "o2o-skip-rsa")
    rsa_token = RSA.sign({"sub": rsa_name}, kid="ignore-this-id")
    expect(get(gw, "/o2o-rsa/", rsa_token), 403, "Key not authorized")
    expect(get(gw, "/o2o-skip-rsa/", rsa_token), 200)


def test_one_to_one_rsa_scenario_37(gw: Gateway) -> None:
    name = user()
    jwt_key(gw, name, RSA.public_pem, "o2o-rsa")
    token = RSA.sign({"sub": "x"}, kid=name)
    expect(get(gw, "/o2o-rsa/", token), 200)
    expect(get(gw, "/o2o-rsa/", "Bearer " + token), 200)
    expect(get(gw, "/o2o-rsa/", RsaKey().sign({"sub": "x"}, kid=name)), 403, "Key not authorized")


def test_unexpected_signing_method_scenario_39(gw: Gateway) -> None:
    expect(get(gw, "/central-rsa/", hs256({"user_id": user(), "policy_id": "pol-all"}, HMAC_SECRET)),
           403, "Key not authorized: Unexpected signing method")
    expect(get(gw, "/skew0/", RSA.sign({"sub": user(), "pol": "pol-all"})), 403, "Key not authorized: Unexpected signing method")


def test_ecdsa_eddsa_and_an_unknown_method_means_hmac_scenario_40(gw: Gateway) -> None:
    expect(get(gw, "/ecdsa/", EC.sign({"sub": user(), "pol": "pol-all"})), 200)
    expect(get(gw, "/eddsa/", ED.sign({"sub": user(), "pol": "pol-all"})), 200)
    expect(get(gw, "/bla/", hs256({"sub": user(), "pol": "pol-all"}, HMAC_SECRET)), 200)
    expect(get(gw, "/ecdsa/", RSA.sign({"sub": user(), "pol": "pol-all"})), 403, "Key not authorized: Unexpected signing method")


def test_bad_pem_source_refuses_every_token_scenario_49(gw: Gateway) -> None:
    expect(get(gw, "/bad-pem/", RSA.sign({"sub": user()})), 403, "Key not authorized")
    assert "every JWT will be refused" in gw.log


# ---- centralised mode (41-48) -------------------------------------------------------------------


def test_central_rsa_policy_claim_scenario_41(gw: Gateway) -> None:
    identity = user()
    token = RSA.sign({"user_id": identity, "policy_id": "pol-all", "exp": soon()})
    expect(get(gw, "/central-rsa/", token), 200)
    expect(get(gw, "/central-rsa/", token), 200)  # from the stored virtual session
    session = virtual_session(gw, identity)
    assert session["apply_policies"] == ["pol-all"] and session["alias"] == identity
    assert session["meta_data"]["TykJWTSessionID"] == virtual_session_token("default", identity, "sha256")
    expect(get(gw, "/central-rsa/", RSA.sign({"user_id": user(), "policy_id": "nope"})), 403, "key not authorized: no matching policy")
    expect(get(gw, "/central-rsa/", RSA.sign({"policy_id": "pol-all"})), 403, "no suitable claims for user ID were found")
    expect(get(gw, "/central-rsa/", RSA.sign({"sub": "", "policy_id": "pol-all"})), 403, "found an empty user ID in sub claim")


def test_client_base_field_scenario_42(gw: Gateway) -> None:
    client = user()
    r = requests.post(gw.url + "/tyk/keys/" + client, json={"org_id": "default", "apply_policies": ["pol-all"]}, headers=ADMIN, timeout=5)
    assert r.status_code == 200, r.text
    expect(get(gw, "/central-azp/", RSA.sign({"sub": user(), "azp": client})), 200)
    expect(get(gw, "/central-azp/", RSA.sign({"sub": user(), "azp": "unknown-client"})), 403, "key not authorized: no matching policy found")


def test_time_claims_and_skews_scenario_43(gw: Gateway) -> None:
    now = int(time.time())
    claims = lambda **c: hs256({"sub": user(), "pol": "pol-all", **c}, HMAC_SECRET)  # noqa: E731
    expect(get(gw, "/skew0/", claims(exp=now - 1)), 401, "Key not authorized: token has expired")
    expect(get(gw, "/skew-small/", claims(exp=now - 1)), 200)
    expect(get(gw, "/skew-big/", claims(exp=now - 1)), 200)
    expect(get(gw, "/skew0/", claims(iat=now + 3)), 401, "Key not authorized: token used before issued")
    expect(get(gw, "/skew-small/", claims(iat=now + 1)), 200)
    expect(get(gw, "/skew0/", claims(iat=now - 100)), 200)
    expect(get(gw, "/skew0/", claims(nbf=now + 3)), 401, "Key not authorized: token is not valid yet")
    expect(get(gw, "/skew-small/", claims(nbf=now + 1)), 200)
    expect(get(gw, "/skew-big/", claims(nbf=now + 500)), 200)


def test_a_cached_token_still_expires(gw: Gateway) -> None:
    token = hs256({"sub": user(), "pol": "pol-all", "exp": int(time.time()) + 2}, HMAC_SECRET)
    expect(get(gw, "/skew0/", token), 200)
    time.sleep(2.1)
    expect(get(gw, "/skew0/", token), 401, "Key not authorized: token has expired")


def test_default_policies_scenario_44(gw: Gateway) -> None:
    identity = user()
    token = lambda **c: hs256({"sub": identity, **c}, HMAC_SECRET)  # noqa: E731
    expect(get(gw, "/defaults/", token()), 200)
    assert virtual_session(gw, identity)["apply_policies"] == ["d1", "d2"]
    expect(get(gw, "/defaults/", token(pol="nope")), 403, "key not authorized: no matching policy")
    expect(get(gw, "/defaults/", token(pol="nope", iat=1)), 403, "key not authorized: no matching policy")
    expect(get(gw, "/defaults/", token(pol="p1")), 200)
    assert virtual_session(gw, identity)["apply_policies"] == ["p1"]
    expect(get(gw, "/defaults/", token(iat=2)), 200)  # the claim is gone: back to the defaults
    assert virtual_session(gw, identity)["apply_policies"] == ["d1", "d2"]


def test_scope_mapping_scenarios_45_46(gw: Gateway) -> None:
    identity = user()
    expect(get(gw, "/scopes/", hs256({"sub": identity, "pol": "pol-all", "scope": "user:read user:write"}, HMAC_SECRET)), 200)
    assert sorted(virtual_session(gw, identity)["apply_policies"]) == ["p1", "p2", "pol-all"]
    other = user()
    expect(get(gw, "/scopes/", hs256({"sub": other, "scope": "user:read"}, HMAC_SECRET)), 200)
    assert virtual_session(gw, other)["apply_policies"] == ["p1"]  # defaults not used when scopes are present
    third = user()
    expect(get(gw, "/scopes/", hs256({"sub": third}, HMAC_SECRET)), 200)
    assert virtual_session(gw, third)["apply_policies"] == ["d1"]
    fourth = user()
    wrong = hs256({"sub": fourth, "scope": "nonexisting"}, HMAC_SECRET)
    expect(get(gw, "/scopes/", wrong), 403, "key not authorized: no matching policy found in scope claim")
    expect(get(gw, "/scopes/", hs256({"sub": fourth, "scope": "user:read"}, HMAC_SECRET)), 200)
    expect(get(gw, "/scopes/", wrong), 403, "key not authorized: no matching policy found in scope claim")
    # 46: no defaults
    expect(get(gw, "/scopes-only/", hs256({"sub": user(), "scope": "read"}, HMAC_SECRET)), 200)
    expect(get(gw, "/scopes-only/", hs256({"sub": user(), "scope": "unknown"}, HMAC_SECRET)), 403)
    expect(get(gw, "/scopes-only/", hs256({"sub": user()}, HMAC_SECRET)), 403, "key not authorized: no matching policy found")
    both = user()
    expect(get(gw, "/scopes-only/", hs256({"sub": both, "scope": ["read", "write"]}, HMAC_SECRET)), 200)
    assert virtual_session(gw, both)["apply_policies"] == ["p1", "p2"]
    expect(get(gw, "/plain/", hs256({"sub": user()}, HMAC_SECRET)), 403, "key not authorized: no matching policy found")


def test_policies_that_do_not_grant_the_api(gw: Gateway) -> None:
    expect(get(gw, "/narrow/", hs256({"sub": user(), "pol": "only-defaults"}, HMAC_SECRET)), 403, "Access to this API has been disallowed")


def test_privilege_escalation_guards_scenario_47(gw: Gateway) -> None:
    identity = user()
    expect(get(gw, "/scopes-only/", hs256({"sub": identity, "scope": "read"}, HMAC_SECRET)), 200)
    expect(get(gw, "/scopes-only/", hs256({"sub": identity, "iat": 1}, HMAC_SECRET)), 403, "key not authorized: no scope or policy in token")
    expect(get(gw, "/scopes-only/", hs256({"sub": identity, "scope": "read", "iat": 2}, HMAC_SECRET)), 200)
    other = user()
    expect(get(gw, "/plain/", hs256({"sub": other, "pol": "pol-all"}, HMAC_SECRET)), 403)  # plain has no policy field
    expect(get(gw, "/skew0/", hs256({"sub": other, "pol": "pol-all"}, HMAC_SECRET)), 200)
    expect(get(gw, "/plain/", hs256({"sub": other}, HMAC_SECRET)), 403, "key not authorized: no matching policy found")


def test_session_expiry_raised_to_exp_scenario_48(gw: Gateway) -> None:
    identity = user()
    long_lived = hs256({"sub": identity, "pol": "short", "exp": soon(72)}, HMAC_SECRET)
    expect(get(gw, "/expiry/", long_lived), 200)
    time.sleep(1.1)
    expect(get(gw, "/expiry/", long_lived), 200)  # the key expired by policy, but exp is later
    expect(get(gw, "/expiry/", hs256({"sub": user(), "pol": "short", "exp": int(time.time()) - 1}, HMAC_SECRET)), 401)
    short = user()
    expect(get(gw, "/expiry/", hs256({"sub": short, "pol": "short", "exp": soon(1)}, HMAC_SECRET)), 200)
    time.sleep(1.1)
    expect(get(gw, "/expiry/", hs256({"sub": short, "pol": "short", "exp": soon(1) - 1}, HMAC_SECRET)), 401)
    expect(get(gw, "/expiry/", hs256({"sub": short, "pol": "short", "exp": soon(5)}, HMAC_SECRET)), 200)


# ---- where the token is read, and JWT with other methods ------------------------------------------


def test_token_in_query_and_cookie(gw: Gateway) -> None:
    token = hs256({"sub": user(), "pol": "pol-all"}, HMAC_SECRET)
    expect(get(gw, "/locations/?jwt=" + token), 200)
    expect(get(gw, "/locations/", cookies={"jwtc": token}), 200)
    expect(get(gw, "/locations/"), 400, "Authorization field missing")


def test_jwt_and_auth_token_both_required(gw: Gateway) -> None:
    r = requests.post(gw.url + "/tyk/keys/create", json={"org_id": "default", "access_rights": rights("jwt-and-token")},
                      headers=ADMIN, timeout=5)
    key = r.json()["key"]
    token = hs256({"sub": user(), "pol": "pol-all"}, HMAC_SECRET)
    expect(get(gw, "/jwt-and-token/", headers={"x-standard-auth": key}), 400, "Authorization field missing")
    expect(get(gw, "/jwt-and-token/", token), 401, "Authorization field missing")
    expect(get(gw, "/jwt-and-token/", "junk", headers={"x-standard-auth": key}), 403, "Key not authorized")
    expect(get(gw, "/jwt-and-token/", token, headers={"x-standard-auth": key}), 200)


# ---- revocation (beyond Tyk) ---------------------------------------------------------------------


def test_revocation_by_jti_and_by_sub(gw: Gateway) -> None:
    identity = user()
    first = hs256({"sub": identity, "pol": "pol-all", "jti": "t-" + identity, "iat": int(time.time()) - 5}, HMAC_SECRET)
    other = hs256({"sub": identity, "pol": "pol-all", "jti": "u-" + identity, "iat": int(time.time()) - 5}, HMAC_SECRET)
    expect(get(gw, "/revoked/", first), 200)
    status, body = gw.admin("POST", "/tyk/jwt/revocations", {"jti": "t-" + identity})
    assert (status, body) == (200, {"status": "ok", "message": "revoked"})
    expect(get(gw, "/revoked/", first), 401, "Key not authorized: token has been revoked")
    expect(get(gw, "/revoked/", other), 200)
    assert gw.admin("POST", "/tyk/jwt/revocations", {"sub": identity})[0] == 200
    expect(get(gw, "/revoked/", other), 401, "Key not authorized: token has been revoked")
    time.sleep(1.05)
    fresh = hs256({"sub": identity, "pol": "pol-all", "iat": int(time.time())}, HMAC_SECRET)
    expect(get(gw, "/revoked/", fresh), 200)  # issued after the revocation: a new login
    listed = gw.admin("GET", "/tyk/jwt/revocations")[1]
    assert {"t-" + identity} <= {e["jti"] for e in listed["jti"]} and identity in {e["sub"] for e in listed["sub"]}
    assert gw.admin("DELETE", f"/tyk/jwt/revocations/jti/t-{identity}")[0] == 200
    expect(get(gw, "/revoked/", first), 401)  # still refused through the subject
    assert gw.admin("DELETE", f"/tyk/jwt/revocations/sub/{identity}")[0] == 200
    expect(get(gw, "/revoked/", first), 200)
    assert gw.admin("DELETE", f"/tyk/jwt/revocations/sub/{identity}")[0] == 404
    assert gw.admin("POST", "/tyk/jwt/revocations", {"jti": 5})[0] == 400
    assert gw.admin("POST", "/tyk/jwt/revocations", b"{not json")[0] == 400


# ---- OAS claim checks (51) -----------------------------------------------------------------------


def test_oas_claim_validation_scenario_51(make_gateway: Any, upstream: Any) -> None:
    gw = make_gateway([oas_jwt_api("oas-claims", upstream.url, info={"orgId": "default"}, scheme={"header": {"enabled": True, "name": "Authorization"},
        "source": b64(HMAC_SECRET), "signingMethod": "hmac", "basePolicyClaims": ["pol"],
        "allowedIssuers": ["https://idp"], "allowedAudiences": ["api"], "jtiValidation": {"enabled": True},
        "allowedSubjects": ["alice", "bob"], "subjectClaims": ["sub"], "skipKid": True,
        "customClaimValidation": {
            "role": {"type": "exact_match", "allowedValues": ["admin"]},
            "tier": {"type": "contains", "allowedValues": ["gold"], "nonBlocking": True},
        },
    })], policies={"pol-all": policy("pol-all", "oas-claims")})
    good = {"iss": "https://idp", "aud": ["x", "api"], "jti": "1", "sub": "alice", "role": "admin", "pol": "pol-all"}

    def with_(**changes: Any) -> str:
        claims = {**good, **changes}
        return hs256({k: v for k, v in claims.items() if v is not None}, HMAC_SECRET)

    expect(get(gw, "/oas-claims/", with_()), 200)
    expect(get(gw, "/oas-claims/", with_(aud="api", tier="silver")), 200)
    expect(get(gw, "/oas-claims/", with_(iss="https://evil")), 401, "Key not authorized: invalid issuer claim: https://evil")
    expect(get(gw, "/oas-claims/", with_(iss=None)), 401, "Key not authorized: issuer claim is required but not present in token")
    expect(get(gw, "/oas-claims/", with_(aud=["other"])), 401, "Key not authorized: no matching audience found in token: [other]")
    expect(get(gw, "/oas-claims/", with_(jti=None)), 401, "Key not authorized: JWT ID (jti) claim is required but not present in token")
    expect(get(gw, "/oas-claims/", with_(sub="mallory")), 401, "Key not authorized: invalid subject value: mallory")
    expect(get(gw, "/oas-claims/", with_(role="user")), 401, "Key not authorized: claim role value does not match any expected values")


# ---- JWKS (49, 50, 52 and the life cycle beyond Tyk) ----------------------------------------------

FAST_JWKS = {"jwks": {"cache_timeout": 1.0, "refetch_cooldown": 0.5, "fetch_timeout": 2.0}}


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


def jwks_api(api_id: str, upstream_url: str, source: str) -> dict[str, Any]:
    return jwt_api(api_id, upstream_url, jwt_signing_method="rsa", jwt_source=source, jwt_policy_field_name="pol")


JWKS_POLICIES = {"pol-all": policy("pol-all", "jwks", "jwks64")}


def test_jwks_plain_and_base64_urls_fetched_before_ready_scenario_49(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    key = RsaKey("12345")
    idp.keys = [key.jwk()]
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url), jwks_api("jwks64", upstream.url, b64(idp.url))],
                      FAST_JWKS, policies=JWKS_POLICIES)
    assert idp.hits == 1  # both APIs share the URL: one fetch, done before the port opened
    token = key.sign({"sub": user(), "pol": "pol-all"})
    expect(get(gw, "/jwks/", token), 200)
    expect(get(gw, "/jwks64/", token), 200)
    assert idp.hits == 1
    no_kid = key.sign({"sub": user(), "pol": "pol-all"}, kid=None)
    expect(get(gw, "/jwks/", no_kid), 403, "Key not authorized")


def test_rotated_key_works_at_once_and_a_removed_key_stops(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    old, new = RsaKey("old"), RsaKey("new")
    idp.keys = [old.jwk()]
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], {"jwks": {"cache_timeout": 300, "refetch_cooldown": 0.3}},
                      policies=JWKS_POLICIES)
    old_token = old.sign({"sub": user(), "pol": "pol-all"})
    expect(get(gw, "/jwks/", old_token), 200)
    idp.keys = [new.jwk()]
    time.sleep(0.35)
    expect(get(gw, "/jwks/", new.sign({"sub": user(), "pol": "pol-all"})), 200)  # unknown kid: one refetch
    expect(get(gw, "/jwks/", old_token), 403, "Key not authorized")  # verified before, but its key is gone


def test_unknown_kids_cannot_flood_the_idp(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    key = RsaKey("real")
    idp.keys = [key.jwk()]
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], {"jwks": {"cache_timeout": 300, "refetch_cooldown": 30}},
                      policies=JWKS_POLICIES)
    before = idp.hits
    for _ in range(30):
        expect(get(gw, "/jwks/", key.sign({"sub": "x"}, kid=uuid.uuid4().hex)), 403, "Key not authorized")
    assert idp.hits - before <= 1


def test_idp_down_keeps_the_last_good_keys(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    key = RsaKey("k1")
    idp.keys = [key.jwk()]
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], FAST_JWKS, policies=JWKS_POLICIES)
    idp.down = True
    before = idp.hits
    time.sleep(2.0)  # twice the cache timeout: refreshes were tried and failed
    assert idp.hits > before
    expect(get(gw, "/jwks/", key.sign({"sub": user(), "pol": "pol-all"})), 200)
    assert "keeping the last good set" in gw.log


def test_no_keys_ever_is_503_then_recovers(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    key = RsaKey("k1")
    idp.keys = [key.jwk()]
    idp.down = True
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], FAST_JWKS, policies=JWKS_POLICIES)
    token = key.sign({"sub": user(), "pol": "pol-all"})
    r = get(gw, "/jwks/", token)
    expect(r, 503, "The identity provider's signing keys (JWKS) could not be fetched; try again shortly")
    idp.down = False
    time.sleep(0.8)
    expect(get(gw, "/jwks/", token), 200)


def test_malformed_jwks_counts_as_unavailable(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    idp.body = b"<html>not a key set</html>"
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], FAST_JWKS, policies=JWKS_POLICIES)
    expect(get(gw, "/jwks/", RsaKey("k").sign({"sub": "x", "pol": "pol-all"})), 503)


def test_flush_jwks_cache_scenario_50(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    key = RsaKey("12345")
    idp.keys = [key.jwk()]
    gw = make_gateway([jwks_api("jwks", upstream.url, idp.url)], {"jwks": {"cache_timeout": 300, "refetch_cooldown": 30}},
                      policies=JWKS_POLICIES)
    token = key.sign({"sub": user(), "pol": "pol-all"})
    expect(get(gw, "/jwks/", token), 200)
    hits = idp.hits
    assert gw.admin("DELETE", "/tyk/cache/jwks/jwks") == (200, {"status": "ok", "message": "cache invalidated"})
    expect(get(gw, "/jwks/", token), 200)
    assert gw.admin("DELETE", "/tyk/cache/jwks") == (200, {"status": "ok", "message": "cache invalidated"})
    expect(get(gw, "/jwks/", token), 200)
    assert idp.hits == hits + 2  # each flush fetched once, despite the 30 s cooldown
    assert gw.admin("DELETE", "/tyk/cache/jwks/unknown-api")[0] == 200
    assert gw.admin("DELETE", "/tyk/cache/jwks", secret="wrong")[0] == 403


def test_oas_several_jwks_uris_scenario_52(make_gateway: Any, upstream: Any) -> None:
    first, second = JwksServer(), JwksServer()
    try:
        one, two = RsaKey("one"), RsaKey("two")
        first.keys, second.keys = [one.jwk()], [two.jwk()]
        gw = make_gateway([oas_jwt_api("multi", upstream.url, info={"orgId": "default"}, scheme={"header": {"enabled": True, "name": "Authorization"},
            "signingMethod": "rsa", "basePolicyClaims": ["pol"],
            "jwksURIs": [{"url": first.url, "cacheTimeout": "5m"}, {"url": second.url}],
        })], FAST_JWKS, policies={"pol-all": policy("pol-all", "multi")})
        assert (first.hits, second.hits) == (1, 1)
        expect(get(gw, "/multi/", one.sign({"sub": user(), "pol": "pol-all"})), 200)
        expect(get(gw, "/multi/", two.sign({"sub": user(), "pol": "pol-all"})), 200)
        expect(get(gw, "/multi/", two.sign({"sub": user(), "pol": "pol-all"}, kid=7)), 403, "Key not authorized")
    finally:
        first.stop()
        second.stop()


# ---- the centralised session on the store (memory and Redis) ----------------------------------------


def test_centralised_session_life_cycle(make_gateway: Any, upstream: Any, store_url: str) -> None:
    apis = [central_hmac("life", upstream.url, jwt_policy_field_name="pol")]
    pols = {"gold": policy("gold", "life", quota_max=5, quota_renewal_rate=3600), "silver": policy("silver", "life")}
    gw = make_gateway(apis, {"storage": {"url": store_url}}, policies=pols)
    identity = user()
    exp1 = soon(100)
    gold = hs256({"sub": identity, "pol": "gold", "exp": exp1}, HMAC_SECRET)
    r = get(gw, "/life/", gold)
    expect(r, 200)
    assert r.headers["X-RateLimit-Remaining"] == "4"
    session = virtual_session(gw, identity)
    assert session["apply_policies"] == ["gold"] and session["expires"] == exp1 and session["alias"] == identity
    # the claim names another policy: the stored session switches
    expect(get(gw, "/life/", hs256({"sub": identity, "pol": "silver", "exp": exp1}, HMAC_SECRET)), 200)
    assert virtual_session(gw, identity)["apply_policies"] == ["silver"]
    # a later exp raises the session's expiry
    exp2 = soon(500)
    expect(get(gw, "/life/", hs256({"sub": identity, "pol": "silver", "exp": exp2}, HMAC_SECRET)), 200)
    assert virtual_session(gw, identity)["expires"] == exp2
    # deleted through the Gateway API: the next token makes a new one
    token = virtual_session_token("default", identity, "sha256")
    assert gw.admin("DELETE", "/tyk/keys/" + token)[0] == 200
    expect(get(gw, "/life/", gold), 200)
    assert virtual_session(gw, identity)["apply_policies"] == ["gold"]
    if not store_url.startswith("redis"):
        return
    # a second node on the same Redis uses the same virtual session and the same quota
    second = make_gateway(apis, {"storage": {"url": store_url}}, policies=pols)
    statuses = [get(node, "/life/", gold).status_code for node in (second, gw, second, gw, second, gw)]
    assert statuses.count(200) == 4 and statuses[-1] == 403  # quota 5, one used after the re-creation
    # a revocation made on one node is refused on the other at once
    fresh = user()
    token2 = hs256({"sub": fresh, "pol": "silver", "jti": "j-" + fresh}, HMAC_SECRET)
    expect(get(second, "/life/", token2), 200)
    assert gw.admin("POST", "/tyk/jwt/revocations", {"jti": "j-" + fresh})[0] == 200
    deadline = time.monotonic() + 2
    while get(second, "/life/", token2).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(get(second, "/life/", token2), 401, "Key not authorized: token has been revoked")


def test_jwks_flush_reaches_other_nodes(make_gateway: Any, upstream: Any, idp: JwksServer) -> None:
    flush_redis_db(REDIS_TEST_URL)
    key = RsaKey("k")
    idp.keys = [key.jwk()]
    settings = {"storage": {"url": REDIS_TEST_URL}, "jwks": {"cache_timeout": 300, "refetch_cooldown": 30}}
    one = make_gateway([jwks_api("jwks", upstream.url, idp.url)], settings, policies=JWKS_POLICIES, wait=False)
    two = make_gateway([jwks_api("jwks", upstream.url, idp.url)], settings, policies=JWKS_POLICIES, wait=False)
    one.ready()
    two.ready()
    assert idp.hits == 2
    assert one.admin("DELETE", "/tyk/cache/jwks")[0] == 200
    deadline = time.monotonic() + 3
    while idp.hits < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert idp.hits == 4
    expect(get(two, "/jwks/", key.sign({"sub": user(), "pol": "pol-all"})), 200)
    flush_redis_db(REDIS_TEST_URL)


def test_check_command_accepts_jwt_apis(tmp_path: Path, upstream: Any) -> None:
    import json
    import subprocess
    import sys

    from tests.kit.procs import ROOT, write_config

    (tmp_path / "apps").mkdir()
    for api in all_apis(upstream.url):
        (tmp_path / "apps" / f"{api['api_id']}.json").write_text(json.dumps(api))
    config = write_config(tmp_path, {"app_path": "apps", "jwks": {"cache_timeout": 60, "refetch_cooldown": 5}})
    done = subprocess.run([sys.executable, "-m", "fastgate", "check", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
