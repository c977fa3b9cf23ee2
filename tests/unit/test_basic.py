"""Basic auth without sockets: credential parsing, body extraction, config, password hashing and
the bcrypt checker (cache, single flight, off the event loop, 72-byte rule), and the body tap."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import time

import bcrypt
import pytest

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.oas import decode_oas
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth import basic as basic_mod
from fastgate.auth import passwords
from fastgate.auth.basic import (
    MALFORMED_ENCODING, MALFORMED_HEADER, MALFORMED_VALUES, NO_BODY_PASSWORD, NO_BODY_USER,
    PASSWORD_GROUP, USER_GROUP, basic_config, credentials_from_body, parse_basic_credentials,
)
from fastgate.auth.body import CREDENTIALS_BODY_LIMIT, BodyTap
from fastgate.auth.passwords import PasswordChecker, PasswordTooLong, check_fast, hash_password
from fastgate.sessions.key_ids import hash_bytes
from fastgate.sessions.session import BasicAuthData
from tests.kit.services import make_services


def b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


def classic(**fields) -> ApiSpec:
    raw = {"api_id": "a", "name": "A", "use_keyless": False,
           "proxy": {"listen_path": "/a/", "target_url": "http://x"}, **fields}
    return decode_classic(raw, "a.json")


def oas(vendor: dict, scheme: dict | None = None) -> ApiSpec:
    raw = {
        "components": {"securitySchemes": {"ba": scheme or {"type": "http", "scheme": "basic"}}},
        "x-tyk-api-gateway": {"info": {"id": "o", "name": "O"}, "upstream": {"url": "http://x"},
                              "server": {"listenPath": {"value": "/o/"},
                                         "authentication": {"enabled": True, "securitySchemes": {"ba": vendor}}}},
    }
    return decode_oas(raw, "o.json")


# ---- the Authorization header ------------------------------------------------------------------


def test_parse_good_credentials():
    assert parse_basic_credentials("Basic " + b64(b"user:password")) == ("user", b"password")
    # The scheme word is not checked (Tyk): any first word works.
    assert parse_basic_credentials("Whatever " + b64(b"u:p")) == ("u", b"p")
    assert parse_basic_credentials("Basic " + b64(b"u:")) == ("u", b"")
    assert parse_basic_credentials("Basic " + b64("ü:pässword".encode())) == ("ü", "pässword".encode())


@pytest.mark.parametrize("value, denial", [
    ("Basic", MALFORMED_HEADER),
    ("Basic  " + b64(b"u:p"), MALFORMED_HEADER),  # two spaces: three parts
    ("Basic " + b64(b"u:p") + " extra", MALFORMED_HEADER),
    ("Basic not-base64!", MALFORMED_ENCODING),
    ("Basic " + b64(b"u:p")[:-1], MALFORMED_ENCODING),  # padding broken
    ("Basic " + b64(b"nocolon"), MALFORMED_VALUES),
])
def test_parse_malformed(value, denial):
    assert parse_basic_credentials(value) is denial
    assert denial.status == 400 and denial.message.startswith("Attempted access with malformed header, ")


def test_tyk_messages_are_literal():
    assert MALFORMED_HEADER.message == "Attempted access with malformed header, header not in basic auth format"
    assert MALFORMED_ENCODING.message == "Attempted access with malformed header, auth data not encoded correctly"
    assert MALFORMED_VALUES.message == "Attempted access with malformed header, values not in basic auth format"


# ---- credentials in the body --------------------------------------------------------------------


def body_config(user=r"<User>(.*)</User>", password=r"<Password>(.*)</Password>"):
    return basic_config(classic(use_basic_auth=True, basic_auth={
        "extract_from_body": True, "body_user_regexp": user, "body_password_regexp": password}))


def test_body_extraction():
    config = body_config()
    assert credentials_from_body(b"<User>bob</User><Password>pw</Password>", config) == ("bob", b"pw")
    assert credentials_from_body(b"", config) is NO_BODY_USER
    assert credentials_from_body(b"<User>User>", config) is NO_BODY_USER
    assert credentials_from_body(b"<User>bob</User>", config) is NO_BODY_PASSWORD
    no_groups = body_config(user="<User>", password="<Password>")
    assert credentials_from_body(b"<User>", no_groups) is USER_GROUP
    assert credentials_from_body(b"<User>u</User><Password>", body_config(password="<Password>")) is PASSWORD_GROUP
    assert NO_BODY_USER.message == "Body do not contain username"
    assert USER_GROUP.message == "username should be inside regexp match group"


# ---- config -----------------------------------------------------------------------------------


def test_classic_config():
    assert basic_config(classic()) is None
    config = basic_config(classic(use_basic_auth=True))
    assert config is not None and config.cache_ttl == 60 and not config.disable_caching
    assert config.source.header_name == "Authorization" and config.user_regexp is None
    config = basic_config(classic(use_basic_auth=True, basic_auth={"disable_caching": True, "cache_ttl": 5}))
    assert config.disable_caching and config.cache_ttl == 5
    with pytest.raises(DefinitionError, match="body_user_regexp"):
        basic_config(classic(use_basic_auth=True, basic_auth={"extract_from_body": True}))
    with pytest.raises(DefinitionError, match="not a valid regular expression"):
        body_config(user="(unclosed")
    with pytest.raises(DefinitionError, match="basic_auth"):
        basic_config(classic(use_basic_auth=True, basic_auth={"cache_ttl": "soon"}))


def test_oas_config():
    config = basic_config(oas({"enabled": True, "cacheTTL": 7, "header": {"enabled": True, "name": "X-Basic"},
                               "extractCredentialsFromBody": {"enabled": True, "userRegexp": "u=(\\w+)",
                                                              "passwordRegexp": "p=(\\w+)"}}))
    assert config is not None and config.cache_ttl == 7 and config.source.header_name == "X-Basic"
    assert credentials_from_body(b"u=ann&p=x1", config) == ("ann", b"x1")
    assert basic_config(oas({"enabled": False})) is None
    assert basic_config(oas({"enabled": True}, {"type": "http", "scheme": "bearer"})) is None
    with_query = basic_config(oas({"enabled": True, "query": {"enabled": True, "name": "auth"}}))
    assert with_query.source.use_param and with_query.source.param_name == "auth"


# ---- hashing on write, checking without bcrypt ---------------------------------------------


@pytest.mark.parametrize("function", ["", "bcrypt", "sha256", "murmur32", "murmur64", "murmur128", "plain"])
def test_every_hash_function_verifies_the_plain_password(function):
    stored = hash_password("password", function)
    if function in ("", "bcrypt"):
        assert stored.hash_type == "bcrypt" and stored.password.startswith("$2")
        assert check_fast(stored, b"password") is None  # needs bcrypt
        assert bcrypt.checkpw(b"password", stored.password.encode())
    else:
        assert check_fast(stored, b"password") is True
        assert check_fast(stored, b"passwor") is False
        assert check_fast(stored, b"password1") is False
    if function == "plain":
        assert stored == BasicAuthData(password="password", hash_type="")
    if function == "sha256":
        assert stored.password == hashlib.sha256(b"password").hexdigest()
    if function.startswith("murmur"):
        assert stored.password == hash_bytes(b"password", function)


def test_bcrypt_refuses_passwords_over_72_bytes():
    hash_password("x" * 72, "bcrypt")
    with pytest.raises(PasswordTooLong):
        hash_password("x" * 73, "bcrypt")
    with pytest.raises(PasswordTooLong):
        hash_password("é" * 37, "bcrypt")  # 74 bytes in UTF-8
    assert hash_password("x" * 100, "sha256").hash_type == "sha256"  # no such limit


# ---- the bcrypt checker ---------------------------------------------------------------------------

FAST_HASH = bcrypt.hashpw(b"password", bcrypt.gensalt(4)).decode()


def test_checker_caches_results_by_hash_and_password():
    checker = PasswordChecker()

    async def run():
        good = checker.cache_key(FAST_HASH, b"password")
        bad = checker.cache_key(FAST_HASH, b"passwor")
        assert checker.cached(good, 60) is None
        assert await checker.check(good, b"password", remember=True) is True
        assert await checker.check(bad, b"passwor", remember=True) is False
        assert checker.cached(good, 60) is True and checker.cached(bad, 60) is False
        # Another stored hash (a password change) never reuses the entry.
        other = bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()
        assert checker.cached(checker.cache_key(other, b"password"), 60) is None
        # An API with a shorter cache_ttl does not accept older entries.
        await asyncio.sleep(0.02)
        assert checker.cached(good, 0.01) is None
        # The key is a keyed digest, never the password itself.
        assert b"password" not in good[1] and len(good[1]) == 32

    asyncio.run(run())
    checker.close()


def test_checker_does_not_cache_when_asked_not_to():
    checker = PasswordChecker()

    async def run():
        key = checker.cache_key(FAST_HASH, b"password")
        assert await checker.check(key, b"password", remember=False) is True
        assert checker.cached(key, 60) is None

    asyncio.run(run())
    checker.close()


def test_checker_single_flight_and_off_the_loop(monkeypatch):
    calls: list[str] = []
    release = threading.Event()

    def slow_match(stored: str, password: bytes) -> bool:
        calls.append(threading.current_thread().name)
        release.wait(5)
        return password == b"password"

    monkeypatch.setattr(passwords, "_bcrypt_matches", slow_match)
    checker = PasswordChecker()

    async def run():
        key = checker.cache_key(FAST_HASH, b"password")
        tasks = [asyncio.ensure_future(checker.check(key, b"password", remember=True)) for _ in range(20)]
        # The loop keeps turning while bcrypt runs: a timer fires on time.
        started = time.perf_counter()
        await asyncio.sleep(0.05)
        assert time.perf_counter() - started < 0.5
        release.set()
        assert await asyncio.gather(*tasks) == [True] * 20

    asyncio.run(run())
    assert len(calls) == 1 and calls[0].startswith("bcrypt")
    checker.close()


def test_checker_bounds_waiting_checks(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(passwords, "_bcrypt_matches", lambda s, p: release.wait(5))
    checker = PasswordChecker(max_pending=2)

    async def run():
        first = [asyncio.ensure_future(checker.check(checker.cache_key("h", bytes([i])), bytes([i]), remember=True))
                 for i in range(2)]
        await asyncio.sleep(0.01)
        assert await checker.check(checker.cache_key("h", b"x"), b"x", remember=True) is None  # busy
        release.set()
        await asyncio.gather(*first)

    asyncio.run(run())
    checker.close()


def test_checker_never_matches_over_72_bytes_without_running_bcrypt(monkeypatch):
    monkeypatch.setattr(passwords, "_bcrypt_matches", lambda s, p: pytest.fail("bcrypt ran"))
    stored = bcrypt.hashpw(b"a" * 72, bcrypt.gensalt(4)).decode()
    checker = PasswordChecker()

    async def run():
        # The first 72 bytes are right: bcrypt would have said yes after truncating.
        too_long = b"a" * 72 + b"junk"
        assert await checker.check(checker.cache_key(stored, too_long), too_long, remember=True) is False

    asyncio.run(run())
    checker.close()


def test_invalid_stored_hash_is_a_mismatch():
    assert passwords._bcrypt_matches("not-a-bcrypt-hash", b"password") is False
    assert passwords._bcrypt_matches(FAST_HASH, b"password") is True


# ---- the body tap (credentials and digests) --------------------------------------------------


def test_tap_keeps_a_body_and_wakes_the_waiter():
    async def run():
        tap = BodyTap(length=None, keep=CREDENTIALS_BODY_LIMIT)
        waiting = asyncio.ensure_future(tap.body(5))
        await asyncio.sleep(0)
        assert tap.feed(b"<User>a</User>") and tap.feed(b"<Password>b</Password>")
        assert not waiting.done()
        assert tap.end()
        assert await waiting == b"<User>a</User><Password>b</Password>"

    asyncio.run(run())


def test_tap_gives_up_past_the_limit():
    async def run():
        tap = BodyTap(length=None, keep=10)
        waiting = asyncio.ensure_future(tap.body(5))
        await asyncio.sleep(0)
        tap.feed(b"0123456789")
        tap.feed(b"x")  # past the limit: the waiter learns at once, without the body's end
        assert await waiting is None and tap.too_large
        with pytest.raises(TimeoutError):
            await BodyTap(length=None, keep=10).body(0.01)

    asyncio.run(run())


def test_tap_digest_verdict_comes_with_the_last_bytes():
    body = b"hello world"
    expected = hashlib.sha256(body).digest()
    tap = BodyTap(length=len(body), digest=(hashlib.sha256, expected))
    assert tap.feed(b"hello ") is True
    assert tap.feed(b"world") is True  # the last piece: verified before it is forwarded
    assert tap.end() is True
    bad = BodyTap(length=len(body), digest=(hashlib.sha256, expected))
    assert bad.feed(b"hello ") is True
    assert bad.feed(b"WORLD") is False  # refused before the last piece goes out
    assert bad.end() is False
    chunked = BodyTap(length=None, digest=(hashlib.sha256, expected))
    assert chunked.feed(b"hello world") is True  # no length: the end decides
    assert chunked.end() is True
    tampered = BodyTap(length=None, digest=(hashlib.sha256, expected))
    tampered.feed(b"hello world!")
    assert tampered.end() is False and tampered.refusal.status == 400


def test_needs_body_only_when_the_header_fails():
    from fastgate.http.request import Request

    predicate = basic_mod.needs_body(classic(use_basic_auth=True, basic_auth={
        "extract_from_body": True, "body_user_regexp": "u=(.*)", "body_password_regexp": "p=(.*)"}))
    assert predicate is not None
    req = Request()
    assert predicate(req) is True
    req.headers = [(b"Authorization", ("Basic " + b64(b"u:p")).encode())]
    assert predicate(req) is False
    req.headers = [(b"Authorization", b"Basic ???")]
    assert predicate(req) is True
    assert basic_mod.needs_body(classic(use_basic_auth=True)) is None


def test_realm_is_a_safe_header_value():
    from fastgate.http.request import Request

    spec = classic(name='Evil\r\nSet-Cookie: x="1"', use_basic_auth=True)
    (stage,) = basic_mod.compile_basic_auth(spec, make_services())
    denial = stage(Request())
    assert denial.status == 401 and denial.headers == ((b"WWW-Authenticate", b'Basic realm="EvilSet-Cookie: x=\\"1\\""'),)


def test_bcrypt_threads_run_at_a_lower_priority():
    import os
    import sys

    checker = PasswordChecker()

    async def run():
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(checker._executor(), lambda: os.getpriority(
            os.PRIO_PROCESS, threading.get_native_id()))

    nice = asyncio.run(run())
    checker.close()
    if sys.platform == "linux":
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + passwords.BCRYPT_NICE)
