"""The certificate store: PEM certificates, public keys and private keys every node sees.

Tyk's certificate manager, on the gateway's store: each upload (``fastgate.certs.bundle`` parses
and seals it) is kept under ``cert-raw-<id>``, where Tyk keeps it.

Every node keeps every certificate decoded in memory (``get``, no await): the TLS trust store is
built from it and request stages consult it on the hot path. Consistency follows the session
cache: writes go through ``add`` / ``delete``, which publish ``CertificateAdded`` /
``CertificateRemoved`` on the cluster channel, and every node re-reads that id. While the
subscription is not live, ``fetch`` asks the store itself; after a gap everything is re-read.
Whoever depends on the set (the TLS listener) registers in ``on_change``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any, Callable, Final, Iterable

from cryptography.hazmat.primitives import serialization

from fastgate.certs.bundle import (
    SHA256_HEX,
    CertificateError,
    ParsedBundle,
    StoredCertificate,
    decode_stored,
    encode_stored,
    open_private_key,
    parse_bundle,
    seal_private_key,
)
from fastgate.store.base import CLUSTER_CHANNEL, Store, StoreUnavailable, decode_event, encode_event

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes


# The bundle names are re-exported: callers knew them here before the split.
__all__ = [
    "CertificateError", "CertificateStore", "NOTICE_CERTIFICATE_ADDED", "NOTICE_CERTIFICATE_REMOVED",
    "ParsedBundle", "RAW_PREFIX", "StoredCertificate", "decode_stored", "encode_stored",
    "open_private_key", "parse_bundle", "seal_private_key",
]

log = logging.getLogger("fastgate.certs")

RAW_PREFIX: Final = "cert-raw-"
NOTICE_CERTIFICATE_ADDED: Final = "CertificateAdded"  # payload: the certificate id
NOTICE_CERTIFICATE_REMOVED: Final = "CertificateRemoved"


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


