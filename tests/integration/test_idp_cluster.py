"""External OAuth and OpenID Connect on two gateway nodes sharing one Redis: a revocation made on
one node refuses the token on the other, an OIDC session persisted by one node is the other's
(same key, one shared rate limit), and an introspection answer is cached per node."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from tests.kit.apis import classic_api, rights
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.idp import IntrospectionServer, OidcIssuer
from tests.kit.jwks import RsaKey
from tests.kit.procs import Gateway

KEY = RsaKey("idp-1")


@pytest.fixture
def idps() -> Iterator[tuple[OidcIssuer, IntrospectionServer]]:
    issuer, intro = OidcIssuer(KEY.jwk()), IntrospectionServer()
    yield issuer, intro
    issuer.stop()
    intro.stop()


@pytest.fixture
def two_nodes(make_gateway: Any, upstream: Any, idps: tuple[OidcIssuer, IntrospectionServer]) -> Iterator[tuple[Gateway, Gateway]]:
    issuer, intro = idps
    flush_redis_db(REDIS_TEST_URL)
    apis = [
        classic_api("oidc", "/oidc/", upstream.url, use_keyless=False, use_openid=True, openid_options={
            "providers": [{"issuer": issuer.issuer, "client_ids": {base64.b64encode(b"web").decode(): "pol"}}]}),
        classic_api("ext", "/ext/", upstream.url, use_keyless=False, external_oauth={"enabled": True, "providers": [{
            "jwt": {"enabled": True, "signing_method": "rsa", "source": issuer.issuer + "/jwks"}}]}),
        classic_api("intro", "/intro/", upstream.url, use_keyless=False, external_oauth={"enabled": True, "providers": [{
            "introspection": {"enabled": True, "url": intro.url, "client_id": "gw-client",
                              "client_secret": "gw-secret-0123456789", "cache": {"enabled": True, "timeout": 60}}}]}),
    ]
    policies = {"pol": {"id": "pol", "org_id": "default", "rate": 3, "per": 60, "quota_max": -1, "active": True,
                        "access_rights": rights("oidc")}}
    nodes = [make_gateway(apis, {"storage": {"url": REDIS_TEST_URL}}, policies=policies, wait=False) for _ in range(2)]
    for node in nodes:
        node.ready()
    yield nodes[0], nodes[1]
    flush_redis_db(REDIS_TEST_URL)


def get(gw: Gateway, path: str, token: str) -> int:
    return requests.get(gw.url + path, headers={"Authorization": "Bearer " + token}, timeout=10).status_code


def test_revocation_on_one_node_refuses_on_the_other(two_nodes: tuple[Gateway, Gateway]) -> None:
    a, b = two_nodes
    sub = "user-" + uuid.uuid4().hex[:8]
    token = KEY.sign({"sub": sub, "exp": int(time.time()) + 300})
    assert (get(a, "/ext/x", token), get(b, "/ext/x", token)) == (200, 200)
    assert a.admin("POST", "/tyk/jwt/revocations", {"sub": sub})[0] == 200
    deadline = time.monotonic() + 3
    while get(b, "/ext/x", token) != 401:
        assert time.monotonic() < deadline, "node B still accepts a token revoked on node A"
        time.sleep(0.05)


def test_oidc_session_and_rate_limit_are_shared(two_nodes: tuple[Gateway, Gateway],
                                                idps: tuple[OidcIssuer, IntrospectionServer]) -> None:
    a, b = two_nodes
    issuer = idps[0]
    now = int(time.time())
    token = KEY.sign({"iss": issuer.issuer, "aud": "web", "sub": "shared-user", "iat": now, "exp": now + 300})
    statuses = [get(a, "/oidc/x", token), get(b, "/oidc/x", token), get(a, "/oidc/x", token), get(b, "/oidc/x", token)]
    assert statuses == [200, 200, 200, 429]


def test_introspection_cache_is_per_node(two_nodes: tuple[Gateway, Gateway],
                                         idps: tuple[OidcIssuer, IntrospectionServer]) -> None:
    a, b = two_nodes
    intro = idps[1]
    intro.activate("opaque-shared", sub="x", exp=int(time.time()) + 300)
    assert [get(a, "/intro/x", "opaque-shared"), get(a, "/intro/x", "opaque-shared"),
            get(b, "/intro/x", "opaque-shared")] == [200, 200, 200]
    assert intro.calls["opaque-shared"] == 2
