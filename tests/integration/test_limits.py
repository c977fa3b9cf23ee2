"""Limits and timeouts end to end: header and body sizes, slow clients, idle connections, and
upstreams that refuse, hang, or close pooled connections.

Timeouts are short (about a second) so the module stays fast; each timing assertion allows for
the gateway's coarse clock (a deadline fires up to two 250 ms ticks late, never early).
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
import requests

from tests.kit.procs import Gateway, free_port
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.scripted import ScriptedUpstream

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 0.6
UPSTREAM_TIMEOUT = 1.2
MAX_HEADER = 4096
GLOBAL_BODY = 1000
LATE = 1.5  # two ticks plus generous slack for a loaded CI machine (a late tick makes timeouts later)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    apis = [
        classic_api("k", "/k/", upstream.url),
        classic_api("small", "/small/", upstream.url, max_request_body_bytes=100),
        classic_api("large", "/large/", upstream.url, max_request_body_bytes=100_000),
        classic_api(
            "tyklimit",
            "/tyklimit/",
            upstream.url,
            version_data={"not_versioned": True, "versions": {"Default": {"name": "Default", "global_size_limit": 200}}},
        ),
        classic_api("dead", "/dead/", f"http://127.0.0.1:{free_port()}"),
    ]
    settings = {
        "http_server_options": {
            "read_header_timeout": HEADER_TIMEOUT,
            "read_timeout": BODY_TIMEOUT,
            "idle_timeout": IDLE_TIMEOUT,
            "upstream_timeout": UPSTREAM_TIMEOUT,
            "upstream_connect_timeout": 1.0,
            "write_timeout": 1.0,
            "max_header_bytes": MAX_HEADER,
            "max_request_body_bytes": GLOBAL_BODY,
        }
    }
    gateway = Gateway(tmp_path_factory.mktemp("limits"), apis, settings)
    yield gateway
    gateway.stop()


def chunked(body: bytes, size: int = 64) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)) + b"0\r\n\r\n"


def post(c: RawClient, path: str, body: bytes, *, use_chunked: bool) -> None:
    if use_chunked:
        c.send(b"POST %b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n%b" % (path.encode(), chunked(body)))
    else:
        c.send(b"POST %b HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (path.encode(), len(body), body))


# ---- header size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * MAX_HEADER + b"\r\n\r\n",
        b"GET /k/echo HTTP/1.1\r\nHost: a\r\n" + b"X-Many: 0123456789abcdef0123456789\r\n" * 200 + b"\r\n",
        b"GET /k/echo?" + b"q" * MAX_HEADER + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        # Never finished: the gateway must not wait for the end of an endless header section.
        b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"v" * (3 * MAX_HEADER),
    ],
    ids=["one-large-header", "many-headers", "long-target", "unterminated"],
)
def test_header_section_over_max_header_bytes_gets_431(gw, up, head):
    with RawClient(gw.port) as c:
        c.send(head)
        resp = c.read_response()
        assert resp.status == 431
        assert resp.header("connection") == "close"
        assert set(resp.json()) == {"error"}
        assert c.closed_by_peer()
    assert up.seen() == []


def test_endless_header_of_a_pipelined_request_is_cut_off(gw, up):
    # The second request's head arrives while the first is still being answered: its size is
    # bounded all the same, instead of being buffered until it ends.
    results: dict[str, object] = {}
    with RawClient(gw.port, timeout=10) as c:
        c.send(b"GET /k/delay/0.5 HTTP/1.1\r\nHost: a\r\n\r\nGET /k/echo HTTP/1.1\r\nHost: a\r\nX-Endless: ")

        def flood() -> None:
            sent = 0
            try:
                while sent < 256 << 20:
                    c.sock.sendall(b"v" * (1 << 16))
                    sent += 1 << 16
            except OSError:
                pass
            results["sent"] = sent

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        first = c.read_response()
        assert first.status == 200 and first.json() == {"delayed": True}
        second = c.read_response()
        assert second.status == 431
        assert c.closed_by_peer()
        thread.join(10)
    assert results["sent"] < 64 << 20  # refused early, not after buffering it
    assert [r["path"] for r in up.seen()] == ["/delay/0.5"]


def test_header_section_under_the_limit_passes(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/k/echo/fits", headers="X-Fits: " + "v" * (MAX_HEADER - 1000) + "\r\n")
    assert resp.status == 200
    (seen,) = up.seen()
    assert dict((k.lower(), v) for k, v in seen["headers"])["x-fits"] == "v" * (MAX_HEADER - 1000)


# ---- body size -------------------------------------------------------------------------------


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    "prefix,limit",
    [("/k", GLOBAL_BODY), ("/small", 100), ("/tyklimit", 200), ("/large", 100_000)],
    ids=["global", "per-api", "tyk-global-size-limit", "per-api-above-global"],
)
def test_body_limits(gw, up, prefix, limit, use_chunked):
    with RawClient(gw.port) as c:
        post(c, prefix + "/echo/fits", b"f" * limit, use_chunked=use_chunked)
        fits = c.read_response()
        assert fits.status == 200 and fits.json()["body_length"] == limit
        post(c, prefix + "/echo/over", b"o" * (limit + 1), use_chunked=use_chunked)
        over = c.read_response()
        assert over.status == 413
        assert over.json() == {"error": "Request is too large"}
        assert over.header("connection") == "close"
        assert c.closed_by_peer()
    # The oversized request never reached the upstream as a request.
    assert [r["path"] for r in up.seen()] == ["/echo/fits"]


def test_announced_oversized_body_is_refused_without_100_continue(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"POST /small/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 413
        assert c.closed_by_peer()
    assert up.seen() == []


# ---- slow clients ----------------------------------------------------------------------------


def test_slow_header_gets_408_and_close(gw, up):
    with RawClient(gw.port) as c:
        start = time.monotonic()
        c.send(b"GET /k/echo HTTP/1.1\r\nHost: a\r\nX-Part")
        resp = c.read_response()
        elapsed = time.monotonic() - start
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert HEADER_TIMEOUT - 0.05 <= elapsed <= HEADER_TIMEOUT + LATE
    assert up.seen() == []


def test_trickled_header_does_not_extend_the_deadline(gw, up):
    with RawClient(gw.port) as c:
        start = time.monotonic()
        c.send(b"GET /k/echo HTTP/1.1\r\nHost: a\r\n")
        got_408 = False
        for _ in range(int(4 * HEADER_TIMEOUT / 0.2)):
            time.sleep(0.2)
            try:
                c.send(b"X-Drip: 1\r\n")
            except OSError:
                break
        resp = c.read_response()
        got_408 = resp.status == 408
        elapsed = time.monotonic() - start
    assert got_408
    assert elapsed <= HEADER_TIMEOUT + LATE + 0.2
    assert up.seen() == []


def test_header_timeout_applies_to_the_second_request_on_a_connection(gw, up):
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo/first").status == 200
        c.send(b"GET /k/echo/second HTTP/1.1\r\nHost")
        start = time.monotonic()
        resp = c.read_response()
        assert resp.status == 408
        assert time.monotonic() - start >= HEADER_TIMEOUT - 0.05
        assert c.closed_by_peer()
    assert [r["path"] for r in up.seen()] == ["/echo/first"]


def test_header_timeout_applies_to_a_head_pipelined_behind_another_request(gw, up):
    # The second head starts arriving while the first request is answered, then stalls.
    with RawClient(gw.port) as c:
        c.send(b"GET /k/echo/first HTTP/1.1\r\nHost: a\r\n\r\nGET /k/echo/second HTTP/1.1\r\nHost")
        start = time.monotonic()
        assert c.read_response().status == 200
        resp = c.read_response()
        elapsed = time.monotonic() - start
        assert resp.status == 408
        assert c.closed_by_peer()
    assert HEADER_TIMEOUT - 0.05 <= elapsed <= HEADER_TIMEOUT + LATE
    assert [r["path"] for r in up.seen()] == ["/echo/first"]


@pytest.mark.parametrize("use_chunked", [False, True], ids=["content-length", "chunked"])
def test_slow_body_gets_408_and_close(gw, up, use_chunked):
    with RawClient(gw.port) as c:
        if use_chunked:
            c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
        else:
            c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 500\r\n\r\nhel")
        start = time.monotonic()
        resp = c.read_response()
        elapsed = time.monotonic() - start
        assert resp.status == 408 and resp.header("connection") == "close"
        assert c.closed_by_peer()
    assert BODY_TIMEOUT - 0.05 <= elapsed <= BODY_TIMEOUT + LATE
    assert up.seen() == []  # the upstream never got a complete request


# ---- idle connections ------------------------------------------------------------------------


def test_idle_keep_alive_connection_is_closed(gw, up):
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo").status == 200
        start = time.monotonic()
        assert c.closed_by_peer(timeout=IDLE_TIMEOUT + LATE + 1)
        elapsed = time.monotonic() - start
        assert c.buf == b""  # closed silently: no 408 for a connection between requests
    assert IDLE_TIMEOUT - 0.05 <= elapsed <= IDLE_TIMEOUT + LATE


def test_a_connection_that_never_sends_is_closed(gw, up):
    with RawClient(gw.port) as c:
        assert c.closed_by_peer(timeout=IDLE_TIMEOUT + LATE + 1)
        assert c.buf == b""


def test_idle_timeout_does_not_cut_a_request_in_flight(gw, up):
    delay = IDLE_TIMEOUT + 0.3  # longer than idle_timeout, shorter than upstream_timeout
    with RawClient(gw.port) as c:
        resp = c.request("GET", f"/k/delay/{delay}")
        assert resp.status == 200 and resp.json() == {"delayed": True}
        assert c.request("GET", "/k/echo/after").status == 200


# ---- upstream failures -----------------------------------------------------------------------


def test_upstream_connect_failure_gets_502(gw, up):
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/dead/anything")
        assert resp.status == 502
        assert resp.header("content-type") == "application/json"
        assert set(resp.json()) == {"error"}
        # The client's connection is fine; the next request on it works.
        assert c.request("GET", "/k/echo/after").status == 200


def test_upstream_slower_than_upstream_timeout_gets_504(gw, up):
    with RawClient(gw.port) as c:
        start = time.monotonic()
        resp = c.request("GET", "/k/delay/3")
        elapsed = time.monotonic() - start
        assert resp.status == 504
        assert set(resp.json()) == {"error"}
        # The late answer must not be taken as the answer to the next request.
        after = c.request("GET", "/k/echo/after-504")
        assert after.status == 200 and after.json()["path"] == "/echo/after-504"
    assert UPSTREAM_TIMEOUT - 0.05 <= elapsed <= UPSTREAM_TIMEOUT + LATE


def test_upload_longer_than_upstream_timeout_is_not_cut(gw, up):
    # upstream_timeout measures the upstream, and read_timeout each pause of the client: a
    # client sending its body steadily for longer than either is cut by neither. Both framings
    # run side by side.
    pieces, step = 6, 0.45
    assert pieces * step > 2 * UPSTREAM_TIMEOUT and pieces * step > 2 * BODY_TIMEOUT and step < BODY_TIMEOUT
    results: dict[bool, tuple[int, object]] = {}

    def upload(use_chunked: bool) -> None:
        with RawClient(gw.port) as c:
            assert c.request("GET", "/k/echo/warm").status == 200  # pooled: the head goes out at once
            framing = b"Transfer-Encoding: chunked" if use_chunked else b"Content-Length: %d" % (pieces * 500)
            c.send(b"POST /large/echo/steady HTTP/1.1\r\nHost: a\r\n%b\r\n\r\n" % framing)
            for _ in range(pieces):
                c.send(b"1f4\r\n" + b"x" * 500 + b"\r\n" if use_chunked else b"x" * 500)
                time.sleep(step)
            if use_chunked:
                c.send(b"0\r\n\r\n")
            resp = c.read_response()
            results[use_chunked] = (resp.status, resp.json().get("body_length", resp.body))

    threads = [threading.Thread(target=upload, args=(flag,)) for flag in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert results == {False: (200, pieces * 500), True: (200, pieces * 500)}


def test_upstream_that_stops_reading_the_body_is_timed_out(make_gateway):
    # The upstream takes the head and then reads nothing: once its buffers are full the
    # upload stalls, and upstream_timeout runs from there.
    def script(conn, n):
        conn.sock.recv(100)
        time.sleep(UPSTREAM_TIMEOUT * 4)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway(
            [classic_api("s", "/s/", scripted.url)],
            {"http_server_options": {"upstream_timeout": UPSTREAM_TIMEOUT, "read_timeout": 30.0}},
        )
        size = 256 * 1024 * 1024
        with RawClient(gw.port, timeout=15) as c:
            c.send(b"POST /s/x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            start = time.monotonic()
            sent = 0
            block = b"u" * (1 << 20)
            try:
                while sent < size:
                    c.sock.sendall(block)
                    sent += len(block)
            except OSError:
                pass  # the gateway gave up and closed
            elapsed = time.monotonic() - start
            assert sent < size
            try:
                status = c.read_response().status
            except ConnectionError:
                status = None  # closed with our unread body in its buffer: a reset may win
            assert status in (504, None)
        assert elapsed < UPSTREAM_TIMEOUT + LATE + 3
    finally:
        scripted.stop()


def test_upstream_timeout_never_fires_early(gw, up):
    # Requests started at different points of the gateway's 250 ms tick, each answered a little
    # before upstream_timeout: none may get a 504.
    delay = UPSTREAM_TIMEOUT - 0.15
    results: list[int] = []

    def one() -> None:
        with RawClient(gw.port) as c:
            results.append(c.request("GET", f"/k/delay/{delay}").status)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
        time.sleep(0.025)
    for t in threads:
        t.join()
    assert results == [200] * 10


def test_client_that_stops_reading_is_dropped_after_write_timeout(gw, up):
    size = 1 << 30
    with RawClient(gw.port, timeout=10) as c:
        c.send(b"GET /k/bytes/%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
        time.sleep(2.5)  # buffers fill, then write_timeout (1 s) passes
        start = time.monotonic()
        received = 0
        while True:
            try:
                data = c.sock.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            received += len(data)
        assert received < size // 4  # the gateway gave up long before the end
        assert time.monotonic() - start < 5
    # Its upstream connection was not pooled with a response still pending on it.
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo/after").json()["path"] == "/echo/after"


def test_client_that_goes_away_mid_download_leaves_the_pool_clean(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"GET /k/bytes/50000000 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.sock.recv(65536)
    time.sleep(0.2)
    with RawClient(gw.port) as c:
        for i in range(3):
            assert c.request("GET", f"/k/echo/{i}").json()["path"] == f"/echo/{i}"
    seen = up.seen()
    download_peer = seen[0]["peer"]
    assert [r["path"] for r in seen] == ["/bytes/50000000", "/echo/0", "/echo/1", "/echo/2"]
    assert all(r["peer"] != download_peer for r in seen[1:])


def test_client_that_goes_away_mid_upload_is_not_answered_upstream(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"POST /large/echo/partial HTTP/1.1\r\nHost: a\r\nContent-Length: 90000\r\n\r\n" + b"p" * 1000)
        time.sleep(0.1)
    time.sleep(0.2)
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo/after").status == 200
    assert [r["path"] for r in up.seen()] == ["/echo/after"]


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw bytes",
        b"",
    ],
    ids=["garbage", "ambiguous-length", "unasked-switching-protocols", "closes-without-answer"],
)
def test_broken_upstream_answer_gets_502(make_gateway, answer):
    def script(conn, n):
        if conn.read_request() is not None and answer:
            conn.send(answer)
            time.sleep(0.3)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            resp = c.request("GET", "/s/x")
            assert resp.status == 502
            assert set(resp.json()) == {"error"}
        # A fresh (not pooled) connection that fails is not retried.
        assert len(scripted.requests) == 1
        assert "Traceback" not in gw.log  # an upstream's mistake is no gateway error
    finally:
        scripted.stop()


def test_upstream_stalling_mid_body_drops_the_client(make_gateway):
    # The head has gone out, so no error status can be sent: the client connection is cut, and
    # the truncated body is never passed off as complete.
    def script(conn, n):
        if conn.read_request() is not None:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"s" * 100)
            time.sleep(UPSTREAM_TIMEOUT + 2)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway(
            [classic_api("s", "/s/", scripted.url)], {"http_server_options": {"upstream_timeout": UPSTREAM_TIMEOUT}}
        )
        with RawClient(gw.port) as c:
            start = time.monotonic()
            with pytest.raises(ConnectionError, match="100 of 1000"):
                c.request("GET", "/s/x")
            assert UPSTREAM_TIMEOUT - 0.05 <= time.monotonic() - start <= UPSTREAM_TIMEOUT + LATE
    finally:
        scripted.stop()


def test_upstream_connection_close_answer_is_not_pooled(make_gateway):
    # The upstream says Connection: close but is slow to actually close: a pooled reuse would
    # hang and fail. The next request must go out on a fresh connection at once.
    def script(conn, n):
        if conn.read_request() is not None:
            conn.respond(b"conn %d" % n, extra=b"Connection: close\r\n")
            time.sleep(3)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/one").body == b"conn 0"
            start = time.monotonic()
            resp = c.request("POST", "/s/two", body=b"x")
            assert resp.status == 200 and resp.body == b"conn 1"
            assert time.monotonic() - start < 1
    finally:
        scripted.stop()


def test_pooled_connection_closed_by_the_upstream_is_not_used(make_gateway):
    # The upstream answers once per connection, then closes it (as a server with a short
    # keep-alive does): the next request, even a POST, goes out on a fresh connection.
    def script(conn, n):
        req = conn.read_request()
        if req is not None:
            conn.respond(b"conn %d" % n)
            time.sleep(0.05)

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/one").body == b"conn 0"
            time.sleep(0.3)  # the upstream's close reaches the gateway
            resp = c.request("POST", "/s/two", body=b"payload")
            assert resp.status == 200 and resp.body == b"conn 1"
        assert [(i, m, p) for i, m, p, _ in scripted.requests] == [(0, "GET", "/one"), (1, "POST", "/two")]
    finally:
        scripted.stop()


def dies_on_reuse(conn, n):
    """Connection 0 answers one request, then reads the next and closes without answering."""
    while True:
        req = conn.read_request()
        if req is None:
            return
        if n == 0 and len([r for r in conn.upstream.requests if r[0] == 0]) > 1:
            return
        conn.respond(b"conn %d" % n)


def test_bodyless_get_on_a_pooled_connection_that_died_is_retried_once(make_gateway):
    scripted = ScriptedUpstream(dies_on_reuse)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/one").body == b"conn 0"
            resp = c.request("GET", "/s/two")
            assert resp.status == 200 and resp.body == b"conn 1"
        assert [(i, p) for i, _, p, _ in scripted.requests] == [(0, "/one"), (0, "/two"), (1, "/two")]
    finally:
        scripted.stop()


def test_request_with_a_body_on_a_pooled_connection_that_died_is_not_retried(make_gateway):
    scripted = ScriptedUpstream(dies_on_reuse)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/one").body == b"conn 0"
            resp = c.request("POST", "/s/two", body=b"not twice")
            assert resp.status == 502
            assert set(resp.json()) == {"error"}
        # The POST reached the upstream once and was never sent again.
        assert [(i, m, p) for i, m, p, _ in scripted.requests] == [(0, "GET", "/one"), (0, "POST", "/two")]
    finally:
        scripted.stop()


def test_a_retry_happens_only_once(make_gateway):
    # Every reused connection dies: the retry goes out on a fresh connection, which also dies
    # on its first request; the client gets 502 instead of an endless loop.
    def script(conn, n):
        req = conn.read_request()
        if req is None:
            return
        if n == 0:
            conn.respond(b"first")
            conn.read_request()
        # n >= 1: read the request and close without answering

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        with RawClient(gw.port) as c:
            assert c.request("GET", "/s/one").body == b"first"
            assert c.request("GET", "/s/two").status == 502
        assert [(i, p) for i, _, p, _ in scripted.requests] == [(0, "/one"), (0, "/two"), (1, "/two")]
    finally:
        scripted.stop()


@pytest.mark.parametrize("shape", ["many-headers", "one-endless-header"])
def test_upstream_response_head_over_the_bound_is_a_502(make_gateway, shape):
    from fastgate.server.upstream import MAX_RESPONSE_HEAD

    def script(conn, n):
        if conn.read_request() is None:
            return
        conn.sock.sendall(b"HTTP/1.1 200 OK\r\n")
        try:
            if shape == "many-headers":
                line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
                for _ in range(MAX_RESPONSE_HEAD // len(line) + 10):
                    conn.sock.sendall(line)
                conn.sock.sendall(b"Content-Length: 0\r\n\r\n")
            else:
                conn.sock.sendall(b"X-Endless: ")
                for _ in range(3 * MAX_RESPONSE_HEAD // 65536 + 2):
                    conn.sock.sendall(b"e" * 65536)
        except OSError:
            pass  # the gateway gave up on us

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        r = requests.get(gw.url + "/s/x", timeout=10)
        assert r.status_code == 502
        assert r.json()["error"] == "There was a problem proxying the request"
    finally:
        scripted.stop()


def test_a_date_is_added_when_the_upstream_sends_none(make_gateway):
    def script(conn, n):
        while conn.read_request() is not None:
            conn.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    scripted = ScriptedUpstream(script)
    try:
        gw = make_gateway([classic_api("s", "/s/", scripted.url)])
        r = requests.get(gw.url + "/s/x", timeout=10)
        assert r.status_code == 200 and r.text == "ok"
        assert r.headers["Date"].endswith(" GMT")
    finally:
        scripted.stop()
