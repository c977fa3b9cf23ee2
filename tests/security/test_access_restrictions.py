"""Tyk's access restrictions over the wire: IP lists, endpoint lists, internal endpoints and APIs,
the API-wide rate limit, and method override headers.

Each case starts a real gateway in front of the recording upstream and checks both the answer and
what the upstream saw: a refused request must never reach it.
"""

from __future__ import annotations

import requests

from tests.kit.apis import classic_api, oas_api
from tests.kit.raw import RawClient


def _paths(**lists):
    return {
        "not_versioned": True,
        "versions": {"Default": {"name": "Default", "use_extended_paths": True, "extended_paths": lists}},
    }


def _seen_paths(upstream):
    return [r["path"] for r in upstream.seen()]


def test_ip_allowlist_refuses_other_addresses_and_admits_listed_cidr(make_gateway, upstream):
    gw = make_gateway([
        classic_api("deny", "/deny/", upstream.url, enable_ip_whitelisting=True, allowed_ips=["10.0.0.0/8", "2001:db8::/32"]),
        classic_api("allow", "/allow/", upstream.url, enable_ip_whitelisting=True, allowed_ips=["127.0.0.0/24"]),
        classic_api("single", "/single/", upstream.url, enable_ip_whitelisting=True, allowed_ips=["127.0.0.1"]),
        classic_api("off", "/off/", upstream.url, enable_ip_whitelisting=False, allowed_ips=["10.0.0.1"]),
    ])
    upstream.reset()
    r = requests.get(gw.url + "/deny/x", timeout=5)
    assert r.status_code == 403
    assert r.json() == {"error": "access from this IP has been disallowed"}
    # a client-written X-Forwarded-For is not trusted by default
    r = requests.get(gw.url + "/deny/x", headers={"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3"}, timeout=5)
    assert r.status_code == 403
    assert requests.get(gw.url + "/allow/x", timeout=5).status_code == 200
    assert requests.get(gw.url + "/single/x", timeout=5).status_code == 200
    assert requests.get(gw.url + "/off/x", timeout=5).status_code == 200
    assert _seen_paths(upstream) == ["/x", "/x", "/x"]


def test_ip_blocklist_refuses_listed_addresses(make_gateway, upstream):
    gw = make_gateway([
        classic_api("blocked", "/blocked/", upstream.url, enable_ip_blacklisting=True, blacklisted_ips=["127.0.0.1/32"]),
        classic_api("other", "/other/", upstream.url, enable_ip_blacklisting=True, blacklisted_ips=["192.0.2.1", "::1"]),
        classic_api("disabled", "/disabled/", upstream.url, enable_ip_blacklisting=True, blacklisted_ips=["127.0.0.1"],
                    ip_access_control_disabled=True),
    ])
    upstream.reset()
    r = requests.get(gw.url + "/blocked/x", timeout=5)
    assert (r.status_code, r.json()) == (403, {"error": "access from this IP has been disallowed"})
    assert requests.get(gw.url + "/other/x", timeout=5).status_code == 200
    assert requests.get(gw.url + "/disabled/x", timeout=5).status_code == 200
    assert _seen_paths(upstream) == ["/x", "/x"]


def test_ip_lists_read_a_trusted_proxy_header_only_when_configured(make_gateway, upstream):
    api = classic_api("prox", "/prox/", upstream.url, enable_ip_whitelisting=True, allowed_ips=["203.0.113.0/24"])
    gw = make_gateway([api], {"security": {"client_ip_header": "X-Forwarded-For"}})
    upstream.reset()
    # the last entry is the one the trusted proxy added; a spoofed first entry does not count
    ok = requests.get(gw.url + "/prox/a", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}, timeout=5)
    assert ok.status_code == 200
    spoofed = requests.get(gw.url + "/prox/b", headers={"X-Forwarded-For": "203.0.113.7, 10.9.9.9"}, timeout=5)
    assert spoofed.status_code == 403
    assert requests.get(gw.url + "/prox/c", timeout=5).status_code == 403  # no header: refused
    assert _seen_paths(upstream) == ["/a"]


def test_oas_ip_access_control(make_gateway, upstream):
    oas = oas_api("oasip", "/oasip/", upstream.url, middleware={"operations": {}}, server={"ipAccessControl": {"enabled": True, "block": ["127.0.0.0/8"]}})
    gw = make_gateway([oas])
    upstream.reset()
    r = requests.get(gw.url + "/oasip/x", timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "access from this IP has been disallowed")
    assert upstream.seen() == []


def test_white_list_refuses_everything_not_listed(make_gateway, upstream):
    api = classic_api("wl", "/wl/", upstream.url, version_data=_paths(white_list=[
        {"path": "/public/{id}", "method_actions": {"GET": {"action": "no_action", "code": 200, "data": "", "headers": {}}}},
    ]))
    gw = make_gateway([api], {"http_server_options": {"enable_path_prefix_matching": True}})
    upstream.reset()
    assert requests.get(gw.url + "/wl/public/7", timeout=5).status_code == 200
    for method, path in (("GET", "/wl/private"), ("POST", "/wl/public/7"), ("GET", "/wl/x/public/7")):
        r = requests.request(method, gw.url + path, timeout=5)
        assert (r.status_code, r.json()) == (403, {"error": "Requested endpoint is forbidden"}), (method, path)
    assert _seen_paths(upstream) == ["/public/7"]


def test_black_list_refuses_listed_endpoints_in_every_spelling(make_gateway, upstream):
    api = classic_api("bl", "/bl/", upstream.url, version_data=_paths(black_list=[
        {"path": "/admin", "method_actions": {"GET": {"action": "no_action"}, "POST": {"action": "no_action"}}},
    ]))
    # Path parameters are refused (400) unless an API opts in: this one does, so the black list
    # itself must catch the ';' spelling.
    api["allow_path_parameters"] = True
    gw = make_gateway([api])
    upstream.reset()
    for path in ("/bl/admin", "/bl/admin/users", "/bl/%61dmin", "/bl//admin", "/bl/admin;x=1"):
        r = requests.get(gw.url + path, timeout=5)
        assert (r.status_code, r.json()) == (403, {"error": "Requested endpoint is forbidden"}), path
    assert requests.get(gw.url + "/bl/other", timeout=5).status_code == 200
    assert requests.put(gw.url + "/bl/admin", timeout=5).status_code == 200  # only GET and POST listed
    assert _seen_paths(upstream) == ["/other", "/admin"]


def test_ignored_paths_skip_auth_but_not_ip_checks(make_gateway, upstream):
    protected = classic_api("ign", "/ign/", upstream.url, use_keyless=False, use_standard_auth=True,
                            version_data=_paths(ignored=[{"path": "/health", "method_actions": {"GET": {"action": "no_action"}}}]))
    walled = classic_api("ignip", "/ignip/", upstream.url, use_keyless=False, use_standard_auth=True,
                         enable_ip_whitelisting=True, allowed_ips=["10.0.0.1"],
                         version_data=_paths(ignored=[{"path": "/health", "method_actions": {"GET": {"action": "no_action"}}}]))
    gw = make_gateway([protected, walled])
    upstream.reset()
    assert requests.get(gw.url + "/ign/health", timeout=5).status_code == 200
    assert requests.get(gw.url + "/ign/data", timeout=5).status_code == 401  # not ignored: auth runs
    assert requests.post(gw.url + "/ign/health", timeout=5).status_code == 401  # only GET is ignored
    r = requests.get(gw.url + "/ignip/health", timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "access from this IP has been disallowed")
    assert _seen_paths(upstream) == ["/health"]


def test_internal_endpoints_and_apis_are_not_reachable_from_outside(make_gateway, upstream):
    api = classic_api("int", "/int/", upstream.url, version_data=_paths(internal=[{"path": "/secret", "method": "GET"}]))
    hidden = classic_api("hidden", "/hidden/", upstream.url, internal=True)
    gw = make_gateway([api, hidden])
    upstream.reset()
    r = requests.get(gw.url + "/int/secret", timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "Requested endpoint is forbidden")
    assert requests.get(gw.url + "/int/open", timeout=5).status_code == 200
    assert requests.get(gw.url + "/hidden/x", timeout=5).status_code == 404
    assert _seen_paths(upstream) == ["/open"]


def test_oas_operations_allow_block_ignore_internal(make_gateway, upstream):
    doc = oas_api("oasops", "/oasops/", upstream.url, paths={
        "/pets/{id}": {"get": {"operationId": "getPet"}, "delete": {"operationId": "deletePet"}},
        "/status": {"get": {"operationId": "status"}},
        "/debug": {"get": {"operationId": "debug"}},
    }, middleware={"operations": {
        "getPet": {"allow": {"enabled": True}},
        "deletePet": {"block": {"enabled": True}},
        "status": {"ignoreAuthentication": {"enabled": True}},
        "debug": {"internal": {"enabled": True}},
    }})
    gw = make_gateway([doc], {"http_server_options": {"enable_path_prefix_matching": True, "enable_path_suffix_matching": True}})
    upstream.reset()
    assert requests.get(gw.url + "/oasops/pets/1", timeout=5).status_code == 200
    assert requests.get(gw.url + "/oasops/status", timeout=5).status_code == 200
    for method, path in (("DELETE", "/oasops/pets/1"), ("GET", "/oasops/debug"), ("GET", "/oasops/other"),
                         ("GET", "/oasops/pets/1/more")):
        r = requests.request(method, gw.url + path, timeout=5)
        assert (r.status_code, r.json()["error"]) == (403, "Requested endpoint is forbidden"), (method, path)
    assert _seen_paths(upstream) == ["/pets/1", "/status"]


def test_global_rate_limit_answers_429(make_gateway, upstream, store_url):
    api = classic_api("grl", "/grl/", upstream.url, global_rate_limit={"rate": 2, "per": 60})
    gw = make_gateway([api], {"storage": {"url": store_url}})
    upstream.reset()
    codes = [requests.get(gw.url + f"/grl/{i}", timeout=5).status_code for i in range(4)]
    assert codes == [200, 200, 429, 429]
    r = requests.get(gw.url + "/grl/x", timeout=5)
    assert r.json() == {"error": "API Rate limit exceeded"}
    assert int(r.headers["Retry-After"]) >= 1
    assert _seen_paths(upstream) == ["/0", "/1"]


def test_oas_upstream_rate_limit(make_gateway, upstream):
    doc = oas_api("oasrl", "/oasrl/", upstream.url, middleware={"operations": {}}, upstream={"rateLimit": {"enabled": True, "rate": 1, "per": "1m"}})
    gw = make_gateway([doc])
    codes = [requests.get(gw.url + "/oasrl/x", timeout=5).status_code for _ in range(2)]
    assert codes == [200, 429]


def test_method_override_headers_are_dropped_by_default(make_gateway, upstream):
    gw = make_gateway([classic_api("mo", "/mo/", upstream.url)])
    upstream.reset()
    with RawClient(gw.port) as c:
        r = c.request("POST", "/mo/x", headers="X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: PUT\r\n"
                                                "X-Method-Override: PATCH\r\nContent-Length: 0\r\n")
    assert r.status == 200
    (seen,) = upstream.seen()
    names = {name.lower() for name, _ in seen["headers"]}
    assert not names & {"x-http-method-override", "x-http-method", "x-method-override"}


def test_method_override_is_checked_when_allowed(make_gateway, upstream):
    token_api = classic_api("mok", "/mok/", upstream.url, use_keyless=False, use_standard_auth=True,
                            allow_method_override=True,
                            version_data=_paths(black_list=[{"path": "/items", "method": "DELETE"}]))
    gw = make_gateway([token_api])
    rights = {"mok": {"api_id": "mok", "api_name": "mok", "versions": ["Default"],
                      "allowed_urls": [{"url": "/things", "methods": ["GET", "POST"]}]}}
    status, created = gw.admin("POST", "/tyk/keys/create", {"access_rights": rights})
    assert status == 200, created
    key = created["key"]
    auth = {"Authorization": key}
    upstream.reset()
    ok = requests.post(gw.url + "/mok/things", headers={**auth, "X-HTTP-Method-Override": "GET"}, timeout=5)
    assert ok.status_code == 200
    # the key may POST /things, but the upstream would run a DELETE: the key's ACL says no
    r = requests.post(gw.url + "/mok/things", headers={**auth, "X-HTTP-Method-Override": "DELETE"}, timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "Access to this resource has been disallowed")
    # the black list is checked against the overriding method too
    r = requests.post(gw.url + "/mok/items", headers={**auth, "X-HTTP-Method": "delete"}, timeout=5)
    assert (r.status_code, r.json()["error"]) == (403, "Requested endpoint is forbidden")
    r = requests.post(gw.url + "/mok/things", headers={**auth, "X-HTTP-Method": "GET", "X-Method-Override": "DELETE"}, timeout=5)
    assert r.status_code == 400
    (seen,) = upstream.seen()
    assert ("X-HTTP-Method-Override", "GET") in [tuple(h) for h in seen["headers"]]

