"""The certificate store: PEM certificates, public keys and private keys every node sees.

Tyk's certificate manager, on the gateway's store. An upload (``POST /tyk/certs?org_id=``) is a
PEM bundle: certificates (leaf first), optionally the leaf's private key, or one bare public key.
Its id is ``org_id`` + hex SHA-256 of the leaf's DER (of the key's DER for a public key), and it is
kept under ``cert-raw-<id>``, where Tyk keeps it. The rules and messages of ``parse_bundle`` are
Tyk's: an expired certificate, a second private key, a key that does not match, a public key
mixed with certificates and anything that is not PEM are refused.

Private keys are encrypted at rest with AES-256-GCM: the key is derived with HKDF-SHA256 from
``security.private_certificate_encoding_secret`` (the gateway ``secret`` when that is empty) and a
random salt per entry, and the certificate id is the associated data, so a sealed key cannot be
moved to another entry. Tyk's own PEM encryption (AES-256-CBC under an MD5 key derivation) is not
read: a Tyk store's private keys have to be uploaded again.

Every node keeps every certificate decoded in memory (``get``, no await): the TLS trust store is
built from it and request stages consult it on the hot path. Consistency follows the session
cache: writes go through ``add`` / ``delete``, which publish ``CertificateAdded`` /
``CertificateRemoved`` on the cluster channel, and every node re-reads that id. While the
subscription is not live, ``fetch`` asks the store itself; after a gap everything is re-read.
Whoever depends on the set (the TLS listener) registers in ``on_change``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Final, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

from fastgate.store.base import CLUSTER_CHANNEL, Store, StoreUnavailable, decode_event, encode_event

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

__all__ = [
    "CertificateError", "CertificateStore", "NOTICE_CERTIFICATE_ADDED", "NOTICE_CERTIFICATE_REMOVED",
    "ParsedBundle", "RAW_PREFIX", "StoredCertificate", "decode_stored", "encode_stored",
    "open_private_key", "parse_bundle", "seal_private_key",
]

log = logging.getLogger("fastgate.certs")

RAW_PREFIX: Final = "cert-raw-"
NOTICE_CERTIFICATE_ADDED: Final = "CertificateAdded"  # payload: the certificate id
NOTICE_CERTIFICATE_REMOVED: Final = "CertificateRemoved"
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


# ---- the store ------------------------------------------------------------------------------


class CertificateStore:
    """Certificates in the gateway's store, mirrored on this node (see the module doc)."""

    def __init__(self, store: Store, secret: str) -> None:
        self.store = store
        self.secret = secret
        self.generation = 0  # changes whenever the mirror does
        self.on_change: list[Callable[[], None]] = []
        self._mirror: dict[str, StoredCertificate] = {}
        self._sub: Any = None
        self._source = uuid.uuid4().hex
        self._tasks: set[asyncio.Task[None]] = set()
        self._starter: asyncio.Task[None] | None = None
        self._notify_pending = False
        self._stale = False

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to certificate events and read every certificate (retried in the
        background while the store is down)."""
        try:
            await self._subscribe_and_load()
        except StoreUnavailable:
            log.warning("certificates are not loaded yet: the store is unreachable")
            self._starter = asyncio.get_running_loop().create_task(self._retry_start())

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._sub is not None:
            await self._sub.unsubscribe()

    @property
    def live(self) -> bool:
        """True while the mirror is known to be current (the event subscription is live)."""
        return self._sub is not None and bool(self._sub.live) and not self._stale

    # ---- reading -----------------------------------------------------------------------------

    def get(self, cert_id: str) -> StoredCertificate | None:
        """The certificate from this node's mirror, without awaiting."""
        return self._mirror.get(cert_id)

    def all(self) -> Iterable[StoredCertificate]:
        """Every certificate in the mirror."""
        return self._mirror.values()

    async def fetch(self, cert_id: str) -> StoredCertificate | None:
        """The certificate, from the mirror while it is current, else from the store."""
        if self.live:
            return self._mirror.get(cert_id)
        return await self._read(cert_id)

    async def list_ids(self, org_id: str = "") -> list[str]:
        """Ids of the stored certificates of ``org_id`` (all of them when empty)."""
        ids = [k[len(RAW_PREFIX):] for k in await self.store.kv_keys(RAW_PREFIX)]
        if org_id:
            ids = [i for i in ids if i.startswith(org_id) and len(i) == len(org_id) + SHA256_HEX]
        return sorted(ids)

    async def public_key_for(self, cert_id: str) -> "PublicKeyTypes | None":
        """The public key of certificate (or public key) ``cert_id``, ``None`` when unknown."""
        found = await self.fetch(cert_id)
        return found.public_key if found is not None else None

    def private_key(self, cert: StoredCertificate) -> "PrivateKeyTypes":
        """The decrypted private key of ``cert`` (``CertificateError`` if it has none)."""
        if not cert.sealed_key:
            raise CertificateError(f"certificate {cert.id} has no private key")
        der = open_private_key(cert.sealed_key, self.secret, cert.id)
        return serialization.load_der_private_key(der, password=None)

    # ---- writing -----------------------------------------------------------------------------

    async def add(self, data: bytes, org_id: str) -> str:
        """Store an uploaded bundle; returns its id. ``CertificateError`` with Tyk's message."""
        bundle = parse_bundle(data)
        cert_id = org_id + bundle.fingerprint
        sealed = b""
        if bundle.private_key_der:
            if not self.secret:
                raise CertificateError("Cannot store a private key: set security.private_certificate_encoding_secret "
                                       "(or the gateway secret)")
            sealed = seal_private_key(bundle.private_key_der, self.secret, cert_id)
        stored = encode_stored(bundle, sealed)
        if not await self.store.kv_set_if_absent(RAW_PREFIX + cert_id, stored):
            raise CertificateError(f"Certificate with {cert_id} id already exists")
        self._put(cert_id, stored)
        await self._announce(NOTICE_CERTIFICATE_ADDED, cert_id)
        return cert_id

    async def delete(self, cert_id: str) -> bool:
        """Remove ``cert_id`` from the store and from every node; True when it existed."""
        existed = await self.store.kv_delete(RAW_PREFIX + cert_id)
        self._put(cert_id, None)
        await self._announce(NOTICE_CERTIFICATE_REMOVED, cert_id)
        return existed

    # ---- internals ---------------------------------------------------------------------------

    async def _retry_start(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._subscribe_and_load()
                log.info("certificates loaded: %d", len(self._mirror))
                return
            except StoreUnavailable:
                continue

    async def _subscribe_and_load(self) -> None:
        if self._sub is None:
            self._sub = await self.store.subscribe(CLUSTER_CHANNEL, self._on_event, on_gap=self._on_gap)
        await self._load_all()

    async def _load_all(self) -> None:
        mirror: dict[str, StoredCertificate] = {}
        for key in await self.store.kv_keys(RAW_PREFIX):
            cert_id = key[len(RAW_PREFIX):]
            found = await self._read(cert_id)
            if found is not None:
                mirror[cert_id] = found
        self._mirror = mirror
        self._changed()

    async def _read(self, cert_id: str) -> StoredCertificate | None:
        raw = await self.store.kv_get(RAW_PREFIX + cert_id)
        return self._decode(cert_id, raw)

    def _decode(self, cert_id: str, raw: bytes | None) -> StoredCertificate | None:
        if raw is None:
            return None
        try:
            return decode_stored(cert_id, raw)
        except (CertificateError, ValueError) as exc:
            log.warning("stored certificate %s cannot be read: %s", cert_id, exc)
            return None

    def _put(self, cert_id: str, raw: bytes | None) -> None:
        found = self._decode(cert_id, raw)
        if found is None:
            if self._mirror.pop(cert_id, None) is None:
                return
        else:
            self._mirror[cert_id] = found
        self._changed()

    def _changed(self) -> None:
        self.generation += 1
        if self._notify_pending:
            return
        # Several changes in one loop iteration (a full reload, a burst of uploads) rebuild the
        # TLS trust store once.
        self._notify_pending = True
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        self._notify_pending = False
        for callback in self.on_change:
            try:
                callback()
            except Exception:
                log.exception("certificate change listener failed")

    async def _announce(self, command: str, cert_id: str) -> None:
        await self.store.publish(CLUSTER_CHANNEL, encode_event(command, cert_id, self._source))

    def _on_event(self, message: bytes) -> None:
        event = decode_event(message)
        if event is None or event.command not in (NOTICE_CERTIFICATE_ADDED, NOTICE_CERTIFICATE_REMOVED):
            return
        if event.source == self._source:
            return
        self._spawn(self._refresh(event.payload))

    def _on_gap(self) -> None:
        self._spawn(self._reload_after_gap())

    async def _reload_after_gap(self) -> None:
        # Events may have been missed: the mirror is not trusted until it is read again.
        self._stale = True
        while True:
            try:
                await self._load_all()
                break
            except StoreUnavailable:
                log.warning("certificates cannot be re-read after a gap in cluster events; asking the store meanwhile")
                await asyncio.sleep(1.0)
        self._stale = False

    async def _refresh(self, cert_id: str) -> None:
        try:
            self._put(cert_id, await self.store.kv_get(RAW_PREFIX + cert_id))
        except StoreUnavailable:
            log.warning("certificate %s changed but the store is unreachable", cert_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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
