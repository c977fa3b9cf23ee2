"""Tyk-style response hooks, end to end: a real gateway process runs the plugin file
(``tests/fixtures/plugins/response_hooks.py``) on real upstream responses, on the memory store
and on Redis (the hooks see the session the auth plugin stored).

An API with response hooks holds each upstream response whole (``[plugins]
response_body_limit``), runs the hooks and sends what they leave framed by its own
``Content-Length``; an API without them keeps streaming (chunked stays chunked).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.integration.test_plugins import hook, plugin_api, plugin_dir
from tests.kit.apis import classic_api, oas_api
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway

LIMIT = 64 * 1024
PATTERN = bytes(range(256)) * 256


def the_apis(plugins: Path, upstream_url: str) -> list[dict]:
    f = plugins / "response_hooks.py"

    def keyless(api_id: str, *names: str) -> dict:
        return plugin_api(api_id, upstream_url, {"response": [hook(n, f) for n in names]}, keyless=True)

    oas = oas_api("oasresp", "/oasresp/", upstream_url, middleware={"global": {
        "pluginConfig": {"driver": "python"},
        "responsePlugins": [{"enabled": True, "functionName": "Rewrite", "path": str(f)}]}})
    return [
        keyless("rewrite", "Rewrite"),
        keyless("chain", "Rewrite", "AppendText"),
        keyless("framing", "Framing"),
        keyless("same", "Untouched"),
        keyless("raising", "Raising"),
        keyless("slow", "Slow"),
        keyless("badstatus", "BadStatus"),
        keyless("badheader", "BadHeader"),
        plugin_api("authresp", upstream_url, {"auth_check": hook("AuthMeta", f), "response": [hook("Rewrite", f)]}),
        classic_api("plain", "/plain/", upstream_url),
        plugin_api("asyncresp", upstream_url, {"response": [hook("check", plugins / "native_plugin.py")]}, keyless=True),
        oas,
    ]


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request, tmp_path_factory, upstream):
    directory = tmp_path_factory.mktemp("response_plugins")
    plugins = plugin_dir(directory)
    settings = {"plugins": {"hook_timeout": 1.0, "thread_pool_size": 4, "response_body_limit": LIMIT}}
    yield from module_gateway(request.param, directory, the_apis(plugins, upstream.url), settings)


def raw_get(gw, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes, list[tuple[str, str]]]:
    """One request with http.client: status, headers (lower-cased), body, and the raw header list."""
    host, port = gw.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body, resp.getheaders()
    finally:
        conn.close()


def test_a_hook_rewrites_status_headers_and_body_with_a_correct_length(gw, up):
    status, headers, body, _ = raw_get(gw, "/rewrite/echo?x=1", **{"X-Client": "c1"})
    assert status == 201
    doc = json.loads(body)
    assert doc == {"rewritten": True, "upstream_status": 200, "path": "/echo", "method": "GET", "api": "rewrite",
                   "hook_header": "c1", "session_rate": 0.0, "meta": None, "content_type": "application/json"}
    assert headers["x-response-hook"] == "ran"
    assert headers["content-length"] == str(len(body)) and "transfer-encoding" not in headers
    assert "date" in headers
    assert len(up.seen()) == 1  # the upstream was asked once


def test_chained_hooks_and_the_text_body(gw, up):
    status, headers, body, _ = raw_get(gw, "/chain/echo")
    assert status == 201 and body.endswith(b"|appended") and json.loads(body[:-len("|appended")])["rewritten"]
    assert headers["x-response-hook"] == "ran" and headers["x-second"] == "yes"
    assert headers["content-length"] == str(len(body))


def test_framing_and_hop_by_hop_fields_never_come_from_a_hook(gw, up):
    # Two requests on one connection: a wrong length would break the second.
    host, port = gw.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/framing/echo")
            resp = conn.getresponse()
            assert resp.read() == b"short"
            assert resp.getheader("Content-Length") == "5" and resp.getheader("Transfer-Encoding") is None
            assert resp.getheader("Connection") is None and resp.getheader("Keep-Alive") is None
            assert resp.getheader("X-Framing-Hook") == "ran"
    finally:
        conn.close()


def test_a_chunked_upstream_body_is_sent_with_a_length(gw, up):
    status, headers, body, _ = raw_get(gw, "/same/bytes/5000?chunked=1")
    assert status == 200 and body == PATTERN[:5000]
    assert headers["content-length"] == "5000" and "transfer-encoding" not in headers
    status, headers, body, _ = raw_get(gw, "/same/bytes/3000")
    assert status == 200 and body == PATTERN[:3000] and headers["content-length"] == "3000"


def test_untouched_headers_keep_every_value_and_removed_ones_go(gw, up):
    _, _, _, raw = raw_get(gw, "/same/headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2&X-Secret=s")
    assert [v for k, v in raw if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert ("X-Secret", "s") in raw
    _, headers, _, raw = raw_get(gw, "/rewrite/headers?Set-Cookie=a%3D1&Set-Cookie=b%3D2&X-Secret=s")
    assert "x-secret" not in headers  # the hook removed it
    assert [v for k, v in raw if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_head_and_bodyless_statuses(gw, up):
    status, headers, body, _ = raw_get(gw, "/same/bytes/4000", method="HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == "4000"
    status, headers, body, _ = raw_get(gw, "/same/status/204")
    assert status == 204 and body == b"" and "content-length" not in headers


def test_failing_hooks_answer_500_without_detail(gw, up):
    for path in ("/raising/echo", "/badstatus/echo", "/badheader/echo"):
        for _ in range(2):
            answer = requests.get(gw.url + path, timeout=10)
            assert (answer.status_code, answer.json()) == (500, {"error": "Middleware error"}), path
            assert "secret-detail" not in answer.text and "injected" not in answer.headers.get("Set-Cookie", "")
    started = time.monotonic()
    slow = requests.get(gw.url + "/slow/echo", timeout=10)
    assert (slow.status_code, slow.json()) == (500, {"error": "Middleware error"})
    assert time.monotonic() - started < 2.5  # hook_timeout 1 s
    assert requests.get(gw.url + "/same/echo", timeout=10).status_code == 200
    assert requests.get(gw.url + "/plain/echo", timeout=10).status_code == 200
    deadline = time.monotonic() + 3
    while "secret-detail-in-response-hook" not in gw.log:
        assert time.monotonic() < deadline, "the hook's failure was not logged"
        time.sleep(0.05)


@pytest.mark.parametrize("query", ["", "?chunked=1"])
def test_a_response_over_the_limit_is_502_and_none_of_it_is_sent(gw, up, query):
    status, headers, body, _ = raw_get(gw, f"/same/bytes/{LIMIT + 1}{query}")
    assert status == 502
    assert json.loads(body) == {"error": "Upstream response too large for the API's response plugins"}
    status, _, body, _ = raw_get(gw, f"/same/bytes/{LIMIT}{query}")
    assert status == 200 and body == (PATTERN * 2)[:LIMIT]
    # An API without response hooks is not limited, and streams (chunked stays chunked).
    status, headers, body, _ = raw_get(gw, f"/plain/bytes/{4 * LIMIT}{query}")
    assert status == 200 and len(body) == 4 * LIMIT
    assert ("transfer-encoding" in headers) == bool(query)


def test_the_hook_sees_the_session_of_the_auth_plugin(gw, up):
    status, _, body, _ = raw_get(gw, "/authresp/echo", Authorization="resp-token-0001")
    assert status == 201
    doc = json.loads(body)
    assert doc["session_rate"] == 77.0 and doc["meta"] == "alice" and doc["api"] == "authresp"
    refused = requests.get(gw.url + "/authresp/echo", headers={"Authorization": "wrong"}, timeout=10)
    assert refused.status_code == 403  # a refusal is the gateway's own answer: no response hook
    assert "x-response-hook" not in {k.lower() for k in refused.headers}


def test_oas_response_plugins(gw, up):
    status, headers, body, _ = raw_get(gw, "/oasresp/echo")
    assert status == 201 and json.loads(body)["api"] == "oasresp" and headers["x-response-hook"] == "ran"


def test_a_client_that_leaves_while_the_hook_runs(gw, up):
    host, port = gw.url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"GET /slow/echo HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.close()
    time.sleep(1.3)
    assert requests.get(gw.url + "/rewrite/echo", timeout=10).status_code == 201


def test_an_async_response_hook_refuses_its_api_at_load(gw, up):
    assert requests.get(gw.url + "/asyncresp/echo", timeout=10).status_code == 404
    assert "a response hook is a plain (Tyk-style) function" in gw.log
    assert requests.get(gw.url + "/same/echo", timeout=10).status_code == 200
