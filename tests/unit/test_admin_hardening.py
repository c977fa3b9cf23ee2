"""Sans-IO pieces of the Gateway API hardening: Host names, the secret throttle, secret checks,
log redaction, limit bounds, id checks and the local secret file."""

from __future__ import annotations

import hashlib
import math

import pytest

from fastgate.admin.guard import ControlHosts, SecretThrottle, host_name
from fastgate.cli import local_secret
from fastgate.config import ConfigError, config_from_mapping, secret_problem
from fastgate.sessions.key_ids import unsafe_id
from fastgate.store.limits import MAX_PER_SECONDS, MAX_RENEWAL_SECONDS, limit_problems
from fastgate.observe.access_log import redact_path
from fastgate.sessions.policies import decode_policy_file
from fastgate.sessions.session import SessionState


@pytest.mark.parametrize("host,name", [("LocalHost:8080", "localhost"), ("[::1]:80", "::1"), ("[::1]", "::1"),
                                       ("127.0.0.1", "127.0.0.1"), ("example.com.", "example.com"), ("", ""),
                                       ("[broken", "")])
def test_host_name(host, name):
    assert host_name(host) == name


def test_control_hosts():
    hosts = ControlHosts(["Admin.Internal", " "])
    for ok in ("localhost", "localhost:1", "127.0.0.1", "127.255.0.9:99", "[::1]", "[::1]:8080", "admin.internal:1"):
        assert hosts.allows(ok), ok
    for bad in ("", "evil", "127.0.0.1.nip.io", "[::2]", "10.0.0.1", "0.0.0.0", "localhost.evil"):
        assert not hosts.allows(bad), bad


def test_secret_throttle_window_and_bound():
    t = SecretThrottle(limit=3, window=60, capacity=2)
    for i in range(3):
        assert t.retry_after("a", 100.0) == 0
        assert t.failed("a", 100.0 + i) == i + 1
    assert t.retry_after("a", 110.0) == 50
    assert t.retry_after("b", 110.0) == 0
    assert t.retry_after("a", 160.0) == 0  # the window ended
    assert t.failed("a", 161.0) == 1
    t.failed("b", 161.0)
    t.failed("c", 161.0)
    assert len(t.clients) == 2 and "a" not in t.clients  # oldest dropped
    assert t.failed_total == 6


@pytest.mark.parametrize("secret", ["352d20ee67be67f6340b4c0605b044b7", "foo", "Secret", "CHANGEME", "short-15-chars!"])
def test_weak_secrets(secret):
    assert secret_problem(secret).startswith("secret:")
    with pytest.raises(ConfigError, match="secret:"):
        config_from_mapping({"secret": secret}, environ={})


def test_good_and_empty_secrets():
    assert secret_problem("") is None
    assert secret_problem("test-secret-0123456789") is None
    assert config_from_mapping({}, environ={"FASTGATE_SECRET": "x" * 16}).secret == "x" * 16


def test_redact_path():
    key = "eyJvcmciOiJkZWZhdWx0In0="
    h = "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    assert redact_path(f"/tyk/keys/{key}") == f"/tyk/keys/{h}"
    assert redact_path(f"/tyk/keys/policy/{key}") == f"/tyk/keys/policy/{h}"
    assert redact_path("/tyk/keys/create") == "/tyk/keys/create"
    assert redact_path("/tyk/keys") == "/tyk/keys"
    assert redact_path(f"/tyk/oauth/refresh/{key}") == f"/tyk/oauth/refresh/{h}"
    assert redact_path(f"/tyk/apis/{key}") == f"/tyk/apis/{key}"  # API ids are not secrets
    assert redact_path(f"/api/{key}") == f"/api/{key}"


def session(**fields):
    return SessionState(**fields)


@pytest.mark.parametrize("field,value", [("rate", -2), ("rate", -0.5), ("rate", math.inf), ("rate", math.nan), ("per", -0.5),
                                         ("per", 1e300), ("per", MAX_PER_SECONDS + 1), ("quota_max", 2**53),
                                         ("quota_renewal_rate", MAX_RENEWAL_SECONDS + 1)])
def test_limit_problems_name_the_field(field, value):
    problems = limit_problems(session(**{field: value}))
    assert len(problems) == 1 and problems[0].startswith(field + ":")


def test_limits_inside_access_rights_and_endpoints():
    raw = {"access_rights": {"a": {"limit": {"per": 1e300}, "endpoints": [
        {"path": "/x", "methods": [{"name": "GET", "limit": {"rate": -2, "per": 1}}]}]}}}
    import msgspec

    problems = limit_problems(msgspec.convert(raw, SessionState))
    assert problems == [
        "access_rights.a.limit.per: must be a number of seconds from 0 (no limit) to 4294967296, got 1e+300",
        "access_rights.a.endpoints[0].methods[0].limit.rate: must be a number from 0 to 9007199254740992 (0 or -1: no limit), got -2",
    ]


def test_limits_at_the_bounds_pass():
    assert limit_problems(session(rate=2**53, per=MAX_PER_SECONDS, quota_max=2**53 - 1,
                                  quota_renewal_rate=MAX_RENEWAL_SECONDS)) == []
    assert limit_problems(session(rate=-1, per=1, quota_max=-1, quota_renewal_rate=-1)) == []


def test_policy_file_problems():
    policies, problems = decode_policy_file(b'{"p": {"org_id": "a\\"b", "rate": 1, "per": 1}, "q": {"per": -1}}')
    assert policies == {}
    assert problems[0].startswith("p.org_id:") and problems[1].startswith("q.per:")


def test_unsafe_id():
    assert not unsafe_id("default") and not unsafe_id("5e9d9544a1dcd60001d0ed20") and not unsafe_id("a%22b")
    for bad in ('a"b', "a\\b", "a\nb", "\x00", "a\x7f"):
        assert unsafe_id(bad)


def test_local_secret_file(tmp_path):
    path = tmp_path / "d" / "local.secret"
    secret, created = local_secret(path)
    assert created and len(secret) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert local_secret(path) == (secret, False)
    path.write_text("foo\n")
    with pytest.raises(ValueError, match="secret:"):
        local_secret(path)
