"""Routing: host, then the longest listen path that owns the request path on segment boundaries."""

from __future__ import annotations

import pytest

from fastgate.pipeline.router import Router

ROUTES = [
    ("", "/", "root"),
    ("", "/api/", "api"),
    ("", "/api/v2", "api-v2"),
    ("", "/api/v2/admin/", "api-v2-admin"),
    ("", "/other", "other"),
    ("pets.example.com", "/api/", "pets-api"),
    ("pets.example.com", "/only-on-pets/", "pets-only"),
]


@pytest.fixture(scope="module")
def router() -> Router[str]:
    return Router(ROUTES)


@pytest.mark.parametrize(
    "path,api,base",
    [
        ("/api", "api", "/api"),
        ("/api/", "api", "/api"),
        ("/api/users/7", "api", "/api"),
        ("/api/v2", "api-v2", "/api/v2"),
        ("/api/v2/", "api-v2", "/api/v2"),
        ("/api/v2/things", "api-v2", "/api/v2"),
        ("/api/v2/admin", "api-v2-admin", "/api/v2/admin"),
        ("/api/v2/admin/x/y", "api-v2-admin", "/api/v2/admin"),
        ("/api/v2admin", "api", "/api"),  # not a segment boundary
        ("/apix", "root", ""),  # /api never serves /apix
        ("/other/thing", "other", "/other"),
        ("/", "root", ""),
        ("/unknown/deep/path", "root", ""),
    ],
)
def test_longest_listen_path_on_segment_boundaries(router, path, api, base):
    assert router.match("any.example", path) == (api, base)


def test_domain_routes_win_for_their_host(router):
    assert router.match("pets.example.com", "/api/x") == ("pets-api", "/api")
    assert router.match("pets.example.com", "/only-on-pets/x") == ("pets-only", "/only-on-pets")
    # Other hosts never reach a domain-bound API...
    assert router.match("other.example.com", "/only-on-pets/x") == ("root", "")
    assert router.match("other.example.com", "/api/x") == ("api", "/api")


def test_a_domain_api_wins_over_a_longer_host_less_listen_path(router):
    # As in Tyk, an API bound to the host owns its listen path on that host outright.
    assert router.match("pets.example.com", "/api/v2/x") == ("pets-api", "/api")


def test_a_domain_host_falls_back_to_host_less_apis(router):
    assert router.match("pets.example.com", "/other") == ("other", "/other")
    assert router.match("pets.example.com", "/nothing") == ("root", "")


def test_no_match_without_a_root_api():
    router = Router([("", "/a/", "a"), ("b.example", "/b/", "b")])
    assert router.match("x", "/") is None
    assert router.match("x", "/b/thing") is None
    assert router.match("b.example", "/c") is None
    assert router.match("b.example", "/b") == ("b", "/b")


def test_empty_router():
    assert Router([]).match("x", "/anything") is None


def test_many_apis_are_dict_lookups():
    router = Router([("", f"/svc{i}/", i) for i in range(5000)])
    assert router.match("h", "/svc4321/deep/er/path") == (4321, "/svc4321")
    assert router.match("h", "/svc5000/") is None


def test_route_strips_the_port_and_remembers_exactly() -> None:
    from fastgate.pipeline import router as router_module

    r: Router[str] = Router(ROUTES)
    assert r.route("pets.example.com:8080", "/api/x") == ("pets-api", "/api")
    assert r.route("pets.example.com", "/api/x") == ("pets-api", "/api")
    assert r.route("[::1]", "/api/x") == ("api", "/api")
    assert r.route("other.example.com:80", "/only-on-pets/") == ("root", "")
    assert r.route("other.example.com:80", "/only-on-pets/") == ("root", "")  # remembered
    empty: Router[str] = Router([("", "/api", "api")])
    assert empty.route("h", "/nothing") is None
    assert empty.route("h", "/nothing") is None  # "no API" is remembered too
    for i in range(router_module.MAX_MEMO + 1):
        empty.route("h", f"/fill/{i}")
    assert len(empty._memo) <= router_module.MAX_MEMO
    # A new router (a reload) starts with nothing remembered.
    assert Router(ROUTES)._memo == {}
