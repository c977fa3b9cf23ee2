"""The OAuth 2.0 server under hostile or odd input: no 5xx from client input, no secret in the
log, expiry as Tyk answers it, the API's IP lists guarding its OAuth endpoints, and ``fastgate
check`` naming a definition's unusable OAuth field."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.kit.gateway_api import ADMIN
from tests.kit.oauth import ALL_GRANTS, POLICIES, REDIRECT, approve, get, make_client, oauth_api, token_post
from tests.kit.procs import write_config

ROOT = Path(__file__).resolve().parents[2]


def test_junk_at_every_endpoint_is_a_4xx(make_gateway, upstream):
    gw = make_gateway([oauth_api("o", upstream.url, ALL_GRANTS)], policies=POLICIES)
    client = make_client(gw)
    creds = (client["client_id"], client["secret"])
    junk = [
        (b"\xff\xfe\x00", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b"[1, 2]", {"Content-Type": "application/json"}),
        (b"{not json", {"Content-Type": "application/json"}),
        (b"grant_type=client_credentials&grant_type=password", {}),
        (b"x=" + b"a" * 100_000, {}),
        (b"&".join(b"k%d=v" % i for i in range(500)), {}),
        (b"grant_type=authorization_code&code=" + b"c" * 10_000, {}),
        (b"grant_type=refresh_token&refresh_token=%00%01", {}),
        (b"grant_type=password&username=%22%5C&password=x", {}),
    ]
    for path in ("/o/oauth/token", "/o/oauth/revoke", "/o/oauth/revoke_all", "/o/oauth/authorize",
                 "/o/tyk/oauth/authorize-client"):
        for body, headers in junk:
            r = requests.post(gw.url + path, data=body, headers={**headers, **ADMIN}, auth=creds, timeout=10)
            assert 400 <= r.status_code < 500, (path, body[:40], r.status_code, r.text)
    for header in ("Basic", "Basic %%%", "Basic " + "QQ==" * 3000, "Bearer", "Bearer  two  spaces", "\x7f"):
        r = requests.get(gw.url + "/o/x", headers={"Authorization": header}, timeout=10)
        assert 400 <= r.status_code < 500, header
    status, _ = gw.admin("POST", "/tyk/oauth/clients/create", b"[]")
    assert status == 400
    status, _ = gw.admin("POST", "/tyk/oauth/clients/create", {"api_id": "o", "client_id": "a/b"})
    assert status == 400
    status, _ = gw.admin("POST", "/tyk/oauth/clients/create", {"api_id": "o", "meta_data": "x"})
    assert status == 400


def test_no_credential_reaches_the_log(make_gateway, upstream):
    gw = make_gateway([oauth_api("o", upstream.url, ALL_GRANTS)], {"access_log": {"enabled": True}},
                      policies=POLICIES)
    client = make_client(gw, client_id="logged-client", secret="client-secret-never-logged")
    code = approve(gw, {"response_type": "code", "client_id": "logged-client", "redirect_uri": REDIRECT,
                        "state": "s"}).json()["code"]
    token = token_post(gw, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                       auth=("logged-client", client["secret"])).json()
    token_post(gw, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
               auth=("logged-client", client["secret"]))  # the reuse warning is logged
    get(gw, "/o/x", token["access_token"])
    gw.admin("DELETE", f"/tyk/oauth/refresh/{token['refresh_token']}?api_id=o")
    time.sleep(0.3)
    log = gw.log
    assert "redeemed an authorization code twice" in log
    for secret in (client["secret"], code, token["access_token"], token["refresh_token"]):
        assert secret not in log


def test_expired_token_is_told_to_renew(make_gateway, upstream):
    gw = make_gateway([oauth_api("o", upstream.url, ALL_GRANTS)], {"oauth_token_expire": 1}, policies=POLICIES)
    client = make_client(gw)
    token = token_post(gw, {"grant_type": "client_credentials"}, auth=(client["client_id"], client["secret"])).json()
    assert token["expires_in"] == 1
    assert get(gw, "/o/x", token["access_token"]).status_code == 200
    time.sleep(2.1)
    r = get(gw, "/o/x", token["access_token"])
    assert (r.status_code, r.json()) == (401, {"error": "Key has expired, please renew"})
    assert gw.admin("GET", f"/tyk/oauth/clients/o/{client['client_id']}/tokens") == (200, [])


def test_ip_allowlist_guards_the_oauth_endpoints(make_gateway, upstream):
    api = oauth_api("o", upstream.url, ALL_GRANTS, enable_ip_whitelisting=True, allowed_ips=["10.9.9.9"])
    gw = make_gateway([api], policies=POLICIES)
    client = make_client(gw)
    r = token_post(gw, {"grant_type": "client_credentials"}, auth=(client["client_id"], client["secret"]))
    assert r.status_code == 403 and "access_token" not in r.json()
    assert gw.admin("GET", f"/tyk/oauth/clients/o/{client['client_id']}/tokens") == (200, [])


def test_check_names_an_unusable_oauth_field(tmp_path):
    apps = tmp_path / "apps"
    apps.mkdir()
    api = oauth_api("o", "http://127.0.0.1:9", ALL_GRANTS)
    api["oauth_meta"]["allowed_access_types"] = ["client_credentials", "jwt-bearer"]
    (apps / "o.json").write_text(json.dumps(api))
    config = write_config(tmp_path, {"app_path": "apps"})
    proc = subprocess.run([sys.executable, "-m", "fastgate", "check", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "o.json: oauth_meta.allowed_access_types: 'jwt-bearer' is not one of" in proc.stdout + proc.stderr


def test_guessing_client_secrets_and_passwords_is_throttled(make_gateway, upstream):
    gw = make_gateway([oauth_api("o", upstream.url, ALL_GRANTS)], {"basic_auth_failures_per_user": 3},
                      policies=POLICIES)
    client = make_client(gw)
    other = make_client(gw)
    form = {"grant_type": "client_credentials"}
    for _ in range(3):
        r = token_post(gw, form, auth=(client["client_id"], "guess"))
        assert r.status_code == 403 and r.json()["error"] == "invalid_client"
    r = token_post(gw, form, auth=(client["client_id"], client["secret"]))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0 and "access_token" not in r.json()
    assert token_post(gw, form, auth=(other["client_id"], other["secret"])).status_code == 200  # others unaffected
    creds = (other["client_id"], other["secret"])
    for _ in range(3):
        r = token_post(gw, {"grant_type": "password", "username": "bob", "password": "guess"}, auth=creds)
        assert r.status_code == 403 and r.json()["error"] == "access_denied"
    r = token_post(gw, {"grant_type": "password", "username": "bob", "password": "guess"}, auth=creds)
    assert r.status_code == 429 and r.json()["error"] == "access_denied"
