"""Wire-level hardening, end to end: header count, Host hygiene, headers only the gateway may set,
slow request bodies, and chunk-extension overhead. Every case checks what the client got and what
the upstream saw (or that it saw nothing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.kit.procs import Gateway, echo, headers_of
from tests.kit.apis import classic_api
from tests.kit.raw import RawClient
from tests.kit.tls import Pki, client_context, https_get
from tests.kit.gateway_api import error_of

DOMAIN = "api.test"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, upstream) -> Iterator[Gateway]:
    apis = [
        classic_api("k", "/k/", upstream.url),
        classic_api("dom", "/d/", upstream.url + "/from-domain", domain=DOMAIN),
        classic_api("anyhost", "/d/", upstream.url + "/from-any-host"),
    ]
    settings = {"http_server_options": {"max_request_body_bytes": 2000}}
    gateway = Gateway(tmp_path_factory.mktemp("wire"), apis, settings)
    yield gateway
    gateway.stop()


# ---- 18: number of header fields ------------------------------------------------------------


def test_more_than_100_header_fields_get_431(gw, up):
    many = "".join(f"X-H{i}: v\r\n" for i in range(100))  # plus Host: 101
    with RawClient(gw.port) as c:
        resp = c.request("GET", "/k/echo", headers=many)
        assert resp.status == 431
        assert "header" in error_of(resp).lower()
        assert c.closed_by_peer()
    assert up.seen() == []


def test_100_header_fields_are_fine(gw, up):
    many = "".join(f"X-H{i}: v\r\n" for i in range(99))  # plus Host: 100
    with RawClient(gw.port) as c:
        echo(c.request("GET", "/k/echo", headers=many))
    assert len(up.seen()) == 1


def test_max_header_count_is_configurable(make_gateway, upstream):
    upstream.reset()
    gw = make_gateway([classic_api("k", "/k/", upstream.url)], {"http_server_options": {"max_header_count": 5}})
    with RawClient(gw.port) as c:
        echo(c.request("GET", "/k/echo", headers="A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"))
    with RawClient(gw.port) as c:
        assert c.request("GET", "/k/echo", headers="A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n").status == 431
    assert len(upstream.seen()) == 1


# ---- 9: Host hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host,words",
    [
        ("a b", "host"),
        ("user@api.test", "host"),
        ("api.test/x", "host"),
        ("api.test?x", "host"),
        ("api.test#x", "host"),
        ("api.test\\x", "host"),
        ("api.test:", "port"),
        ("api.test:8o", "port"),
        ("api.test:65536", "port"),
        ("api.test:123456", "port"),
        ("a" * 256, "255"),
    ],
)
def test_invalid_host_is_refused(gw, up, host, words):
    with RawClient(gw.port) as c:
        c.send(b"GET /k/echo HTTP/1.1\r\nHost: %b\r\n\r\n" % host.encode())
        resp = c.read_response()
        assert resp.status == 400
        assert words in error_of(resp).lower()
    assert up.seen() == []


def test_valid_hosts_pass(gw, up):
    for host in ("a", "api.test:8080", "127.0.0.1:1", "[::1]:65535", "my_host.internal", "x" * 255):
        with RawClient(gw.port) as c:
            echo(c.request("GET", "/k/echo", host=host))
    assert len(up.seen()) == 6


def test_a_trailing_dot_routes_as_the_domain(gw, up):
    with RawClient(gw.port) as c:
        got = echo(c.request("GET", "/d/echo", host=DOMAIN + "."))
        assert got["path"] == "/from-domain/echo"
        assert headers_of(got)["x-forwarded-host"] == DOMAIN
        got = echo(c.request("GET", "/d/echo", host=DOMAIN + ".:8080"))
        assert got["path"] == "/from-domain/echo"


def test_invalid_host_in_an_absolute_target_is_refused(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"GET http://api.test:99999/k/echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert c.read_response().status == 400
    assert up.seen() == []


def test_https_absolute_target_on_a_plain_listener_is_refused(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"GET https://api.test/d/echo HTTP/1.1\r\nHost: api.test\r\n\r\n")
        resp = c.read_response()
        assert resp.status == 400
        assert "https" in error_of(resp).lower()
    assert up.seen() == []


# ---- 7: headers only the gateway may say ----------------------------------------------------

FORGED = (
    "X-Client-Cert: forged\r\n"
    "X-SSL-Client-Verify: SUCCESS\r\n"
    "X-SSL-Client-S-DN: CN=admin\r\n"
    "x-ssl-client-cert: forged\r\n"
    "X-Forwarded-Client-Cert: Hash=forged;Subject=\"CN=admin\"\r\n"
    "X-Original-URL: /admin\r\n"
    "X-Rewrite-URL: /admin\r\n"
    "X_Forwarded_For: 6.6.6.6\r\n"
    "X-Forwarded_Host: evil.example\r\n"
    "X_Forwarded_Proto: https\r\n"
    "Content_Length: 5\r\n"
    "Transfer_Encoding: chunked\r\n"
    "Proxy_Connection: close\r\n"
    "Keep_Alive: 1\r\n"
    "X_SSL_Client_Verify: SUCCESS\r\n"
    "X_Client_Cert: forged\r\n"
    "X-Custom_Thing: kept\r\n"
)
DROPPED = {
    "x-client-cert", "x-ssl-client-verify", "x-ssl-client-s-dn", "x-ssl-client-cert", "x-forwarded-client-cert",
    "x-original-url", "x-rewrite-url", "x_forwarded_for", "x-forwarded_host", "x_forwarded_proto", "content_length",
    "transfer_encoding", "proxy_connection", "keep_alive", "x_ssl_client_verify", "x_client_cert",
}


def test_headers_only_the_gateway_may_set_are_dropped(gw, up):
    with RawClient(gw.port) as c:
        got = echo(c.request("GET", "/k/echo", host="gw.example", headers=FORGED))
    names = [k.lower() for k, _ in got["headers"]]
    for name in DROPPED:
        assert name not in names, name
    assert headers_of(got)["x-custom_thing"] == "kept"  # an ordinary name with "_" passes
    assert headers_of(got)["x-forwarded-for"] == "127.0.0.1"
    assert headers_of(got)["x-forwarded-host"] == "gw.example"
    assert headers_of(got)["forwarded"] == 'for=127.0.0.1;proto=http;host="gw.example"'


def test_forwarded_is_rebuilt_and_the_clients_chain_extended(gw, up):
    with RawClient(gw.port) as c:
        got = echo(
            c.request(
                "GET", "/k/echo", host="gw.example:8080",
                headers="Forwarded: for=198.51.100.7;proto=https\r\nX-Forwarded-For: 198.51.100.7\r\n",
            )
        )
    record = headers_of(got)
    assert record["forwarded"] == 'for=198.51.100.7;proto=https, for=127.0.0.1;proto=http;host="gw.example:8080"'
    assert record["x-forwarded-for"] == "198.51.100.7, 127.0.0.1"
    assert [k.lower() for k, _ in got["headers"]].count("forwarded") == 1


def test_forwarded_listed_in_connection_is_not_kept(gw, up):
    with RawClient(gw.port) as c:
        got = echo(
            c.request("GET", "/k/echo", host="h", headers="Forwarded: for=6.6.6.6\r\nConnection: forwarded\r\n")
        )
    assert headers_of(got)["forwarded"] == 'for=127.0.0.1;proto=http;host="h"'


@pytest.mark.parametrize("enabled", [True, False])
def test_xfcc_is_set_only_from_the_verified_client_certificate(make_gateway, upstream, tmp_path, enabled):
    pki = Pki(tmp_path / "pki")
    ca = pki.ca()
    cert = pki.client(ca, common_name="workload-7")
    options = pki.server_settings(set_forwarded_client_cert=enabled)
    gw = make_gateway(
        [
            classic_api("m", "/m/", upstream.url, use_mutual_tls_auth=True,
                        client_certificates=[str(pki.ca_file(ca, "ca"))]),
        ],
        {"http_server_options": options},
    )
    upstream.reset()
    forged = {"X-Forwarded-Client-Cert": 'Hash=forged;Subject="CN=admin"', "X-SSL-Client-Verify": "SUCCESS"}
    status, body = https_get(gw.port, "/m/echo", client_context(pki, cert), headers=forged)
    assert status == 200, body
    record = headers_of(json.loads(body))
    assert "x-ssl-client-verify" not in record
    if enabled:
        subject = x509.load_pem_x509_certificate(cert.pem).subject.rfc4514_string()
        assert subject.startswith("CN=workload-7,")
        assert record["x-forwarded-client-cert"] == f'Hash={cert.sha256};Subject="{subject}"'
        assert record["forwarded"].startswith("for=127.0.0.1;proto=https;")
    else:
        assert "x-forwarded-client-cert" not in record


# ---- 6: slow request bodies ------------------------------------------------------------------


def test_a_trickled_body_is_cut_off_at_the_minimum_rate(make_gateway, upstream):
    upstream.reset()
    gw = make_gateway(
        [classic_api("k", "/k/", upstream.url)],
        {"http_server_options": {"read_timeout": 30.0, "min_request_body_rate": 100, "request_body_rate_grace": 1.0}},
    )
    with RawClient(gw.port, timeout=10) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        answer = b""
        c.sock.settimeout(0.2)
        while time.monotonic() - started < 8:
            try:
                c.send(b"x")  # 5 bytes a second, far below 100
            except OSError:
                break
            try:
                data = c.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            answer += data
            if not data:
                break
        elapsed = time.monotonic() - started
    # 1 s of grace plus what was received at 100 bytes/s (under 0.1 s), plus the clock's tick
    assert elapsed < 3.5, elapsed
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"slow" in answer


def test_a_fast_body_is_not_affected_by_the_minimum_rate(make_gateway, upstream):
    upstream.reset()
    gw = make_gateway(
        [classic_api("k", "/k/", upstream.url)],
        {"http_server_options": {"min_request_body_rate": 1000, "request_body_rate_grace": 0.5}},
    )
    body = b"y" * 3000
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 1000):  # 1000 bytes every 0.3 s: above the rate
            c.send(body[i : i + 1000])
            time.sleep(0.3)
        got = echo(c.read_response())
    assert got["body_length"] == 3000


# ---- 14: chunk extensions --------------------------------------------------------------------


def test_a_huge_chunk_extension_is_refused(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.1)
        c.send(b"1;" + b"e" * 8192 + b"\r\nx\r\n")
        resp = c.read_response()
        assert resp.status == 400
        assert "chunk" in error_of(resp).lower()
        assert c.closed_by_peer()


def test_many_chunks_with_extensions_cannot_stream_forever(make_gateway, upstream):
    # Every chunk carries 1 byte of data and 3000 bytes of extension: no progress, only framing.
    # No body limit here: the framing rule alone stops it.
    upstream.reset()
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.1)
        for _ in range(20):
            try:
                c.send(b"1;" + b"e" * 3000 + b"\r\nx\r\n")
            except OSError:
                break
            time.sleep(0.05)
        resp = c.read_response()
        assert resp.status == 400
        assert "chunk" in error_of(resp).lower()
    assert upstream.seen() == []  # the body never completed upstream


def test_chunk_lines_count_against_the_body_limit(gw, up):
    # 200 one-byte chunks with short extensions: 200 bytes of data, about 3400 bytes on the wire,
    # against max_request_body_bytes = 2000.
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.1)
        c.send(b"1;abcdefghij\r\nx\r\n" * 200)
        resp = c.read_response()
        assert resp.status == 413


def test_ordinary_chunked_bodies_still_pass(gw, up):
    with RawClient(gw.port) as c:
        c.send(b"POST /k/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(0.05)
        c.send(b"100;name=value\r\n" + b"z" * 256 + b"\r\n" + b"200\r\n" + b"z" * 512 + b"\r\n0\r\n\r\n")
        got = echo(c.read_response())
    assert got["body_length"] == 768
