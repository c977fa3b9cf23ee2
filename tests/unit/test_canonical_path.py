"""The canonical path, sans-IO: one table of what each request path becomes, one of what is refused.

Routing, policy checks and the upstream all see the string ``canonical_path`` returns, so an
upstream that decodes unreserved escapes, merges slashes or resolves dot segments reads the same
path the gateway checked.
"""

from __future__ import annotations

import pytest

from fastgate.server.http1 import (
    PATH_PARAMETERS_REFUSED,
    ProtocolError,
    canonical_path,
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
