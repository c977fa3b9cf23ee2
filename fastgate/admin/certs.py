"""Tyk's certificate endpoints: ``/tyk/certs`` upload, list, read, delete.

Shapes, statuses and messages are Tyk's (``gateway/cert.go``): an upload Tyk refuses is a 403
with the certificate manager's message, a single unknown id a 404, a comma list an array with
``null`` for the unknown ones, an empty list ``{"certs": null}``. Deleting is idempotent. Every
write reaches all nodes through ``fastgate.certs.store`` (a deleted certificate stops opening its
certificate-derived key at once, everywhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastgate.admin.common import ApiError, query_params
from fastgate.auth.mtls import IDENTITIES
from fastgate.certs.store import CertificateError, CertificateStore
from fastgate.sessions.key_ids import generate_token, storage_key_id

if TYPE_CHECKING:
    from fastgate.admin.common import Registrar
    from fastgate.http.request import Request
    from fastgate.services import Services
    from fastgate.sessions.session import SessionState

__all__ = ["certificate_key_id", "check_key_certificates", "register"]

NOT_FOUND = "Certificate with given SHA256 fingerprint not found"


def register(admin: "Registrar") -> None:
    """Add the certificate endpoints to ``admin``."""
    certs = CertificateEndpoints(admin)
    admin.add("POST", "/tyk/certs", certs.add)
    admin.add("GET", "/tyk/certs", certs.list)
    admin.add("GET", "/tyk/certs/{cert_id}", certs.get)
    admin.add("DELETE", "/tyk/certs/{cert_id}", certs.delete)


class CertificateEndpoints:
    """Handlers bound to one gateway's certificate store."""

    def __init__(self, admin: "Registrar") -> None:
        self.certs: CertificateStore = admin.services.certificates

    async def add(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/certs?org_id=``: a PEM bundle (certificates, optional key, or a public key)."""
        org_id = query_params(req).get("org_id", "")
        try:
            cert_id = await self.certs.add(body, org_id)
        except CertificateError as exc:
            raise ApiError(403, str(exc)) from None
        return 200, {"id": cert_id, "status": "ok", "message": "Certificate added"}

    async def list(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/certs?org_id=&mode=detailed``: ids, or their basics."""
        query = query_params(req)
        ids = await self.certs.list_ids(query.get("org_id", ""))
        if query.get("mode") != "detailed":
            return 200, {"certs": ids or None}
        basics = []
        for cert_id in ids:
            found = await self.certs.fetch(cert_id)
            if found is not None:
                basics.append(found.basics())
        return 200, {"certs": basics or None}

    async def get(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/certs/{id}``: one certificate's meta, or a list for ``id1,id2``."""
        ids = params["cert_id"].split(",")
        found = [await self.certs.fetch(cert_id) for cert_id in ids]
        if len(ids) == 1:
            if found[0] is None:
                raise ApiError(404, NOT_FOUND)
            return 200, found[0].meta()
        return 200, [cert.meta() if cert is not None else None for cert in found]

    async def delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``DELETE /tyk/certs/{id}``: removed from the store and every node (idempotent)."""
        await self.certs.delete(params["cert_id"])
        return 200, {"status": "ok", "message": "removed"}


# ---- keys and certificates (used by fastgate.admin.keys) --------------------------------------


async def certificate_key_id(services: "Services", session: "SessionState") -> str:
    """The id of a key created with ``certificate`` (dynamic mTLS): the certificate's id, so the
    key is ``generate_token(org, certificate)`` as in Tyk; one key per certificate."""
    config = services.config
    token = generate_token(session.org_id, session.certificate, config.hash_key_function)
    if await services.store.get_session(storage_key_id(token, config.hash_keys)) is not None:
        # Tyk answers 500; client input never causes a 5xx here.
        raise ApiError(400, "Failed to create key - Key with given certificate already found:" + token)
    return session.certificate


async def check_key_certificates(services: "Services", session: "SessionState", stored: "SessionState | None") -> None:
    """Tyk's checks of a key's certificates on create (``stored`` None) and update: a changed
    ``certificate`` must exist, every new ``mtls_static_certificate_bindings`` id must be of the
    key's org and exist. Identities (``san_uri:…``) are not store ids and are not looked up."""
    certs = services.certificates
    if stored is not None and session.certificate != stored.certificate:
        if not session.certificate:
            raise ApiError(400, "Key cannot be used without a certificate")
        if not _is_identity(session.certificate) and await certs.fetch(session.certificate) is None:
            raise ApiError(400, "Key must be used with an existent certificate")
    known = set(stored.mtls_static_certificate_bindings) if stored is not None else set()
    for cert_id in session.mtls_static_certificate_bindings:
        if cert_id in known:
            continue
        if session.org_id and not cert_id.startswith(session.org_id):
            raise ApiError(400, f"invalid certificate ID: {cert_id}")
        if await certs.fetch(cert_id) is None:
            raise ApiError(400, f"certificate not found: {cert_id}")


def _is_identity(certificate: str) -> bool:
    kind, sep, _ = certificate.partition(":")
    return bool(sep) and kind in IDENTITIES
