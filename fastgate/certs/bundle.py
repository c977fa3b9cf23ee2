"""What a certificate upload is: Tyk's PEM bundle rules, the stored record, private keys sealed.

An upload (``POST /tyk/certs?org_id=``) is a PEM bundle: certificates (leaf first), optionally the
leaf's private key, or one bare public key. Its id is ``org_id`` + hex SHA-256 of the leaf's DER
(of the key's DER for a public key). The rules and messages of ``parse_bundle`` are Tyk's: an
expired certificate, a second private key, a key that does not match, a public key mixed with
certificates and anything that is not PEM are refused.

Private keys are encrypted at rest with AES-256-GCM: the key is derived with HKDF-SHA256 from
``security.private_certificate_encoding_secret`` (the gateway ``secret`` when that is empty) and a
random salt per entry, and the certificate id is the associated data, so a sealed key cannot be
moved to another entry. Tyk's own PEM encryption (AES-256-CBC under an MD5 key derivation) is not
read: a Tyk store's private keys have to be uploaded again.

No I/O here: ``fastgate.certs.store`` keeps these records in the gateway's store and on every node.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = [
    "CertificateError", "ParsedBundle", "SHA256_HEX", "StoredCertificate", "decode_stored", "encode_stored",
    "open_private_key", "parse_bundle", "seal_private_key",
]

SHA256_HEX: Final = 64

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
_SEALED_PEM_TYPE: Final = "FASTGATE ENCRYPTED PRIVATE KEY"
_SEAL_VERSION: Final = b"FG1"
_HKDF_INFO: Final = b"fastgate certificate private key"
_GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


class CertificateError(ValueError):
    """An upload the store refuses; the message is Tyk's where Tyk has one."""


# ---- a stored certificate -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    """One entry of the store, decoded: a certificate chain (leaf first) or a bare public key."""

    id: str
    fingerprint: str  # hex SHA-256 of the leaf's DER (of the key's DER for a public key)
    chain: tuple[x509.Certificate, ...]  # empty for a public key entry
    public_key: "PublicKeyTypes"
    sealed_key: bytes = b""  # the private key, encrypted (see ``open_private_key``)
    chain_der: tuple[bytes, ...] = field(default=())

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    @property
    def has_private(self) -> bool:
        return bool(self.sealed_key)

    @property
    def is_public_key(self) -> bool:
        return not self.chain

    @property
    def is_ca(self) -> bool:
        leaf = self.leaf
        if leaf is None:
            return False
        try:
            return bool(leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            return False

    @property
    def not_after(self) -> float:
        """End of the leaf's validity (Unix time); infinite for a public key."""
        leaf = self.leaf
        return leaf.not_valid_after_utc.timestamp() if leaf is not None else float("inf")

    def pem(self) -> bytes:
        """The chain (or the public key) as PEM, without the private key."""
        if not self.chain:
            return self.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def basics(self) -> dict[str, Any]:
        """The ``GET /tyk/certs?mode=detailed`` entry (Tyk's ``CertificateBasics``)."""
        leaf = self.leaf
        return {
            "id": self.id,
            "issuer_cn": _common_name(leaf.issuer) if leaf is not None else "",
            "subject_cn": _common_name(leaf.subject) if leaf is not None else self._public_key_cn(),
            "dns_names": _dns_names(leaf) or None,
            "has_private": self.has_private,
            "not_before": _go_time(leaf.not_valid_before_utc) if leaf is not None else _GO_ZERO_TIME,
            "not_after": _go_time(leaf.not_valid_after_utc) if leaf is not None else _GO_ZERO_TIME,
            "is_ca": self.is_ca,
        }

    def meta(self) -> dict[str, Any]:
        """The ``GET /tyk/certs/{id}`` answer (Tyk's ``CertificateMeta``)."""
        leaf = self.leaf
        meta: dict[str, Any] = {"id": self.id, "fingerprint": self.fingerprint, "has_private": self.has_private}
        if leaf is None:
            meta["issuer"] = _pkix_name(x509.Name([]))
            subject = _pkix_name(x509.Name([]))  # Tyk's dummy name (longer than a CN may be)
            subject["CommonName"] = self._public_key_cn()
            subject["Names"] = [{"Type": [2, 5, 4, 3], "Value": self._public_key_cn()}]
            meta["subject"] = subject
            meta["not_before"] = meta["not_after"] = _GO_ZERO_TIME
        else:
            meta["issuer"] = _pkix_name(leaf.issuer)
            meta["subject"] = _pkix_name(leaf.subject)
            meta["not_before"] = _go_time(leaf.not_valid_before_utc)
            meta["not_after"] = _go_time(leaf.not_valid_after_utc)
            dns = _dns_names(leaf)
            if dns:
                meta["dns_names"] = dns
        meta["is_ca"] = self.is_ca
        return meta

    def _public_key_cn(self) -> str:
        # Tyk lists a bare public key as a certificate named after it.
        return "Public Key: " + self.fingerprint


# ---- uploads --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    """What an upload holds, checked: certificates, or one public key, and maybe a private key."""

    fingerprint: str
    cert_ders: tuple[bytes, ...]
    public_key_der: bytes = b""
    private_key_der: bytes = b""  # PKCS#8


def parse_bundle(data: bytes, now: float | None = None) -> ParsedBundle:
    """Check an uploaded PEM bundle as Tyk does; raises ``CertificateError`` with Tyk's message."""
    now = time.time() if now is None else now
    key_der = b""
    key: PrivateKeyTypes | None = None
    certs: list[x509.Certificate] = []
    public_der = b""
    for kind, der in _pem_blocks(data):
        if kind.endswith("PRIVATE KEY"):
            if key_der:
                raise CertificateError("Found multiple private keys")
            try:
                key = serialization.load_der_private_key(der, password=None)
            except (ValueError, TypeError):
                raise CertificateError("tls: failed to parse private key") from None
            key_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        elif kind == "CERTIFICATE":
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                raise CertificateError("x509: malformed certificate") from None
            if cert.not_valid_after_utc.timestamp() < now:
                raise CertificateError("certificate is expired")
            certs.append(cert)
        elif kind == "PUBLIC KEY":
            try:
                serialization.load_der_public_key(der)
            except ValueError:
                raise CertificateError("x509: malformed public key") from None
            public_der = der
    if not certs and not public_der:
        raise CertificateError("Failed to decode certificate. It should be PEM encoded.")
    if certs and public_der:
        raise CertificateError("Public keys can't be combined with certificates")
    cert_ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)
    if key is not None:
        if not certs:
            raise CertificateError('tls: failed to find "CERTIFICATE" PEM block in certificate input')
        if _spki(key.public_key()) != _spki(certs[0].public_key()):
            raise CertificateError("tls: private key does not match public key")
    fingerprint = hashlib.sha256(cert_ders[0] if certs else public_der).hexdigest()
    return ParsedBundle(fingerprint, cert_ders, public_der, key_der)


def seal_private_key(key_der: bytes, secret: str, cert_id: str) -> bytes:
    """``key_der`` encrypted for storage under ``cert_id`` (see the module doc)."""
    salt = os.urandom(16)
    nonce = os.urandom(12)
    sealed = AESGCM(_derive(secret, salt)).encrypt(nonce, key_der, cert_id.encode())
    return _SEAL_VERSION + salt + nonce + sealed


def open_private_key(blob: bytes, secret: str, cert_id: str) -> bytes:
    """The PKCS#8 DER sealed in ``blob``; ``CertificateError`` when the secret or id is wrong."""
    if not blob.startswith(_SEAL_VERSION) or len(blob) < 3 + 16 + 12 + 16:
        raise CertificateError("not a sealed private key")
    salt, nonce, sealed = blob[3:19], blob[19:31], blob[31:]
    try:
        return AESGCM(_derive(secret, salt)).decrypt(nonce, sealed, cert_id.encode())
    except InvalidTag:
        raise CertificateError("the private key cannot be decrypted with the configured secret") from None


def encode_stored(bundle: ParsedBundle, sealed_key: bytes = b"") -> bytes:
    """The stored text of an entry: PEM certificates (or the public key) and the sealed key."""
    blocks = [_pem("CERTIFICATE", der) for der in bundle.cert_ders]
    if bundle.public_key_der:
        blocks.append(_pem("PUBLIC KEY", bundle.public_key_der))
    if sealed_key:
        blocks.append(_pem(_SEALED_PEM_TYPE, sealed_key))
    return b"".join(blocks)


def decode_stored(cert_id: str, raw: bytes) -> StoredCertificate:
    """An entry as read from the store (expired certificates load: allowlists report them)."""
    chain: list[x509.Certificate] = []
    ders: list[bytes] = []
    public_der = b""
    sealed = b""
    for kind, der in _pem_blocks(raw):
        if kind == "CERTIFICATE":
            chain.append(x509.load_der_x509_certificate(der))
            ders.append(der)
        elif kind == "PUBLIC KEY":
            public_der = der
        elif kind == _SEALED_PEM_TYPE:
            sealed = der
    public_key: PublicKeyTypes
    if chain:
        public_key = chain[0].public_key()
        fingerprint = hashlib.sha256(ders[0]).hexdigest()
    elif public_der:
        public_key = serialization.load_der_public_key(public_der)
        fingerprint = hashlib.sha256(public_der).hexdigest()
    else:
        raise CertificateError(f"stored certificate {cert_id} holds no certificate or public key")
    return StoredCertificate(cert_id, fingerprint, tuple(chain), public_key, sealed, tuple(ders))


# ---- helpers --------------------------------------------------------------------------------


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    blocks = []
    for match in _PEM.finditer(data):
        body = b"\n".join(line for line in match.group(2).splitlines() if b":" not in line)
        try:
            blocks.append((match.group(1).decode(), base64.b64decode(body, validate=False)))
        except binascii.Error:
            continue
    return blocks


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (kind.encode(), lines, kind.encode())


def _derive(secret: str, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(secret.encode())


def _spki(key: "PublicKeyTypes") -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _dns_names(cert: x509.Certificate | None) -> list[str]:
    if cert is None:
        return []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def _go_time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Go's pkix.Name fields, in the order encoding/json writes them.
_PKIX_FIELDS: Final = (
    ("Country", NameOID.COUNTRY_NAME), ("Organization", NameOID.ORGANIZATION_NAME),
    ("OrganizationalUnit", NameOID.ORGANIZATIONAL_UNIT_NAME), ("Locality", NameOID.LOCALITY_NAME),
    ("Province", NameOID.STATE_OR_PROVINCE_NAME), ("StreetAddress", NameOID.STREET_ADDRESS),
    ("PostalCode", NameOID.POSTAL_CODE),
)


def _pkix_name(name: x509.Name) -> dict[str, Any]:
    """A name as Go's ``encoding/json`` writes a ``pkix.Name`` (what Tyk's meta holds)."""
    out: dict[str, Any] = {}
    for key, oid in _PKIX_FIELDS:
        values = [str(a.value) for a in name.get_attributes_for_oid(oid)]
        out[key] = values or None
    serial = name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    out["SerialNumber"] = str(serial[0].value) if serial else ""
    out["CommonName"] = _common_name(name)
    out["Names"] = [
        {"Type": [int(part) for part in attr.oid.dotted_string.split(".")], "Value": str(attr.value)}
        for attr in name
    ]
    out["ExtraNames"] = None
    return out
