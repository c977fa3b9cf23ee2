"""A credential sent twice must never reach the upstream unchecked (over the wire).

Each auth method checks one copy of its credential; the request is forwarded with all of them.
So a request carrying a method's credential twice (the same header, query parameter or cookie
twice), or different values in that method's several locations, is refused with 400 before any
method runs, and the upstream sees nothing of it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kit.jwks import b64, hs256
from tests.kit.procs import Gateway, Upstream
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.apis import rights
from tests.kit.gateway_api import create_key

JWT_SECRET = "credential-tests-jwt-secret-32-bytes!"


MULTIPLE = {"error": "Multiple credentials in one request: send each credential once"}
APIS = ("tok", "jwt", "basic", "cookie")


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Gateway]:
    def api(api_id: str, **fields: Any) -> dict[str, Any]:
        return classic_api(api_id, f"/{api_id}/", upstream.url, use_keyless=False, **fields)

    apis = [
        api("tok", use_standard_auth=True),
        api("jwt", enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(JWT_SECRET),
            jwt_policy_field_name="pol", auth_configs={"jwt": {"use_param": True, "param_name": "jwt"}}),
        api("basic", use_basic_auth=True),
        api("cookie", use_standard_auth=True,
            auth_configs={"authToken": {"use_cookie": True, "cookie_name": "session", "use_param": True,
                                        "param_name": "key"}}),
    ]
    policy = {"id": "pol", "org_id": "default", "active": True, "quota_max": -1,
              "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in APIS}}
    gateway = Gateway(tmp_path_factory.mktemp("credentials"), apis, {}, policies={"pol": policy})
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


@pytest.fixture(scope="module")
def token(gw: Gateway) -> str:
    return create_key(gw, {"org_id": "default", "access_rights": rights(*APIS)})["key"]


@pytest.fixture(scope="module")
def basic_user(gw: Gateway) -> str:
    body = {"org_id": "default", "basic_auth_data": {"password": "right-password"}, "access_rights": rights(*APIS)}
    create_key(gw, body, "alice")
    return "Basic " + base64.b64encode(b"alice:right-password").decode()


def raw(gw: Gateway, path: str, headers: str) -> tuple[int, Any]:
    with RawClient(gw.port) as client:
        r = client.request("GET", path, headers=headers + "Connection: close\r\n")
    return r.status, r.json()


def refused_unseen(upstream: Upstream, result: tuple[int, Any]) -> None:
    assert result == (400, MULTIPLE)
    assert upstream.seen() == []


JWT_OK = hs256({"sub": "someone", "pol": "pol"}, JWT_SECRET)
JWT_FORGED = hs256({"sub": "admin", "pol": "pol"}, "not-the-secret-but-long-enough-to-sign")


def test_one_credential_still_passes(gw: Gateway, upstream: Upstream, token: str, basic_user: str) -> None:
    assert raw(gw, "/tok/echo", f"Authorization: {token}\r\n")[0] == 200
    assert raw(gw, "/jwt/echo", f"Authorization: Bearer {JWT_OK}\r\n")[0] == 200
    assert raw(gw, f"/jwt/echo?jwt={JWT_OK}", "")[0] == 200
    assert raw(gw, "/basic/echo", f"Authorization: {basic_user}\r\n")[0] == 200
    # The same value in two locations of one method is one credential.
    assert raw(gw, f"/jwt/echo?jwt={JWT_OK}", f"Authorization: Bearer {JWT_OK}\r\n")[0] == 200
    assert raw(gw, f"/cookie/echo?key={token}", f"Cookie: a=1; session={token}\r\nAuthorization: {token}\r\n")[0] == 200
    # An empty value in another location does not count.
    assert raw(gw, "/cookie/echo?key=", f"Authorization: {token}\r\n")[0] == 200


def test_auth_token_header_twice(gw: Gateway, upstream: Upstream, token: str) -> None:
    upstream.reset()
    refused_unseen(upstream, raw(gw, "/tok/echo", f"Authorization: {token}\r\nAuthorization: forged\r\n"))
    refused_unseen(upstream, raw(gw, "/tok/echo", f"Authorization: {token}\r\nauthorization: {token}\r\n"))


def test_jwt_header_twice(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    refused_unseen(upstream, raw(gw, "/jwt/echo",
                                 f"Authorization: Bearer {JWT_OK}\r\nAuthorization: Bearer {JWT_FORGED}\r\n"))


def test_forged_jwt_header_with_valid_query_jwt(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    refused_unseen(upstream, raw(gw, f"/jwt/echo?jwt={JWT_OK}", f"Authorization: Bearer {JWT_FORGED}\r\n"))


def test_jwt_query_param_twice(gw: Gateway, upstream: Upstream) -> None:
    upstream.reset()
    refused_unseen(upstream, raw(gw, f"/jwt/echo?jwt={JWT_OK}&jwt={JWT_FORGED}", ""))
    refused_unseen(upstream, raw(gw, f"/jwt/echo?jwt={JWT_OK}&%6Awt={JWT_FORGED}", ""))


def test_basic_header_twice(gw: Gateway, upstream: Upstream, basic_user: str) -> None:
    upstream.reset()
    forged = "Basic " + base64.b64encode(b"admin:guess").decode()
    refused_unseen(upstream, raw(gw, "/basic/echo", f"Authorization: {basic_user}\r\nAuthorization: {forged}\r\n"))


def test_cookie_twice_or_conflicting(gw: Gateway, upstream: Upstream, token: str) -> None:
    upstream.reset()
    refused_unseen(upstream, raw(gw, "/cookie/echo", f"Cookie: session={token}; session=forged\r\n"))
    refused_unseen(upstream, raw(gw, "/cookie/echo", f"Cookie: session={token}\r\nCookie: session=forged\r\n"))
    refused_unseen(upstream, raw(gw, "/cookie/echo", f"Authorization: forged\r\nCookie: session={token}\r\n"))
    refused_unseen(upstream, raw(gw, f"/cookie/echo?key={token}", "Authorization: forged\r\n"))
    # A cookie in a second Cookie header is still the method's credential.
    refused_unseen(upstream, raw(gw, "/cookie/echo", f"Authorization: {token}\r\nCookie: a=1\r\nCookie: session=forged\r\n"))
