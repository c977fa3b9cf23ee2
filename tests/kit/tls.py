"""Certificates and TLS clients for the TLS and mTLS tests: made per test with trustme/cryptography."""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

SERVER_NAMES = ("localhost", "127.0.0.1", "api.example.com")


@dataclass
class Cert:
    """A certificate and its key, written to files."""

    pem: bytes  # the certificate (leaf first, then any intermediates)
    key_pem: bytes
    cert_path: Path
    key_path: Path

    @property
    def der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.pem).public_bytes(serialization.Encoding.DER)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.pem).serial_number

    @property
    def bundle(self) -> bytes:
        """Certificate and private key, as uploaded to /tyk/certs."""
        return self.pem + self.key_pem

    @property
    def pair(self) -> tuple[str, str]:
        """For ``requests``' ``cert=``."""
        return str(self.cert_path), str(self.key_path)


class Pki:
    """A server CA and certificate for the gateway, and client CAs and certificates, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.server_ca = trustme.CA()
        self.server_ca_path = directory / "server-ca.pem"
        self.server_ca.cert_pem.write_to_path(self.server_ca_path)
        self.server = self._write("server", self.server_ca.issue_cert(*SERVER_NAMES))
        self._n = 0

    def ca(self) -> trustme.CA:
        return trustme.CA()

    def client(self, ca: trustme.CA, *identities: str, common_name: str | None = None,
               not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None) -> Cert:
        self._n += 1
        issued = ca.issue_cert(*(identities or (f"client-{self._n}.example",)), common_name=common_name,
                               not_before=not_before, not_after=not_after)
        return self._write(f"client-{self._n}", issued)

    def expired_client(self, ca: trustme.CA) -> Cert:
        now = datetime.datetime.now(datetime.timezone.utc)
        return self.client(ca, not_before=now - datetime.timedelta(days=30), not_after=now - datetime.timedelta(days=1))

    def uri_client(self, ca: trustme.CA, uri: str, common_name: str = "workload") -> Cert:
        """A client certificate whose identity is a SAN URI (a SPIFFE id), signed by ``ca``."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        self._n += 1
        cert_path, key_path = self.dir / f"client-{self._n}.crt", self.dir / f"client-{self._n}.key"
        pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        cert_path.write_bytes(pem)
        key_path.write_bytes(key_pem)
        return Cert(pem, key_pem, cert_path, key_path)

    def ca_pem(self, ca: trustme.CA) -> bytes:
        return ca.cert_pem.bytes()

    def ca_file(self, ca: trustme.CA, name: str) -> Path:
        path = self.dir / f"{name}.pem"
        ca.cert_pem.write_to_path(path)
        return path

    def crl(self, ca: trustme.CA, revoked: list[Cert], name: str = "revoked.crl") -> Path:
        """A CRL signed by ``ca`` revoking ``revoked``."""
        key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
        issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
                   .last_update(now - datetime.timedelta(minutes=1)).next_update(now + datetime.timedelta(days=1)))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial).revocation_date(now).build())
        crl = builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]
        path = self.dir / name
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def server_settings(self, **extra: Any) -> dict[str, Any]:
        """``http_server_options`` for a TLS gateway with this PKI's server certificate."""
        return {"use_ssl": True, "certificates": [
            {"cert_file": str(self.server.cert_path), "key_file": str(self.server.key_path)}], **extra}

    def _write(self, name: str, issued: trustme.LeafCert) -> Cert:
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        pem = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
        cert_path.write_bytes(pem)
        key_path.write_bytes(issued.private_key_pem.bytes())
        return Cert(pem, issued.private_key_pem.bytes(), cert_path, key_path)


def client_context(pki: Pki, cert: Cert | None = None, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.server_ca_path))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def https_get(port: int, path: str, ctx: ssl.SSLContext, *, host: str = "localhost",
              headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """One request on a fresh TLS connection: (status, body); a failed handshake raises
    ``ssl.SSLError`` (with TLS 1.3 the client learns of a refused certificate on its first read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    if not data:
        raise ssl.SSLError("connection closed without an answer")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def curl(port: int, path: str, pki: Pki, cert: Cert | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """curl with the server CA (and a client certificate): ``-w`` adds the status on the last line."""
    argv = ["curl", "-sS", "--max-time", "5", "--resolve", f"localhost:{port}:127.0.0.1",
            "--cacert", str(pki.server_ca_path), "-w", "\n%{http_code}"]
    if cert is not None:
        argv += ["--cert", str(cert.cert_path), "--key", str(cert.key_path)]
    argv += [*extra, f"https://localhost:{port}{path}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10)
