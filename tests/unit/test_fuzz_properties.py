"""Property tests (hypothesis) of the sans-IO parts that read client input and definitions: no
exception escapes but the documented refusal, every refusal is a 4xx with a message, and the
canonical forms are idempotent. `bench/fuzz.py` drives the same kind of input at a running
gateway over sockets; this is the in-process half, a few hundred examples per property
(``FASTGATE_FUZZ_EXAMPLES=20000`` for a long run)."""

from __future__ import annotations

import base64
import json
import os
import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgate.apidef.loader import decode_definition
from fastgate.apidef.auth_settings import AuthSource
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.basic import parse_basic_credentials
from fastgate.auth.jwt.jose import Jws, parse as parse_jws
from fastgate.auth.signature import parse_digest, parse_http_date, parse_signature_header
from fastgate.auth.sources import compile_credential_check, compile_extractor
from fastgate.http.h1 import ProtocolError, canonical_host, canonical_path, normalize_target
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# FASTGATE_FUZZ_EXAMPLES raises the count for a long run (bench/README.md: fuzzing).
EXAMPLES = int(os.environ.get("FASTGATE_FUZZ_EXAMPLES", "300"))
PROFILE = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes a path is made of, weighted towards what breaks parsers: escapes, dots, slashes.
_PATH_ATOMS = st.sampled_from(["/", "//", ".", "..", "%", "%2e", "%2E", "%2f", "%5c", "%00", "%41", "%7e", "%zz",
                               "%u0061", ";", ";x=1", "\\", "?", "#", "a", "b", "api", "~", "-", "_", "é", " ",
                               "%25", "%3f", "@", ":", "\x00", "\x7f"])
_PATHS = st.lists(_PATH_ATOMS, max_size=16).map("".join)
_TARGETS = st.one_of(
    _PATHS.map(lambda p: ("/" + p).encode("utf-8", "surrogatepass")),
    st.tuples(st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "http:/", "//"]),
              st.text(string.ascii_letters + string.digits + ".-:@[]", max_size=20), _PATHS)
    .map(lambda t: "".join(t).encode("utf-8")),
    st.binary(max_size=64),
)


def _refusal_is_4xx(exc: ProtocolError) -> None:
    assert 400 <= exc.status < 500 and exc.message.strip(), (exc.status, exc.message)


@PROFILE
@given(_TARGETS)
def test_request_targets_are_split_or_refused_with_a_4xx(target: bytes) -> None:
    try:
        host, path, query = normalize_target(target)
    except ProtocolError as exc:
        _refusal_is_4xx(exc)
        return
    assert path.startswith("/")
    assert "#" not in path and "\\" not in path and "//" not in path
    assert all(seg not in (".", "..") for seg in path.split("/")), path
    assert canonical_path(path) == path  # what routing saw is canonical: a second pass is a no-op


@PROFILE
@given(_PATHS.map(lambda p: "/" + p))
def test_canonical_path_is_idempotent(path: str) -> None:
    try:
        once = canonical_path(path)
    except ProtocolError as exc:
        _refusal_is_4xx(exc)
        return
    assert canonical_path(once) == once


@PROFILE
@given(st.one_of(st.text(max_size=40), st.text(string.ascii_lowercase + string.digits + ".-:[]", max_size=40)))
def test_host_headers_are_canonical_or_refused(host: str) -> None:
    try:
        once = canonical_host(host)
    except ProtocolError as exc:
        _refusal_is_4xx(exc)
        return
    assert canonical_host(once) == once


_HEADER_VALUES = st.one_of(
    st.binary(max_size=80),
    st.tuples(st.sampled_from([b"Bearer ", b"bearer  ", b"Basic ", b"", b"Signature "]), st.binary(max_size=60))
    .map(b"".join),
)
_HEADER_NAMES = st.sampled_from([b"authorization", b"x-api-key", b"cookie", b"signature", b"digest", b"date",
                                 b"x-other"])


def _request(target: str, headers: list[tuple[bytes, bytes]]) -> Request:
    req = Request()
    req.path, _, req.query = target.partition("?")
    req.headers = headers
    return req


_SOURCES = [
    AuthSource(),
    AuthSource(header_name="X-Api-Key", use_param=True, param_name="key"),
    AuthSource(use_cookie=True, cookie_name="session", use_param=True),
    AuthSource(disable_header=True, use_param=True, param_name="jwt", use_cookie=True, cookie_name="jwt"),
]


@PROFILE
@given(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=6),
       st.text(string.printable, max_size=40), st.booleans())
def test_credential_extraction_never_raises(headers, query, strip_bearer) -> None:
    req = _request("/api/?" + query, headers)
    for source in _SOURCES:
        value = compile_extractor(source, strip_bearer=strip_bearer)(req)
        assert isinstance(value, str)
    check = compile_credential_check([(s, strip_bearer) for s in _SOURCES])
    assert check is not None
    verdict = check(req)
    assert verdict is None or (isinstance(verdict, Denial) and 400 <= verdict.status < 500 and verdict.message)


@PROFILE
@given(st.one_of(st.text(max_size=60),
                 st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode()),
                 st.text(max_size=30).map(lambda t: "Basic " + t)))
def test_basic_credentials_parse_or_are_refused_with_a_4xx(value: str) -> None:
    found = parse_basic_credentials(value)
    if isinstance(found, Denial):
        assert 400 <= found.status < 500 and found.message
    else:
        user, password = found
        assert isinstance(user, str) and isinstance(password, bytes)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)


@PROFILE
@given(st.one_of(
    st.text(max_size=80),
    st.tuples(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), _JSON, max_size=4), _JSON,
              st.binary(max_size=20))
    .map(lambda t: ".".join([_b64(json.dumps(t[0]).encode()), _b64(json.dumps(t[1]).encode()), _b64(t[2])])),
))
def test_jwts_parse_or_get_a_reason(token: str) -> None:
    found = parse_jws(token)
    assert isinstance(found, Jws) or (isinstance(found, str) and found)


@PROFILE
@given(st.one_of(st.text(max_size=120), st.lists(
    st.tuples(st.sampled_from(["keyId", "algorithm", "headers", "signature", "x"]),
              st.text(string.printable, max_size=20)), max_size=5)
    .map(lambda kv: ",".join(f'{k}="{v}"' for k, v in kv))),
    st.binary(max_size=60))
def test_signature_headers_parse_or_are_none(value: str, raw: bytes) -> None:
    parse_signature_header(value)  # a parsed value or None, never an exception
    parse_http_date(raw)
    parse_digest(raw)


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "apidef" / name).read_text())


_DEFINITIONS = [_fixture("classic-full.json"), _fixture("oas-full.json"), _fixture("oas-minimal.json")]


def _mutate(value: Any, path: list[Any], new: Any) -> Any:
    """``value`` with the item at ``path`` (as far as it exists) replaced by ``new``."""
    if not path:
        return new
    if isinstance(value, dict) and value:
        keys = sorted(value)
        key = keys[path[0] % len(keys)] if isinstance(path[0], int) else path[0]
        return {**value, key: _mutate(value.get(key), path[1:], new)}
    if isinstance(value, list) and value:
        i = path[0] % len(value) if isinstance(path[0], int) else 0
        return value[:i] + [_mutate(value[i], path[1:], new)] + value[i + 1:]
    return new


@settings(max_examples=EXAMPLES + 100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(_DEFINITIONS))), st.lists(st.integers(0, 50), min_size=1, max_size=5),
       st.one_of(_JSON, st.sampled_from([-1, 0, 10**30, "", "/", "not a url", [], {}, None, True, 1.5])))
def test_definitions_decode_or_name_the_problem(which: int, path: list[int], new: Any) -> None:
    body = json.dumps(_mutate(_DEFINITIONS[which], path, new)).encode()
    try:
        spec = decode_definition(body, "fuzz.json")
    except DefinitionError as exc:
        assert str(exc).strip()
        return
    assert isinstance(spec, ApiSpec)


@PROFILE
@given(st.binary(max_size=200))
def test_definition_bytes_decode_or_name_the_problem(body: bytes) -> None:
    try:
        decode_definition(body, "fuzz.json")
    except DefinitionError as exc:
        assert str(exc).strip()
