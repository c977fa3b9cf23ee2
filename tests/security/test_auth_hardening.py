"""Auth hardening over the wire: HMAC clock skew by default, basic-auth guessing made slow and
blind, JWT time claims out of range, short JWT HMAC secrets refused, basic-auth user names with ":".

Every test runs a real gateway and a real upstream, and speaks HTTP to them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.kit.jwks import b64, b64u, hs256
from tests.kit.procs import ROOT, SECRET, Gateway, Upstream, write_config
from tests.kit.apis import classic_api
from tests.kit.apis import oas_jwt_api, rights
from tests.kit.gateway_api import ADMIN, create_key


HMAC_INVALID = {"error": "Authorization field missing, malformed or invalid"}
JWT_SECRET = "auth-hardening-jwt-secret-32-bytes!!"
SHORT_SECRET = "short-secret"  # 12 bytes


def protected(api_id: str, upstream: Upstream, **fields: Any) -> dict[str, Any]:
    return classic_api(api_id, f"/{api_id}/", upstream.url, use_keyless=False, **fields)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---- HMAC: the clock skew is bounded by default (item 5) -------------------------------------------


@pytest.fixture(scope="module")
def hmac_gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    apis = [
        protected("sig", upstream, enable_signature_checking=True),
        protected("sig-zero", upstream, enable_signature_checking=True, hmac_allowed_clock_skew=0),
        protected("sig-off", upstream, enable_signature_checking=True, hmac_allowed_clock_skew=-1),
    ]
    gateway = Gateway(tmp_path_factory.mktemp("hmac-skew"), apis)
    body = {"org_id": "default", "hmac_enabled": True, "hmac_string": "hmac-key-secret",
            "access_rights": rights("sig", "sig-zero", "sig-off")}
    create_key(gateway, body, "signer")
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


def signed_get(gw: Gateway, api: str, age: float) -> requests.Response:
    date = formatdate(time.time() - age, usegmt=True)
    digest = hmac.new(b"hmac-key-secret", f"date: {date}".encode(), hashlib.sha256).digest()
    signature = quote(base64.b64encode(digest).decode(), safe="")
    auth = f'Signature keyId="signer",algorithm="hmac-sha256",signature="{signature}"'
    return requests.get(f"{gw.url}/{api}/echo", headers={"Date": date, "Authorization": auth}, timeout=5)


def test_hmac_fresh_signature_over_date_is_accepted(hmac_gw: Gateway) -> None:
    assert signed_get(hmac_gw, "sig", 0).status_code == 200
    assert signed_get(hmac_gw, "sig", 240).status_code == 200  # within the default 300 s


@pytest.mark.parametrize("api", ["sig", "sig-zero"])
def test_hmac_signature_ten_minutes_old_is_refused_by_default(hmac_gw: Gateway, upstream: Upstream, api: str) -> None:
    upstream.reset()
    r = signed_get(hmac_gw, api, 600)
    assert (r.status_code, r.json()) == (400, HMAC_INVALID)
    r = signed_get(hmac_gw, api, 30 * 24 * 3600)
    assert (r.status_code, r.json()) == (400, HMAC_INVALID)
    assert upstream.seen() == []


def test_hmac_negative_skew_switches_the_window_off_with_a_warning(hmac_gw: Gateway) -> None:
    assert signed_get(hmac_gw, "sig-off", 600).status_code == 200
    assert "'sig-off': hmac_allowed_clock_skew is negative" in hmac_gw.log


def run_check(config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")}
    return subprocess.run([sys.executable, "-m", "fastgate", "check", "--config", str(config)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=30, check=False)


def config_dir(tmp_path: Path, apis: list[dict[str, Any]]) -> Path:
    (tmp_path / "apps").mkdir()
    for api in apis:
        (tmp_path / "apps" / f"{api['api_id']}.json").write_text(json.dumps(api))
    return write_config(tmp_path, {"secret": SECRET, "app_path": "apps"})


def test_check_warns_about_signatures_over_the_date_alone(tmp_path: Path, upstream: Upstream) -> None:
    config = config_dir(tmp_path, [
        protected("weak", upstream, enable_signature_checking=True),
        protected("strong", upstream, enable_signature_checking=True,
                  hmac_required_headers=["(request-target)", "date"]),
    ])
    out = run_check(config)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert [line for line in lines if "weak.json" in line] == [
        (f"warning: {tmp_path / 'apps' / 'weak.json'}: hmac_required_headers: a signature over the date alone is"
         ' accepted, which binds neither the method, the path nor the body; require ["(request-target)", "date"]'
         ' (and "digest" with digest validation for requests with a body)')
    ]
    assert not [line for line in lines if "strong.json" in line]


# ---- basic auth: throttled guessing, unknown users cost a bcrypt check (item 8) ---------------------


@pytest.fixture
def throttled_gw(tmp_path: Path, upstream: Upstream) -> Iterator[Gateway]:
    settings = {"basic_auth_failures_per_user": 3, "basic_auth_failures_per_client": 6,
                "basic_auth_failure_window": 3}
    gateway = Gateway(tmp_path, [protected("basic", upstream, use_basic_auth=True)], settings)
    for user in ("bob", "carol"):
        body = {"org_id": "default", "basic_auth_data": {"password": f"{user}-password"}, "access_rights": rights("basic")}
        create_key(gateway, body, user)
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


def get_basic(gw: Gateway, user: str, password: str) -> requests.Response:
    return requests.get(f"{gw.url}/basic/echo", headers=basic(user, password), timeout=10)


def assert_throttled(r: requests.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"].startswith("Too many failed login attempts; try again in ")
    assert 1 <= int(r.headers["Retry-After"]) <= 3


def test_basic_failures_per_user_are_throttled_then_forgiven(throttled_gw: Gateway, upstream: Upstream) -> None:
    gw = throttled_gw
    for _ in range(3):
        assert get_basic(gw, "bob", "guess").status_code == 401
    upstream.reset()
    assert_throttled(get_basic(gw, "bob", "guess"))
    assert_throttled(get_basic(gw, "bob", "bob-password"))  # even the right password, while throttled
    assert upstream.seen() == []
    assert get_basic(gw, "carol", "carol-password").status_code == 200  # other users are not affected
    time.sleep(3.2)
    assert get_basic(gw, "bob", "bob-password").status_code == 200
    assert "failed logins for user 'bob'" in gw.log
    assert "guess" not in gw.log and "bob-password" not in gw.log


def test_basic_failures_per_client_are_throttled(throttled_gw: Gateway) -> None:
    gw = throttled_gw
    for i in range(6):  # six made-up users, two failures each at most: only the client limit trips
        assert get_basic(gw, f"nobody{i}", "guess").status_code == 401
    assert_throttled(get_basic(gw, "carol", "carol-password"))
    assert "failed logins from client 127.0.0.1" in gw.log
    time.sleep(3.2)
    assert get_basic(gw, "carol", "carol-password").status_code == 200


def test_unknown_user_costs_a_bcrypt_check(tmp_path: Path, upstream: Upstream) -> None:
    api = protected("basic", upstream, use_basic_auth=True, basic_auth={"disable_caching": True})
    gw = Gateway(tmp_path, [api], {"basic_auth_failures_per_user": 0, "basic_auth_failures_per_client": 0})
    try:
        body = {"org_id": "default", "basic_auth_data": {"password": "real-password"}, "access_rights": rights("basic")}
        assert requests.post(f"{gw.url}/tyk/keys/dave", json=body, headers=ADMIN, timeout=10).status_code == 200

        def timed(user: str) -> float:
            start = time.perf_counter()
            assert get_basic(gw, user, "wrong-password").status_code == 401
            return time.perf_counter() - start

        timed("dave"), timed("nobody")  # warm up
        known = statistics.median(timed("dave") for _ in range(7))
        unknown = statistics.median(timed(f"nobody{i}") for i in range(7))
        # A bcrypt check at cost 10 takes tens of milliseconds; without the dummy check an unknown
        # user is answered in about one.
        assert unknown > 0.5 * known, (known, unknown)
    finally:
        gw.stop()


# ---- JWT: time claims beyond 64 bits (item 10) and short HMAC secrets (item 12) --------------------


@pytest.fixture(scope="module")
def jwt_gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    apis = [
        protected("jwt", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(JWT_SECRET),
                  jwt_policy_field_name="pol"),
        protected("jwt-short-ok", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(SHORT_SECRET),
                  jwt_policy_field_name="pol", jwt_allow_short_hmac_secret=True),
        protected("jwt-short", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(SHORT_SECRET),
                  jwt_policy_field_name="pol"),
    ]
    policy = {"id": "pol", "org_id": "default", "active": True, "quota_max": -1,
              "access_rights": rights("jwt", "jwt-short-ok", "jwt-short")}
    gateway = Gateway(tmp_path_factory.mktemp("jwt-hardening"), apis, {}, policies={"pol": policy})
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


def raw_hs256(claims_json: str, secret: str) -> str:
    """A token whose payload is exactly ``claims_json`` (numbers no JSON encoder would write)."""
    data = f"{b64u(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64u(claims_json.encode())}"
    signature = hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()
    return f"{data}.{b64u(signature)}"


def get_jwt(gw: Gateway, api: str, token: str) -> requests.Response:
    return requests.get(f"{gw.url}/{api}/echo", headers={"Authorization": f"Bearer {token}"}, timeout=5)


OUT_OF_RANGE = {"error": "Key not authorized: a time claim (exp, iat or nbf) is out of range"}


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [2**70, -(2**70), 1e300, 2**64, 2**63 + 1])
def test_jwt_time_claims_beyond_64_bits_are_401(jwt_gw: Gateway, claim: str, value: float) -> None:
    token = hs256({"sub": f"huge-{claim}", "pol": "pol", claim: value}, JWT_SECRET)
    for _ in range(2):  # also once the token is cached
        r = get_jwt(jwt_gw, "jwt", token)
        assert (r.status_code, r.json()) == (401, OUT_OF_RANGE)


def test_jwt_time_claims_no_float_or_string_can_make_a_5xx(jwt_gw: Gateway) -> None:
    for claims in ('{"sub":"x","pol":"pol","exp":1e400}', '{"sub":"x","pol":"pol","exp":"1180591620717411303424"}',
                   '{"sub":"x","pol":"pol","exp":18446744073709551616000}', '{"sub":"x","pol":"pol","exp":-1e308}'):
        r = get_jwt(jwt_gw, "jwt", raw_hs256(claims, JWT_SECRET))
        assert r.status_code in (401, 403), (claims, r.status_code, r.text)
    assert get_jwt(jwt_gw, "jwt", hs256({"sub": "fine", "pol": "pol", "exp": int(time.time()) + 60}, JWT_SECRET)).status_code == 200


def test_jwt_short_hmac_secret_refused_at_load_unless_allowed(jwt_gw: Gateway) -> None:
    token = hs256({"sub": "s", "pol": "pol"}, SHORT_SECRET)
    assert get_jwt(jwt_gw, "jwt-short-ok", token).status_code == 200
    r = get_jwt(jwt_gw, "jwt-short", token)
    assert r.status_code == 404, r.text  # not loaded
    assert ("jwt-short.json: jwt_source: the HMAC secret is 12 bytes once decoded; at least 32 are needed"
            in jwt_gw.log)


def test_check_names_the_short_secret_field(tmp_path: Path, upstream: Upstream) -> None:
    oas = oas_jwt_api("oas-short", upstream.url, {"source": b64(SHORT_SECRET), "signingMethod": "hmac"})
    config = config_dir(tmp_path, [
        protected("short", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(SHORT_SECRET)),
        protected("long", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(JWT_SECRET)),
    ])
    (tmp_path / "apps" / "oas-short.json").write_text(json.dumps(oas))
    out = run_check(config)
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"{tmp_path / 'apps' / 'short.json'}: jwt_source: the HMAC secret is 12 bytes once decoded; at least"
            " 32 are needed (RFC 8725 section 3.5); set jwt_allow_short_hmac_secret: true to accept a shorter one"
            in out.stdout.splitlines())
    assert (f"{tmp_path / 'apps' / 'oas-short.json'}: x-tyk-api-gateway.server.authentication.securitySchemes.jwt"
            ".source: the HMAC secret is 12 bytes once decoded" in out.stdout)
    assert "long.json" not in out.stdout


def test_gateway_api_refuses_short_hmac_secrets(jwt_gw: Gateway, upstream: Upstream) -> None:
    api = protected("posted", upstream, enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(SHORT_SECRET))
    status, body = jwt_gw.admin("POST", "/tyk/apis", api)
    assert status == 400 and "jwt_source: the HMAC secret is 12 bytes" in body["message"], body
    api["jwt_source"] = b64(JWT_SECRET)
    assert jwt_gw.admin("POST", "/tyk/apis", api)[0] == 200
    api["jwt_source"] = b64(SHORT_SECRET)
    status, body = jwt_gw.admin("PUT", "/tyk/apis/posted", api)
    assert status == 400 and "jwt_source: the HMAC secret is 12 bytes" in body["message"], body
    status, body = jwt_gw.admin("POST", "/tyk/apis/oas", oas_jwt_api("oas-posted", upstream.url, {"source": b64(SHORT_SECRET), "signingMethod": "hmac"}))
    assert status == 400 and "securitySchemes.jwt.source: the HMAC secret is 12 bytes" in body["message"], body
    api["jwt_allow_short_hmac_secret"] = True
    assert jwt_gw.admin("PUT", "/tyk/apis/posted", api)[0] == 200


# ---- basic auth: ":" in user names and passwords (item 16) -------------------------------------------


@pytest.fixture(scope="module")
def basic_gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("basic-colon"), [protected("basic", upstream, use_basic_auth=True)])
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


COLON_REFUSED = ('Failed to create key: a basic auth user name may not contain ":" (RFC 7617: the client sends'
                 " user:password and the first colon ends the user name)")


def test_basic_user_name_with_colon_is_refused(basic_gw: Gateway) -> None:
    body = {"org_id": "default", "basic_auth_data": {"password": "pw"}, "access_rights": rights("basic")}
    r = requests.post(f"{basic_gw.url}/tyk/keys/ev:il", json=body, headers=ADMIN, timeout=10)
    assert (r.status_code, r.json()["message"]) == (400, COLON_REFUSED)
    # a token key with a colon in its id may exist, but cannot become a basic-auth user
    token_only = {"org_id": "default", "access_rights": rights("basic")}
    assert requests.post(f"{basic_gw.url}/tyk/keys/tok:en", json=token_only, headers=ADMIN, timeout=10).status_code == 200
    r = requests.put(f"{basic_gw.url}/tyk/keys/tok:en?org_id=default", json=body, headers=ADMIN, timeout=10)
    assert (r.status_code, r.json()["message"]) == (400, COLON_REFUSED)
    assert requests.get(f"{basic_gw.url}/basic/echo", headers=basic("tok:en", "pw"), timeout=10).status_code == 401


def test_basic_password_with_colons_logs_in(basic_gw: Gateway, upstream: Upstream) -> None:
    body = {"org_id": "default", "basic_auth_data": {"password": "pa:ss:word"}, "access_rights": rights("basic")}
    r = requests.post(f"{basic_gw.url}/tyk/keys/erin", json=body, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    upstream.reset()
    assert requests.get(f"{basic_gw.url}/basic/echo", headers=basic("erin", "pa:ss:word"), timeout=10).status_code == 200
    assert len(upstream.seen()) == 1
    assert requests.get(f"{basic_gw.url}/basic/echo", headers=basic("erin", "pa:ss"), timeout=10).status_code == 401
