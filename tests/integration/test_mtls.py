"""Mutual TLS end to end: static allowlists, certificate-bound keys, certificate-derived keys, the
certificate store and its Gateway API, CRLs and identity mapping (tyk-reference §8, §15.3, §17 mTLS).

Certificates are made per test (trustme, cryptography). Requests go through Python ``ssl``,
``requests`` and curl; a refused handshake must surface as a TLS alert, not as an HTTP answer.
"""

from __future__ import annotations

import ssl
import time

import pytest
import redis
import requests

from fastgate.sessions.key_ids import generate_token
from tests.kit.fixtures import REDIS_TEST_URL
from tests.kit.apis import classic_api, rights
from tests.kit.tls import Pki, client_context, curl, https_get
from tests.kit.gateway_api import ADMIN, create_key, error_of


ORG = "default"
DISALLOWED = "Access to this API has been disallowed"


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


def get(gw, pki, path, cert=None, **kw):
    return requests.get(gw.url + path, verify=str(pki.server_ca_path), cert=cert.pair if cert else None,
                        timeout=5, **kw)


def upload(gw, pem, org=ORG):
    status, body = gw.admin("POST", f"/tyk/certs?org_id={org}", pem)
    assert status == 200, body
    return body["id"]


def refused_handshake(gw, pki, cert, path="/"):
    """The TLS alert a handshake with ``cert`` ends in (pytest fails if it gets an answer)."""
    with pytest.raises(ssl.SSLError) as failure:
        https_get(gw.port, path, client_context(pki, cert))
    return str(failure.value)


# ---- static mTLS ------------------------------------------------------------------------------


def test_static_allowlist_by_id_and_by_ca_on_a_shared_listener(make_gateway, upstream, pki):
    ca1, ca2, ca3 = pki.ca(), pki.ca(), pki.ca()
    cert1, by_ca2, cert3 = pki.client(ca1), pki.client(ca2), pki.client(ca3)
    expired_by_ca2 = pki.expired_client(ca2)
    stranger = pki.client(pki.ca())
    cert1_id, cert3_id = f"{ORG}{cert1.sha256}", f"{ORG}{cert3.sha256}"
    gw = make_gateway(
        [
            classic_api("open", "/open/", upstream.url),
            classic_api("mtls", "/mtls/", upstream.url, use_mutual_tls_auth=True,
                        client_certificates=[cert1_id, str(pki.ca_file(ca2, "ca2"))]),
            classic_api("other", "/other/", upstream.url, use_mutual_tls_auth=True, client_certificates=[cert3_id]),
        ],
        {"http_server_options": pki.server_settings()},
    )
    # Ids are resolved when requests arrive: certificates uploaded after the API loaded count.
    assert upload(gw, cert1.pem) == cert1_id
    assert upload(gw, cert3.pem) == cert3_id

    assert get(gw, pki, "/open/get").status_code == 200
    assert get(gw, pki, "/open/get", cert1).status_code == 200  # an API without mTLS ignores it
    missing = get(gw, pki, "/mtls/get")
    assert missing.status_code == 403 and error_of(missing) == "Client TLS certificate is required"
    assert get(gw, pki, "/mtls/get", cert1).status_code == 200
    assert get(gw, pki, "/mtls/get", by_ca2).status_code == 200  # issued by an allowlisted CA
    elsewhere = get(gw, pki, "/mtls/get", cert3)  # allowlisted, but for another API
    assert elsewhere.status_code == 403
    assert error_of(elsewhere) == f"Certificate with SHA256 {cert3.sha256} not allowed"
    assert get(gw, pki, "/other/get", cert3).status_code == 200
    expired = get(gw, pki, "/mtls/get", expired_by_ca2)
    assert expired.status_code == 403 and error_of(expired) == "Certificate has expired"
    # A certificate nothing allows never completes the handshake (Python's ssl cannot accept it
    # and leave the decision to the API, as Go's RequestClientCert does).
    assert "ALERT" in refused_handshake(gw, pki, stranger, "/open/get").upper()

    ok = curl(gw.port, "/mtls/get", pki, cert1)
    assert ok.returncode == 0 and ok.stdout.endswith("\n200"), ok.stderr
    no_cert = curl(gw.port, "/mtls/get", pki)
    assert no_cert.stdout.endswith("\n403") and "Client TLS certificate is required" in no_cert.stdout
    refused = curl(gw.port, "/open/get", pki, stranger)
    assert refused.returncode != 0 and "alert" in refused.stderr.lower(), refused.stderr


def test_every_api_static_requires_the_certificate_in_the_handshake(make_gateway, upstream, pki, tmp_path):
    ca = pki.ca()
    good, intermediate_ca = pki.client(ca), trustme_intermediate(ca)
    through_intermediate = pki.client(intermediate_ca)
    gw = make_gateway(
        [classic_api("mtls", "/mtls/", upstream.url, use_mutual_tls_auth=True,
                     client_certificates=[pki.ca_pem(ca).decode()])],  # inline PEM
        {"http_server_options": pki.server_settings(), "control_api_port": free_port()},
    )
    assert https_get(gw.port, "/mtls/get", client_context(pki, good))[0] == 200
    assert https_get(gw.port, "/mtls/get", client_context(pki, through_intermediate))[0] == 200
    assert "CERTIFICATE_REQUIRED" in refused_handshake(gw, pki, None, "/mtls/get").upper()
    assert "UNKNOWN_CA" in refused_handshake(gw, pki, pki.client(pki.ca()), "/mtls/get").upper()
    # The Gateway API on its own port is TLS too, and never asks for a client certificate.
    port = gw.settings["control_api_port"]
    status, body = https_get(port, "/tyk/certs", client_context(pki), headers=ADMIN)
    assert status == 200 and b'"certs":null' in body


def test_resumed_tls_session_keeps_its_verified_path(make_gateway, upstream, pki):
    import socket

    root = pki.ca()
    intermediate = root.create_child_ca()
    cert = pki.client(intermediate)  # the root is allowlisted; the intermediate comes from the client
    gw = make_gateway(
        [classic_api("mtls", "/mtls/", upstream.url, use_mutual_tls_auth=True,
                     client_certificates=[str(pki.ca_file(root, "root"))])],
        {"http_server_options": pki.server_settings()},
    )
    ctx = client_context(pki, cert)
    session, reused = None, []
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
                tls.sendall(b"GET /mtls/get HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data
                reused.append(tls.session_reused)
                session = tls.session
    assert reused[1:] == [True, True]  # resumed sessions, which carry no verified chain


def test_crl_per_api_and_global(make_gateway, upstream, pki):
    ca = pki.ca()
    revoked_here, revoked_everywhere, fine = pki.client(ca), pki.client(ca), pki.client(ca)
    api_crl = pki.crl(ca, [revoked_here], "api.crl")
    global_crl = pki.crl(ca, [revoked_everywhere], "global.crl")
    ca_file = str(pki.ca_file(ca, "ca"))
    gw = make_gateway(
        [
            classic_api("a", "/a/", upstream.url, use_mutual_tls_auth=True, client_certificates=[ca_file],
                        client_certificate_crl_file=str(api_crl)),
            classic_api("b", "/b/", upstream.url, use_mutual_tls_auth=True, client_certificates=[ca_file]),
        ],
        {"http_server_options": pki.server_settings(crl_file=str(global_crl))},
    )
    assert get(gw, pki, "/a/get", fine).status_code == 200
    for path, cert in (("/a/get", revoked_here), ("/a/get", revoked_everywhere), ("/b/get", revoked_everywhere)):
        r = get(gw, pki, path, cert)
        assert r.status_code == 403 and error_of(r) == "Certificate has been revoked", path
    assert get(gw, pki, "/b/get", revoked_here).status_code == 200  # that CRL is API a's only


# ---- certificate-bound keys -----------------------------------------------------------------


def test_key_bound_to_one_certificate(make_gateway, upstream, pki):
    ca = pki.ca()
    cert1, cert2 = pki.client(ca), pki.client(ca)
    gw = make_gateway(
        [classic_api("bound", "/bound/", upstream.url, use_keyless=False, use_standard_auth=True,
                     use_mutual_tls_auth=True, client_certificates=[str(pki.ca_file(ca, "ca"))])],
        {"http_server_options": pki.server_settings()},
    )
    cert1_id, cert2_id = upload(gw, cert1.pem), upload(gw, cert2.pem)
    bound = create_key(gw, {"org_id": ORG, "access_rights": rights("bound"), "mtls_static_certificate_bindings": [cert1_id]})["key"]
    free = create_key(gw, {"org_id": ORG, "access_rights": rights("bound")})["key"]

    assert get(gw, pki, "/bound/get", cert1, headers={"Authorization": bound}).status_code == 200
    other = get(gw, pki, "/bound/get", cert2, headers={"Authorization": bound})
    assert other.status_code == 401 and error_of(other) == DISALLOWED
    none = get(gw, pki, "/bound/get", headers={"Authorization": bound})
    assert none.status_code == 403 and error_of(none) == "Client TLS certificate is required"
    for cert in (cert1, cert2):  # a key without bindings works with any allowed certificate
        assert get(gw, pki, "/bound/get", cert, headers={"Authorization": free}).status_code == 200

    status, body = gw.admin("POST", "/tyk/keys/create", {"org_id": ORG, "access_rights": rights("bound"),
                                                         "mtls_static_certificate_bindings": [ORG + "0" * 64]})
    assert (status, body["message"]) == (400, f"certificate not found: {ORG}{'0' * 64}")
    status, body = gw.admin("POST", "/tyk/keys/create", {"org_id": ORG, "access_rights": rights("bound"),
                                                         "mtls_static_certificate_bindings": [cert2.sha256]})
    assert (status, body["message"]) == (400, f"invalid certificate ID: {cert2.sha256}")
    status, body = gw.admin("PUT", f"/tyk/keys/{bound}", {"org_id": ORG, "access_rights": rights("bound"),
                                                          "mtls_static_certificate_bindings": [cert2_id]})
    assert status == 200, body
    assert get(gw, pki, "/bound/get", cert2, headers={"Authorization": bound}).status_code == 200
    assert get(gw, pki, "/bound/get", cert1, headers={"Authorization": bound}).status_code == 401


# ---- certificate-derived keys (dynamic mTLS) --------------------------------------------------


def dynamic_api(api_id, upstream_url, **fields):
    return classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=False, use_standard_auth=True,
                       auth_configs={"authToken": {"use_certificate": True}}, **fields)


def test_certificate_derived_keys(make_gateway, upstream, pki, store_url):
    ca = pki.ca()
    cert1, cert2, expired = pki.client(ca), pki.client(ca), pki.expired_client(ca)
    gw = make_gateway(
        [
            dynamic_api("dyn", upstream.url),
            classic_api("plain", "/plain/", upstream.url, use_keyless=False, use_standard_auth=True),
            # Trusts the CA at TLS level, so deleted and expired certificates still reach the
            # dynamic API and get its answers.
            classic_api("static", "/static/", upstream.url, use_mutual_tls_auth=True,
                        client_certificates=[str(pki.ca_file(ca, "ca"))]),
        ],
        {"http_server_options": pki.server_settings(), "storage": {"url": store_url}},
    )
    cert1_id, _cert2_id = upload(gw, cert1.pem), upload(gw, cert2.pem)

    none = get(gw, pki, "/dyn/get")
    assert none.status_code == 401 and error_of(none) == "Client certificate required"
    nokey = get(gw, pki, "/dyn/get", cert1)
    assert nokey.status_code == 401 and error_of(nokey) == DISALLOWED

    key = create_key(gw, {"org_id": ORG, "certificate": cert1_id, "access_rights": rights("dyn", "plain")})["key"]
    assert key == generate_token(ORG, cert1_id, "sha256")  # Tyk's key for a certificate
    assert get(gw, pki, "/dyn/get", cert1).status_code == 200
    assert get(gw, pki, "/dyn/get", cert1).status_code == 200  # cached
    status, body = gw.admin("POST", "/tyk/keys/create", {"org_id": ORG, "certificate": cert1_id,
                                                         "access_rights": rights("dyn")})
    assert (status, body["message"]) == (400, "Failed to create key - Key with given certificate already found:" + key)

    # Secure default: the header token is never enough, not even the key itself or the cert id.
    for token in (key, cert1_id):
        r = get(gw, pki, "/dyn/get", headers={"Authorization": token})
        assert r.status_code == 401 and error_of(r) == "Client certificate required"
    other = get(gw, pki, "/dyn/get", cert2)
    assert other.status_code == 401 and error_of(other) == DISALLOWED
    exp = get(gw, pki, "/dyn/get", expired)
    assert exp.status_code == 403 and error_of(exp) == "Certificate has expired"
    # Its id is computable from the public certificate: never accepted as a plain token.
    plain = get(gw, pki, "/plain/get", headers={"Authorization": key})
    assert plain.status_code == 403 and error_of(plain) == DISALLOWED

    status, body = gw.admin("PUT", f"/tyk/keys/{key}", {"org_id": ORG, "certificate": "",
                                                        "access_rights": rights("dyn")})
    assert (status, body["message"]) == (400, "Key cannot be used without a certificate")
    status, body = gw.admin("PUT", f"/tyk/keys/{key}", {"org_id": ORG, "certificate": ORG + "1" * 64,
                                                        "access_rights": rights("dyn")})
    assert (status, body["message"]) == (400, "Key must be used with an existent certificate")

    # Deleting the certificate disables its key at once.
    assert gw.admin("DELETE", f"/tyk/certs/{cert1_id}") == (200, {"status": "ok", "message": "removed"})
    gone = get(gw, pki, "/dyn/get", cert1)
    assert gone.status_code == 403 and error_of(gone) == DISALLOWED


def test_deleted_certificate_leaves_the_handshake_trust(make_gateway, upstream, pki):
    cert = pki.client(pki.ca())
    gw = make_gateway([dynamic_api("dyn", upstream.url)], {"http_server_options": pki.server_settings()})
    assert "ALERT" in refused_handshake(gw, pki, cert, "/dyn/get").upper()  # not registered yet
    cert_id = upload(gw, cert.pem)
    create_key(gw, {"org_id": ORG, "certificate": cert_id, "access_rights": rights("dyn")})
    assert get(gw, pki, "/dyn/get", cert).status_code == 200
    gw.admin("DELETE", f"/tyk/certs/{cert_id}")
    assert "ALERT" in refused_handshake(gw, pki, cert, "/dyn/get").upper()


def test_unsafe_dynamic_mtls_token_is_tyks_legacy_mode(make_gateway, upstream, pki):
    cert = pki.client(pki.ca())
    gw = make_gateway([dynamic_api("dyn", upstream.url)],
                      {"http_server_options": pki.server_settings(),
                       "security": {"allow_unsafe_dynamic_mtls_token": True}})
    cert_id = upload(gw, cert.pem)
    key = create_key(gw, {"org_id": ORG, "certificate": cert_id, "access_rights": rights("dyn")})["key"]
    assert get(gw, pki, "/dyn/get", cert).status_code == 200
    assert get(gw, pki, "/dyn/get", headers={"Authorization": key}).status_code == 200
    # The hole PR 7671 closed by default: the certificate id alone opens the key.
    assert get(gw, pki, "/dyn/get", headers={"Authorization": cert_id}).status_code == 200
    wrong = get(gw, pki, "/dyn/get", headers={"Authorization": "nope"})
    assert wrong.status_code == 403 and error_of(wrong) == DISALLOWED


def test_san_uri_identity_maps_workloads_to_keys(make_gateway, upstream, pki):
    ca = pki.ca()
    web = pki.uri_client(ca, "spiffe://example.org/ns/prod/sa/web")
    db = pki.uri_client(ca, "spiffe://example.org/ns/prod/sa/db")
    gw = make_gateway(
        [dynamic_api("svc", upstream.url, use_mutual_tls_auth=True, client_certificates=[str(pki.ca_file(ca, "ca"))],
                     client_certificate_identity="san_uri")],
        {"http_server_options": pki.server_settings()},
    )
    create_key(gw, {"org_id": ORG, "certificate": "san_uri:spiffe://example.org/ns/prod/sa/web", "access_rights": rights("svc")})
    r = get(gw, pki, "/svc/get", web)
    assert r.status_code == 200, r.text
    other = get(gw, pki, "/svc/get", db)
    assert other.status_code == 401 and error_of(other) == DISALLOWED
    status, _ = gw.admin("GET", "/tyk/certs")  # nothing was uploaded
    assert status == 200


def test_check_reports_mtls_definitions_that_cannot_work(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.kit.procs import ROOT, write_config

    (tmp_path / "apps").mkdir()
    api = dynamic_api("svc", "http://127.0.0.1:9", client_certificate_identity="san_uri")
    (tmp_path / "apps" / "svc.json").write_text(json.dumps(api))
    config = write_config(tmp_path, {"app_path": "apps"})
    out = subprocess.run([str(Path(sys.executable).parent / "fastgate"), "check", "--config", str(config)], cwd=ROOT,
                         capture_output=True, text=True, timeout=20,
                         env={k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")})
    assert out.returncode == 1
    assert "svc.json: client_certificate_identity: san_uri identities need static mTLS" in out.stdout


# ---- the certificate store --------------------------------------------------------------------


def test_certificate_api_round_trip(make_gateway, upstream, pki, store_url):
    root = pki.ca()
    client = pki.client(root)
    server = pki.server
    gw = make_gateway([classic_api("open", "/open/", upstream.url)], {"storage": {"url": store_url}})
    assert gw.admin("GET", "/tyk/certs?org_id=1") == (200, {"certs": None})
    root_id = upload(gw, pki.ca_pem(root), org="1")
    client_id = upload(gw, client.pem, org="1")
    server_id = upload(gw, server.bundle, org="1")
    assert client_id == "1" + client.sha256 and server_id == "1" + server.sha256
    status, listed = gw.admin("GET", "/tyk/certs?org_id=1")
    assert status == 200 and sorted(listed["certs"]) == sorted([root_id, client_id, server_id])
    assert gw.admin("GET", "/tyk/certs?org_id=2") == (200, {"certs": None})

    status, detailed = gw.admin("GET", "/tyk/certs?org_id=1&mode=detailed")
    by_id = {c["id"]: c for c in detailed["certs"]}
    assert by_id[root_id]["is_ca"] is True and by_id[root_id]["has_private"] is False
    assert by_id[server_id]["has_private"] is True
    assert by_id[server_id]["dns_names"] == ["localhost", "api.example.com"]
    assert set(by_id[client_id]) == {"id", "issuer_cn", "subject_cn", "dns_names", "has_private",
                                     "not_before", "not_after", "is_ca"}
    assert by_id[client_id]["not_after"].endswith("Z")

    status, meta = gw.admin("GET", f"/tyk/certs/{server_id}?org_id=1")
    assert status == 200
    assert (meta["id"], meta["fingerprint"], meta["has_private"]) == (server_id, server.sha256, True)
    assert {"issuer", "subject", "not_before", "not_after", "is_ca"} <= set(meta)
    assert gw.admin("GET", f"/tyk/certs/{root_id}")[1]["is_ca"] is True
    status, both = gw.admin("GET", f"/tyk/certs/{server_id},{client_id},1{'0' * 64}")
    assert status == 200 and [m and m["id"] for m in both] == [server_id, client_id, None]
    assert gw.admin("GET", f"/tyk/certs/1{'0' * 64}") == (
        404, {"status": "error", "message": "Certificate with given SHA256 fingerprint not found"})

    refusals = {
        client.pem: f"Certificate with {client_id} id already exists",
        b"not a certificate": "Failed to decode certificate. It should be PEM encoded.",
        pki.expired_client(root).pem: "certificate is expired",
        client.pem + client.key_pem + client.key_pem: "Found multiple private keys",
        pki.client(root).pem + client.key_pem: "tls: private key does not match public key",
    }
    for body, message in refusals.items():
        assert gw.admin("POST", "/tyk/certs?org_id=1", body) == (403, {"status": "error", "message": message})

    if store_url.startswith("redis"):
        raw = redis.Redis.from_url(REDIS_TEST_URL).get(f"cert-raw-{server_id}")
        assert raw is not None and b"FASTGATE ENCRYPTED PRIVATE KEY" in raw
        assert server.key_pem.split(b"\n")[1] not in raw  # the key is not stored in clear

    for cert_id in (root_id, client_id, server_id):
        assert gw.admin("DELETE", f"/tyk/certs/{cert_id}?org_id=1") == (200, {"status": "ok", "message": "removed"})
    assert gw.admin("GET", "/tyk/certs?org_id=1") == (200, {"certs": None})


# ---- reloads and clusters ---------------------------------------------------------------------


def test_reload_that_adds_an_mtls_api_updates_the_live_listener(make_gateway, upstream, pki):
    ca = pki.ca()
    cert = pki.client(ca)
    gw = make_gateway([classic_api("open", "/open/", upstream.url)], {"http_server_options": pki.server_settings()})
    assert get(gw, pki, "/open/get").status_code == 200
    # No API needs certificates: none is asked for, so a presented one is never checked.
    assert get(gw, pki, "/open/get", cert).status_code == 200
    api = classic_api("mtls", "/mtls/", upstream.url, use_mutual_tls_auth=True,
                      client_certificates=[str(pki.ca_file(ca, "ca"))])
    assert gw.admin("POST", "/tyk/apis", api)[0] == 200
    assert gw.admin("GET", "/tyk/reload?block=true")[0] == 200
    deadline = time.monotonic() + 5
    while get(gw, pki, "/mtls/get", cert).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get(gw, pki, "/mtls/get", cert).status_code == 200
    assert error_of(get(gw, pki, "/mtls/get")) == "Client TLS certificate is required"
    assert get(gw, pki, "/open/get").status_code == 200


@pytest.mark.redis
def test_certificates_reach_every_node(make_gateway, upstream, pki):
    from tests.kit.fixtures import flush_redis_db

    flush_redis_db(REDIS_TEST_URL)
    cert = pki.client(pki.ca())
    settings = {"http_server_options": pki.server_settings(), "storage": {"url": REDIS_TEST_URL}}
    node_a = make_gateway([dynamic_api("dyn", upstream.url)], settings, wait=False)
    node_b = make_gateway([dynamic_api("dyn", upstream.url)], settings, wait=False)
    node_a.ready()
    node_b.ready()
    try:
        cert_id = upload(node_a, cert.pem)
        create_key(node_a, {"org_id": ORG, "certificate": cert_id, "access_rights": rights("dyn")})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # node b rebuilds its trust store on the event
            try:
                if get(node_b, pki, "/dyn/get", cert).status_code == 200:
                    break
            except requests.exceptions.SSLError:
                time.sleep(0.05)
        assert get(node_b, pki, "/dyn/get", cert).status_code == 200
        assert node_b.admin("GET", "/tyk/certs?org_id=default")[1] == {"certs": [cert_id]}
        node_a.admin("DELETE", f"/tyk/certs/{cert_id}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                get(node_b, pki, "/dyn/get", cert)
            except requests.exceptions.SSLError:
                break
            time.sleep(0.05)
        with pytest.raises(requests.exceptions.SSLError):
            get(node_b, pki, "/dyn/get", cert)
    finally:
        flush_redis_db(REDIS_TEST_URL)


# ---- helpers ----------------------------------------------------------------------------------


def trustme_intermediate(root):
    return root.create_child_ca()


def free_port():
    from tests.kit.procs import free_port as port

    return port()
