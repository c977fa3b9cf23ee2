"""TLS termination end to end: HTTPS with keep-alive, pipelining and streaming, certificates by SNI,
protocol versions and ciphers, and certificate files that stop start-up (``fastgate check`` too)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl

import pytest
import requests
import trustme

from tests.kit.procs import free_port, run_cli, write_config
from tests.kit.apis import classic_api
from tests.kit.tls import Pki, client_context, curl, https_get


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def gw(make_gateway, upstream, pki):
    return make_gateway([classic_api("open", "/open/", upstream.url)], {"http_server_options": pki.server_settings()})


def test_https_request_reaches_the_upstream_as_https(gw, pki, upstream):
    r = requests.get(gw.url + "/open/echo", verify=str(pki.server_ca_path), timeout=5)
    assert r.status_code == 200
    headers = dict(r.json()["headers"])
    assert headers["X-Forwarded-Proto"] == "https"
    out = curl(gw.port, "/open/echo", pki)
    assert out.returncode == 0 and out.stdout.endswith("\n200"), out.stderr
    # Plain HTTP on the TLS port is not answered as HTTP.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{gw.port}/open/echo", timeout=5)


def test_keep_alive_and_pipelining_over_tls(gw, pki):
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            reader = tls.makefile("rb")
            for i in range(3):  # one after the other on one connection
                tls.sendall(f"GET /open/echo?n={i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                assert read_response(reader)[0] == 200
            # Pipelined: three requests in one write, answered in order.
            tls.sendall(b"".join(f"GET /open/echo?p={i} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
                                 for i in range(3)))
            for i in range(3):
                status, body = read_response(reader)
                assert status == 200 and f'"query": "p={i}"'.encode() in body


def test_streaming_both_ways_over_tls(gw, pki):
    size = 8 * 1024 * 1024
    chunk = os.urandom(256 * 1024)
    expected = hashlib.sha256(chunk * (size // len(chunk))).hexdigest()
    session = requests.Session()  # one connection, kept alive between the two transfers
    verify = str(pki.server_ca_path)  # per request: REQUESTS_CA_BUNDLE would beat Session.verify
    up = session.post(gw.url + "/open/echo", data=iter([chunk] * (size // len(chunk))), verify=verify, timeout=30)
    assert up.status_code == 200
    assert (up.json()["body_length"], up.json()["body_sha256"]) == (size, expected)
    down = session.get(gw.url + f"/open/bytes/{size}?chunked=1", stream=True, verify=verify, timeout=30)
    digest, length = hashlib.sha256(), 0
    for part in down.iter_content(65536):
        digest.update(part)
        length += len(part)
    assert down.status_code == 200 and length == size


def test_certificate_chosen_by_sni_versions_and_ciphers(make_gateway, upstream, pki, tmp_path):
    other_ca = trustme.CA()
    other = other_ca.issue_cert("api.example.com")
    other.cert_chain_pems[0].write_to_path(tmp_path / "other.crt")
    other.private_key_pem.write_to_path(tmp_path / "other.key")
    other_ca.cert_pem.write_to_path(tmp_path / "other-ca.pem")
    settings = pki.server_settings(min_version="1.2", ssl_ciphers=["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
    settings["certificates"].append({"domain_name": "api.example.com", "cert_file": str(tmp_path / "other.crt"),
                                     "key_file": str(tmp_path / "other.key")})
    gw = make_gateway([classic_api("open", "/open/", upstream.url)], {"http_server_options": settings})

    # SNI api.example.com: the second certificate (only its CA verifies it); others: the first.
    other_ctx = ssl.create_default_context(cafile=str(tmp_path / "other-ca.pem"))
    assert https_get(gw.port, "/open/get", other_ctx, host="api.example.com")[0] == 200
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(gw.port, "/open/get", client_context(pki), host="api.example.com")
    assert https_get(gw.port, "/open/get", client_context(pki), host="localhost")[0] == 200
    no_sni = client_context(pki)
    no_sni.check_hostname = False
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as raw:
        with no_sni.wrap_socket(raw) as tls:  # no server_hostname: no SNI, the default certificate
            assert tls.getpeercert()["subjectAltName"][0] == ("DNS", "localhost")

    # TLS 1.2 is limited to the configured suite (Tyk's IANA name); TLS 1.3 suites are OpenSSL's.
    tls12 = client_context(pki, maximum=ssl.TLSVersion.TLSv1_2)
    assert https_get(gw.port, "/open/get", tls12)[0] == 200
    tls12.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    with pytest.raises(ssl.SSLError):
        https_get(gw.port, "/open/get", tls12)


def test_min_version_refuses_older_clients(make_gateway, upstream, pki):
    gw = make_gateway([classic_api("open", "/open/", upstream.url)],
                      {"http_server_options": pki.server_settings(min_version=772)})  # Tyk's number for 1.3
    assert https_get(gw.port, "/open/get", client_context(pki))[0] == 200
    with pytest.raises(ssl.SSLError):
        https_get(gw.port, "/open/get", client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"cert_file": "missing.crt"}, "http_server_options.certificates[0].cert_file: {dir}/missing.crt: cannot be read"),
        ({"key_file": "missing.key"}, "http_server_options.certificates[0].key_file: {dir}/missing.key: cannot be read"),
        ({"key_file": "{other_key}"}, "http_server_options.certificates[0]: {other_key} is not the private key of"),
        ({"cert_file": "{garbage}"}, "http_server_options.certificates[0]: {garbage} / {dir}/pki/server.key: "
                                     "not a usable PEM certificate chain and private key"),
        ({"certificates": []}, "http_server_options.certificates: use_ssl is on but no"),
        ({"min_version": "1.7"}, "http_server_options.min_version: '1.7' is not a TLS version"),
        ({"ssl_ciphers": ["TLS_MADE_UP"]}, "http_server_options.ssl_ciphers: 'TLS_MADE_UP' is not a cipher suite"),
        ({"crl_file": "{garbage}"}, "http_server_options.crl_file: {garbage}: not a PEM or DER certificate revocation list"),
    ],
    ids=["cert-missing", "key-missing", "key-mismatch", "cert-garbage", "no-certificates", "version", "cipher", "crl"],
)
def test_bad_tls_settings_stop_start_up_and_fail_check(tmp_path, pki, change, needle):
    other = pki.client(pki.ca())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    values = {"dir": str(tmp_path), "other_key": str(other.key_path), "garbage": str(garbage)}
    options = pki.server_settings()
    cert = options["certificates"][0]
    for key, value in change.items():
        if key in ("cert_file", "key_file"):
            cert[key] = value.format(**values)
        elif key == "certificates":
            options["certificates"] = []
        else:
            options[key] = value.format(**values) if isinstance(value, str) else value
    (tmp_path / "apps").mkdir()
    config = write_config(tmp_path, {"listen_port": free_port(), "app_path": "apps", "http_server_options": options})
    expected = needle.format(**values)
    for command in ("check", "run"):
        out = run_cli(command, "--config", str(config))
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert f"{config}: {expected}" in out.stdout + out.stderr, (command, out.stderr)


def read_response(reader):
    """One HTTP/1.1 response (Content-Length or chunked) from a file-like reader."""
    status_line = reader.readline()
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int(reader.readline().strip(), 16)
            if size == 0:
                reader.readline()
                return status, body
            body += reader.read(size)
            reader.readline()
    return status, reader.read(int(headers.get("content-length", 0)))
