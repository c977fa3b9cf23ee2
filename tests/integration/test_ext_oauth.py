"""External OAuth end to end: a real gateway, a real upstream, a real JWKS endpoint and a real
RFC 7662 introspection server in the test process, on the memory store and on Redis.

The rows of contract auth-wave2 §B (external OAuth, JWT and introspection paths, and the BEYOND
Tyk table: IdP down → 503, single flight, negative cache), plus the virtual session (a key
stored under Tyk's virtual id gives its limits), revocation by ``sub``, OAS ``providers`` and
client credentials sent as HTTP Basic.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from fastgate.auth.jwt.session import virtual_session_token
from tests.kit.apis import classic_api, oas_api, rights
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway
from tests.kit.gateway_api import create_key
from tests.kit.idp import IntrospectionServer
from tests.kit.jwks import JwksServer, RsaKey
from tests.kit.procs import Gateway, Upstream, free_port

KEY = RsaKey("k1")
IMPOSTOR = RsaKey("k1")  # another key under the same kid

SKEWS = {"issued_at_validation_skew": 0, "not_before_validation_skew": 0, "expires_at_validation_skew": 0}


def ext_api(api_id: str, upstream_url: str, provider: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False,
                       external_oauth={"enabled": True, "providers": [provider] if provider else []}, **fields)


def introspection(url: str, *, cache: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"jwt": {"enabled": False},
            "introspection": {"enabled": True, "url": url, "client_id": "gw-client",
                              "client_secret": "gw-secret-0123456789", "identity_base_field": "sub",
                              "cache": cache or {"enabled": False, "timeout": 0}, **extra}}


CACHED = {"enabled": True, "timeout": 60}


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[JwksServer, IntrospectionServer]]:
    jwks = JwksServer(KEY.jwk())
    intro = IntrospectionServer()
    yield jwks, intro
    jwks.stop()
    intro.stop()


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, upstream: Upstream,
       idp: tuple[JwksServer, IntrospectionServer]) -> Iterator[Gateway]:
    jwks, intro = idp
    up = upstream.url
    dead = f"http://127.0.0.1:{free_port()}/introspect"  # nothing listens there
    apis = [
        ext_api("ext", up, {"jwt": {"enabled": True, "signing_method": "rsa", "source": jwks.url,
                                    "identity_base_field": "sub", **SKEWS},
                            "introspection": {"enabled": False}}),
        ext_api("intro", up, introspection(intro.url)),
        ext_api("cached", up, introspection(intro.url, cache=CACHED)),
        ext_api("down", up, introspection(dead, cache=CACHED)),
        ext_api("basic", up, introspection(intro.url, client_auth="basic")),
        ext_api("noprov", up, {}),
        classic_api("open", "/open/", up),
        oas_api("oas-ext", "/oas-ext/", up, document={
            "components": {"securitySchemes": {"ext": {"type": "oauth2", "flows": {}}}},
            "security": [{"ext": []}],
        }, server={"authentication": {"enabled": True, "securitySchemes": {"ext": {
            "enabled": True, "header": {"enabled": True, "name": "Authorization"},
            "providers": [{"introspection": {"enabled": True, "url": intro.url, "clientId": "gw-client",
                                             "clientSecret": "gw-secret-0123456789", "identityBaseField": "sub",
                                             "cache": {"enabled": True, "timeout": 60}}}]}}}}),
    ]
    yield from module_gateway(request.param, tmp_path_factory.mktemp("ext"), apis)


def get(gw: Gateway, path: str, token: str | None = None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(gw.url + path, headers=headers, timeout=10)


def expect(r: requests.Response, status: int, error: str | None = None) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    if error is not None:
        assert r.json() == {"error": error}


def jwt_for(sub: str, *, key: RsaKey = KEY, exp_in: int = 300, **claims: Any) -> str:
    now = int(time.time())
    return key.sign({"sub": sub, "iat": now - 5, "exp": now + exp_in, **claims})


def opaque() -> str:
    return "at-" + secrets.token_urlsafe(24)


# ---- JWT path (contract rows) ------------------------------------------------------------------


def test_jwt_valid_token_reaches_upstream(gw: Gateway, up: Upstream) -> None:
    expect(get(gw, "/ext/hello", jwt_for("alice")), 200)
    assert [r["path"] for r in up.seen()] == ["/hello"]


def test_jwt_missing_authorization_is_400(gw: Gateway, up: Upstream) -> None:
    expect(get(gw, "/ext/x"), 400, "authorization field missing")
    assert up.seen() == []


def test_jwt_signed_by_another_key_under_the_same_kid_is_401(gw: Gateway, up: Upstream) -> None:
    r = get(gw, "/ext/x", jwt_for("mallory", key=IMPOSTOR))
    expect(r, 401)
    assert r.json()["error"]
    assert up.seen() == []


def test_jwt_expired_two_minutes_ago_is_401(gw: Gateway, up: Upstream) -> None:
    expect(get(gw, "/ext/x", jwt_for("bob", exp_in=-120)), 401, "key not authorized: token has expired")
    assert up.seen() == []


def test_jwt_other_algorithm_or_garbage_is_401_never_5xx(gw: Gateway, up: Upstream) -> None:
    hs = KEY.sign({"sub": "x", "exp": int(time.time()) + 60}, alg="RS512")
    expect(get(gw, "/ext/x", hs), 200)  # same family: RS512 with an RSA key is the signing method
    from tests.kit.jwks import hs256
    expect(get(gw, "/ext/x", hs256({"sub": "x"}, KEY.public_pem, kid="k1")), 401,
           "key not authorized: unexpected signing method")
    expect(get(gw, "/ext/x", "not.a.jwt"), 401, "key not authorized: token is malformed")
    assert len(up.seen()) == 1


def test_jwt_revocation_by_sub_applies(gw: Gateway, up: Upstream) -> None:
    sub = "revoked-" + secrets.token_hex(4)
    token = jwt_for(sub)
    expect(get(gw, "/ext/x", token), 200)
    status, _ = gw.admin("POST", "/tyk/jwt/revocations", {"sub": sub})
    assert status == 200
    expect(get(gw, "/ext/x", token), 401, "key not authorized: token has been revoked")


def test_virtual_session_stored_under_tyks_id_gives_its_limits(gw: Gateway) -> None:
    sub = "limited-" + secrets.token_hex(4)
    # POST /tyk/keys/<id> makes generate_token(org, id): Tyk's virtual id for md5hex(identity).
    made = create_key(gw, {"org_id": "default", "rate": 2, "per": 60, "quota_max": -1,
                           "access_rights": rights("ext")}, hashlib.md5(sub.encode()).hexdigest())
    assert made["key"] == virtual_session_token("default", sub, "sha256")
    token = jwt_for(sub)
    assert [get(gw, "/ext/x", token).status_code for _ in range(3)] == [200, 200, 429]
    # Without a stored key the standard session (10000 per 60 s) applies: no 429.
    other = jwt_for("free-" + secrets.token_hex(4))
    assert {get(gw, "/ext/x", other).status_code for _ in range(3)} == {200}


# ---- introspection path (contract rows) --------------------------------------------------------


def test_introspection_missing_authorization_is_400(gw: Gateway, up: Upstream) -> None:
    expect(get(gw, "/intro/x"), 400, "authorization field missing")
    assert up.seen() == []


def test_introspection_active_token_one_call(gw: Gateway, up: Upstream,
                                            idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="carol", client_id="app", exp=int(time.time()) + 300)
    expect(get(gw, "/intro/x", token), 200)
    assert intro.calls[token] == 1 and len(up.seen()) == 1
    form = intro.seen_forms[-1]
    assert form["client_id"] == ["gw-client"] and form["client_secret"] == ["gw-secret-0123456789"]


def test_introspection_inactive_is_401(gw: Gateway, up: Upstream, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    token = opaque()
    idp[1].deactivate(token)
    expect(get(gw, "/intro/x", token), 401, "access token is not valid")
    assert up.seen() == []


def test_cache_keeps_an_active_answer(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="dave", exp=int(time.time()) + 300)
    expect(get(gw, "/cached/x", token), 200)
    intro.deactivate(token)
    expect(get(gw, "/cached/x", token), 200)
    assert intro.calls[token] == 1


def test_cached_answer_never_outlives_exp(gw: Gateway, up: Upstream, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="erin", exp=int(time.time()) + 2)
    expect(get(gw, "/cached/x", token), 200)
    intro.deactivate(token)
    time.sleep(3)
    up.reset()
    r = get(gw, "/cached/x", token)
    assert r.status_code == 401 and r.json()["error"] in ("token is expired", "access token is not valid")
    assert up.seen() == []


def test_cache_off_asks_every_time(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="frank", exp=int(time.time()) + 300)
    expect(get(gw, "/intro/x", token), 200)
    intro.deactivate(token)
    expect(get(gw, "/intro/x", token), 401, "access token is not valid")
    assert intro.calls[token] == 2


def test_client_credentials_as_http_basic(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="grace")
    refused = intro.refused
    expect(get(gw, "/basic/x", token), 200)
    assert intro.refused == refused
    assert "client_secret" not in intro.seen_forms[-1]


def test_no_provider_is_404(gw: Gateway) -> None:
    expect(get(gw, "/noprov/x", opaque()), 404, "there should be at least one provider configured")


def test_oas_oauth2_scheme_with_providers(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="heidi")
    expect(get(gw, "/oas-ext/x", token), 200)
    expect(get(gw, "/oas-ext/x", opaque()), 401, "access token is not valid")
    expect(get(gw, "/oas-ext/x"), 400, "authorization field missing")


# ---- BEYOND Tyk ----------------------------------------------------------------------------------


def test_unreachable_idp_is_503_and_other_apis_work(gw: Gateway, up: Upstream) -> None:
    started = time.monotonic()
    r = get(gw, "/down/x", opaque())
    assert r.status_code == 503, r.text
    assert r.json()["error"]
    assert time.monotonic() - started < 8
    assert up.seen() == []
    expect(get(gw, "/open/x"), 200)


def test_garbage_answer_is_503(gw: Gateway, up: Upstream, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    intro.garbage = b"<html>oops</html>"
    try:
        r = get(gw, "/intro/x", opaque())
    finally:
        intro.garbage = None
    assert r.status_code == 503 and r.json()["error"]
    assert up.seen() == []


def test_single_flight_for_concurrent_first_requests(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.activate(token, sub="ivan", exp=int(time.time()) + 300)
    intro.delay = 1.0
    try:
        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(lambda _: get(gw, "/cached/x", token).status_code, range(20)))
    finally:
        intro.delay = 0.0
    assert statuses == [200] * 20
    assert intro.calls[token] == 1


def test_negative_answer_cached(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    intro = idp[1]
    token = opaque()
    intro.deactivate(token)
    expect(get(gw, "/cached/x", token), 401, "access token is not valid")
    expect(get(gw, "/cached/x", token), 401, "access token is not valid")
    assert intro.calls[token] == 1


def test_token_is_never_logged(gw: Gateway, idp: tuple[JwksServer, IntrospectionServer]) -> None:
    token = opaque()
    get(gw, "/down/x", token)
    get(gw, "/intro/x", token)
    log = Path(gw.log_path).read_text(errors="replace")
    assert token not in log and "gw-secret-0123456789" not in log
