"""Request smuggling: every ambiguous or malformed framing gets 400 and the connection is closed.

Each case is sent followed by a second, smuggled request in the same segment. The gateway must
answer the bad request with a 4xx, close the connection, and the upstream must see nothing: not
the bad request, and not the request smuggled behind it.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Iterator

import pytest

from tests.kit.procs import Gateway
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.scripted import ScriptedUpstream

SMUGGLED = b"GET /k/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

CASES = {
    "content-length and transfer-encoding": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding then content-length": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n"
    ),
    "two differing content-lengths": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\nhello"
    ),
    "content-length list": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 44\r\n\r\nhello",
    "content-length with sign": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    "content-length not a number": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello",
    "gzip, chunked": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "chunked, identity": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "identity": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "two transfer-encoding headers": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunked in HTTP/1.0": b"POST /k/echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "xchunked": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "quoted chunked": b'POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n',
    "vertical tab before chunked": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"
    ),
    "space before colon": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "tab before colon": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
    "header line starting with a space": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "obs-fold": b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
    "obs-fold of transfer-encoding": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"
    ),
    "bare LF in the request line": b"GET /k/echo HTTP/1.1\nHost: a\r\n\r\n",
    "bare LF between headers": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nX-A: b\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bare LF everywhere": b"GET /k/echo HTTP/1.1\nHost: a\n\n",
    "bare CR in a header": b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-A: b\rX-B: c\r\n\r\n",
    "request line with extra token": b"GET /k/echo HTTP/1.1 extra\r\nHost: a\r\n\r\n",
    "request line without version": b"GET /k/echo\r\nHost: a\r\n\r\n",
    "bad method token": b"G(T /k/echo HTTP/1.1\r\nHost: a\r\n\r\n",
    "bad version": b"GET /k/echo HTTP/1.x\r\nHost: a\r\n\r\n",
    "control char in target": b"GET /k/e\x01cho HTTP/1.1\r\nHost: a\r\n\r\n",
    "upgrade with a content-length body": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
    ),
    "upgrade with a chunked body": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED)
    ),
    "missing host": b"GET /k/echo HTTP/1.1\r\n\r\n",
    "duplicate host": b"GET /k/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "nul in header value": b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "invalid chunk size": b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000000000001\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk without CRLF after data": (
        b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    ),
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    gateway = Gateway(tmp_path_factory.mktemp("smuggling"), [classic_api("k", "/k/", upstream.url)])
    yield gateway
    gateway.stop()


def warm_pool(gw: Gateway) -> None:
    """Leave an idle upstream connection in the gateway's pool, so that a request wrongly let
    through would be written to the upstream at once rather than after a connect."""
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo/warm").status == 200


@pytest.mark.parametrize("bad", list(CASES.values()), ids=list(CASES))
def test_ambiguous_request_is_refused_and_nothing_reaches_the_upstream(gw, upstream, bad):
    warm_pool(gw)
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(bad + SMUGGLED)
        resp = c.read_response()
        assert resp.status == 400, (resp.status, resp.body)
        assert resp.header("connection") == "close"
        assert resp.header("content-type") == "application/json"
        assert "error" in json.loads(resp.body)
        # Nothing more is answered: the smuggled request is never parsed.
        assert c.closed_by_peer()
        assert c.buf == b""
    assert upstream.seen() == []


def test_good_request_before_a_bad_one_is_answered_and_nothing_after_it_passes(gw, upstream):
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(
            b"GET /k/echo/first HTTP/1.1\r\nHost: a\r\n\r\n"
            + CASES["content-length and transfer-encoding"]
            + SMUGGLED
        )
        first = c.read_response()
        assert first.status == 200 and json.loads(first.body)["path"] == "/echo/first"
        assert c.read_response().status == 400
        assert c.closed_by_peer()
        assert c.buf == b""
    assert [r["path"] for r in upstream.seen()] == ["/echo/first"]


def test_a_body_that_looks_like_a_request_stays_a_body(gw, upstream):
    # The classic CL.TE payload, sent correctly framed: the "request" inside is data.
    upstream.reset()
    inner = b"GET /k/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo/outer HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (len(inner), inner))
        resp = c.read_response()
        assert resp.status == 200
        assert json.loads(resp.body)["body_length"] == len(inner)
    assert [r["path"] for r in upstream.seen()] == ["/echo/outer"]


def test_upstream_receives_our_framing_only(gw, upstream):
    # Whatever the client wrote, the upstream sees exactly one framing header that we chose.
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(
            b"POST /k/echo/framed HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
        )
        assert c.read_response().status == 200
    (record,) = upstream.seen()
    framing = [(k.lower(), v) for k, v in record["headers"] if k.lower() in ("transfer-encoding", "content-length")]
    assert framing == [("transfer-encoding", "chunked")]


@pytest.mark.parametrize("path", ["/not-served", "/k/%2e%2e/x"], ids=["unrouted", "refused-path"])
def test_nothing_pipelined_after_a_refused_request_with_a_body_is_processed(gw, upstream, path):
    # The refusal is written before the body is read, so the connection closes; the request
    # pipelined behind the body must not be proxied (nobody would ever get its answer).
    warm_pool(gw)
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(b"POST %b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" % path.encode() + SMUGGLED)
        resp = c.read_response()
        assert resp.status in (400, 404)
        assert resp.header("connection") == "close"
        assert c.closed_by_peer()
        assert c.buf == b""
    assert upstream.seen() == []


def test_nothing_after_a_connection_close_request_is_processed(gw, upstream):
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(b"GET /k/echo/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + SMUGGLED)
        resp = c.read_response()
        assert resp.status == 200 and resp.header("connection") == "close"
        assert c.closed_by_peer()
        assert c.buf == b""
    assert [r["path"] for r in upstream.seen()] == ["/echo/last"]


def test_trailers_never_become_headers(gw, upstream):
    # The chunked request is queued behind a slow one, so its trailers are parsed before its
    # head goes upstream: they must be dropped, not appended to the headers it is sent (or
    # authorised) with, and framing-looking trailers must not change how it is framed.
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(
            b"GET /k/delay/0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /k/echo/trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n"
            b"X-Injected: yes\r\nX-Forwarded-For: 6.6.6.6\r\nAuthorization: Bearer from-trailer\r\n"
            b"Host: evil.example\r\n\r\n"
            b"GET /k/echo/next HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert c.read_response().status == 200
        second = c.read_response()
        assert second.status == 200
        echoed = json.loads(second.body)
        third = c.read_response()
        assert third.status == 200 and json.loads(third.body)["path"] == "/echo/next"
    names = {k.lower(): v for k, v in echoed["headers"]}
    assert "x-injected" not in names and "authorization" not in names
    assert names["x-forwarded-for"] == "127.0.0.1"
    assert names["x-forwarded-host"] == "a"
    assert names["transfer-encoding"] == "chunked" and "content-length" not in names
    assert echoed["body_length"] == 5
    assert [r["path"] for r in upstream.seen()] == ["/delay/0.3", "/echo/trailers", "/echo/next"]


@pytest.mark.parametrize("trailer", [b"Content-Length: 44", b"Transfer-Encoding: gzip"])
def test_framing_trailer_is_refused(gw, upstream, trailer):
    # llhttp counts a framing trailer as framing: refused, and nothing after it is processed.
    warm_pool(gw)
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(
            b"GET /k/delay/0.2 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /k/echo/trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n%b\r\n\r\n" % trailer + SMUGGLED
        )
        assert c.read_response().status == 200
        assert c.read_response().status == 400
        assert c.closed_by_peer() and c.buf == b""
    assert [r["path"] for r in upstream.seen()] == ["/delay/0.2"]


# ---- response desync: an upstream that answers more than it was asked ------------------------

INJECTED = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED"


def over_answering(conn, n):
    """Answers every request; the first answer carries an unsolicited second response."""
    first = True
    while True:
        req = conn.read_request()
        if req is None:
            return
        if n == 0 and first:
            time.sleep(0.4)  # let a second request queue up behind this one
            answer = b"conn %d %s" % (n, req[1].encode())
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(answer), answer) + INJECTED)
            first = False
        else:
            conn.respond(b"conn %d %s" % (n, req[1].encode()))


def test_unsolicited_upstream_response_never_answers_a_pipelined_request(make_gateway):
    scripted = ScriptedUpstream(over_answering)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            c.send(b"GET /s/one HTTP/1.1\r\nHost: a\r\n\r\nGET /s/two HTTP/1.1\r\nHost: a\r\n\r\n")
            assert c.read_response().body == b"conn 0 /one"
            second = c.read_response()
            assert second.body != b"INJECTED"
            assert second.status == 502 or second.body.endswith(b" /two")
    finally:
        scripted.stop()


def test_unsolicited_upstream_response_never_reaches_another_client(make_gateway):
    # With one upstream connection per host, client B waits for client A's connection; the
    # bytes after A's response must not become B's response.
    scripted = ScriptedUpstream(over_answering)
    try:
        gw = make_gateway(
            [classic_api("s", "/s/", scripted.url)],
            {"http_server_options": {"max_upstream_connections_per_host": 1}},
        )
        results: dict[str, object] = {}

        def client_b() -> None:
            time.sleep(0.15)
            with RawClient(gw.port) as c:
                resp = c.request("GET", "/s/b")
                results["b"] = (resp.status, resp.body)

        thread = threading.Thread(target=client_b)
        thread.start()
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/a").body == b"conn 0 /a"
        thread.join(10)
        status, body = results["b"]
        assert body != b"INJECTED"
        assert status == 502 or body.endswith(b" /b")
    finally:
        scripted.stop()


def test_upgrade_without_a_body_is_served_and_the_connection_goes_on(gw, upstream):
    # We never switch protocols: the Upgrade request is proxied as a plain request (Upgrade is
    # hop-by-hop, dropped) and the connection carries on with HTTP/1.1.
    upstream.reset()
    with RawClient(gw.port) as c:
        c.send(
            b"GET /k/echo/up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"GET /k/echo/after HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        first = c.read_response()
        assert first.status == 200
        assert "upgrade" not in {k.lower() for k, _ in json.loads(first.body)["headers"]}
        assert json.loads(c.read_response().body)["path"] == "/echo/after"
    assert [r["path"] for r in upstream.seen()] == ["/echo/up", "/echo/after"]
