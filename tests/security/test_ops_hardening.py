"""Operations that must not leak or fail open: the access log, stale CRLs, and /hello.

Over the wire against real gateway processes: the access log never holds a key from a Gateway
API path, a CRL past its nextUpdate refuses client certificates unless allowed, and ``/hello``
says ``fail`` (503) while Redis cannot be reached, through a small TCP relay to the real Redis
that the test stops and starts again (the Redis server itself is never touched).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import socket
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.kit.apis import classic_api, rights
from tests.kit.procs import SECRET, free_port
from tests.kit.raw import RawClient
from tests.kit.redisdb import GATEWAY_TESTS_URL
from tests.kit.tls import Pki

ORG = "default"


# ---- 11. the access log never holds a key ------------------------------------------------------


def test_the_access_log_hashes_keys_in_gateway_api_paths(make_gateway, upstream, tmp_path):
    log_path = tmp_path / "access.log"
    gw = make_gateway([classic_api("k", "/k/", upstream.url, use_keyless=False, auth={"auth_header_name": "Authorization"})],
                      {"access_log": {"enabled": True, "path": str(log_path)}})
    status, body = gw.admin("POST", "/tyk/keys/create", {"org_id": ORG, "access_rights": rights("k")})
    assert status == 200, body
    key = body["key"]
    custom = "my-very-own-custom-key-0042"
    assert gw.admin("POST", f"/tyk/keys/{custom}", {"org_id": ORG, "access_rights": rights("k")})[0] == 200
    assert gw.admin("GET", f"/tyk/keys/{key}")[0] == 200
    assert gw.admin("GET", f"/tyk/keys/{key}?org_id={ORG}")[0] == 200
    assert gw.admin("PUT", f"/tyk/keys/{key}", {"org_id": ORG, "access_rights": rights("k")})[0] == 200
    assert gw.admin("POST", f"/tyk/keys/policy/{key}", {"apply_policies": []})[0] in (200, 400)
    gw.admin("GET", f"/tyk/oauth/clients/k/client-id-{key[:12]}")
    gw.admin("POST", f"/tyk/oauth/refresh/{key}")
    assert gw.admin("DELETE", f"/tyk/keys/{key}")[0] == 200
    assert gw.admin("GET", f"/tyk/keys/{custom}?org_id={ORG}")[0] == 200
    gw.stop()
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) >= 10
    for secret in (key, custom, key[:12]):
        assert secret not in text
    digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    paths = [line["path"] for line in lines]
    assert f"/tyk/keys/{digest}" in paths and f"/tyk/keys/policy/{digest}" in paths
    assert "/tyk/keys/create" in paths  # literal words stay readable


# ---- 13. a CRL past its nextUpdate fails closed ------------------------------------------------


def write_crl(pki: Pki, ca, revoked, name: str, next_update: datetime.timedelta):
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(now - datetime.timedelta(days=2)).next_update(now + next_update))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial).revocation_date(now).build())
    path = pki.dir / name
    tmp = pki.dir / (name + ".tmp")
    tmp.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)
    return path


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def mtls_get(gw, pki, path, cert):
    return requests.get(gw.url + path, verify=str(pki.server_ca_path), cert=cert.pair, timeout=5)


@pytest.mark.parametrize("where", ["global", "api"])
def test_a_crl_past_its_next_update_refuses_every_client_certificate(make_gateway, upstream, pki, where):
    ca = pki.ca()
    fine, revoked = pki.client(ca), pki.client(ca)
    crl = write_crl(pki, ca, [revoked], "stale.crl", -datetime.timedelta(hours=1))
    ca_file = str(pki.ca_file(ca, "ca"))
    api_fields = {"client_certificate_crl_file": str(crl)} if where == "api" else {}
    extra = {"crl_file": str(crl)} if where == "global" else {}
    gw = make_gateway(
        [classic_api("m", "/m/", upstream.url, use_mutual_tls_auth=True, client_certificates=[ca_file], **api_fields),
         classic_api("open", "/open/", upstream.url)],
        {"http_server_options": pki.server_settings(**extra)},
    )
    for cert in (fine, revoked):
        r = mtls_get(gw, pki, "/m/get", cert)
        assert r.status_code == 403, r.text
    assert requests.get(gw.url + "/open/get", verify=str(pki.server_ca_path), timeout=5).status_code == 200
    assert "is past its next update" in gw.log and "allow_expired_crl" in gw.log
    # A renewed CRL is used without a reload: the fine certificate passes, the revoked one not.
    write_crl(pki, ca, [revoked], "stale.crl", datetime.timedelta(days=1))
    deadline = time.monotonic() + 5
    while mtls_get(gw, pki, "/m/get", fine).status_code != 200:
        assert time.monotonic() < deadline, "the renewed CRL was never picked up"
        time.sleep(0.2)
    assert mtls_get(gw, pki, "/m/get", revoked).status_code == 403


def test_allow_expired_crl_uses_a_stale_list(make_gateway, upstream, pki):
    ca = pki.ca()
    fine, revoked = pki.client(ca), pki.client(ca)
    crl = write_crl(pki, ca, [revoked], "stale.crl", -datetime.timedelta(hours=1))
    gw = make_gateway(
        [classic_api("m", "/m/", upstream.url, use_mutual_tls_auth=True, client_certificates=[str(pki.ca_file(ca, "ca"))])],
        {"http_server_options": pki.server_settings(crl_file=str(crl), allow_expired_crl=True)},
    )
    assert mtls_get(gw, pki, "/m/get", fine).status_code == 200
    assert mtls_get(gw, pki, "/m/get", revoked).status_code == 403


# ---- 15. /hello says fail while Redis is unreachable -------------------------------------------


class Relay:
    """A TCP relay from a local port to the real Redis; ``stop`` and ``start`` simulate an outage."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self.server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.conns.clear()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def hello(port: int):
    with RawClient(port) as c:
        return c.request("GET", "/hello", host="localhost", headers="Connection: close\r\n")


def wait_for_hello(port: int, status: str, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    while True:
        resp = hello(port)
        if resp.json()["status"] == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_hello_fails_with_503_while_redis_is_unreachable_and_recovers(make_gateway, upstream):
    relay = Relay(("127.0.0.1", 6379))
    relay.start()
    db = GATEWAY_TESTS_URL.rsplit("/", 1)[1]
    try:
        gw = make_gateway([classic_api("k", "/k/", upstream.url)],
                          {"storage": {"url": f"redis://127.0.0.1:{relay.port}/{db}", "timeout": 0.5}})
        resp = wait_for_hello(gw.port, "pass")
        assert resp.status == 200
        doc = resp.json()
        assert doc["status"] == "pass" and doc["details"]["redis"]["status"] == "pass"
        assert doc["details"]["redis"]["componentType"] == "datastore"

        relay.stop()
        resp = wait_for_hello(gw.port, "fail")
        assert resp.status == 503
        doc = resp.json()
        assert doc["status"] == "fail"
        assert doc["details"]["redis"]["status"] == "fail" and doc["details"]["redis"]["output"]
        assert doc["details"]["apis"]["status"] == "pass"

        relay.start()
        resp = wait_for_hello(gw.port, "pass")
        assert resp.status == 200 and resp.json()["details"]["redis"]["status"] == "pass"
    finally:
        relay.stop()


def test_hello_with_redis_never_reachable_is_fail(make_gateway, upstream):
    dead = free_port()  # nothing listens there
    gw = make_gateway([classic_api("k", "/k/", upstream.url)],
                      {"storage": {"url": f"redis://127.0.0.1:{dead}/0", "timeout": 0.5}})
    resp = hello(gw.port)
    assert resp.status == 503
    assert resp.json()["status"] == "fail" and resp.json()["details"]["redis"]["status"] == "fail"


def test_hello_on_the_memory_store_passes(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    resp = hello(gw.port)
    assert resp.status == 200 and resp.json()["status"] == "pass"


def test_limited_requests_fail_closed_while_redis_is_cut_and_recover(make_gateway, upstream):
    """The per-request limits step (the store's pipelined client): 503 while its connection is
    gone, never a pass without counting; the next requests reconnect by themselves."""
    relay = Relay(("127.0.0.1", 6379))
    relay.start()
    db = GATEWAY_TESTS_URL.rsplit("/", 1)[1]
    api = classic_api("lim", "/lim/", upstream.url, use_keyless=False, use_standard_auth=True)
    try:
        gw = make_gateway([api], {"storage": {"url": f"redis://127.0.0.1:{relay.port}/{db}",
                                              "timeout": 0.5}})
        wait_for_hello(gw.port, "pass")
        key = requests.post(gw.url + "/tyk/keys/create", headers={"X-Tyk-Authorization": SECRET},
                            json={"rate": 1000, "per": 1, "quota_max": 100, "quota_renewal_rate": 3600,
                                  "access_rights": {"lim": {"api_id": "lim", "api_name": "lim",
                                                            "versions": ["Default"]}}},
                            timeout=5).json()["key"]
        auth = {"Authorization": key}
        first = requests.get(gw.url + "/lim/get", headers=auth, timeout=5)
        assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "99"

        relay.stop()  # every connection through the relay is cut, and new ones are refused
        down = requests.get(gw.url + "/lim/get", headers=auth, timeout=5)
        assert down.status_code == 503
        assert "store is unavailable" in down.json()["error"]

        relay.start()
        deadline = time.monotonic() + 5
        while (back := requests.get(gw.url + "/lim/get", headers=auth, timeout=5)).status_code != 200:
            assert back.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.1)
        assert back.headers["X-RateLimit-Remaining"] == "98"  # the 503s were not counted
    finally:
        relay.stop()
