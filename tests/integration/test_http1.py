"""HTTP/1.x proxy behaviour end to end: a real gateway process, the real upstream, raw sockets.

Every test checks both sides: what the client got, and what the upstream saw (or did not see).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterator

import pytest

from tests.kit.procs import Gateway, echo, headers_of
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.scripted import ScriptedUpstream
from tests.kit.upstream import PATTERN

DOMAIN = "api.example.com"


def pattern_sha(size: int) -> str:
    """sha256 of the upstream's ``/bytes/N`` body."""
    h = hashlib.sha256()
    left = size
    while left:
        part = PATTERN[: min(left, len(PATTERN))]
        h.update(part)
        left -= len(part)
    return h.hexdigest()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    oas = {
        "openapi": "3.0.3",
        "info": {"title": "OAS keyless", "version": "1"},
        "paths": {},
        "x-tyk-api-gateway": {
            "info": {"id": "oas", "name": "OAS keyless", "state": {"active": True}},
            "upstream": {"url": upstream.url + "/oas-base"},
            "server": {"listenPath": {"value": "/oas/", "strip": True}},
        },
    }
    apis = [
        classic_api("k", "/k/", upstream.url),
        classic_api("nostrip", "/nostrip/", upstream.url, proxy={"strip_listen_path": False}),
        classic_api("based", "/based/", upstream.url + "/base/"),
        classic_api("dom", "/d/", upstream.url + "/from-domain", domain=DOMAIN),
        classic_api("anyhost", "/d/", upstream.url + "/from-any-host"),
        classic_api("keephost", "/keephost/", upstream.url, proxy={"preserve_host_header": True}),
        classic_api("protected", "/protected/", upstream.url, use_keyless=False),
        oas,
    ]
    gateway = Gateway(tmp_path_factory.mktemp("http1"), apis)
    yield gateway
    gateway.stop()


# ---- keep-alive ------------------------------------------------------------------------------


def test_http11_keep_alive_carries_several_requests(gw, up):
    with RawClient(gw.port) as c:
        for i in range(3):
            resp = c.request("GET", f"/k/echo/{i}")
            assert echo(resp)["path"] == f"/echo/{i}"
            assert resp.header("connection") is None  # 1.1 default: stays open
        resp = c.request("GET", "/k/echo/last", headers="Connection: close\r\n")
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()
    seen = up.seen()
    assert [r["path"] for r in seen] == ["/echo/0", "/echo/1", "/echo/2", "/echo/last"]
    # The gateway pools its upstream connection: sequential requests share one.
    assert len({r["peer"] for r in seen}) == 1


def test_http10_keep_alive_on_request_and_close_by_default(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"GET /k/echo/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = c.read_response()
        assert first.header("connection").lower() == "keep-alive"
        assert echo(first)["path"] == "/echo/a"
        c.send(b"GET /k/echo/b HTTP/1.0\r\n\r\n")
        second = c.read_response()
        assert echo(second)["path"] == "/echo/b"
        assert second.header("connection") == "close"
        assert c.closed_by_peer()
    assert [r["path"] for r in up.seen()] == ["/echo/a", "/echo/b"]
    # The upstream always gets HTTP/1.1 framing from us, never the client's 1.0 semantics.
    assert all(r["method"] == "GET" for r in up.seen())


def test_http10_client_gets_a_chunked_upstream_body_delimited_by_close(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"GET /k/bytes/70000?chunked=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 200
        assert resp.header("transfer-encoding") is None and resp.header("connection") == "close"
        assert hashlib.sha256(resp.body).hexdigest() == pattern_sha(70000)
        assert c.closed_by_peer()


# ---- pipelining ------------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(gw, up):
    body = b"pipelined body"
    batch = (
        b"GET /k/delay/0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /k/echo/2 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /k/echo/3 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b"
        b"GET /nothing-here HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /k/echo/5?q=5 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % (len(body), body)
    )
    with RawClient(gw.port) as c:
        c.send(batch)
        first = c.read_response()
        assert first.status == 200 and json.loads(first.body) == {"delayed": True}
        assert echo(c.read_response())["path"] == "/echo/2"
        third = echo(c.read_response())
        assert third["path"] == "/echo/3"
        assert third["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert c.read_response().status == 404
        fifth = echo(c.read_response())
        assert fifth["path"] == "/echo/5" and fifth["query"] == "q=5"
        assert c.closed_by_peer()
    assert [r["path"] for r in up.seen()] == ["/delay/0.3", "/echo/2", "/echo/3", "/echo/5"]


def test_many_pipelined_requests_beyond_the_queue_cap(gw, up):
    # More requests than max_pipelined_requests (32) in one write: reading pauses while the
    # queue is full and resumes as it drains; every answer comes back, in order.
    count = 100
    with RawClient(gw.port) as c:
        c.send(b"".join(b"GET /k/echo/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(count)))
        paths = [echo(c.read_response())["path"] for _ in range(count)]
    assert paths == [f"/echo/{i}" for i in range(count)]
    assert [r["path"] for r in up.seen()] == paths


# ---- Expect: 100-continue --------------------------------------------------------------------


def test_expect_100_continue_gets_100_then_the_response(gw, up):
    body = b"x" * 5000
    with RawClient(gw.port) as c:
        c.send(
            b"POST /k/echo/expect HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % len(body)
        )
        interim = c.read_response()
        assert interim.status == 100
        c.send(body)
        final = echo(c.read_response())
        assert final["body_sha256"] == hashlib.sha256(body).hexdigest()
        # The expectation was ours to meet; the upstream never sees it.
        assert "expect" not in headers_of(final)
        # The connection is still usable.
        assert echo(c.request("GET", "/k/echo/after"))["path"] == "/echo/after"
    assert [r["path"] for r in up.seen()] == ["/echo/expect", "/echo/after"]


def test_expect_100_continue_on_a_gateway_api_request(gw, up):
    # Local answers (the Gateway API, /hello) also wait for the body: they ask for it too,
    # instead of leaving the client to give up waiting (curl waits a second).
    body = b'{"x": 1}'
    with RawClient(gw.port) as c:
        c.send(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
        c.sock.settimeout(2)  # curl would give up waiting after 1 s
        assert c.read_response().status == 100
        c.sock.settimeout(5)
        c.send(body)
        assert c.read_response().status == 200
    assert up.seen() == []


def test_expect_100_continue_is_ignored_on_http10(gw, up):
    # RFC 9110 §10.1.1: an HTTP/1.0 client does not understand interim responses.
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo/old HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        c.sock.settimeout(0.3)
        with pytest.raises(OSError):
            c.sock.recv(1)  # nothing comes before the body
        c.sock.settimeout(5)
        c.send(b"hello")
        resp = c.read_response()
        assert resp.status == 200 and json.loads(resp.body)["body_length"] == 5
    assert [r["path"] for r in up.seen()] == ["/echo/old"]


def test_unknown_expectation_gets_417(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\nhello")
        resp = c.read_response()
        assert resp.status == 417
        assert c.closed_by_peer()
    assert up.seen() == []


@pytest.mark.parametrize(
    "path,status",
    [("/not-served/x", 404), ("/protected/x", 401)],
    ids=["unrouted", "denied"],
)
def test_expect_on_a_refused_request_gets_the_final_status_without_100(gw, up, path, status):
    with RawClient(gw.port) as c:
        c.send(
            b"POST %b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n" % path.encode()
        )
        resp = c.read_response()
        assert resp.status == status
        assert resp.header("content-type") == "application/json"
        # The body was never asked for, so the connection cannot be reused.
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert up.seen() == []


# ---- bodies in both directions ---------------------------------------------------------------


def test_content_length_request_body_is_forwarded_intact(gw, up):
    body = bytes(range(256)) * 4000
    with RawClient(gw.port) as c:
        got = echo(c.request("PUT", "/k/echo/cl", body=body))
    assert got["method"] == "PUT"
    assert got["body_length"] == len(body)
    assert got["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert headers_of(got)["content-length"] == str(len(body))
    assert "transfer-encoding" not in headers_of(got)


def test_chunked_request_body_is_forwarded_chunked_and_intact(gw, up):
    parts = [b"a" * 1, b"b" * 70000, b"c" * 3, bytes(range(256)) * 100]
    framed = b"".join(b"%x;ext=1\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: t\r\n\r\n"
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + framed)
        got = echo(c.read_response())
        assert echo(c.request("GET", "/k/echo/next"))["path"] == "/echo/next"
    whole = b"".join(parts)
    assert got["body_length"] == len(whole)
    assert got["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert headers_of(got)["transfer-encoding"] == "chunked"
    assert "content-length" not in headers_of(got)
    # Trailers never become headers.
    assert "x-trailer" not in headers_of(got)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_response_bodies_stream_back_intact(gw, up, chunked):
    size = 300_001
    with RawClient(gw.port) as c:
        resp = c.request("GET", f"/k/bytes/{size}" + ("?chunked=1" if chunked else ""))
        assert resp.status == 200
        assert resp.chunked is chunked
        if not chunked:
            assert resp.header("content-length") == str(size)
        assert hashlib.sha256(resp.body).hexdigest() == pattern_sha(size)
        assert echo(c.request("GET", "/k/echo/after"))["path"] == "/echo/after"


# ---- HEAD, 204, 304 --------------------------------------------------------------------------


def test_head_response_has_the_length_and_no_body(gw, up):
    with RawClient(gw.port) as c:
        c.send(
            b"HEAD /k/bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"HEAD /k/bytes/1000?chunked=1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /k/echo/after-head HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        head = c.read_response(head_only=True)
        assert head.status == 200 and head.header("content-length") == "1000"
        chunked_head = c.read_response(head_only=True)
        assert chunked_head.status == 200
        # If any body byte had leaked, this would not parse as the next response.
        assert echo(c.read_response())["path"] == "/echo/after-head"
    assert [(r["method"], r["path"]) for r in up.seen()] == [
        ("HEAD", "/bytes/1000"),
        ("HEAD", "/bytes/1000"),
        ("GET", "/echo/after-head"),
    ]


def test_head_body_sent_by_a_broken_upstream_never_reaches_the_client(make_gateway):
    # An upstream that answers HEAD with body bytes in the same segment: forwarding them would
    # let the upstream inject a response into the client's pipeline.
    injected = b"HTTP/1.1 299 Injected\r\nContent-Length: 0\r\n\r\n"

    def script(conn, n):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(injected), injected))

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            c.send(b"HEAD /s/x HTTP/1.1\r\nHost: a\r\n\r\n")
            head = c.read_response(head_only=True)
            assert head.status == 200 and head.header("content-length") == str(len(injected))
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            nxt = c.read_response()
            assert nxt.status == 200 and json.loads(nxt.body)["status"] == "pass"
    finally:
        scripted.stop()


def test_204_from_a_broken_upstream_is_cleaned_up(make_gateway):
    # Content-Length and a body on a 204 are both forbidden; neither may reach the client.
    def script(conn, n):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\nX-Up: %d\r\n\r\n{}" % n)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            for _ in range(2):
                resp = c.request("GET", "/s/x")
                assert resp.status == 204
                assert resp.header("content-length") is None
            c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
            assert c.read_response().status == 200
        assert [r[2] for r in scripted.requests] == ["/x", "/x"]
    finally:
        scripted.stop()


@pytest.mark.parametrize("version", ["1.1", "1.0"])
def test_close_delimited_upstream_body_is_reframed(make_gateway, version):
    # An upstream body with neither length nor chunking ends when the upstream closes; a 1.1
    # client gets it chunked on a connection that stays open, a 1.0 client delimited by close.
    body = b"until close " * 5000

    def script(conn, n):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            conn.send(body)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            c.send(b"GET /s/x HTTP/%b\r\nHost: a\r\n\r\n" % version.encode())
            resp = c.read_response()
            assert resp.status == 200 and resp.body == body
            if version == "1.1":
                assert resp.chunked
                c.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
                assert c.read_response().status == 200
            else:
                assert resp.header("connection") == "close" and c.closed_by_peer()
    finally:
        scripted.stop()


def test_informational_responses_from_the_upstream_are_not_forwarded(make_gateway):
    def script(conn, n):
        while conn.read_request() is not None:
            conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            conn.respond(b"final")

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            for _ in range(2):
                resp = c.request("GET", "/s/x")
                assert resp.status == 200 and resp.body == b"final"
    finally:
        scripted.stop()


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(gw, up, status):
    with RawClient(gw.port) as c:
        c.send(b"GET /k/status/%d HTTP/1.1\r\nHost: a\r\n\r\n" % status)
        resp = c.read_response()
        assert resp.status == status
        assert resp.header("transfer-encoding") is None
        if status == 204:
            assert resp.header("content-length") is None  # RFC 9110 §8.6
        assert echo(c.request("GET", "/k/echo/after"))["path"] == "/echo/after"
    assert [r["path"] for r in up.seen()] == [f"/status/{status}", "/echo/after"]


# ---- targets, routing, listen paths ----------------------------------------------------------


def test_query_string_is_passed_through_exactly(gw, up):
    with RawClient(gw.port) as c:
        got = echo(c.request("GET", "/k/echo?a=1&b=%20x&a=2&empty=&flag"))
    assert got["path"] == "/echo"
    assert got["query"] == "a=1&b=%20x&a=2&empty=&flag"


def test_strip_listen_path_on_and_off(gw, up):
    with RawClient(gw.port) as c:
        assert echo(c.request("GET", "/k/echo/x"))["path"] == "/echo/x"
        assert echo(c.request("GET", "/nostrip/echo/x"))["path"] == "/nostrip/echo/x"
        # The target URL's own path is kept as the base.
        assert echo(c.request("GET", "/based/echo/x?q=1"))["path"] == "/base/echo/x"
        # The listen path itself (with or without its slash) reaches the upstream root.
        assert echo(c.request("GET", "/based"))["path"] == "/base/"
        oas = echo(c.request("GET", "/oas/echo/y"))
        assert oas["path"] == "/oas-base/echo/y"
    assert [r["path"] for r in up.seen()] == [
        "/echo/x",
        "/nostrip/echo/x",
        "/base/echo/x",
        "/base/",
        "/oas-base/echo/y",
    ]


def test_listen_paths_match_on_segment_boundaries(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/kx/echo")
        assert resp.status == 404
    assert up.seen() == []


def test_host_routing_with_domain(gw, up):
    with RawClient(gw.port) as c:
        assert echo(c.request("GET", "/d/echo", host=DOMAIN))["path"] == "/from-domain/echo"
        assert echo(c.request("GET", "/d/echo", host=DOMAIN.upper() + ":8080"))["path"] == "/from-domain/echo"
        assert echo(c.request("GET", "/d/echo", host="other.example.com"))["path"] == "/from-any-host/echo"
        # An absolute-form target names the host too.
        c.send(b"GET http://%b/d/echo HTTP/1.1\r\nHost: %b\r\n\r\n" % (DOMAIN.encode(), DOMAIN.encode()))
        assert echo(c.read_response())["path"] == "/from-domain/echo"


def test_preserve_host_header(gw, up):
    with RawClient(gw.port) as c:
        kept = echo(c.request("GET", "/keephost/echo", host="client.example:81"))
        replaced = echo(c.request("GET", "/k/echo", host="client.example:81"))
    assert headers_of(kept)["host"] == "client.example:81"
    assert headers_of(replaced)["host"] == f"127.0.0.1:{up.port}"


def test_unmatched_path_gets_404_in_tyks_error_envelope(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/no/such/api")
        assert resp.status == 404
        assert resp.header("content-type") == "application/json"
        assert set(resp.json()) == {"error"} and resp.json()["error"]
        # An error answer does not end a healthy connection.
        assert echo(c.request("GET", "/k/echo/ok"))["path"] == "/echo/ok"
    assert [r["path"] for r in up.seen()] == ["/echo/ok"]


def test_protected_api_without_auth_is_refused_before_the_upstream(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/protected/echo")
    assert resp.status == 401
    assert resp.json() == {"error": "Authorization field missing"}
    assert up.seen() == []


def test_hello_answers_json(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/hello")
    assert resp.status == 200
    assert resp.header("content-type") == "application/json"
    doc = resp.json()
    assert doc["status"] == "pass" and doc["details"]["apis"]["loaded"] == 8
    assert up.seen() == []


# ---- headers ---------------------------------------------------------------------------------


def test_hop_by_hop_and_connection_listed_request_headers_are_dropped(gw, up):
    with RawClient(gw.port) as c:
        c.send(
            b"GET /k/echo HTTP/1.1\r\nHost: front.example\r\n"
            b"Connection: keep-alive, X-Forwarded-For, X-Secret\r\nConnection: X-Other\r\n"
            b"X-Secret: s\r\nX-Other: o\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
            b"Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\n"
            b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
            b"X-Kept: yes\r\n\r\n"
        )
        got = echo(c.read_response())
    headers = headers_of(got)
    for name in (
        "connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection",
        "proxy-authorization", "x-secret", "x-other",
    ):
        assert name not in headers, name
    assert headers["x-kept"] == "yes"
    # The client's Connection header cannot remove what the gateway sets; it only makes the
    # client's own X-Forwarded-For hop-by-hop, so the chain starts with the client.
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "front.example"
    assert headers["x-forwarded-proto"] == "http"
    names = [k.lower() for k, _ in got["headers"]]
    assert names.count("x-forwarded-for") == 1 and names.count("host") == 1


def test_x_forwarded_headers_are_set(gw, up):
    with RawClient(gw.port) as c:
        plain = headers_of(echo(c.request("GET", "/k/echo", host="gw.example:8080")))
        chained = headers_of(echo(c.request("GET", "/k/echo", headers="X-Forwarded-For: 198.51.100.7\r\n")))
    assert plain["x-forwarded-for"] == "127.0.0.1"
    assert plain["x-forwarded-proto"] == "http"
    assert plain["x-forwarded-host"] == "gw.example:8080"
    assert chained["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"


def test_forwarded_lines_follow_each_request_on_one_connection(gw, up):
    # The Host / X-Forwarded-* block is reused on a connection only while both hosts are the same.
    with RawClient(gw.port) as c:
        got = [
            headers_of(echo(c.request("GET", "/k/echo", host=host, headers=extra)))
            for host, extra in [
                ("one.example", ""),
                ("one.example", ""),
                ("two.example:81", ""),
                ("two.example:81", "X-Forwarded-For: 198.51.100.7\r\n"),
                ("two.example:81", ""),
                ("one.example", "Forwarded: for=192.0.2.1\r\n"),
                ("one.example", ""),
            ]
        ]
    assert [h["x-forwarded-host"] for h in got] == ["one.example"] * 2 + ["two.example:81"] * 3 + ["one.example"] * 2
    assert [h["x-forwarded-for"] for h in got] == ["127.0.0.1"] * 3 + ["198.51.100.7, 127.0.0.1"] + ["127.0.0.1"] * 3
    assert got[5]["forwarded"] == 'for=192.0.2.1, for=127.0.0.1;proto=http;host="one.example"'
    assert got[6]["forwarded"] == 'for=127.0.0.1;proto=http;host="one.example"'
    assert len({h["host"] for h in got}) == 1  # the upstream's own Host, whatever the client sent


def test_hop_by_hop_response_headers_are_dropped(gw, up):
    query = "Keep-Alive=timeout%3D5&Connection=X-Internal%2C+X-Also&X-Internal=1&X-Also=2&Proxy-Connection=x&Upgrade=h2c&X-Public=ok"
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/k/headers?" + query)
        assert resp.status == 200
        names = resp.header_names()
        for name in ("keep-alive", "x-internal", "x-also", "proxy-connection", "upgrade"):
            assert name not in names, name
        assert resp.header("x-public") == "ok"
        assert resp.header("connection") is None  # ours: a 1.1 keep-alive answer needs none
        assert echo(c.request("GET", "/k/echo/after"))["path"] == "/echo/after"
    assert [r["path"] for r in up.seen()] == ["/headers", "/echo/after"]


# ---- path normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "target,upstream_path",
    [
        ("/k/a/../echo/1", "/echo/1"),
        ("/k/./echo/./2", "/echo/2"),
        ("/elsewhere/../k/echo/3", "/echo/3"),
        ("/k/echo/4/sub/..", "/echo/4/"),
    ],
)
def test_dot_segments_are_resolved_before_routing(gw, up, target, upstream_path):
    with RawClient(gw.port) as c:
        assert echo(c.request("GET", target))["path"] == upstream_path
    assert [r["path"] for r in up.seen()] == [upstream_path]


@pytest.mark.parametrize(
    "target",
    [
        "/k/%2e%2e/secret",
        "/k/%2E./secret",
        "/k/a%2fb",
        "/k/a%2Fb",
        "/k/a%5cb",
        "/k/a\\b",
        "/k/..\\secret",
        "/k/../../etc/passwd",
        "/k/%2e",
        "/k/..;/secret",
        "/k/.;x/secret",
        "/k/..;jsessionid=1",
    ],
)
def test_encoded_dots_slashes_backslashes_are_refused(gw, up, target):
    with RawClient(gw.port) as c:
        c.send(b"GET %b HTTP/1.1\r\nHost: a\r\n\r\n" % target.encode())
        resp = c.read_response()
        assert resp.status == 400
        assert resp.header("content-type") == "application/json"
        assert "error" in resp.json()
    assert up.seen() == []


def test_upstream_connections_are_pooled_per_target(gw, up):
    # Fresh client connections, one pooled upstream connection.
    for _ in range(4):
        with RawClient(gw.port) as c:
            echo(c.request("GET", "/k/echo", headers="Connection: close\r\n"))
            assert c.closed_by_peer()
        time.sleep(0.01)
    assert len({r["peer"] for r in up.seen()}) == 1
