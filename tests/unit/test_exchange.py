"""The exchange state machine driven without sockets (``tests/kit/memnet.py``): a real gateway
on the memory store, a real client ``HttpConnection`` and real pooled ``UpstreamConnection``s,
each over a fake transport that records its writes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kit.apis import classic_api, rights, token_api
from tests.kit.memnet import UPSTREAM_URL, Wire, run
from tests.kit.procs import SECRET


def apis() -> list[dict]:
    return [classic_api("k", "/k/", UPSTREAM_URL), token_api("tok", UPSTREAM_URL)]


def response(body: bytes, status: bytes = b"200 OK", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %b\r\nContent-Length: %d\r\n%b\r\n%b" % (status, len(body), extra, body)


def split(raw: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, headers (lower-case names) and body of one response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def test_a_keyless_request_is_proxied_and_its_connection_pooled(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /k/get?x=1 HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Hop\r\n"
                  b"X-Hop: dropped\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.9\r\nX-Keep: yes\r\n\r\n")
        sent = await wire.upstream_request(0)
        status_line, headers, _ = split(sent)
        assert status_line == b"GET /get?x=1 HTTP/1.1"  # the listen path stripped, the query kept
        assert headers[b"host"] == b"127.0.0.1:9"
        assert headers[b"x-keep"] == b"yes"
        assert b"x-hop" not in headers and b"te" not in headers and b"connection" not in headers
        assert headers[b"x-forwarded-for"] == b"10.0.0.9, 127.0.0.1"
        assert headers[b"x-forwarded-host"] == b"gw.example"
        assert wire.client.writes == []  # nothing answered before the upstream does
        conn, transport = wire.upstream(0)
        conn.data_received(response(b"hello", extra=b"X-Up: 1\r\nConnection: keep-alive\r\n"))
        status_line, headers, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 200 OK" and body == b"hello"
        assert headers[b"x-up"] == b"1" and headers[b"content-length"] == b"5" and b"date" in headers
        pool = conn.pool
        assert list(pool.idle) == [conn] and not transport.closed  # back in the pool for the next request
        assert not wire.client.closed

    run(scenario())


def test_a_denial_is_answered_locally_and_no_upstream_is_dialled(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /tok/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.settle(lambda: wire.client.writes, "the denial")
        status_line, headers, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 401 Unauthorized"
        assert json.loads(body) == {"error": "Authorization field missing"}
        assert headers[b"connection"] == b"keep-alive"
        assert wire.upstreams.connections == []
        wire.send(b"GET /tok/x HTTP/1.1\r\nHost: gw\r\nAuthorization: no-such-key\r\n\r\n")
        await wire.settle(lambda: wire.client.writes, "the second denial")
        status_line, _, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 403 Forbidden"
        assert json.loads(body) == {"error": "Access to this API has been disallowed"}
        assert wire.upstreams.connections == []

    run(scenario())


def test_a_pipelined_pair_is_answered_in_order_on_one_upstream_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /k/first HTTP/1.1\r\nHost: gw\r\n\r\nGET /k/second HTTP/1.1\r\nHost: gw\r\n\r\n")
        first = await wire.upstream_request(0)
        assert first.startswith(b"GET /first HTTP/1.1\r\n")
        conn, transport = wire.upstream(0)
        assert transport.writes == []  # the second waits for the first answer
        conn.data_received(response(b"one"))
        assert split(wire.client.take())[2] == b"one"
        second = await wire.upstream_request(0)  # the same, now pooled, connection
        assert second.startswith(b"GET /second HTTP/1.1\r\n") and len(wire.upstreams.connections) == 1
        conn.data_received(response(b"two"))
        assert split(wire.client.take())[2] == b"two"

    run(scenario())


def test_a_pipelined_denial_waits_for_the_answer_before_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /k/slow HTTP/1.1\r\nHost: gw\r\n\r\nGET /tok/x HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.upstream_request(0)
        for _ in range(50):
            await wire.settle(lambda: True, "a loop turn")
        assert wire.client.writes == []  # the 401 is ready but must not overtake the first answer
        wire.upstream(0)[0].data_received(response(b"first"))
        await wire.settle(lambda: b"401" in b"".join(wire.client.writes), "the queued denial")
        out = wire.client.take()
        assert out.index(b"first") < out.index(b"HTTP/1.1 401")

    run(scenario())


def test_expect_100_continue_is_answered_before_the_body_is_forwarded(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"POST /k/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        head = await wire.upstream_request(0)
        assert wire.client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        _, headers, body = split(head)
        assert b"expect" not in headers and headers[b"content-length"] == b"4" and body == b""
        wire.send(b"abcd")
        conn, transport = wire.upstream(0)
        assert transport.take() == b"abcd"  # streamed straight through once attached
        conn.data_received(response(b"", status=b"201 Created"))
        assert split(wire.client.take())[0] == b"HTTP/1.1 201 Created"

    run(scenario())


def test_no_100_continue_for_an_http10_client(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"POST /k/upload HTTP/1.0\r\nHost: gw\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        await wire.upstream_request(0)
        assert wire.client.writes == []

    run(scenario())


def test_a_reused_connection_lost_before_the_answer_is_retried_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /k/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.upstream_request(0)
        stale, _ = wire.upstream(0)
        stale.data_received(response(b"a"))
        wire.client.take()
        wire.send(b"GET /k/b HTTP/1.1\r\nHost: gw\r\n\r\n")
        first_try = await wire.upstream_request(0)  # the pooled connection is reused ...
        assert stale.reused
        stale.connection_lost(None)  # ... and the upstream had closed it meanwhile
        second_try = await wire.upstream_request(1)
        assert second_try == first_try  # the same request, replayed on a fresh connection
        wire.upstream(1)[0].data_received(response(b"b"))
        status_line, _, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 200 OK" and body == b"b"
        # A second loss of the same request is not retried again: 502.
        fresh, _ = wire.upstream(1)
        wire.send(b"GET /k/c HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.upstream_request(1)
        fresh.connection_lost(None)
        await wire.upstream_request(2)
        wire.upstream(2)[0].connection_lost(None)
        status_line, _, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 502 Bad Gateway"
        assert json.loads(body) == {"error": "There was a problem proxying the request"}

    run(scenario())


def test_a_request_with_a_body_is_not_replayed(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /k/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.upstream_request(0)
        pooled, _ = wire.upstream(0)
        pooled.data_received(response(b"a"))
        wire.client.take()
        wire.send(b"POST /k/b HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\nhi")
        await wire.upstream_request(0)
        pooled.connection_lost(None)
        assert split(wire.client.take())[0] == b"HTTP/1.1 502 Bad Gateway"
        assert len(wire.upstreams.connections) == 1  # no second attempt

    run(scenario())


def test_local_answers_hello_and_the_gateway_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"GET /hello HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.settle(lambda: wire.client.writes, "the /hello answer")
        status_line, headers, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 200 OK" and headers[b"content-type"] == b"application/json"
        assert json.loads(body)["status"] == "pass"
        wire.send(b"GET /tyk/apis HTTP/1.1\r\nHost: localhost\r\nX-Tyk-Authorization: wrong\r\n\r\n")
        await wire.settle(lambda: wire.client.writes, "the refusal")
        status_line, _, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 403 Forbidden"
        assert json.loads(body)["message"] == "Attempted administrative access with invalid or missing key!"
        payload = json.dumps({"org_id": "default", "access_rights": rights("tok")}).encode()
        wire.send(b"POST /tyk/keys/create HTTP/1.1\r\nHost: localhost\r\nX-Tyk-Authorization: %b\r\n"
                  b"Content-Length: %d\r\n\r\n%b" % (SECRET.encode(), len(payload), payload))
        await wire.settle(lambda: wire.client.writes, "the created key")
        status_line, _, body = split(wire.client.take())
        assert status_line == b"HTTP/1.1 200 OK" and json.loads(body)["action"] == "added"
        key = json.loads(body)["key"].encode()
        wire.send(b"GET /tok/with-key HTTP/1.1\r\nHost: gw\r\nAuthorization: %b\r\n\r\n" % key)
        sent = await wire.upstream_request(0)  # the new key opens the protected API at once
        assert sent.startswith(b"GET /with-key HTTP/1.1\r\n")

    run(scenario())


def test_a_refused_head_closes_the_connection_without_an_upstream(tmp_path: Path) -> None:
    async def scenario() -> None:
        wire = await Wire.start(tmp_path, apis())
        wire.send(b"POST /k/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\nGET /k/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n")
        await wire.settle(lambda: wire.client.closed, "the close")
        status_line, headers, _ = split(wire.client.take())
        assert status_line == b"HTTP/1.1 400 Bad Request" and headers[b"connection"] == b"close"
        assert wire.upstreams.connections == []

    run(scenario())
