"""Path encodings must not dodge a protected listen path.

``/api/`` is keyless and ``/api/private/`` needs a key, both on one upstream. An upstream that
decodes ``%61``, merges ``//`` or drops ``;`` parameters would read ``/api/private/x`` from each
reproduction below; the gateway must route, check and forward the one canonical path it computed,
so these either meet the protected API's auth (401) or are refused (400), and the upstream sees
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.kit.procs import SECRET, Gateway
from tests.kit.apis import classic_api, rights
from tests.kit.raw import RawClient
from tests.kit.gateway_api import create_key


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    apis = [
        classic_api("open", "/api/", upstream.url, proxy={"strip_listen_path": False}),
        classic_api(
            "private",
            "/api/private/",
            upstream.url,
            use_keyless=False,
            use_standard_auth=True,
            proxy={"strip_listen_path": False},
        ),
        classic_api(
            "matrix", "/matrix/", upstream.url, allow_path_parameters=True, proxy={"strip_listen_path": False}
        ),
    ]
    gateway = Gateway(tmp_path_factory.mktemp("canonical"), apis)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def key(gw) -> str:
    return create_key(gw, {"access_rights": rights("private")})["key"]


def get(gw: Gateway, target: str, headers: str = "") -> tuple[int, dict]:
    with RawClient(gw.port) as c:
        c.send(b"GET %b HTTP/1.1\r\nHost: gw\r\n%b\r\n" % (target.encode(), headers.encode()))
        resp = c.read_response()
        return resp.status, json.loads(resp.body or b"{}")


@pytest.mark.parametrize(
    "target,status",
    [
        ("/api/priv%61te/x", 401),  # the upstream decodes %61 to "a"
        ("/api/%70rivate/x", 401),
        ("/api/PRIV%61TE/../private/x", 401),
        ("/api//private/x", 401),  # upstreams that merge slashes
        ("/api///private//x", 401),
        ("/api/./private/x", 401),
        ("/api/private;a=b/x", 400),  # Tomcat / Spring drop ";" parameters
        ("/api/private;/x", 400),
    ],
)
def test_encodings_of_a_protected_path_meet_its_auth(gw, up, target, status):
    got, body = get(gw, target)
    assert got == status, (target, body)
    assert "error" in body
    assert up.seen() == []


def test_path_parameters_are_refused_with_a_message(gw, up):
    status, body = get(gw, "/api/public;jsessionid=1/x")
    assert status == 400
    assert "path parameters" in body["error"].lower()
    assert up.seen() == []


def test_the_decoded_path_reaches_the_upstream_with_a_valid_key(gw, up, key):
    status, body = get(gw, "/api/priv%61te/x", f"Authorization: {key}\r\n")
    assert status == 200, body
    assert body["path"] == "/api/private/x"
    assert [r["path"] for r in up.seen()] == ["/api/private/x"]


def test_merged_slashes_reach_the_upstream_with_a_valid_key(gw, up, key):
    status, body = get(gw, "/api//private//x", f"Authorization: {key}\r\n")
    assert status == 200, body
    assert body["path"] == "/api/private/x"


@pytest.mark.parametrize(
    "target,upstream_path",
    [
        ("/api/a%3Fb", "/api/a%3Fb"),  # reserved: stays encoded
        ("/api/a%3fb", "/api/a%3Fb"),  # hex digits upper-cased (RFC 3986 §6.2.2.1)
        ("/api/a%23b%25c%20d", "/api/a%23b%25c%20d"),
        ("/api/%7Euser/%41-%5F", "/api/~user/A-_"),  # unreserved: decoded
        ("/api/caf%C3%A9", "/api/caf%C3%A9"),
    ],
)
def test_reserved_escapes_stay_encoded_end_to_end(gw, up, target, upstream_path):
    status, body = get(gw, target)
    assert status == 200, body
    assert body["path"] == upstream_path
    assert [r["path"] for r in up.seen()] == [upstream_path]


@pytest.mark.parametrize(
    "target,words",
    [
        ("/api/a%00b", "%00"),
        ("/api/a%ZZb", "malformed"),
        ("/api/a%", "malformed"),
        ("/api/a%4", "malformed"),
        ("/api/%u0061", "malformed"),
        ("/api/a%2fb", "encoded"),
        ("/api/%2e%2e/private/x", "encoded"),
        ("/api/a%5Cb", "backslash"),
    ],
)
def test_malformed_or_forbidden_escapes_are_refused(gw, up, target, words):
    status, body = get(gw, target)
    assert status == 400
    assert words in body["error"].lower()
    assert up.seen() == []


def test_an_api_that_opts_in_receives_path_parameters(gw, up):
    status, body = get(gw, "/matrix/cars;color=red/x")
    assert status == 200, body
    assert body["path"] == "/matrix/cars;color=red/x"


def test_path_parameters_inside_the_listen_path_are_refused_even_when_allowed(gw, up):
    status, _ = get(gw, "/matrix;v=1/cars")
    assert status == 400
    assert up.seen() == []


def test_granular_access_sees_the_canonical_path(gw, up):
    right = {
        "api_id": "private",
        "api_name": "private",
        "versions": ["Default"],
        "allowed_urls": [{"url": "^/api/private/open$", "methods": ["GET"]}],
    }
    r = requests.post(
        gw.url + "/tyk/keys/create",
        json={"access_rights": {"private": right}},
        headers={"X-Tyk-Authorization": SECRET},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    auth = f"Authorization: {r.json()['key']}\r\n"
    for target in ("/api/private/%6Fpen", "/api//private/open", "/api/private/x/../open"):
        status, body = get(gw, target, auth)
        assert status == 200, (target, body)
        assert body["path"] == "/api/private/open"
    for target in ("/api/private/%73ecret", "/api/private/open/..//secret"):
        status, body = get(gw, target, auth)
        assert status == 403, (target, body)
    assert [r["path"] for r in up.seen()] == ["/api/private/open"] * 3
