"""Basic auth end to end: users made through the Gateway API, clients curl and requests.

Scenarios follow Tyk's tests (tyk-reference §17, "Basic auth"): statuses, messages and the
``WWW-Authenticate`` challenge are Tyk's, literally. Beyond them: the bcrypt cache follows
password changes and deletes on every node, a slow uncached bcrypt check leaves other requests
alone, and passwords over 72 bytes never match by truncation.
"""

from __future__ import annotations

import base64
import statistics
import subprocess
import threading
import time

import pytest
import requests

from tests.kit.fixtures import REDIS_TEST_URL, flush_redis_db, module_gateway
from tests.kit.apis import classic_api, rights
from tests.kit.gateway_api import ADMIN, create_key, error_of


CHALLENGE = 'Basic realm="Basic API"'


def basic_api(api_id: str, upstream_url: str, **fields):
    fields.setdefault("name", "Basic API")
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False, use_basic_auth=True, **fields)


def create_user(gw, name: str, password: str, *api_ids: str, **extra):
    body = {"org_id": "default", "basic_auth_data": {"password": password}, "access_rights": rights(*api_ids), **extra}
    return create_key(gw, body, name)


def auth_header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BODY_AUTH = {"extract_from_body": True, "body_user_regexp": "<User>(.*)</User>",
             "body_password_regexp": "<Password>(.*)</Password>"}


@pytest.fixture(scope="module", params=["memory://", REDIS_TEST_URL], ids=["memory", "redis"])
def gw(request, tmp_path_factory, upstream):
    """One gateway per store for the module (tests use their own user names): starting one is the
    slowest part of a test."""
    apis = [
        basic_api("basic", upstream.url),
        basic_api("nocache", upstream.url, basic_auth={"disable_caching": True}),
        basic_api("body", upstream.url, basic_auth=BODY_AUTH),
    ]
    # Many wrong passwords on purpose: failed-login throttling (tested in tests/security) kept out of the way.
    lenient = {"basic_auth_failures_per_user": 1000, "basic_auth_failures_per_client": 10000}
    yield from module_gateway(request.param, tmp_path_factory.mktemp("basic"), apis, lenient)


def test_statuses_messages_and_challenge(gw):
    create_user(gw, "defaultuser", "password", "basic")
    ok = requests.get(gw.url + "/basic/echo", auth=("defaultuser", "password"), timeout=5)
    assert ok.status_code == 200 and ok.json()["path"] == "/echo"
    assert "WWW-Authenticate" not in ok.headers

    missing = requests.get(gw.url + "/basic/echo", timeout=5)
    assert missing.status_code == 401 and error_of(missing) == "Authorization field missing"
    assert missing.headers["WWW-Authenticate"] == CHALLENGE

    wrong = requests.get(gw.url + "/basic/echo", auth=("defaultuser", "wrong"), timeout=5)
    assert wrong.status_code == 401 and error_of(wrong) == "User not authorised"
    assert wrong.headers["WWW-Authenticate"] == CHALLENGE

    unknown = requests.get(gw.url + "/basic/echo", auth=("nobody", "password"), timeout=5)
    assert unknown.status_code == 401 and error_of(unknown) == "User not authorised"
    assert unknown.headers["WWW-Authenticate"] == CHALLENGE

    cases = {
        "Basic": "header not in basic auth format",
        "Basic " + base64.b64encode(b"defaultuser:password").decode() + " x": "header not in basic auth format",
        "not base64": "auth data not encoded correctly",
        "Basic !!!": "auth data not encoded correctly",
        "Basic " + base64.b64encode(b"defaultusernocolon").decode(): "values not in basic auth format",
    }
    for value, reason in cases.items():
        r = requests.get(gw.url + "/basic/echo", headers={"Authorization": value}, timeout=5)
        assert r.status_code == 400, value
        assert error_of(r) == "Attempted access with malformed header, " + reason
        assert "WWW-Authenticate" not in r.headers

    # The user's key is not an auth token and its password is never shown.
    r = requests.get(gw.url + "/tyk/keys/defaultuser?org_id=default", headers=ADMIN, timeout=5)
    assert r.status_code == 200 and r.json()["basic_auth_data"] == {"hash_type": "bcrypt"}


def test_curl_u(gw):
    create_user(gw, "curly", "pa ss", "basic")

    def curl(*args):
        out = subprocess.run(["curl", "-s", "-i", "--max-time", "5", *args, gw.url + "/basic/echo"],
                             capture_output=True, timeout=10)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        return head.decode(), body

    head, body = curl("-u", "curly:pa ss")
    assert head.startswith("HTTP/1.1 200") and b'"path": "/echo"' in body
    head, body = curl("-u", "curly:nope")
    assert head.startswith("HTTP/1.1 401") and f"WWW-Authenticate: {CHALLENGE}" in head
    assert b"User not authorised" in body


def test_similar_names_and_passwords(gw):
    create_user(gw, "bellbell1", "password", "basic", "nocache")
    for api in ("basic", "nocache"):  # with the bcrypt cache and without it
        assert requests.get(f"{gw.url}/{api}/echo", auth=("bellbell1", "password"), timeout=5).status_code == 200
        for name in ("bellbell", "bell", "bellbell11", "bellbell12"):
            assert requests.get(f"{gw.url}/{api}/echo", auth=(name, "password"), timeout=5).status_code == 401
        for password in ("passwor", "pas", "password1", "password333", ""):
            assert requests.get(f"{gw.url}/{api}/echo", auth=("bellbell1", password), timeout=5).status_code == 401
        assert requests.get(f"{gw.url}/{api}/echo", auth=("bellbell1", "password"), timeout=5).status_code == 200


def test_credentials_in_the_body(gw, upstream):
    create_user(gw, "soap", "password", "body")
    url = gw.url + "/body/echo"
    empty = requests.post(url, timeout=5)
    assert empty.status_code == 400 and error_of(empty) == "Body do not contain username"
    assert "WWW-Authenticate" not in empty.headers
    body = b"<Envelope><User>soap</User><Password>password</Password><Data>x</Data></Envelope>"
    ok = requests.post(url, data=body, timeout=5)
    assert ok.status_code == 200 and "WWW-Authenticate" not in ok.headers
    import hashlib
    assert ok.json()["body_sha256"] == hashlib.sha256(body).hexdigest()  # forwarded unchanged
    chunked = requests.post(url, data=iter([body[:20], body[20:]]), timeout=5)
    assert chunked.status_code == 200 and chunked.json()["body_length"] == len(body)
    wrong = requests.post(url, data=b"<User>soap</User><Password>nope</Password>", timeout=5)
    assert wrong.status_code == 401 and error_of(wrong) == "User not authorised"
    assert wrong.headers["WWW-Authenticate"] == CHALLENGE
    only_user = requests.post(url, data=b"<User>soap</User>", timeout=5)
    assert only_user.status_code == 400 and error_of(only_user) == "Body do not contain password"
    malformed = requests.post(url, data=b"<User>User>", timeout=5)
    assert malformed.status_code == 400 and error_of(malformed) == "Body do not contain username"
    # A valid header is used as is, without reading the body.
    header = requests.post(url, data=b"anything", auth=("soap", "password"), timeout=5)
    assert header.status_code == 200
    big = requests.post(url, data=b"x" * (70 * 1024), timeout=10)
    assert big.status_code == 413


def test_password_change_and_delete_take_effect(gw):
    create_user(gw, "carol", "first", "basic")
    assert requests.get(gw.url + "/basic/echo", auth=("carol", "first"), timeout=5).status_code == 200
    body = {"org_id": "default", "basic_auth_data": {"password": "second"},
            "access_rights": {"basic": {"api_id": "basic", "api_name": "basic", "versions": ["Default"]}}}
    r = requests.put(gw.url + "/tyk/keys/carol?org_id=default", json=body, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    assert requests.get(gw.url + "/basic/echo", auth=("carol", "first"), timeout=5).status_code == 401
    assert requests.get(gw.url + "/basic/echo", auth=("carol", "second"), timeout=5).status_code == 200
    # PUT without a password keeps the stored hash.
    body["basic_auth_data"] = {"password": ""}
    assert requests.put(gw.url + "/tyk/keys/carol?org_id=default", json=body, headers=ADMIN, timeout=10).ok
    assert requests.get(gw.url + "/basic/echo", auth=("carol", "second"), timeout=5).status_code == 200
    assert requests.delete(gw.url + "/tyk/keys/carol?org_id=default", headers=ADMIN, timeout=5).ok
    assert requests.get(gw.url + "/basic/echo", auth=("carol", "second"), timeout=5).status_code == 401


def test_a_remembered_login_stops_working_as_soon_as_its_user_is_deleted(gw):
    # The first requests check the password (bcrypt, then its cached result); the next ones are
    # answered from the stage's memo of the Authorization value. Deleting the user ends it at once.
    create_user(gw, "erin", "pass-1", "basic")
    create_user(gw, "frank", "pass-2", "basic")
    with requests.Session() as client:
        for _ in range(5):
            assert client.get(gw.url + "/basic/echo", auth=("erin", "pass-1"), timeout=5).status_code == 200
            assert client.get(gw.url + "/basic/echo", auth=("frank", "pass-2"), timeout=5).status_code == 200
        assert client.get(gw.url + "/basic/echo", auth=("erin", "pass-2"), timeout=5).status_code == 401
        assert requests.delete(gw.url + "/tyk/keys/erin?org_id=default", headers=ADMIN, timeout=5).ok
        for _ in range(3):
            denied = client.get(gw.url + "/basic/echo", auth=("erin", "pass-1"), timeout=5)
            assert denied.status_code == 401 and error_of(denied) == "User not authorised"
            assert client.get(gw.url + "/basic/echo", auth=("frank", "pass-2"), timeout=5).status_code == 200


def test_passwords_over_72_bytes(gw):
    r = requests.post(f"{gw.url}/tyk/keys/longpw", headers=ADMIN, timeout=10, json={
        "org_id": "default", "basic_auth_data": {"password": "x" * 73},
        "access_rights": {"basic": {"api_id": "basic"}}})
    assert r.status_code == 400 and "72 bytes" in r.json()["message"]
    create_user(gw, "edge", "y" * 72, "basic")
    assert requests.get(gw.url + "/basic/echo", auth=("edge", "y" * 72), timeout=5).status_code == 200
    # bcrypt alone would accept this: it reads only the first 72 bytes.
    assert requests.get(gw.url + "/basic/echo", auth=("edge", "y" * 72 + "junk"), timeout=5).status_code == 401


def test_slow_bcrypt_does_not_stall_other_requests(make_gateway, upstream):
    gw = make_gateway([basic_api("basic", upstream.url),
                       classic_api("open", "/open/", upstream.url)])
    create_user(gw, "slow", "password", "basic")
    session = requests.Session()
    assert session.get(gw.url + "/basic/echo", auth=("slow", "password"), timeout=5).status_code == 200

    # Distinct wrong passwords: every one needs its own bcrypt run (~0.1 s each, two threads).
    started = time.perf_counter()
    results: list[int] = []

    def guess(i: int) -> None:
        r = requests.get(gw.url + "/basic/echo", auth=("slow", f"guess-{i}"), timeout=30)
        results.append(r.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    latencies = []
    while any(t.is_alive() for t in threads):
        t0 = time.perf_counter()
        assert session.get(gw.url + "/basic/echo", auth=("slow", "password"), timeout=5).status_code == 200
        assert session.get(gw.url + "/open/echo", timeout=5).status_code == 200
        latencies.append((time.perf_counter() - t0) / 2)
    for t in threads:
        t.join()
    batch = time.perf_counter() - started
    assert results == [401] * 8
    assert len(latencies) >= 5, (latencies, batch)
    # Cached and keyless requests kept being answered while bcrypt ran: each took a small
    # fraction of the bcrypt batch, not the batch.
    assert statistics.median(latencies) < min(0.05, batch / 10), (latencies, batch)
    assert max(latencies) < batch / 2, (latencies, batch)


def test_basic_and_token_together(make_gateway, upstream):
    api = basic_api("both", upstream.url, use_standard_auth=True, base_identity_provided_by="auth_token",
                    auth_configs={"authToken": {"auth_header_name": "x-standard-auth"}})
    gw = make_gateway([api])
    create_user(gw, "mixed", "password", "both")
    key = requests.post(gw.url + "/tyk/keys/create", headers=ADMIN, timeout=5, json={
        "org_id": "default", "rate": 100, "per": 1, "access_rights": {"both": {"api_id": "both"}}}).json()["key"]
    headers = {**auth_header("mixed", "password"), "x-standard-auth": "Bearer " + key}
    ok = requests.get(gw.url + "/both/echo", headers=headers, timeout=5)
    assert ok.status_code == 200 and ok.headers["X-RateLimit-Limit"] == "100"
    bad_password = {**auth_header("mixed", "nope"), "x-standard-auth": key}
    assert requests.get(gw.url + "/both/echo", headers=bad_password, timeout=5).status_code == 401
    bad_token = {**auth_header("mixed", "password"), "x-standard-auth": "wrong"}
    assert requests.get(gw.url + "/both/echo", headers=bad_token, timeout=5).status_code == 403


def test_hash_functions_and_legacy_users(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    try:
        storage = {"storage": {"url": REDIS_TEST_URL}}
        legacy = make_gateway([basic_api("basic", upstream.url)],
                              {**storage, "hash_key_function": "", "basic_auth_hash_key_function": "sha256"})
        create_user(legacy, "olduser", "password", "basic")
        stored = requests.get(legacy.url + "/tyk/keys/olduser?org_id=default", headers=ADMIN, timeout=5).json()
        assert stored["basic_auth_data"] == {"hash_type": "sha256"}
        legacy.stop()
        # Switching to hashed JSON key ids: the user made in the legacy format is still found.
        current = make_gateway([basic_api("basic", upstream.url)],
                               {**storage, "hash_key_function": "murmur64", "basic_auth_hash_key_function": "plain"})
        assert requests.get(current.url + "/basic/echo", auth=("olduser", "password"), timeout=5).status_code == 200
        assert requests.get(current.url + "/basic/echo", auth=("olduser", "nope"), timeout=5).status_code == 401
        create_user(current, "plainuser", "pw", "basic")
        assert requests.get(current.url + "/basic/echo", auth=("plainuser", "pw"), timeout=5).status_code == 200
    finally:
        flush_redis_db(REDIS_TEST_URL)


def test_password_change_reaches_every_node(make_gateway, upstream):
    flush_redis_db(REDIS_TEST_URL)
    try:
        settings = {"storage": {"url": REDIS_TEST_URL}}
        a = make_gateway([basic_api("basic", upstream.url)], settings)
        b = make_gateway([basic_api("basic", upstream.url)], settings)
        create_user(a, "dave", "first", "basic")
        for node in (a, b):  # both nodes cache the session and the bcrypt result
            assert requests.get(node.url + "/basic/echo", auth=("dave", "first"), timeout=5).status_code == 200
        body = {"org_id": "default", "basic_auth_data": {"password": "second"},
                "access_rights": {"basic": {"api_id": "basic"}}}
        assert requests.put(b.url + "/tyk/keys/dave?org_id=default", json=body, headers=ADMIN, timeout=10).ok
        deadline = time.monotonic() + 2
        while requests.get(a.url + "/basic/echo", auth=("dave", "first"), timeout=5).status_code == 200:
            assert time.monotonic() < deadline, "node a still accepts the old password"
            time.sleep(0.02)
        assert requests.get(a.url + "/basic/echo", auth=("dave", "second"), timeout=5).status_code == 200
    finally:
        flush_redis_db(REDIS_TEST_URL)


def test_oas_basic_scheme(make_gateway, upstream):
    """A Tyk OAS API: ``{type: http, scheme: basic}`` + its vendor entry (credential in a header of
    its own, body extraction), and no auth token asked for beside it."""
    api = {
        "openapi": "3.0.3",
        "info": {"title": "OAS Basic", "version": "1"},
        "paths": {},
        "components": {"securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}}},
        "security": [{"basicAuth": []}],
        "x-tyk-api-gateway": {
            "info": {"id": "oas-basic", "name": "OAS Basic", "orgId": "default", "state": {"active": True}},
            "upstream": {"url": upstream.url},
            "server": {
                "listenPath": {"value": "/oas-basic/", "strip": True},
                "authentication": {"enabled": True, "securitySchemes": {"basicAuth": {
                    "enabled": True, "header": {"enabled": True, "name": "X-Basic"},
                    "extractCredentialsFromBody": {"enabled": True, "userRegexp": "u=(\\w+)",
                                                   "passwordRegexp": "p=(\\w+)"}}}},
            },
        },
    }
    gw = make_gateway([api])
    create_user(gw, "oasuser", "pw", "oas-basic")
    url = gw.url + "/oas-basic/echo"
    assert requests.get(url, headers={"X-Basic": auth_header("oasuser", "pw")["Authorization"]}, timeout=5).ok
    assert requests.post(url, data=b"u=oasuser&p=pw", timeout=5).status_code == 200
    wrong = requests.get(url, headers={"X-Basic": auth_header("oasuser", "no")["Authorization"]}, timeout=5)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == 'Basic realm="OAS Basic"'


def test_credentials_in_the_body_with_expect_continue(gw):
    # The body holds the credentials, so the gateway must ask for it (100) before it can decide.
    import socket

    create_user(gw, "soapexpect", "password", "body")
    body = b"<User>soapexpect</User><Password>password</Password>"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"POST /body/echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        s.settimeout(0.8)  # well under curl's 1 s wait: the 100 must come at once
        interim = s.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.settimeout(5)
        s.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
