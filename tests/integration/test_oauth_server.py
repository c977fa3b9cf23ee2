"""The OAuth 2.0 authorization server end to end (contract auth-wave2 §A), on memory and Redis.

Real clients: authlib's ``OAuth2Session`` (client_secret_basic) for the code, password,
client-credentials and refresh flows; ``requests`` for every error row of the contract. The
gateway runs as a process with a recording upstream; the login app is played by the test
(``/tyk/oauth/authorize-client`` with the gateway secret).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
import urllib.parse
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError as AuthlibError

from tests.kit.apis import classic_api, oas_api, rights
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.gateway_api import create_key
from tests.kit.oauth import (
    ALL_GRANTS, LOGIN, POLICIES, REDIRECT, approve, get, make_client, oauth_api, token_post,
)
from tests.kit.procs import Gateway

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the test gateway listens on plain http

def oas_oauth_api(api_id: str, upstream_url: str) -> dict:
    """A Tyk OAS API whose oauth2 scheme makes the gateway its authorization server."""
    scheme = {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/oauth/token", "scopes": {}}}}
    vendor = {"enabled": True, "securitySchemes": {"oauth": {"enabled": True, "authLoginRedirect": LOGIN}}}
    return oas_api(api_id, f"/{api_id}/", upstream_url, server={"authentication": vendor},
                   document={"components": {"securitySchemes": {"oauth": scheme}}, "security": [{"oauth": []}]})


@pytest.fixture(scope="module", params=["memory://", REDIS_TEST_URL], ids=["memory", "redis"])
def gw(request, tmp_path_factory, upstream):
    if request.param.startswith("redis"):
        flush_redis_db(request.param)
    apis = [
        oauth_api("o", upstream.url, ALL_GRANTS),
        oauth_api("o2", upstream.url, ["authorization_code"]),
        oauth_api("pk", upstream.url, ALL_GRANTS, oauth_meta={
            "allowed_access_types": ALL_GRANTS, "allowed_authorize_types": ["code"], "auth_login_redirect": LOGIN,
            "require_pkce": True}),
        classic_api("open", "/open/", upstream.url),
        oas_oauth_api("oo", upstream.url),
    ]
    gateway = Gateway(tmp_path_factory.mktemp("oauth"), apis, {"storage": {"url": request.param}}, policies=POLICIES)
    try:
        yield gateway
    finally:
        gateway.stop()
        if request.param.startswith("redis"):
            flush_redis_db(request.param)


def session(gw, client: dict, **kwargs) -> OAuth2Session:
    return OAuth2Session(client["client_id"], client["secret"], redirect_uri=REDIRECT,
                         token_endpoint_auth_method="client_secret_basic", **kwargs)


def code_flow(gw, client: dict, api_id: str = "o", verifier: str | None = None) -> dict:
    """authlib through the whole authorization-code flow; the token it got."""
    sess = session(gw, client, code_challenge_method="S256" if verifier else None)
    url, state = sess.create_authorization_url(f"{gw.url}/{api_id}/oauth/authorize",
                                               **({"code_verifier": verifier} if verifier else {}))
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 307, r.text
    login = urlsplit(r.headers["Location"])
    assert f"{login.scheme}://{login.netloc}{login.path}" == LOGIN
    assert parse_qs(login.query) == parse_qs(urlsplit(url).query)
    approved = approve(gw, {k: v[0] for k, v in parse_qs(login.query).items()}, api_id)
    assert approved.status_code == 200, approved.text
    return sess.fetch_token(f"{gw.url}/{api_id}/oauth/token", authorization_response=approved.json()["redirect_to"],
                            **({"code_verifier": verifier} if verifier else {}))


def wait_refused(gw, path: str, token: str, message: str = "Key not authorised") -> None:
    deadline = time.monotonic() + 3
    while True:
        r = get(gw, path, token)
        if r.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (r.status_code, r.json()) == (403, {"error": message})


# ---- flows -----------------------------------------------------------------------------------


def test_authorization_code_flow_with_authlib(gw, up):
    client = make_client(gw)
    token = code_flow(gw, client)
    assert token["token_type"].lower() == "bearer" and token["expires_in"] == 3600
    assert token["access_token"] and token["refresh_token"]
    r = get(gw, "/o/anything?x=1", token["access_token"])
    assert r.status_code == 200, r.text
    assert (up.seen()[-1]["path"], up.seen()[-1]["query"]) == ("/anything", "x=1")
    # authlib's own session carries the token as a Bearer header.
    sess = session(gw, client, token=token)
    assert sess.get(gw.url + "/o/again").status_code == 200


def test_client_credentials_session_from_the_policy_and_rate_limit(gw):
    client = make_client(gw, policy_id="slow")
    token = session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials")
    assert "refresh_token" not in token and token["expires_in"] == 3600
    codes = [get(gw, "/o/x", token["access_token"]).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_password_grant_against_a_basic_auth_user(gw):
    create_key(gw, {"org_id": "default", "basic_auth_data": {"password": "alice-secret-1"},
                    "access_rights": rights("o")}, "alice")
    client = make_client(gw)
    token = session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", username="alice", password="alice-secret-1")
    assert get(gw, "/o/x", token["access_token"]).status_code == 200
    # as Tyk: one password-grant token per user and client; a new one revokes the previous one
    again = session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", username="alice", password="alice-secret-1")
    assert get(gw, "/o/x", again["access_token"]).status_code == 200
    assert get(gw, "/o/x", token["access_token"]).json() == {"error": "Key not authorised"}
    for user, password in (("alice", "wrong-password"), ("nobody", "alice-secret-1")):
        r = token_post(gw, {"grant_type": "password", "username": user, "password": password},
                       auth=(client["client_id"], client["secret"]))
        assert r.status_code == 403 and r.json()["error"] in ("access_denied", "invalid_grant")
        assert "access_token" not in r.json()


def test_refresh_rotation_twice_in_a_row(gw):
    client = make_client(gw)
    first = code_flow(gw, client)
    sess = session(gw, client)
    second = sess.refresh_token(f"{gw.url}/o/oauth/token", refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert (get(gw, "/o/x", first["access_token"]).status_code,
            get(gw, "/o/x", first["access_token"]).json()) == (403, {"error": "Key not authorised"})
    third = sess.refresh_token(f"{gw.url}/o/oauth/token", refresh_token=second["refresh_token"])
    assert get(gw, "/o/x", third["access_token"]).status_code == 200


def test_token_answers_carry_tyks_security_headers_and_json_bodies_work(gw):
    client = make_client(gw)
    r = requests.post(f"{gw.url}/o/oauth/token", json={"grant_type": "client_credentials"},
                      auth=(client["client_id"], client["secret"]), timeout=10)
    assert r.status_code == 200, r.text
    for bad in (requests.get(f"{gw.url}/o/oauth/token", timeout=10), r):
        assert "no-store" in bad.headers["Cache-Control"]
        assert bad.headers["Pragma"] == "no-cache" and bad.headers["X-Content-Type-Options"] == "nosniff"


def test_implicit_grant_at_authorize_client(gw):
    client = make_client(gw)
    r = approve(gw, {"response_type": "token", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                     "state": "s1"})
    assert r.status_code == 200
    body = r.json()
    assert body["redirect_to"].startswith(REDIRECT + "#access_token=") and body["token_type"] == "bearer"
    assert get(gw, "/o/x", body["access_token"]).status_code == 200


# ---- token endpoint errors (each row of the contract) --------------------------------------


def test_token_endpoint_error_rows(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    rows = [
        (requests.get(f"{gw.url}/o/oauth/token", timeout=10), ("invalid_request",)),
        (token_post(gw, {"grant_type": "client_credentials", "client_id": client["client_id"]}),
         ("invalid_request", "invalid_client")),
        (token_post(gw, {"grant_type": "client_credentials"}, auth=(client["client_id"], "wrong")),
         ("unauthorized_client", "invalid_client")),
        (token_post(gw, {"grant_type": "magic"}, auth=creds), ("unsupported_grant_type",)),
        (token_post(gw, {"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT}, auth=creds),
         ("invalid_grant",)),
        (token_post(gw, {"grant_type": "refresh_token", "refresh_token": "nope"}, auth=creds), ("invalid_grant",)),
    ]
    client2 = make_client(gw, api_id="o2")
    rows.append((token_post(gw, {"grant_type": "client_credentials"}, "o2", auth=(client2["client_id"],
                                                                                  client2["secret"])),
                 ("unsupported_grant_type",)))
    for r, allowed in rows:
        body = r.json()
        assert r.status_code == 403, (r.status_code, body)
        assert body["error"] in allowed and body["error_description"], body
        assert "access_token" not in body and "no-store" in r.headers["Cache-Control"]


def test_revoked_refresh_token_is_invalid_grant(gw):
    client = make_client(gw)
    token = code_flow(gw, client)
    r = requests.post(f"{gw.url}/o/oauth/revoke", data={"token": token["refresh_token"],
                                                        "token_type_hint": "refresh_token"}, timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "ok", "message": "token revoked successfully"})
    r = token_post(gw, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
                   auth=(client["client_id"], client["secret"]))
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"
    assert get(gw, "/o/x", token["access_token"]).status_code == 200  # only the refresh token was revoked


# ---- authorize and authorize-client ---------------------------------------------------------


def test_authorize_rows(gw):
    client = make_client(gw)
    base = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT, "state": "xyz"}
    r = requests.get(f"{gw.url}/o/oauth/authorize", params=base, allow_redirects=False, timeout=10)
    assert r.status_code == 307 and parse_qs(urlsplit(r.headers["Location"]).query) == {k: [v] for k, v in base.items()}
    r = requests.get(f"{gw.url}/o/oauth/authorize", params={**base, "client_id": "unknown"}, allow_redirects=False,
                     timeout=10)
    assert r.status_code == 403 and "Location" not in r.headers
    r = approve(gw, base, admin=False)
    assert r.status_code == 403 and "code" not in r.json()
    r = approve(gw, base)
    assert r.status_code == 200
    target = urlsplit(r.json()["redirect_to"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    assert parse_qs(target.query) == {"code": [r.json()["code"]], "state": ["xyz"]}


def test_exact_redirect_uri(gw):
    client = make_client(gw)
    base = {"response_type": "code", "client_id": client["client_id"], "state": "xyz"}
    for uri in (REDIRECT + "/extra", REDIRECT + "x", "https://client.example.test:8443/cb",
                "https://client.example.test/other", "http://client.example.test/cb", REDIRECT + "?next=1"):
        r = requests.get(f"{gw.url}/o/oauth/authorize", params={**base, "redirect_uri": uri}, allow_redirects=False,
                         timeout=10)
        assert r.status_code == 403 and "Location" not in r.headers, uri
    r = approve(gw, {**base, "redirect_uri": REDIRECT + "/extra"})
    assert r.status_code == 403 and "code" not in r.json()


# ---- beyond Tyk ------------------------------------------------------------------------------


def _pkce_code(gw, client, challenge: str | None, method: str = "S256", api_id: str = "o") -> requests.Response:
    query = {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT, "state": "p"}
    if challenge is not None:
        query.update(code_challenge=challenge, code_challenge_method=method)
    return approve(gw, query, api_id)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_pkce_s256(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    verifier = secrets.token_urlsafe(48)
    redeem = {"grant_type": "authorization_code", "redirect_uri": REDIRECT}
    for sent in (None, "wrong-" + secrets.token_urlsafe(48)):
        code = _pkce_code(gw, client, _s256(verifier)).json()["code"]
        r = token_post(gw, {**redeem, "code": code, **({"code_verifier": sent} if sent else {})}, auth=creds)
        assert r.status_code == 403 and r.json()["error"] == "invalid_grant", r.text
    code = _pkce_code(gw, client, _s256(verifier)).json()["code"]
    assert token_post(gw, {**redeem, "code": code, "code_verifier": verifier}, auth=creds).status_code == 200
    r = _pkce_code(gw, client, verifier, method="plain")
    assert r.status_code == 403 and r.json()["error"] == "invalid_request" and "code" not in r.json()
    # optional for confidential clients...
    code = _pkce_code(gw, client, None).json()["code"]
    assert token_post(gw, {**redeem, "code": code}, auth=creds).status_code == 200
    # ...unless the API requires it (oauth_meta.require_pkce); authlib's own S256 then passes.
    pk = make_client(gw, api_id="pk")
    r = _pkce_code(gw, pk, None, api_id="pk")
    assert r.status_code == 403 and r.json()["error"] == "invalid_request"
    token = code_flow(gw, pk, "pk", verifier=secrets.token_urlsafe(48))
    assert get(gw, "/pk/x", token["access_token"]).status_code == 200


def test_code_needs_the_redirect_uri_it_was_issued_for(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    for sent in ({}, {"redirect_uri": REDIRECT + "/other"}):
        code = _pkce_code(gw, client, None).json()["code"]
        r = token_post(gw, {"grant_type": "authorization_code", "code": code, **sent}, auth=creds)
        assert r.status_code == 403 and r.json()["error"] == "invalid_grant", sent
        # refused before the code was redeemed: with the right redirect_uri it still works
        r = token_post(gw, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}, auth=creds)
        assert r.status_code == 200


def test_code_reuse_revokes_what_it_issued(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    code = _pkce_code(gw, client, None).json()["code"]
    redeem = {"grant_type": "authorization_code", "redirect_uri": REDIRECT, "code": code}
    first = token_post(gw, redeem, auth=creds).json()
    assert get(gw, "/o/x", first["access_token"]).status_code == 200
    r = token_post(gw, redeem, auth=creds)
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"
    assert get(gw, "/o/x", first["access_token"]).json() == {"error": "Key not authorised"}
    r = token_post(gw, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=creds)
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"


def test_refresh_reuse_revokes_the_newest_tokens(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    first = code_flow(gw, client)
    rotated = session(gw, client).refresh_token(f"{gw.url}/o/oauth/token", refresh_token=first["refresh_token"])
    r = token_post(gw, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=creds)
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"
    assert get(gw, "/o/x", rotated["access_token"]).json() == {"error": "Key not authorised"}
    r = token_post(gw, {"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]}, auth=creds)
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"
    with pytest.raises(AuthlibError):
        session(gw, client).refresh_token(f"{gw.url}/o/oauth/token", refresh_token=rotated["refresh_token"])


# ---- protected requests ----------------------------------------------------------------------


def test_protected_request_rows(gw, up):
    client = make_client(gw)
    token = session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials")
    up.reset()
    rows = [
        ({}, 400, "Authorization field missing"),
        ({"Authorization": token["access_token"]}, 400, "Authorization field missing"),
        ({"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}, 400, "Bearer token malformed"),
        ({"Authorization": "Bearer unknown-token-123"}, 403, "Key not authorised"),
    ]
    for headers, status, message in rows:
        r = get(gw, "/o/x", **headers)
        assert (r.status_code, r.json()) == (status, {"error": message}), headers
    assert up.seen() == []


def test_deleted_client_revokes_its_tokens_and_the_client_api(gw):
    client = make_client(gw, meta_data={"team": "blue"}, description="d")
    assert client["meta_data"] == {"team": "blue"} and client["description"] == "d"
    path = f"/tyk/oauth/clients/o/{client['client_id']}"
    status, got = gw.admin("GET", path)
    assert status == 200 and {k: got[k] for k in ("client_id", "secret", "redirect_uri", "policy_id")} == \
        {k: client[k] for k in ("client_id", "secret", "redirect_uri", "policy_id")}
    assert gw.admin("GET", path + "/tokens") == (200, [])
    sess = session(gw, client)
    tokens = [sess.fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials") for _ in range(2)]
    status, listed = gw.admin("GET", path + "/tokens")
    assert status == 200 and len(listed) == 2 and all(e["code"] and e["expires"] > time.time() for e in listed)
    status, page = gw.admin("GET", path + "/tokens?page=1")
    assert status == 200 and len(page["Tokens"]) == 2
    # the token's session is an ordinary key: /tyk/keys reads it, with the client's meta_data
    status, key = gw.admin("GET", f"/tyk/keys/{tokens[0]['access_token']}")
    assert status == 200 and key["oauth_client_id"] == client["client_id"] and key["meta_data"]["team"] == "blue"
    assert gw.admin("DELETE", path) == (200, {"key": client["client_id"], "status": "ok", "action": "deleted"})
    assert gw.admin("GET", path) == (404, {"status": "error", "message": "OAuth Client ID not found"})
    for token in tokens:
        wait_refused(gw, "/o/x", token["access_token"], "Key not authorised. OAuth client access was revoked")


def test_client_gateway_api(gw):
    generated = make_client(gw)
    assert generated["client_id"] and generated["secret"]
    named = make_client(gw, client_id="named-client", secret="named-secret-0001")
    assert (named["client_id"], named["secret"]) == ("named-client", "named-secret-0001")
    status, listed = gw.admin("GET", "/tyk/oauth/clients/o2")
    assert status == 200 and isinstance(listed, list)
    status, listed = gw.admin("GET", "/tyk/oauth/clients/o")
    assert {generated["client_id"], "named-client"} <= {c["client_id"] for c in listed}
    bad = {"redirect_uri": REDIRECT, "policy_id": "opol"}
    assert gw.admin("POST", "/tyk/oauth/clients/create", {**bad, "api_id": "none"}) == \
        (400, {"status": "error", "message": "API doesn't exist"})
    assert gw.admin("POST", "/tyk/oauth/clients/create", {**bad, "api_id": "open"}) == \
        (400, {"status": "error", "message": "API is not OAuth2"})
    assert gw.admin("POST", "/tyk/oauth/clients/create", {**bad, "api_id": "o"}, secret="wrong")[0] == 403
    status, rotated = gw.admin("PUT", "/tyk/oauth/clients/o/named-client/rotate")
    assert status == 200 and rotated["secret"] != "named-secret-0001"
    status, updated = gw.admin("PUT", "/tyk/oauth/clients/o/named-client", {"description": "new"})
    assert status == 200 and updated["description"] == "new" and updated["secret"] == rotated["secret"]
    assert gw.admin("GET", "/tyk/oauth/clients/apis/named-client") == (200, ["o"])
    # without api_id: every OAuth API the policy grants
    status, both = gw.admin("POST", "/tyk/oauth/clients/create", {"redirect_uri": REDIRECT, "policy_id": "opol",
                                                                   "client_id": "everywhere"})
    assert status == 200 and gw.admin("GET", "/tyk/oauth/clients/apis/everywhere") == (200, ["o", "o2", "pk"])
    assert gw.admin("DELETE", "/tyk/oauth/tokens")[0] == 422
    assert gw.admin("DELETE", "/tyk/oauth/tokens?scope=lapsed")[0] == 200


def test_revoke_and_revoke_all(gw):
    client = make_client(gw)
    creds = {"client_id": client["client_id"], "client_secret": client["secret"]}
    r = requests.post(f"{gw.url}/o/oauth/revoke", data={}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"status": "error", "message": "token is required"})
    token = session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials")
    r = requests.post(f"{gw.url}/o/oauth/revoke", data={"token": token["access_token"],
                                                        "token_type_hint": "access_token"}, timeout=10)
    assert r.status_code == 200
    wait_refused(gw, "/o/x", token["access_token"])
    tokens = [session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials")
              for _ in range(2)]
    for data, status, message in (
        ({**creds, "client_secret": "wrong"}, 401, "client secret is wrong"),
        ({"client_secret": client["secret"]}, 401, "client_id is required"),
    ):
        r = requests.post(f"{gw.url}/o/oauth/revoke_all", data=data, timeout=10)
        assert (r.status_code, r.json()) == (status, {"status": "error", "message": message})
    r = requests.post(f"{gw.url}/o/oauth/revoke_all", data={**creds, "client_id": "unknown"}, timeout=10)
    assert r.status_code == 404
    assert all(get(gw, "/o/x", t["access_token"]).status_code == 200 for t in tokens)  # refused calls revoked nothing
    r = requests.post(f"{gw.url}/o/oauth/revoke_all", data=creds, timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "ok", "message": "tokens revoked successfully"})
    for t in tokens:
        wait_refused(gw, "/o/x", t["access_token"])


def test_oas_oauth2_scheme_end_to_end(gw):
    client = make_client(gw, api_id="oo", policy_id="")
    token = session(gw, client).fetch_token(f"{gw.url}/oo/oauth/token", grant_type="client_credentials")
    assert get(gw, "/oo/x", token["access_token"]).status_code == 200
    assert get(gw, "/o/x", token["access_token"]).json() == {
        "error": "Key not authorised. OAuth client access was revoked"}  # a client of another API
    r = token_post(gw, {"grant_type": "password", "username": "u", "password": "p"}, "oo",
                   auth=(client["client_id"], client["secret"]))
    assert r.status_code == 403 and r.json()["error"] == "unsupported_grant_type"


def test_gateway_api_refresh_delete_revoke_and_revoke_all(gw):
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    token = code_flow(gw, client)
    path = f"/tyk/oauth/refresh/{token['refresh_token']}"
    assert gw.admin("DELETE", path)[0] == 400  # api_id is required
    assert gw.admin("DELETE", path + "?api_id=nope")[0] == 404
    assert gw.admin("DELETE", path + "?api_id=open")[0] == 400
    assert gw.admin("DELETE", path + "?api_id=o") == (200, {"key": token["refresh_token"], "status": "ok",
                                                            "action": "deleted"})
    r = token_post(gw, {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, auth=creds)
    assert r.status_code == 403 and r.json()["error"] == "invalid_grant"
    form = {"token": token["access_token"], "token_type_hint": "access_token", "client_id": client["client_id"]}
    status, _ = gw.admin("POST", "/tyk/oauth/revoke", b"token=" + token["access_token"].encode())
    assert status == 400  # client_id is required
    assert gw.admin("POST", "/tyk/oauth/revoke", urllib.parse.urlencode(form).encode()) == \
        (200, {"status": "ok", "message": "token revoked successfully"})
    wait_refused(gw, "/o/x", token["access_token"])
    others = [session(gw, client).fetch_token(f"{gw.url}/o/oauth/token", grant_type="client_credentials")
              for _ in range(2)]
    wrong = urllib.parse.urlencode({"client_id": client["client_id"], "client_secret": "wrong"}).encode()
    assert gw.admin("POST", "/tyk/oauth/revoke_all", wrong) == (401, {"status": "error",
                                                                      "message": "client secret is wrong"})
    right = urllib.parse.urlencode({"client_id": client["client_id"], "client_secret": client["secret"]}).encode()
    assert gw.admin("POST", "/tyk/oauth/revoke_all", right)[0] == 200
    for other in others:
        wait_refused(gw, "/o/x", other["access_token"])
