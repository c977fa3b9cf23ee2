"""Sans-IO pieces of the auth hardening: the duplicate-credential check, the failed-login counter
(its memory bound), basic credentials split on the first colon, JWT time claims out of range,
the HMAC default clock skew and warnings, and short JWT HMAC secrets."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.spec import AuthSource, DefinitionError
from fastgate.auth import check_auth_settings, credential_sources
from fastgate.auth.basic import MALFORMED_VALUES, parse_basic_credentials
from fastgate.auth.hmac import DEFAULT_CLOCK_SKEW_MS, hmac_config, hmac_warnings
from fastgate.auth.jwt.claims import TIME_OUT_OF_RANGE, check_times, times_in_range
from fastgate.auth.jwt.config import jwt_config
from fastgate.auth.sources import MULTIPLE_CREDENTIALS, compile_credential_check
from fastgate.auth.throttle import FailureCounter
from fastgate.http.request import Request


def request(target: str = "/", headers: list[tuple[bytes, bytes]] | None = None) -> Request:
    req = Request()
    req.path, _, req.query = target.partition("?")
    req.headers = list(headers or [])
    return req


def classic(**fields: Any) -> Any:
    raw = {"api_id": "api", "name": "api", "org_id": "default", "use_keyless": False,
           "proxy": {"listen_path": "/api/", "target_url": "http://127.0.0.1:9"}, **fields}
    return decode_classic(raw, "api.json")


# ---- several copies of one credential ----------------------------------------------------------


JWT_SOURCES = [(AuthSource(use_param=True, param_name="jwt", use_cookie=True, cookie_name="jwt"), True)]


def test_one_copy_passes_and_copies_are_refused() -> None:
    check = compile_credential_check(JWT_SOURCES)
    assert check is not None
    assert check(request("/", [(b"Authorization", b"Bearer a")])) is None
    assert check(request("/?jwt=a", [(b"Authorization", b"Bearer a")])) is None  # same value twice: one credential
    assert check(request("/?jwt=", [(b"Authorization", b"a"), (b"Cookie", b"jwt=")])) is None  # empty values
    assert check(request("/?other=1&other=2", [(b"X-Other", b"1"), (b"x-other", b"2")])) is None
    for req in (
        request("/", [(b"Authorization", b"a"), (b"authorization", b"a")]),
        request("/?jwt=a&jwt=b"),
        request("/?jwt=a&%6Awt=b"),
        request("/", [(b"Cookie", b"jwt=a; jwt=a")]),
        request("/", [(b"Cookie", b"x=1"), (b"Cookie", b"jwt=a"), (b"Cookie", b"jwt=b")]),
        request("/?jwt=a", [(b"Authorization", b"Bearer b")]),
        request("/", [(b"Authorization", b"a"), (b"Cookie", b"x=1"), (b"Cookie", b"jwt=b")]),
    ):
        assert check(req) is MULTIPLE_CREDENTIALS, (req.query, req.headers)


def test_methods_read_their_own_locations() -> None:
    # A token in X-Api-Key and a signature in Authorization are two credentials, not a conflict;
    # two methods sharing Authorization read the one copy.
    check = compile_credential_check([(AuthSource(header_name="X-Api-Key"), True), (AuthSource(), False)])
    assert check is not None
    assert check(request("/", [(b"X-Api-Key", b"k"), (b"Authorization", b"Signature x")])) is None
    assert check(request("/", [(b"X-Api-Key", b"k"), (b"X-Api-Key", b"k2")])) is MULTIPLE_CREDENTIALS
    shared = compile_credential_check([(AuthSource(), True), (AuthSource(), False)])
    assert shared is not None
    assert shared(request("/", [(b"Authorization", b"x")])) is None
    assert shared(request("/", [(b"Authorization", b"x"), (b"Authorization", b"y")])) is MULTIPLE_CREDENTIALS


def test_credential_sources_of_an_and_chain() -> None:
    spec = classic(use_basic_auth=True, enable_jwt=True, jwt_source=base64.b64encode(b"k" * 32).decode(),
                   auth_configs={"jwt": {"use_param": True, "param_name": "jwt"}})
    found = credential_sources(spec)
    assert [(s.header_name, s.use_param, strip) for s, strip in found] == [
        ("Authorization", False, False), ("Authorization", True, True)]


# ---- failed-login counter ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failure_counter_blocks_after_the_limit_until_the_window_ends() -> None:
    clock = Clock()
    counter = FailureCounter(3, 60.0, clock=clock)
    assert [counter.failed("bob") for _ in range(2)] == [1, 2]
    assert counter.retry_after("bob") == 0
    assert counter.failed("bob") == 3
    assert counter.retry_after("bob") == 60
    clock.now += 59.5
    assert counter.retry_after("bob") == 1
    clock.now += 0.5
    assert counter.retry_after("bob") == 0
    assert counter.failed("bob") == 1  # a new window


def test_failure_counter_memory_is_bounded() -> None:
    counter = FailureCounter(2, 60.0, capacity=100, clock=Clock())
    counter.failed("victim")
    counter.failed("victim")
    assert counter.retry_after("victim") > 0
    for i in range(10_000):
        counter.failed(f"made-up-{i}")
    assert len(counter) == 100
    assert counter.retry_after("victim") == 0  # the least recently failed key was forgotten first


def test_failure_counter_limit_zero_counts_nothing() -> None:
    counter = FailureCounter(0, 60.0)
    for _ in range(100):
        counter.failed("x")
    assert counter.retry_after("x") == 0 and len(counter) == 0


# ---- basic credentials ------------------------------------------------------------------------------


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_basic_credentials_split_on_the_first_colon() -> None:
    assert parse_basic_credentials(basic(b"user:pa:ss")) == ("user", b"pa:ss")
    assert parse_basic_credentials(basic(b"user:")) == ("user", b"")
    assert parse_basic_credentials(basic(b"user")) is MALFORMED_VALUES


# ---- JWT time claims ------------------------------------------------------------------------------


def test_time_claims_out_of_range() -> None:
    cfg = jwt_config(classic(enable_jwt=True, jwt_source=base64.b64encode(b"k" * 32).decode()))
    assert cfg is not None
    for claim in ("exp", "iat", "nbf"):
        for value in (2**70, -(2**70), 1e300, float(2**54)):
            assert not times_in_range({claim: value})
            assert check_times({claim: value}, 1_700_000_000, cfg) == TIME_OUT_OF_RANGE
    assert times_in_range({"exp": 2**53, "iat": "1e400", "nbf": 0})


# ---- HMAC --------------------------------------------------------------------------------------------


def test_hmac_clock_skew_defaults_to_five_minutes() -> None:
    for fields in ({}, {"hmac_allowed_clock_skew": 0}):
        config = hmac_config(classic(enable_signature_checking=True, **fields))
        assert config is not None and config.clock_skew_ms == DEFAULT_CLOCK_SKEW_MS == 300_000
    off = hmac_config(classic(enable_signature_checking=True, hmac_allowed_clock_skew=-1))
    assert off is not None and off.clock_skew_ms < 0
    with pytest.raises(DefinitionError):
        hmac_config(classic(enable_signature_checking=True, hmac_allowed_clock_skew=-1, hmac_replay_protection=True))
    assert hmac_config(classic(enable_signature_checking=True, hmac_replay_protection=True)) is not None


def test_hmac_warnings() -> None:
    weak = hmac_warnings(classic(enable_signature_checking=True, hmac_allowed_clock_skew=-1))
    assert [w.split(":")[0] for w in weak] == ["hmac_required_headers", "hmac_allowed_clock_skew"]
    assert hmac_warnings(classic(enable_signature_checking=True,
                                 hmac_required_headers=["(request-target)", "date"])) == []


# ---- short JWT HMAC secrets ----------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_short_hmac_secret_is_refused_naming_the_field() -> None:
    with pytest.raises(DefinitionError) as caught:
        check_auth_settings(classic(enable_jwt=True, jwt_signing_method="hmac", jwt_source=b64(b"x" * 31)))
    assert caught.value.field == "jwt_source"
    assert "31 bytes once decoded; at least 32" in caught.value.message
    check_auth_settings(classic(enable_jwt=True, jwt_source=b64(b"x" * 32)))
    check_auth_settings(classic(enable_jwt=True, jwt_source=b64(b"x" * 8), jwt_allow_short_hmac_secret=True))
    # the length is of the decoded key: 32 characters of base64 are 24 bytes
    with pytest.raises(DefinitionError):
        check_auth_settings(classic(enable_jwt=True, jwt_source=b64(b"x" * 24)))
    # RSA keys, JWKS URLs and one-to-one (no source) are not HMAC secrets
    check_auth_settings(classic(enable_jwt=True, jwt_signing_method="rsa", jwt_source="https://idp/jwks"))
    check_auth_settings(classic(enable_jwt=True, jwt_signing_method="hmac", jwt_source=""))
