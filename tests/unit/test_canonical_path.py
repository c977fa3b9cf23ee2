"""The canonical path, sans-IO: one table of what each request path becomes, one of what is refused.
Also the other pure pieces of the wire hardening: the canonical Host, the Forwarded element, the
headers a client may not send upstream, chunk-framing excess and the config keys.

Routing, policy checks and the upstream all see the string ``canonical_path`` returns, so an
upstream that decodes unreserved escapes, merges slashes or resolves dot segments reads the same
path the gateway checked.
"""

from __future__ import annotations

import pytest

from fastgate.http.h1 import (
    MAX_CHUNK_EXCESS,
    PATH_PARAMETERS_REFUSED,
    ProtocolError,
    canonical_host,
    canonical_path,
    chunk_framing_excess,
    forwarded_element,
    path_parameters_refusal,
    without_path_parameters,
)


@pytest.mark.parametrize(
    "path,canonical",
    [
        ("/", "/"),
        ("/api/private/x", "/api/private/x"),
        # RFC 3986 §6.2.2.2: unreserved characters decoded
        ("/api/priv%61te/x", "/api/private/x"),
        ("/%41%42%43%7a%30%39", "/ABCz09"),
        ("/%2D%5F%7E%7e", "/-_~~"),
        # §6.2.2.1: everything else stays encoded, hex upper-cased
        ("/a%3fb", "/a%3Fb"),
        ("/a%3Fb", "/a%3Fb"),
        ("/a%3bb", "/a%3Bb"),
        ("/a%25b", "/a%25b"),
        ("/a%2541", "/a%2541"),  # no double decoding
        ("/a%20b%0a", "/a%20b%0A"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%40b%3a%23", "/a%40b%3A%23"),
        # empty segments merged, as nginx's merge_slashes
        ("//", "/"),
        ("/api//private/x", "/api/private/x"),
        ("/api///private////x//", "/api/private/x/"),
        # dot segments resolved (after merging)
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a//../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/api/PRIV%61TE/../private/x", "/api/private/x"),
        ("/a/.hidden/..b/...", "/a/.hidden/..b/..."),
        # ";" parameters are kept here; the routed API decides (path_parameters_refusal)
        ("/api/private;a=b/x", "/api/private;a=b/x"),
        ("/a;x/../b", "/b"),
    ],
)
def test_canonical_path(path, canonical):
    assert canonical_path(path) == canonical
    assert canonical_path(canonical) == canonical  # idempotent


def test_a_plain_path_comes_back_as_the_same_object():
    path = "/api/v1/users/42"
    assert canonical_path(path) is path


@pytest.mark.parametrize(
    "path,reason",
    [
        ("/a%00b", "%00"),
        ("/a%ZZb", "malformed percent-encoding"),
        ("/a%", "malformed percent-encoding"),
        ("/a%4", "malformed percent-encoding"),
        ("/a%4g", "malformed percent-encoding"),
        ("/%u0061", "malformed percent-encoding"),
        ("/a%%41", "malformed percent-encoding"),
        ("/a/%2e%2e/b", "encoded dot"),
        ("/a/%2E/b", "encoded dot"),
        ("/a%2fb", "encoded dot segments, slashes"),
        ("/a%2Fb", "encoded dot segments, slashes"),
        ("/a%5cb", "backslashes"),
        ("/a\\b", "backslashes"),
        ("/..", "climbs above the root"),
        ("//..//..", "climbs above the root"),
        ("/a/..;/b", "path parameters"),
        ("/a/.;x/b", "path parameters"),
    ],
)
def test_canonical_path_refuses(path, reason):
    with pytest.raises(ProtocolError) as info:
        canonical_path(path)
    assert info.value.status == 400
    assert reason in info.value.message.lower()


@pytest.mark.parametrize(
    "path,stripped",
    [
        ("/api/private;a=b/x", "/api/private/x"),
        ("/a;x;y/b;/c;=", "/a/b/c"),
        ("/;x", "/"),
        ("/plain", "/plain"),
    ],
)
def test_without_path_parameters(path, stripped):
    assert without_path_parameters(path) == stripped


def test_path_parameters_refusal():
    assert path_parameters_refusal("/api/x;a=1", "/api", False) == PATH_PARAMETERS_REFUSED
    assert path_parameters_refusal("/api/x;a=1", "/api", True) is None
    assert path_parameters_refusal("/api;v=1/x", "/api", True) is not None
    assert path_parameters_refusal("/;v=1", "", True) is None


def test_api_definitions_opt_in_to_path_parameters_and_listen_paths_are_canonical():
    from fastgate.apidef.classic import decode_classic
    from fastgate.apidef.oas import decode_oas

    classic = {"api_id": "a", "proxy": {"listen_path": "/api//v%31/", "target_url": "http://u"}}
    spec = decode_classic(classic, "a.json")
    assert spec.allow_path_parameters is False
    assert spec.listen_path == "/api/v1/"
    assert decode_classic({**classic, "allow_path_parameters": True}, "a.json").allow_path_parameters is True
    oas = {
        "openapi": "3.0.3",
        "x-tyk-api-gateway": {
            "info": {"id": "o"},
            "upstream": {"url": "http://u"},
            "server": {"listenPath": {"value": "/o/"}, "allowPathParameters": True},
        },
    }
    assert decode_oas(oas, "o.json").allow_path_parameters is True


# ---- the canonical Host ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host,canonical",
    [
        ("api.test", "api.test"),
        ("api.test.", "api.test"),
        ("api.test.:8080", "api.test:8080"),
        ("api.test:0", "api.test:0"),
        ("api.test:65535", "api.test:65535"),
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("[::1]", "[::1]"),
        ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ("my_host-1.internal", "my_host-1.internal"),
        ("x" * 255, "x" * 255),
        ("", ""),
    ],
)
def test_canonical_host(host, canonical):
    assert canonical_host(host) == canonical


@pytest.mark.parametrize(
    "host,reason",
    [
        ("a b", "not a host name"),
        ("user@api.test", "not a host name"),
        ("api.test/x", "not a host name"),
        ("api.test?x", "not a host name"),
        ("api.test#x", "not a host name"),
        ("api.test\\x", "not a host name"),
        ("api%2etest", "not a host name"),
        ("[::1", "not a host name"),
        ("api.test:", "port"),
        ("api.test:8o", "port"),
        ("api.test:65536", "port"),
        ("api.test:000080", "port"),
        ("api.test:-1", "port"),
        ("api.test:1:2", "port"),
        ("api.test:\u00b2", "port"),
        ("x" * 256, "255"),
    ],
)
def test_canonical_host_refuses(host, reason):
    with pytest.raises(ProtocolError) as info:
        canonical_host(host)
    assert info.value.status == 400
    assert reason in info.value.message


# ---- Forwarded, and what a client may not say -----------------------------------------------


def test_forwarded_element():
    assert forwarded_element(b"127.0.0.1", b"http", b"api.test:8080") == b'for=127.0.0.1;proto=http;host="api.test:8080"'
    assert forwarded_element(b"::1", b"https", b"a") == b'for="[::1]";proto=https;host="a"'


@pytest.mark.parametrize(
    "name,dropped",
    [
        (b"x-client-cert", True),
        (b"x-ssl-client-verify", True),
        (b"x_ssl_client_s_dn", True),
        (b"x-forwarded-client-cert", True),
        (b"forwarded", True),
        (b"x-original-url", True),
        (b"x-rewrite-url", True),
        (b"transfer_encoding", True),
        (b"content_length", True),
        (b"x_forwarded_for", True),
        (b"x-forwarded_host", True),
        (b"proxy_connection", True),
        (b"te", True),
        (b"authorization", False),
        (b"x-custom_thing", False),
        (b"x-ssl-client", False),  # not the prefix
        (b"accept", False),
    ],
)
def test_headers_a_client_may_not_send_upstream(name, dropped):
    from fastgate.gateway import _dropped_from_client

    assert _dropped_from_client(name) is dropped


# ---- chunk framing -------------------------------------------------------------------------


def test_chunk_framing_excess():
    # Ordinary chunks pay for their size lines: no excess, however many.
    assert chunk_framing_excess(0, len(b"2000\r\n\r\n") * 100, 100, 0x2000 * 100) == 0
    assert chunk_framing_excess(0, len(b"1\r\n\r\n") * 1000, 1000, 1000) == 0
    # A long extension on a one-byte chunk is not paid for ...
    first = chunk_framing_excess(0, len(b"1;" + b"e" * 3000 + b"\r\n\r\n"), 1, 1)
    assert 0 < first < MAX_CHUNK_EXCESS
    # ... and excess accumulates across reads until it is refused.
    assert chunk_framing_excess(first, 3006, 1, 1) > MAX_CHUNK_EXCESS
    # A size line still arriving (no chunk ended) is all excess.
    assert chunk_framing_excess(0, 8192, 0, 0) == 8192
    # Data pays back: excess never goes below zero.
    assert chunk_framing_excess(100, 10, 1, 4096) == 0


# ---- configuration -------------------------------------------------------------------------


def test_wire_hardening_config_defaults_and_checks():
    from fastgate.config import ConfigError, config_from_mapping

    opts = config_from_mapping({}, environ={}).http_server_options
    assert opts.max_header_count == 100
    assert opts.min_request_body_rate == 1024
    assert opts.request_body_rate_grace == 10.0
    assert opts.set_forwarded_client_cert is False
    for bad in ({"max_header_count": 0}, {"min_request_body_rate": -1}, {"request_body_rate_grace": -1.0}):
        with pytest.raises(ConfigError):
            config_from_mapping({"http_server_options": bad}, environ={})
    env = {"FASTGATE_HTTP_SERVER_OPTIONS_MIN_REQUEST_BODY_RATE": "0"}
    assert config_from_mapping({}, environ=env).http_server_options.min_request_body_rate == 0
