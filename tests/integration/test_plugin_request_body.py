"""Request bodies handed to Tyk-style hooks (``request.object.body`` / ``raw_body``), end to end:
``pre``, ``auth_check``, ``post_key_auth`` and ``post`` hooks see the whole body (Content-Length
or chunked, with or without ``Expect: 100-continue``), bounded by the API's max request body and
``[plugins] request_body_limit`` (larger → 413); the upstream still receives the body unchanged.
APIs without hooks stream bodies as before (no limit from the plugins). Memory and Redis stores
(the auth hook's key is stored).
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import requests

from tests.integration.test_plugins import hook, plugin_api, plugin_dir
from tests.kit.apis import classic_api
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway
from tests.kit.procs import headers_of

LIMIT = 512 * 1024  # [plugins] request_body_limit here: above the exchange's 256 KiB high-water mark


def the_apis(plugins: Path, upstream_url: str) -> list[dict]:
    f = plugins / "body_hooks.py"
    every = {"pre": [hook("PreBody", f)], "auth_check": hook("AuthFromBody", f),
             "post_key_auth": [hook("PostKeyAuthBody", f)], "post": [hook("PostBody", f)]}
    return [
        plugin_api("bodyall", upstream_url, every),
        plugin_api("bodypre", upstream_url, {"pre": [hook("PreBody", f), hook("native_body", f)], "post": [hook("PostBody", f)]},
                   keyless=True),
        plugin_api("bodysmall", upstream_url, {"pre": [hook("PreBody", f)]}, keyless=True,
                   max_request_body_bytes=1000),
        classic_api("plainbody", "/plainbody/", upstream_url),
    ]


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request, tmp_path_factory, upstream):
    directory = tmp_path_factory.mktemp("plugin_body")
    plugins = plugin_dir(directory)
    settings = {"plugins": {"hook_timeout": 2.0, "thread_pool_size": 4, "request_body_limit": LIMIT},
                "http_server_options": {"read_timeout": 2.0}}
    yield from module_gateway(request.param, directory, the_apis(plugins, upstream.url), settings)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_hook_sees_the_body_and_the_upstream_gets_it_unchanged(gw, up):
    body = json.dumps({"token": "body-token-0001", "pad": "x" * 3000}).encode()
    answer = requests.post(gw.url + "/bodyall/echo", data=body, timeout=10)
    assert answer.status_code == 200, answer.text
    record = answer.json()
    seen = headers_of(record)
    assert seen["x-pre-body-len"] == str(len(body)) and seen["x-pre-body-sha"] == sha(body)
    assert seen["x-pka-body-len"] == str(len(body)) and seen["x-post-body-sha"] == sha(body)
    assert record["body_length"] == len(body) and record["body_sha256"] == sha(body)
    # The auth hook read its token from the body: another body is refused, nothing goes upstream.
    up.reset()
    refused = requests.post(gw.url + "/bodyall/echo", data=b'{"token": "wrong"}', timeout=10)
    assert (refused.status_code, refused.json()) == (403, {"error": "Forbidden"})
    assert up.seen() == []


def test_chunked_and_large_bodies_up_to_the_limit(gw, up):
    body = bytes(range(256)) * (LIMIT // 256)  # exactly the limit, above the 256 KiB high-water mark

    def pieces():
        for i in range(0, len(body), 50_000):
            yield body[i:i + 50_000]

    answer = requests.post(gw.url + "/bodypre/echo", data=pieces(), timeout=20)  # chunked
    assert answer.status_code == 200, answer.text
    record = answer.json()
    seen = headers_of(record)
    assert seen["x-pre-body-len"] == str(LIMIT) and seen["x-post-body-sha"] == sha(body)
    assert seen["x-native-body-len"] == str(LIMIT)
    assert record["body_sha256"] == sha(body)
    answer = requests.post(gw.url + "/bodypre/echo", data=body, timeout=20)  # Content-Length
    assert answer.status_code == 200 and headers_of(answer.json())["x-pre-body-sha"] == sha(body)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_plugin_limit_is_413_and_never_reaches_the_upstream(gw, up, chunked):
    body = b"y" * (LIMIT + 1)
    data = iter([body[:LIMIT // 2], body[LIMIT // 2:]]) if chunked else body
    up.reset()
    answer = requests.post(gw.url + "/bodypre/echo", data=data, timeout=20)
    assert (answer.status_code, answer.json()) == (413, {"error": "Request body too large for the API's plugins"})
    assert up.seen() == []
    # An API without hooks streams it (no plugin limit).
    plain = requests.post(gw.url + "/plainbody/echo", data=b"z" * (4 * LIMIT), timeout=20)
    assert plain.status_code == 200 and plain.json()["body_length"] == 4 * LIMIT


def test_the_apis_own_size_limit_still_answers(gw, up):
    answer = requests.post(gw.url + "/bodysmall/echo", data=b"q" * 2000, timeout=10)
    assert answer.status_code == 413
    small = requests.post(gw.url + "/bodysmall/echo", data=b"q" * 500, timeout=10)
    assert small.status_code == 200 and headers_of(small.json())["x-pre-body-len"] == "500"


def test_a_hook_refuses_on_the_body_and_bodyless_requests_see_empty(gw, up):
    refused = requests.post(gw.url + "/bodypre/echo", data=b"refuse-me", timeout=10)
    assert (refused.status_code, refused.json()) == (400, {"error": "Plugin read the body and refused it"})
    plain = requests.get(gw.url + "/bodypre/echo", timeout=10)
    assert plain.status_code == 200 and headers_of(plain.json())["x-pre-body-len"] == "0"


def test_expect_100_continue_is_answered_so_the_hooks_get_the_body(gw, up):
    host, port = gw.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /bodypre/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100")
        sock.sendall(b"hello")
        data = b""
        while b'"body_sha256"' not in data:
            more = sock.recv(65536)
            assert more, data
            data += more
        assert b"HTTP/1.1 200" in data and sha(b"hello").encode() in data


def test_a_client_that_stops_sending_the_body_gets_408(gw, up):
    host, port = gw.url.split("//")[1].split(":")
    up.reset()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /bodypre/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part")
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 408"), data
    assert up.seen() == []
