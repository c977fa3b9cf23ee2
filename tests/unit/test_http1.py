"""The pure HTTP/1.1 rules: request-target normalisation, the bytes of local responses, the
request object and the response-header filter (no sockets)."""

from __future__ import annotations

import json
import re
from email.utils import parsedate_to_datetime

import pytest

from fastgate.http.h1 import (
    CONTINUE_100,
    HOP_BY_HOP,
    LAST_CHUNK,
    ProtocolError,
    chunk,
    error_response,
    http_date,
    json_escape,
    normalize_target,
    simple_response,
    status_line,
)
from fastgate.http.request import Request
from fastgate.server.exchange import _drop_listed


def parse(raw: bytes) -> tuple[bytes, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode().partition(":")
        assert name.lower() not in headers, f"repeated header {name}"
        headers[name.lower()] = value.strip()
    return lines[0], headers, body


# ---- normalize_target ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target,expected",
    [
        (b"/", ("", "/", "")),
        (b"/a/b?x=1&y=%20", ("", "/a/b", "x=1&y=%20")),
        (b"/a?", ("", "/a", "")),
        (b"/a?b?c", ("", "/a", "b?c")),
        (b"/a/./b", ("", "/a/b", "")),
        (b"/a/../b", ("", "/b", "")),
        (b"/a/b/..", ("", "/a/", "")),
        (b"/a/b/.", ("", "/a/b/", "")),
        (b"/a/./../b/./c/..?q=/../", ("", "/b/", "q=/../")),
        (b"/a/.hidden/..b/...", ("", "/a/.hidden/..b/...", "")),
        (b"/a//b", ("", "/a/b", "")),  # empty segments merged (see test_canonical_path.py)
        (b"/%41%25", ("", "/A%25", "")),  # unreserved escapes decoded, others kept
        (b"http://Example.COM/a/../b?q", ("example.com", "/b", "q")),
        (b"https://example.com:8443", ("example.com:8443", "/", "")),
        (b"HTTP://example.com?q=1", ("example.com", "/", "q=1")),
    ],
)
def test_normalize_target(target, expected):
    assert normalize_target(target) == expected


@pytest.mark.parametrize(
    "target,reason",
    [
        (b"/a/%2e%2e/b", "Encoded dot"),
        (b"/a/%2E%2E/b", "Encoded dot"),
        (b"/a/.%2e/b", "Encoded dot"),
        (b"/a%2fb", "Encoded dot segments, slashes"),
        (b"/a%2Fb", "Encoded dot segments, slashes"),
        (b"/a%5cb", "backslashes"),
        (b"/a%5Cb", "backslashes"),
        (b"/a\\b", "Backslashes"),
        (b"/a/..\\b", "Backslashes"),
        (b"/..", "climbs above the root"),
        (b"/a/../../b", "climbs above the root"),
        (b"/a#frag", "fragment"),
        (b"/caf\xc3\xa9", "non-ASCII"),
        (b"*", "Malformed request target"),
        (b"example.com:443", "Malformed request target"),
        (b"ftp://example.com/", "Malformed request target"),
        (b"http://user@example.com/", "Malformed request target"),
        (b"http:///nohost", "Malformed request target"),
    ],
)
def test_normalize_target_refuses(target, reason):
    with pytest.raises(ProtocolError) as info:
        normalize_target(target)
    assert info.value.status == 400
    assert reason.lower() in info.value.message.lower()


def test_query_is_not_normalised():
    # Only the path is canonicalised; encoded characters in the query are the upstream's business.
    assert normalize_target(b"/a?p=%2e%2e%2f..\\") == ("", "/a", "p=%2e%2e%2f..\\")


def test_remembered_targets_are_exact_and_refusals_never_remembered():
    from fastgate.http import h1

    assert normalize_target(b"/m/%61/./b?q") == ("", "/m/a/b", "q")
    assert normalize_target(b"/m/%61/./b?q") == ("", "/m/a/b", "q")  # a hit: the same answer
    assert normalize_target(b"/M/%61/./b?q") == ("", "/M/a/b", "q")  # other bytes, other entry
    for _ in range(2):
        with pytest.raises(ProtocolError):
            normalize_target(b"/m/%2e%2e/x")
    assert b"/m/%2e%2e/x" not in h1._TARGETS
    for i in range(h1.MAX_TARGETS + 1):
        normalize_target(b"/fill/%d" % i)
    assert len(h1._TARGETS) <= h1.MAX_TARGETS


# ---- responses -------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_alive", [True, False])
def test_error_response_is_tyks_envelope(keep_alive):
    raw = error_response(404, "No API is served at this path", keep_alive=keep_alive)
    line, headers, body = parse(raw)
    assert line == b"HTTP/1.1 404 Not Found"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == ("keep-alive" if keep_alive else "close")
    parsedate_to_datetime(headers["date"])
    assert json.loads(body) == {"error": "No API is served at this path"}
    # Tyk's error template: pretty-printed with a four-space indent.
    assert body == b'{\n    "error": "No API is served at this path"\n}'


def test_error_response_escapes_the_message():
    raw = error_response(400, 'bad "quote" \\ and\nnewline', keep_alive=False)
    assert json.loads(parse(raw)[2]) == {"error": 'bad "quote" \\ and\nnewline'}


def test_error_response_extra_headers():
    raw = error_response(429, "Rate limit exceeded", keep_alive=True, extra=((b"Retry-After", b"3"),))
    line, headers, body = parse(raw)
    assert line == b"HTTP/1.1 429 Too Many Requests"
    assert headers["retry-after"] == "3"
    assert int(headers["content-length"]) == len(body)


def test_cached_error_response_carries_a_current_date(monkeypatch):
    first = parse(error_response(403, "cached", keep_alive=True))[1]["date"]
    import fastgate.http.h1 as http1

    monkeypatch.setattr(http1.time, "time", lambda: 4102444800.0)  # 2100-01-01
    second = parse(error_response(403, "cached", keep_alive=True))[1]["date"]
    assert second == "Fri, 01 Jan 2100 00:00:00 GMT"
    assert first != second


def test_simple_response():
    raw = simple_response(200, b'{"status":"ok"}', keep_alive=False, extra=((b"X-A", b"1"),))
    line, headers, body = parse(raw)
    assert line == b"HTTP/1.1 200 OK"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert headers["x-a"] == "1"
    assert body == b'{"status":"ok"}'


def test_status_lines():
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(431) == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"


def test_chunk_framing():
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_http_date():
    assert http_date(0) == b"Thu, 01 Jan 1970 00:00:00 GMT"
    assert re.fullmatch(rb"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", http_date())


def test_error_responses_with_extra_headers_are_not_shared():
    limited = error_response(429, "Rate limit exceeded", keep_alive=True, extra=((b"Retry-After", b"3"),))
    other = error_response(429, "Rate limit exceeded", keep_alive=True, extra=((b"Retry-After", b"9"),))
    plain = error_response(429, "Rate limit exceeded", keep_alive=True)
    assert parse(limited)[1]["retry-after"] == "3" and parse(other)[1]["retry-after"] == "9"
    assert "retry-after" not in parse(plain)[1]


def test_json_escape_keeps_a_message_one_json_string():
    assert json_escape('a"b\\c\r\nd') == 'a\\"b\\\\c\\r\\nd'
    assert json.loads('"%s"' % json_escape('"}, "injected": {"')) == '"}, "injected": {"'


def test_simple_response_content_type():
    line, headers, body = parse(simple_response(503, b"down", keep_alive=True, content_type=b"text/plain"))
    assert line == b"HTTP/1.1 503 Service Unavailable"
    assert headers["content-type"] == "text/plain" and headers["connection"] == "keep-alive"
    assert body == b"down"


def test_interim_and_hop_by_hop_constants():
    assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"
    for name in (b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                 b"proxy-authorization", b"proxy-connection"):
        assert name in HOP_BY_HOP
    assert b"content-length" not in HOP_BY_HOP and b"host" not in HOP_BY_HOP


def test_protocol_error_carries_the_status():
    err = ProtocolError(414, "URI too long")
    assert (err.status, err.message, str(err)) == (414, "URI too long", "URI too long")


# ---- the request object ----------------------------------------------------------------------


def test_request_header_lookup_is_case_insensitive_and_first_wins():
    req = Request()
    req.headers = [(b"X-Token", b"one"), (b"x-token", b"two"), (b"X-Tokens", b"other")]
    assert req.header(b"x-token") == b"one"
    assert req.header(b"x-missing") is None
    req.remove_header(b"x-token")
    assert req.headers == [(b"X-Tokens", b"other")]


@pytest.mark.parametrize(
    "chunked,length,has_body",
    [(False, None, False), (False, 0, False), (False, 5, True), (True, None, True)],
)
def test_request_has_body(chunked, length, has_body):
    req = Request()
    req.chunked, req.content_length = chunked, length
    assert req.has_body is has_body


# ---- response headers the upstream's Connection header names ---------------------------------


def test_headers_listed_in_the_upstream_connection_header_are_dropped():
    out = [b"HTTP/1.1 200 OK\r\n", b"X-Hop: 1\r\n", b"x-other: 2\r\n", b"Keep: 3\r\n"]
    _drop_listed(out, [b"x-hop", b"x-other", b"close", b""])
    assert out == [b"HTTP/1.1 200 OK\r\n", b"Keep: 3\r\n"]
    unchanged = [b"HTTP/1.1 200 OK\r\n", b"Keep-Alive: timeout=5\r\n"]
    _drop_listed(unchanged, [b"keep-alive", b"close"])  # these name no header of their own
    assert unchanged == [b"HTTP/1.1 200 OK\r\n", b"Keep-Alive: timeout=5\r\n"]


def test_response_fields_are_sorted_by_name_in_any_case():
    from fastgate.http import h1

    kinds = {
        b"Date": h1.FIELD_DATE,
        b"CONTENT-LENGTH": h1.FIELD_LENGTH,
        b"transfer-Encoding": h1.FIELD_TRANSFER_ENCODING,
        b"Connection": h1.FIELD_CONNECTION,
        b"Keep-Alive": h1.FIELD_HOP,
        b"Proxy-Authenticate": h1.FIELD_HOP,
        b"Upgrade": h1.FIELD_HOP,
        b"Content-Type": h1.FIELD_PASS,
        b"Set-Cookie": h1.FIELD_PASS,
        b"Content-Length-X": h1.FIELD_PASS,
    }
    for name, kind in kinds.items():
        assert h1.response_field_kind(name) == kind, name
        assert h1.response_field_kind(name) == kind, name  # remembered
    for i in range(h1.MAX_RESPONSE_FIELDS + 1):
        h1.response_field_kind(b"X-Fill-%d" % i)
    assert len(h1.RESPONSE_FIELDS) <= h1.MAX_RESPONSE_FIELDS
    assert h1.response_field_kind(b"CONNECTION") == h1.FIELD_CONNECTION  # also when not kept


def test_upstream_status_line_keeps_the_upstreams_reason():
    from fastgate.http.h1 import upstream_status_line

    assert upstream_status_line(200, b"Fine") == b"HTTP/1.1 200 Fine\r\n"
    assert upstream_status_line(200, b"") == b"HTTP/1.1 200 OK\r\n"
    assert upstream_status_line(599, b"") == b"HTTP/1.1 599 Unknown\r\n"


def test_response_field_lengths_cover_every_sorted_name():
    """``response_field_kind`` forwards a name whose length no sorted name has without looking
    it up: every hop-by-hop name, Date and Content-Length must have their length's bit set."""
    from fastgate.http import h1

    for name in h1.HOP_BY_HOP | {b"date", b"content-length"}:
        assert h1._SORTED_LENGTHS >> len(name) & 1, name
        assert h1.response_field_kind(name.upper()) != h1.FIELD_PASS, name
        assert h1.response_field_kind(name.title()) != h1.FIELD_PASS, name
    for name in (b"Server", b"Content-Type", b"ETag", b"X-" * 40, b""):
        assert h1.response_field_kind(name) == h1.FIELD_PASS, name


def test_special_request_field_lengths_cover_every_special_name():
    """The client side skips ``lower()`` for a field whose length no special name has."""
    from fastgate.server import protocol

    for name in protocol._SPECIAL:
        assert len(name) <= 17 and protocol._SPECIAL_LENGTHS >> len(name) & 1, name
