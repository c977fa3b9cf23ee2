"""``/metrics`` series of the store and of the identity providers, parsed with prometheus-client's
parser after known traffic: the Redis store's round trips by operation (exact deltas) and its
errors by kind (a real redis-server paused, then killed), none on the memory store; calls to
introspection endpoints, OIDC discovery fetches, and their failures (issue 15)."""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest
import requests

from tests.integration.test_metrics import samples, scrape
from tests.kit.apis import classic_api, rights, token_api
from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db
from tests.kit.gateway_api import ADMIN
from tests.kit.idp import IntrospectionServer, OidcIssuer
from tests.kit.procs import free_port
from tests.kit.redis_topologies import _Servers


def store_counts(families: dict, operation: str) -> tuple[float, dict[str, float]]:
    """(round trips, {error kind: count}) of one store operation."""
    trips = samples(families, "fastgate_store_operation_seconds", "_count", operation=operation)
    errors = {dict(k)["error"]: v for k, v in samples(families, "fastgate_store_errors", operation=operation).items()}
    return sum(trips.values()), errors


def counter(families: dict, name: str) -> float:
    return sum(samples(families, name).values())


def test_redis_store_round_trips_by_operation(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    control = free_port()
    gw = make_gateway([token_api("st", upstream.url)], {"control_api_port": control,
                                                         "storage": {"url": REDIS_TEST_URL}})
    body = {"access_rights": rights("st"), "org_id": "default", "rate": 1000, "per": 1}
    made = requests.post(f"http://127.0.0.1:{control}/tyk/keys/create", json=body, headers=ADMIN, timeout=5)
    key = made.json()["key"]
    assert requests.get(gw.url + "/st/echo", headers={"Authorization": key}, timeout=5).status_code == 200
    before = scrape(control)
    assert families_typed(before)
    for _ in range(5):
        assert requests.get(gw.url + "/st/echo", headers={"Authorization": key}, timeout=5).status_code == 200
    assert requests.delete(f"http://127.0.0.1:{control}/tyk/keys/{key}", headers=ADMIN, timeout=5).status_code == 200
    after = scrape(control)
    limits0, errors0 = store_counts(before, "limits")
    limits1, errors1 = store_counts(after, "limits")
    assert limits1 - limits0 == 5  # one limits step per request, exactly
    assert errors0 == errors1 == {"timeout": 0, "unavailable": 0, "other": 0}
    deleted0, _ = store_counts(before, "session_delete")
    deleted1, _ = store_counts(after, "session_delete")
    assert deleted1 - deleted0 == 1
    written, _ = store_counts(after, "session_write")
    assert written >= 1  # the key's creation
    buckets = samples(after, "fastgate_store_operation_seconds", "_bucket", operation="limits", le="+Inf")
    assert list(buckets.values()) == [limits1]
    flush_redis_db(REDIS_TEST_URL)


def families_typed(families: dict) -> bool:
    return (families["fastgate_store_operation_seconds"].type == "histogram"
            and families["fastgate_store_errors"].type == "counter")


def test_memory_store_reports_no_store_series(make_gateway, upstream):
    control = free_port()
    gw = make_gateway([classic_api("mem", "/mem/", upstream.url)], {"control_api_port": control})
    assert requests.get(gw.url + "/mem/echo", timeout=5).status_code == 200
    families = scrape(control)
    assert not [name for name in families if name.startswith("fastgate_store_")]


@pytest.mark.redis
def test_store_errors_by_kind_with_redis_paused_then_killed(make_gateway, upstream):
    """SIGSTOP: Redis accepts nothing and answers nothing -> timeouts; SIGKILL: connection refused
    -> unavailable. Every request is answered 503 (never a hang, never a 500)."""
    servers = _Servers("fastgate-metrics-redis-")
    port = free_port()
    servers.start_server(port)
    proc = servers.procs[port]
    control = free_port()
    url = f"redis://127.0.0.1:{port}/0?socket_timeout=0.3&socket_connect_timeout=0.3&breaker_seconds=0"
    try:
        gw = make_gateway([token_api("st", upstream.url)], {"control_api_port": control, "storage": {"url": url}})
        made = requests.post(f"http://127.0.0.1:{control}/tyk/keys/create", headers=ADMIN, timeout=5,
                             json={"access_rights": rights("st"), "org_id": "default", "rate": 1000, "per": 1})
        key = made.json()["key"]
        assert requests.get(gw.url + "/st/echo", headers={"Authorization": key}, timeout=5).status_code == 200
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                assert requests.get(gw.url + "/st/echo", headers={"Authorization": key}, timeout=10).status_code == 503
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        paused = scrape(control)
        _, errors = store_counts(paused, "limits")
        assert errors["timeout"] == 3 and errors["other"] == 0
        servers.kill(port)
        for _ in range(3):
            assert requests.get(gw.url + "/st/echo", headers={"Authorization": key}, timeout=10).status_code == 503
        killed = scrape(control)
        _, errors = store_counts(killed, "limits")
        _, reads = store_counts(killed, "session_read")
        assert errors["timeout"] == 3
        # Each request fails at its first store operation: the session read (the cache is dropped
        # when the event connection breaks) or the limits step.
        assert errors["unavailable"] + reads["unavailable"] == 3
        assert sum(v for k, v in samples(killed, "fastgate_store_errors").items() if dict(k)["error"] == "other") == 0
    finally:
        servers.stop()


def test_introspection_and_oidc_discovery_are_counted(make_gateway, upstream):
    intro = IntrospectionServer()
    good, liar = OidcIssuer({"kty": "oct"}), OidcIssuer({"kty": "oct"}, name="liar")
    liar.claimed_issuer = "https://elsewhere.example/idp"  # its discovery document is refused
    dead = f"http://127.0.0.1:{free_port()}/introspect"  # nothing listens there
    control = free_port()

    def ext(api_id: str, url: str) -> dict:
        return classic_api(api_id, f"/{api_id}/", upstream.url, use_keyless=False, external_oauth={
            "enabled": True, "providers": [{"jwt": {"enabled": False}, "introspection": {
                "enabled": True, "url": url, "client_id": "gw-client", "client_secret": "gw-secret-0123456789",
                "identity_base_field": "sub", "cache": {"enabled": False, "timeout": 0}}}]})

    def oidc(api_id: str, issuer: OidcIssuer) -> dict:
        return classic_api(api_id, f"/{api_id}/", upstream.url, use_keyless=False, use_openid=True,
                           openid_options={"providers": [{"issuer": issuer.issuer, "client_ids": {}}]})

    try:
        gw = make_gateway([ext("intro", intro.url), ext("down", dead), oidc("oidc", good), oidc("liar", liar)],
                          {"control_api_port": control})
        start = scrape(control)
        token = "at-" + secrets.token_urlsafe(16)
        intro.activate(token, sub="carol", exp=int(time.time()) + 300)
        for _ in range(3):
            assert requests.get(gw.url + "/intro/x", headers={"Authorization": f"Bearer {token}"},
                                timeout=10).status_code == 200
        for _ in range(2):
            assert requests.get(gw.url + "/down/x", headers={"Authorization": f"Bearer {token}"},
                                timeout=10).status_code == 503
        families = scrape(control)
        assert counter(families, "fastgate_introspection_calls") - counter(start, "fastgate_introspection_calls") == 5
        assert counter(families, "fastgate_introspection_calls_failures") \
            - counter(start, "fastgate_introspection_calls_failures") == 2
        # Discovery before the listener opened: one fetch per issuer, the liar's refused.
        assert counter(start, "fastgate_oidc_discovery_fetches") == good.discovery_hits + liar.discovery_hits >= 2
        assert counter(start, "fastgate_oidc_discovery_fetches_failures") == liar.discovery_hits >= 1
        assert counter(start, "fastgate_jwks_fetches") >= 1  # the good issuer's key set
    finally:
        for server in (intro, good, liar):
            server.stop()
