"""The OAuth server across nodes on one Redis, its hashed storage, and key-change notifications.

Two gateways share a Redis database: a code approved on A is redeemed on B, a token issued on A
works on B at once, a revocation or client deletion on A is refused on B within a second, and a
code redeemed on both nodes at once is redeemed once. Notifications reach the configured URL with
the shared secret; a dead endpoint never slows a token request.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from tests.kit.fixtures import REDIS_TEST_URL
from tests.kit.gateway_api import ADMIN
from tests.kit.oauth import (
    ALL_GRANTS, POLICIES, REDIRECT, approve, get, make_client, oauth_api, token_post,
)


@pytest.fixture
def two_nodes(make_gateway, upstream, redis_db):
    settings = {"storage": {"url": redis_db}}
    nodes = [make_gateway([oauth_api("o", upstream.url, ALL_GRANTS)], settings, policies=POLICIES, wait=False)
             for _ in range(2)]
    for node in nodes:
        node.ready()
    return tuple(nodes)


def refused_within(gw, token: str, seconds: float, message: str) -> float:
    """Seconds until ``gw`` refuses ``token`` with 403 ``message`` (fails after ``seconds``)."""
    start = time.monotonic()
    while True:
        r = get(gw, "/o/x", token)
        if r.status_code == 403:
            assert r.json() == {"error": message}
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, r.status_code
        time.sleep(0.02)


def cc_token(gw, client) -> dict:
    r = token_post(gw, {"grant_type": "client_credentials"}, auth=(client["client_id"], client["secret"]))
    assert r.status_code == 200, r.text
    return r.json()


def test_issue_on_a_works_on_b_and_revoke_on_a_refuses_on_b(two_nodes):
    a, b = two_nodes
    client = make_client(a)
    token = cc_token(a, client)
    for _ in range(3):  # at once, and now cached on B
        assert get(b, "/o/x", token["access_token"]).status_code == 200
    r = requests.post(f"{a.url}/o/oauth/revoke", data={"token": token["access_token"]}, timeout=5)
    assert r.status_code == 200
    assert refused_within(b, token["access_token"], 1.0, "Key not authorised") < 1.0


def test_code_from_a_redeemed_on_b_and_refresh_rotated_across_nodes(two_nodes):
    a, b = two_nodes
    client = make_client(b)
    creds = (client["client_id"], client["secret"])
    code = approve(a, {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                       "state": "s"}).json()["code"]
    first = token_post(b, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                       auth=creds).json()
    assert get(a, "/o/x", first["access_token"]).status_code == 200
    second = token_post(a, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=creds)
    assert second.status_code == 200
    assert refused_within(b, first["access_token"], 1.0, "Key not authorised") < 1.0
    # reuse on the other node revokes the grant there too
    reuse = token_post(b, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=creds)
    assert reuse.status_code == 403 and reuse.json()["error"] == "invalid_grant"
    refused_within(a, second.json()["access_token"], 1.0, "Key not authorised")


def test_deleted_client_on_a_is_refused_on_b(two_nodes):
    a, b = two_nodes
    client = make_client(a)
    token = cc_token(b, client)
    assert get(b, "/o/x", token["access_token"]).status_code == 200
    assert a.admin("DELETE", f"/tyk/oauth/clients/o/{client['client_id']}")[0] == 200
    refused_within(b, token["access_token"], 3.0, "Key not authorised. OAuth client access was revoked")


def test_one_code_redeemed_on_both_nodes_at_once_is_redeemed_once(two_nodes):
    a, b = two_nodes
    client = make_client(a)
    creds = (client["client_id"], client["secret"])
    for _ in range(5):
        code = approve(a, {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                           "state": "s"}).json()["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda node: token_post(node, form, auth=creds), (a, b)))
        assert sorted(r.status_code for r in answers) == [200, 403]


def test_codes_and_tokens_are_stored_hashed(two_nodes):
    a, _b = two_nodes
    client = make_client(a)
    code = approve(a, {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                       "state": "s"}).json()["code"]
    db = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        stored_code = b" ".join(db.keys("*"))
        token = token_post(a, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                           auth=(client["client_id"], client["secret"])).json()
        keys = db.keys("*")
        values = b" ".join(db.get(k) or b"" for k in keys if db.type(k) == b"string")
        everything = stored_code + b" ".join(keys) + values
    finally:
        db.close()
    assert b"oauth-authorize" in stored_code
    for secret in (code, token["access_token"], token["refresh_token"]):
        assert secret.encode() not in everything


# ---- notifications ---------------------------------------------------------------------------


class Receiver:
    """An HTTP endpoint recording the notifications POSTed to it."""

    def __init__(self, fail_first: int = 0) -> None:
        self.seen: list[tuple[dict, str | None]] = []
        self.refused = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.refused < fail_first:
                    receiver.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.seen.append((json.loads(body), self.headers.get("X-Tyk-Shared-Secret")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keychange"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_key_change_notifications(make_gateway, upstream):
    receiver = Receiver()
    try:
        api = oauth_api("o", upstream.url, ALL_GRANTS, notifications={
            "shared_secret": "notify-secret-1", "oauth_on_keychange_url": receiver.url})
        gw = make_gateway([api], policies=POLICIES)
        client = make_client(gw)
        creds = (client["client_id"], client["secret"])
        code = approve(gw, {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                            "state": "s"}).json()["code"]
        first = token_post(gw, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
                           auth=creds).json()
        wait_for(lambda: len(receiver.seen) == 1)
        notice, secret = receiver.seen[0]
        assert secret == "notify-secret-1"
        assert notice == {"auth_code": code, "new_oauth_token": first["access_token"],
                          "refresh_token": first["refresh_token"], "old_refresh_token": "",
                          "notification_type": "new"}
        second = token_post(gw, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                            auth=creds).json()
        wait_for(lambda: len(receiver.seen) == 2)
        assert receiver.seen[1][0]["notification_type"] == "refresh"
        assert receiver.seen[1][0]["old_refresh_token"] == first["refresh_token"]
        assert receiver.seen[1][0]["new_oauth_token"] == second["access_token"]
    finally:
        receiver.stop()


def test_a_dead_notification_endpoint_never_slows_token_requests(make_gateway, upstream):
    # Accepts connections (the backlog) and never answers: every attempt waits for its timeout.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/keychange"
        api = oauth_api("o", upstream.url, ALL_GRANTS, notifications={"shared_secret": "s",
                                                                       "oauth_on_keychange_url": url})
        gw = make_gateway([api], policies=POLICIES)
        client = make_client(gw)
        times = []
        for _ in range(10):
            start = time.monotonic()
            assert token_post(gw, {"grant_type": "client_credentials"},
                              auth=(client["client_id"], client["secret"])).status_code == 200
            times.append(time.monotonic() - start)
        assert max(times) < 1.0, times
        assert requests.get(gw.url + "/hello", headers=ADMIN, timeout=5).status_code == 200
    finally:
        silent.close()


def test_a_failed_notification_is_retried(make_gateway, upstream):
    receiver = Receiver(fail_first=2)
    try:
        api = oauth_api("o", upstream.url, ALL_GRANTS, notifications={"shared_secret": "s",
                                                                       "oauth_on_keychange_url": receiver.url})
        gw = make_gateway([api], policies=POLICIES)
        client = make_client(gw)
        token = token_post(gw, {"grant_type": "client_credentials"}, auth=(client["client_id"], client["secret"]))
        wait_for(lambda: len(receiver.seen) == 1)
        assert receiver.refused == 2 and receiver.seen[0][0]["new_oauth_token"] == token.json()["access_token"]
        time.sleep(2)  # the third attempt succeeded: no fourth
        assert len(receiver.seen) == 1
    finally:
        receiver.stop()
