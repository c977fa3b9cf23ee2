"""OpenID Connect end to end: a real gateway, a real upstream and real issuers (discovery
document + JWKS) in the test process, on the memory store and on Redis.

The rows of contract auth-wave2 §B (OpenID Connect): rate limits from the client's policy, the
policy's access rights, ``aud`` and ``iss`` checks (an unconfigured issuer is never contacted),
signature and expiry; plus discovery before the listener opens, the last good keys kept while
the IdP is down, a discovery document naming another issuer refused, the persisted session as
Tyk writes it, segregation by client, scope mapping, and the OAS spelling.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from fastgate.auth.oidc import oidc_session_token
from tests.kit.apis import classic_api, oas_api, rights
from tests.kit.fixtures import STORE_IDS, STORES, flush_redis_db
from tests.kit.idp import OidcIssuer
from tests.kit.jwks import RsaKey
from tests.kit.procs import Gateway, Upstream

KEY = RsaKey("idp-1")
IMPOSTOR = RsaKey("idp-1")
ROGUE_KEY = RsaKey("rogue-1")
LIAR_KEY = RsaKey("liar-1")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def policy(pid: str, *apis: str, **extra: Any) -> dict[str, Any]:
    return {"id": pid, "org_id": "default", "rate": 1000, "per": 1, "quota_max": -1, "active": True,
            "access_rights": rights(*apis), **extra}


POLICIES = {
    "oidcpol": policy("oidcpol", "oidc", rate=2, per=60),
    "widepol": policy("widepol", "oidc-seg", "oidc-scopes", "oas-oidc", "oidc"),
    "readpol": policy("readpol", "oidc-scopes"),
}


def oidc_api(api_id: str, upstream_url: str, providers: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False, use_openid=True,
                       openid_options={"providers": providers, "segregate_by_client": fields.pop("segregate", False)},
                       **fields)


@pytest.fixture(scope="module")
def issuers() -> Iterator[dict[str, OidcIssuer]]:
    found = {"idp": OidcIssuer(KEY.jwk()), "rogue": OidcIssuer(ROGUE_KEY.jwk(), name="rogue"),
             "liar": OidcIssuer(LIAR_KEY.jwk(), name="liar")}
    found["liar"].claimed_issuer = "https://elsewhere.example/idp"
    yield found
    for one in found.values():
        one.stop()


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: Upstream,
       issuers: dict[str, OidcIssuer]) -> Iterator[Gateway]:
    idp, liar = issuers["idp"], issuers["liar"]
    up = upstream.url
    main = [{"issuer": idp.issuer, "client_ids": {b64("web-app-1"): "oidcpol", b64("wide-app"): "widepol",
                                                  b64("ghost-app"): "no-such-policy"}}]
    apis = [
        oidc_api("oidc", up, main),
        oidc_api("oidc2", up, main),
        oidc_api("oidc-seg", up, main, segregate=True),
        oidc_api("oidc-scopes", up, [{"issuer": idp.issuer, "client_ids": {b64("scoped-app"): ""}}],
                 scopes={"oidc": {"scope_claim_name": "scope", "scope_to_policy": {"read": "readpol"}}}),
        oidc_api("liar", up, [{"issuer": liar.issuer, "client_ids": {b64("web-app-1"): "oidcpol"}}]),
        oas_api("oas-oidc", "/oas-oidc/", up, server={"authentication": {"enabled": True, "oidc": {
            "enabled": True, "segregateByClientId": False,
            "providers": [{"issuer": idp.issuer, "clientToPolicyMapping": [{"clientId": "wide-app", "policyId": "widepol"}]}],
        }}}),
    ]
    store_url = request.param
    if store_url.startswith("redis"):
        flush_redis_db(store_url)
    gateway = Gateway(tmp_path_factory.mktemp("oidc"), apis,
                      {"storage": {"url": store_url}, "jwks": {"refetch_cooldown": 1}}, policies=POLICIES)
    gateway.hits_at_start = (idp.discovery_hits, idp.jwks_hits)  # type: ignore[attr-defined]
    try:
        yield gateway
    finally:
        gateway.stop()
        if store_url.startswith("redis"):
            flush_redis_db(store_url)


def id_token(issuer: OidcIssuer, *, aud: Any = "web-app-1", sub: str | None = None, key: RsaKey = KEY,
             exp_in: int = 300, **claims: Any) -> str:
    now = int(time.time())
    return key.sign({"iss": issuer.issuer, "aud": aud, "sub": sub or "user-" + uuid.uuid4().hex[:10],
                     "iat": now - 5, "exp": now + exp_in, **claims})


def get(gw: Gateway, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.get(gw.url + path, headers=headers, timeout=10)


def expect(r: requests.Response, status: int, error: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    if error is not None:
        assert r.json() == {"error": error}


# ---- contract rows -----------------------------------------------------------------------------


def test_discovery_and_jwks_fetched_before_serving(gw: Gateway) -> None:
    discovery, jwks = gw.hits_at_start  # type: ignore[attr-defined]
    assert discovery >= 1 and jwks >= 1


def test_policy_rate_limit_applies(gw: Gateway, issuers: dict[str, OidcIssuer], up: Upstream) -> None:
    token = id_token(issuers["idp"])
    statuses = [get(gw, "/oidc/x", token) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 429]
    assert statuses[3].json() == {"error": "Rate Limit Exceeded"}
    assert len(up.seen()) == 2
    assert issuers["idp"].discovery_hits >= 1


def test_policy_access_rights_apply(gw: Gateway, issuers: dict[str, OidcIssuer], up: Upstream) -> None:
    expect(get(gw, "/oidc2/x", id_token(issuers["idp"])), 403, "Access to this API has been disallowed")
    assert up.seen() == []


def test_unknown_audience_is_401(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], aud="someone-else")), 401, "Key not authorised")
    # an audience list picks the first mapped client
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], aud=["someone-else", "web-app-1"])), 200)


def test_unconfigured_issuer_is_never_contacted(gw: Gateway, issuers: dict[str, OidcIssuer], up: Upstream) -> None:
    rogue = issuers["rogue"]
    token = id_token(rogue, key=ROGUE_KEY)
    expect(get(gw, "/oidc/x", token), 401, "Key not authorised")
    assert (rogue.discovery_hits, rogue.jwks_hits) == (0, 0)
    assert up.seen() == []


def test_signed_by_another_key_under_the_same_kid_is_401(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], key=IMPOSTOR)), 401, "Key not authorised")


def test_expired_is_401(gw: Gateway, issuers: dict[str, OidcIssuer], up: Upstream) -> None:
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], exp_in=-60)), 401, "Key not authorised")
    assert up.seen() == []


# ---- Tyk's other answers -----------------------------------------------------------------------


def test_missing_token_and_garbage_are_401(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    expect(get(gw, "/oidc/x"), 401, "Key not authorised")
    expect(get(gw, "/oidc/x", "junk"), 401, "Key not authorised")
    no_exp = KEY.sign({"iss": issuers["idp"].issuer, "aud": "web-app-1", "sub": "nobody"})
    expect(get(gw, "/oidc/x", no_exp), 401, "Key not authorised")
    hs = KEY.sign({"iss": issuers["idp"].issuer, "aud": "web-app-1", "sub": "x", "exp": int(time.time()) + 60})
    expect(get(gw, "/oidc/x", hs.rsplit(".", 1)[0] + ".AAAA"), 401, "Key not authorised")


def test_missing_policy_is_403(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], aud="ghost-app")), 403, "Key not authorized: no matching policy")


def test_session_is_persisted_as_tyk_writes_it(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    sub = "persisted-" + secrets.token_hex(4)
    expect(get(gw, "/oidc/x", id_token(issuers["idp"], sub=sub)), 200)
    key = oidc_session_token("default", "web-app-1", sub, False, "sha256")
    status, session = gw.admin("GET", f"/tyk/keys/{key}")
    assert status == 200, session
    assert session["apply_policies"] == ["oidcpol"]
    assert session["meta_data"] == {"TykJWTSessionID": key, "ClientID": "web-app-1"}
    assert session["oauth_client_id"] == "web-app-1" and session["alias"] == f"web-app-1:{sub}"


def test_segregate_by_client_keeps_one_session_per_client(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    sub = "seg-" + secrets.token_hex(4)
    expect(get(gw, "/oidc-seg/x", id_token(issuers["idp"], aud="wide-app", sub=sub)), 200)
    segregated = oidc_session_token("default", "wide-app", sub, True, "sha256")
    assert gw.admin("GET", f"/tyk/keys/{segregated}")[0] == 200
    assert gw.admin("GET", "/tyk/keys/" + oidc_session_token("default", "wide-app", sub, False, "sha256"))[0] == 404


def test_scope_mapping_gives_the_policy(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    idp = issuers["idp"]
    expect(get(gw, "/oidc-scopes/x", id_token(idp, aud="scoped-app", scope="read")), 200)
    expect(get(gw, "/oidc-scopes/x", id_token(idp, aud="scoped-app", scope="write")), 403,
           "Key not authorized: no matching policy found in scope claim")


def test_revocation_by_sub_applies(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    sub = "revoked-" + secrets.token_hex(4)
    token = id_token(issuers["idp"], aud="wide-app", sub=sub)
    expect(get(gw, "/oidc-seg/x", token), 200)
    assert gw.admin("POST", "/tyk/jwt/revocations", {"sub": sub})[0] == 200
    expect(get(gw, "/oidc-seg/x", token), 401, "Key not authorized: token has been revoked")


def test_oas_oidc(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    expect(get(gw, "/oas-oidc/x", id_token(issuers["idp"], aud="wide-app")), 200)
    expect(get(gw, "/oas-oidc/x", id_token(issuers["idp"], aud="web-app-1")), 401, "Key not authorised")


# ---- beyond Tyk --------------------------------------------------------------------------------


def test_last_good_keys_kept_while_the_idp_is_down(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    idp = issuers["idp"]
    idp.down = True
    try:
        expect(get(gw, "/oidc-seg/x", id_token(idp, aud="wide-app")), 200)
    finally:
        idp.down = False


def test_discovery_naming_another_issuer_is_refused(gw: Gateway, issuers: dict[str, OidcIssuer], up: Upstream) -> None:
    liar = issuers["liar"]
    r = get(gw, "/liar/x", id_token(liar, key=LIAR_KEY))
    assert r.status_code == 503 and r.json()["error"]
    assert liar.discovery_hits >= 1 and liar.jwks_hits == 0
    assert up.seen() == []


def test_rotated_key_works_at_once(gw: Gateway, issuers: dict[str, OidcIssuer]) -> None:
    idp = issuers["idp"]
    rotated = RsaKey("idp-2")
    idp.keys.append(rotated.jwk())
    time.sleep(1.1)  # past [jwks] refetch_cooldown since the last fetch
    try:
        # an unknown kid makes the gateway refetch the issuer's JWKS once (throttled), then verify
        expect(get(gw, "/oidc-seg/x", id_token(idp, aud="wide-app", key=rotated)), 200)
    finally:
        idp.keys.pop()


def test_issuer_down_at_start_is_503_then_discovered(make_gateway: Any, upstream: Upstream) -> None:
    idp = OidcIssuer(KEY.jwk(), name="late")
    idp.down = True
    try:
        gw = make_gateway([oidc_api("late", upstream.url, [{"issuer": idp.issuer, "client_ids": {b64("web-app-1"): "oidcpol"}}])],
                          {"jwks": {"refetch_cooldown": 0.5}}, policies={"oidcpol": policy("oidcpol", "late")})
        token = id_token(idp)
        r = get(gw, "/late/x", token)
        assert r.status_code == 503 and r.json()["error"]
        idp.down = False
        deadline = time.monotonic() + 5
        while get(gw, "/late/x", token).status_code != 200:
            assert time.monotonic() < deadline, "the issuer was never discovered once it came back"
            time.sleep(0.2)
        assert idp.discovery_hits >= 2 and idp.jwks_hits >= 1
    finally:
        idp.stop()
