"""Sans-IO pieces of the access restrictions: decoding (``fastgate.apidef.access``), matching and
client addresses (``fastgate.pipeline.access``), safe ids and upstream hosts (``fastgate.apidef.common``)."""

from __future__ import annotations

import ipaddress

import pytest

from fastgate.pipeline.access import (
    PathMatcher,
    client_address,
    effective_method,
    read_method_override,
)
from fastgate.apidef.access import (
    classic_access,
    oas_access,
    unenforced_classic,
    unenforced_oas,
)
from fastgate.apidef.common import _link_local, check_api_id
from fastgate.apidef.spec import DefinitionError, PathRule
from fastgate.http.request import Request


def _req(method: str, path: str, base: str = "/api", headers=(), client_ip: str = "127.0.0.1") -> Request:
    req = Request()
    req.method, req.path, req.listen_base, req.client_ip = method, path, base, client_ip
    req.headers = list(headers)
    return req


def _classic(**extended):
    return {"version_data": {"not_versioned": True, "versions": {"Default": {"use_extended_paths": True, "extended_paths": extended}}}}


def test_classic_lists_in_tyk_order_and_methods():
    rules = classic_access({
        **_classic(
            white_list=[{"path": "/w", "method_actions": {"GET": {"action": "no_action"}}}],
            black_list=[{"path": "/b", "method": "post"}],
            ignored=[{"path": "/i"}, {"path": "/off", "disabled": True}],
            internal=[{"path": "/n", "method": "GET"}],
        ),
        "enable_ip_whitelisting": True, "allowed_ips": ["10.0.0.0/8", " ", "::1"],
        "enable_ip_blacklisting": False, "blacklisted_ips": ["1.2.3.4"],
        "global_rate_limit": {"rate": 5, "per": 2},
    })
    assert [(r.kind, r.path, r.methods) for r in rules.paths] == [
        ("ignored", "/i", None), ("black", "/b", ("POST",)), ("white", "/w", ("GET",)), ("internal", "/n", ("GET",)),
    ]
    assert rules.allowed_ips == ("10.0.0.0/8", "::1") and rules.blocked_ips == ()
    assert (rules.rate, rules.per) == (5.0, 2.0) and rules.whitelist


def test_classic_old_style_paths_and_disabled_switches():
    rules = classic_access({"version_data": {"not_versioned": True, "versions": {"v": {"use_extended_paths": False,
                            "paths": {"black_list": ["/x"], "white_list": [], "ignored": []}}}},
                            "enable_ip_blacklisting": True, "blacklisted_ips": ["1.2.3.4"], "ip_access_control_disabled": True,
                            "global_rate_limit": {"rate": 9, "per": 1}, "disable_rate_limit": True})
    assert [(r.kind, r.path) for r in rules.paths] == [("black", "/x")]
    assert rules.blocked_ips == () and rules.rate == 0


@pytest.mark.parametrize("raw, field", [
    ({"enable_ip_whitelisting": True, "allowed_ips": ["300.1.1.1"]}, "allowed_ips[0]"),
    ({"enable_ip_blacklisting": True, "blacklisted_ips": "1.2.3.4"}, "blacklisted_ips"),
    ({"global_rate_limit": {"rate": 3, "per": 0}}, "global_rate_limit.per"),
    (_classic(black_list=[{"path": "/(unclosed"}]), "version_data.versions.Default.extended_paths.black_list[0].path"),
    (_classic(white_list=[{"path": "/x", "method_actions": {"GET": {"action": "reply"}}}]),
     "version_data.versions.Default.extended_paths.white_list[0].method_actions.GET.action"),
])
def test_classic_mistakes_name_the_field(raw, field):
    with pytest.raises(DefinitionError) as exc:
        classic_access(raw)
    assert exc.value.field == field


def test_oas_operations_ip_control_rate_limit():
    raw = {
        "paths": {"/pets/{id}": {"get": {"operationId": "g"}, "delete": {"operationId": "d"}}},
        "x-tyk-api-gateway": {
            "info": {"state": {"active": True, "internal": True}},
            "server": {"ipAccessControl": {"enabled": True, "allow": ["10.0.0.1"], "block": ["10.0.0.2/31"]},
                       "allowMethodOverride": True},
            "upstream": {"rateLimit": {"enabled": True, "rate": 10, "per": "1m30s"}},
            "middleware": {"operations": {"g": {"allow": {"enabled": True}}, "d": {"block": {"enabled": True, "ignoreCase": True}}}},
        },
    }
    rules = oas_access(raw)
    assert [(r.kind, r.path, r.methods, r.ignore_case) for r in rules.paths] == [
        ("black", "/pets/{id}", ("DELETE",), True), ("white", "/pets/{id}", ("GET",), False),
    ]
    assert rules.allowed_ips == ("10.0.0.1",) and rules.blocked_ips == ("10.0.0.2/31",)
    assert (rules.rate, rules.per, rules.internal, rules.allow_method_override) == (10.0, 90.0, True, True)
    raw["x-tyk-api-gateway"]["middleware"]["operations"]["ghost"] = {"block": {"enabled": True}}
    with pytest.raises(DefinitionError, match="no operation 'ghost'"):
        oas_access(raw)


def test_unenforced_fields_refuse_and_empty_ones_do_not():
    with pytest.raises(DefinitionError) as exc:
        unenforced_classic(_classic(size_limits=[{"path": "/", "size_limit": 1}]))
    assert exc.value.field == "version_data.versions.Default.extended_paths.size_limits"
    unenforced_classic(_classic(size_limits=[], validate_json=[{"path": "/", "disabled": True}]))
    unenforced_classic({"version_data": {"not_versioned": False, "versions": {}}})
    with pytest.raises(DefinitionError):
        unenforced_classic({"version_data": {"not_versioned": False, "versions": {"v1": {}}}})
    with pytest.raises(DefinitionError) as exc:
        unenforced_oas({"x-tyk-api-gateway": {"middleware": {"operations": {"o": {"rateLimit": {"enabled": True}}}}}})
    assert exc.value.field == "x-tyk-api-gateway.middleware.operations.o.rateLimit"
    unenforced_oas({"x-tyk-api-gateway": {"middleware": {"operations": {"o": {"rateLimit": {"enabled": False}}}}}})


def test_path_matcher_first_match_and_whitelist():
    rules = (PathRule("ignored", "/health"), PathRule("black", "/admin", ("GET",)), PathRule("white", "/users/{id}", ("GET",)))
    m = PathMatcher(rules, prefix=True, suffix=True)
    assert m.kind_for(_req("GET", "/api/health")) == "ignored"
    assert m.kind_for(_req("GET", "/api/admin")) == "forbidden"
    assert m.kind_for(_req("GET", "/api/users/42")) == "white"
    assert m.kind_for(_req("GET", "/api/users/42/x")) == "forbidden"  # suffix matching
    assert m.kind_for(_req("POST", "/api/users/42")) == "forbidden"
    assert m.kind_for(_req("GET", "/api/%75sers/1")) == "white"  # decoded before matching
    loose = PathMatcher((PathRule("black", "/admin"),), prefix=False, suffix=False)
    for path in ("/api/admin", "/api/x/admin/y", "/api//admin", "/api/admin;jsessionid=1"):
        assert loose.kind_for(_req("GET", path)) == "forbidden", path
    assert loose.kind_for(_req("GET", "/api/other")) == ""


def test_method_override_read_and_conflicts():
    req = _req("POST", "/api/x", headers=[(b"X-HTTP-Method-Override", b"delete")])
    assert read_method_override(req) and effective_method(req) == "DELETE"
    plain = _req("POST", "/api/x")
    assert read_method_override(plain) and effective_method(plain) == "POST"
    clash = _req("POST", "/api/x", headers=[(b"X-HTTP-Method", b"GET"), (b"X-Method-Override", b"DELETE")])
    assert not read_method_override(clash)


def test_client_address_sources():
    v4 = ipaddress.ip_address("203.0.113.9")
    assert client_address(_req("GET", "/", client_ip="::ffff:203.0.113.9")) == v4
    req = _req("GET", "/", headers=[(b"X-Real-IP", b"10.0.0.1"), (b"X-Real-IP", b"203.0.113.9:443")])
    assert client_address(req) == ipaddress.ip_address("127.0.0.1")  # not trusted by default
    assert client_address(req, b"x-real-ip") == v4  # the last copy
    req.forwarded_for = b"1.1.1.1, [2001:db8::1]:80"
    assert client_address(req, b"x-forwarded-for") == ipaddress.ip_address("2001:db8::1")
    req.forwarded_for = b"garbage"
    assert client_address(req, b"x-forwarded-for") is None


@pytest.mark.parametrize("api_id", ["..", ".x", "a..b", "a/b", "a\\b", "a%2fb", "a\x00b", "a\nb", "x" * 201])
def test_unsafe_api_ids(api_id):
    with pytest.raises(DefinitionError):
        check_api_id("api_id", api_id)


def test_safe_api_ids_and_link_local_hosts():
    assert check_api_id("api_id", "my-api_1:v2") == "my-api_1:v2"
    for host in ("169.254.169.254", "2852039166", "0xa9.0xfe.0xa9.0xfe", "::ffff:169.254.169.254", "fe80::1%eth0", "fd00:ec2::254"):
        assert _link_local(host), host
    for host in ("10.0.0.1", "127.0.0.1", "example.com", "fd00:ec2::253"):
        assert not _link_local(host), host
