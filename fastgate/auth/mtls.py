"""Mutual TLS for clients: static allowlists, certificate-bound keys, certificate-derived keys.

Three uses of the client certificate the listener verified (``fastgate.server.tls``), each with
Tyk's statuses and messages:

* **Static mTLS** (Classic ``use_mutual_tls_auth`` + ``client_certificates``, OAS
  ``server.clientCertificates``): ``compile_static_mtls`` is the first stage of the API, keyless
  or not (Tyk's CertificateCheckMW). No TLS → 403 "TLS not enabled"; no certificate → 403 "Client
  TLS certificate is required"; a certificate on the verified path whose SHA-256 is allowlisted,
  or one issued by an allowlisted CA (signature checked), passes, unless a certificate involved
  is outside its validity → 403 "Certificate has expired"; anything else → 403 "Certificate with
  SHA256 <leaf> not allowed". Allowlist entries are certificate store ids, inline PEM or files.
* **Certificate-bound keys** (``mtls_static_certificate_bindings`` on a key, static mTLS API):
  ``compile_certificate_binding`` gives the auth-token stage a check: the presented certificate's
  ``org_id + sha256`` must be one of them, else 401 "Access to this API has been disallowed";
  expired → 403 "Certificate has expired".
* **Certificate-derived keys** (dynamic mTLS: ``auth_configs.authToken.use_certificate``, OAS
  ``certificateAuth`` or a token scheme's ``enableClientCertificate``):
  ``compile_certificate_auth`` replaces the header token with the certificate. Secure default:
  no certificate → 401 "Client certificate required"; expired → 403 "Certificate has expired";
  no key for it → 401 "Access to this API has been disallowed"; the certificate no longer in the
  store → 403 "Access to this API has been disallowed" (deleting a certificate disables its key).
  ``security.allow_unsafe_dynamic_mtls_token`` restores Tyk's legacy mode (header token also
  accepted, certificate optional).

Beyond Tyk: a CRL (``http_server_options.crl_file`` for every API, Classic
``client_certificate_crl_file`` / OAS ``server.clientCertificates.crlFile`` per API) revokes a
certificate anywhere on the verified path → 403 "Certificate has been revoked";
``client_certificate_identity`` (Classic) / ``certificateAuth.identity`` (OAS) maps a
certificate to a key by ``sha256`` (Tyk's, the default), ``san_uri``, ``san_dns`` or
``subject_cn``: the key is then created with ``"certificate": "san_uri:spiffe://…"`` and no
leaf needs uploading; such an API must also allowlist the CA that issues those identities. And a
key derived from a certificate is never accepted as a plain header token (its id is computable
from the public certificate; Tyk closed the same hole only for its dynamic-mTLS APIs).

``client_auth`` tells the listener what to ask for and trust, after every API load and
every change to the certificate store.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Final, Iterable, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from fastgate.apidef.auth_settings import MtlsSettings
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.identity import offer_session
from fastgate.certs.crl import CrlError, Revocations, load_crl_file, load_crl_files
from fastgate.pipeline.stage import Denial, Stage
from fastgate.sessions.session import decode_session
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.certs.store import CertificateStore
    from fastgate.config import Config
    from fastgate.services import Services
    from fastgate.certs.peer import PeerCertificate
    from fastgate.sessions.session import SessionState

__all__ = [
    "CERT_EXPIRED", "CERT_MISMATCH", "CERT_REVOKED", "CLIENT_CERT_REQUIRED", "IDENTITIES",
    "KeyCertificateCheck",
    "MtlsSettings", "TLS_CERT_REQUIRED", "TLS_NOT_ENABLED", "check_mtls_definitions",
    "compile_certificate_auth", "compile_certificate_binding", "compile_static_mtls",
    "compile_token_certificate_checks", "identity_of",
    "mtls_settings", "client_auth", "uses_certificate_auth",
]

log = logging.getLogger("fastgate.mtls")

TLS_NOT_ENABLED: Final = Denial(403, "TLS not enabled")
TLS_CERT_REQUIRED: Final = Denial(403, "Client TLS certificate is required")
CERT_EXPIRED: Final = Denial(403, "Certificate has expired")
CERT_REVOKED: Final = Denial(403, "Certificate has been revoked")
CLIENT_CERT_REQUIRED: Final = Denial(401, "Client certificate required")
CERT_MISMATCH: Final = Denial(401, "Access to this API has been disallowed")
CERT_NOT_FOUND: Final = Denial(403, "Access to this API has been disallowed")
KEY_NOT_FOUND: Final = Denial(403, "Access to this API has been disallowed")
FIELD_MISSING: Final = Denial(401, "Authorization field missing")

IDENTITIES: Final = ("sha256", "san_uri", "san_dns", "subject_cn")


# ---- what an API asks for ---------------------------------------------------------------------


def mtls_settings(spec: ApiSpec) -> MtlsSettings:
    """An API's static / dynamic mTLS settings (decoded with the definition)."""
    return spec.mtls


def uses_certificate_auth(spec: ApiSpec) -> bool:
    """True when keys of ``spec`` are derived from client certificates (dynamic mTLS)."""
    return mtls_settings(spec).dynamic


def check_mtls_definitions(config: "Config", apis: list[ApiSpec]) -> list[str]:
    """``fastgate check``: problems with the mTLS settings of ``apis`` (``file: field: what``)."""
    problems = []
    for spec in apis:
        try:
            _validate(spec, config)
        except DefinitionError as exc:
            problems.append(f"{spec.source}: {exc}")
    return problems


def _validate(spec: ApiSpec, config: "Config") -> MtlsSettings:
    settings = spec.mtls
    field = settings.identity_field
    if settings.identity not in IDENTITIES:
        raise DefinitionError(field, f"{settings.identity!r} is not one of {', '.join(IDENTITIES)}")
    if settings.identity != "sha256" and settings.dynamic and not (settings.static and settings.allowlist):
        raise DefinitionError(field, f"{settings.identity} identities need static mTLS with an allowlist naming "
                                     "the CA that issues them (else anyone could claim one)")
    if settings.crl_file:
        try:
            load_crl_file(config.resolve(settings.crl_file))
        except CrlError as exc:
            raise DefinitionError(settings.crl_field, str(exc)) from None
    return settings


# ---- static mTLS ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllowedCertificate:
    """One resolved allowlist entry."""

    sha256: str
    certificate: x509.Certificate | None  # None for a bare public key (never matches a peer)
    chain_der: tuple[bytes, ...]
    is_ca: bool
    not_after: float


class Allowlist:
    """An API's allowlist, re-resolved when the certificate store changes (ids may be uploaded
    after the API is loaded, as in Tyk)."""

    def __init__(self, entries: Iterable[str], certs: "CertificateStore | None", config: "Config") -> None:
        self._ids: list[str] = []
        self._fixed: list[AllowedCertificate] = []
        self._certs = certs
        for entry in entries:
            if "-----BEGIN " in entry:
                self._fixed.extend(_from_pem(entry.encode()))
            elif os.path.isfile(config.resolve(entry)):
                self._fixed.extend(_from_pem(config.resolve(entry).read_bytes()))
            else:
                self._ids.append(entry)
        self._generation = -1
        self._current: tuple[AllowedCertificate, ...] = ()

    def current(self) -> tuple[tuple[AllowedCertificate, ...], int]:
        """The entries and the generation they were resolved at."""
        certs = self._certs
        generation = certs.generation if certs is not None else 0
        if generation != self._generation:
            found = list(self._fixed)
            for cert_id in self._ids:
                stored = certs.get(cert_id) if certs is not None else None
                if stored is not None:
                    found.append(AllowedCertificate(
                        stored.fingerprint, stored.leaf, stored.chain_der, stored.is_ca, stored.not_after))
            self._current, self._generation = tuple(found), generation
        return self._current, self._generation


def compile_static_mtls(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The CertificateCheck stage (first of the API's stages), or nothing without static mTLS."""
    config = services.config
    settings = _validate(spec, config)
    if not settings.static:
        return ()
    if not config.http_server_options.use_ssl:
        log.warning("API %r allowlists client certificates but use_ssl is off: it answers 403 'TLS not enabled'",
                    spec.api_id)
    allowlist = Allowlist(settings.allowlist, services.certificates, config)
    revocations = _revocations(settings, config)
    memo_owner = object()  # per-connection memo entries of this compiled stage

    def check_client_certificate(req: Request) -> Denial | None:
        if req.scheme != "https":
            return TLS_NOT_ENABLED
        peer: PeerCertificate | None = req.peer_cert
        if peer is None:
            return TLS_CERT_REQUIRED
        entries, generation = allowlist.current()
        key = (memo_owner, generation)
        verdict = peer.memo.get(key)
        if verdict is None:
            verdict = peer.memo[key] = _match(peer, entries, revocations)
        if isinstance(verdict, Denial):
            return verdict
        now = time.time()
        if not verdict[0] <= now <= verdict[1]:
            return CERT_EXPIRED
        return None

    return (check_client_certificate,)


def _match(peer: "PeerCertificate", entries: tuple[AllowedCertificate, ...],
           revocations: "Revocations | None") -> Denial | tuple[float, float]:
    """An allowlist decision for ``peer``: a Denial, or the validity window it holds within."""
    path = peer.certificates
    if revocations is not None and revocations.revoked_peer(peer):
        return CERT_REVOKED
    shas = [peer.sha256] + [_sha256(der) for der in peer.chain[1:]]
    for entry in entries:
        if entry.certificate is None:
            continue
        if entry.sha256 in shas:
            # Tyk: a matching allowlisted certificate that has expired is refused as expired.
            upto = shas.index(entry.sha256) + 1
            return _window(path[:upto], cap=entry.not_after)
        if entry.is_ca:
            for i, cert in enumerate(path):
                if _issued_by(cert, entry.certificate):
                    return _window(path[: i + 1], cap=entry.not_after)
    return Denial(403, f"Certificate with SHA256 {peer.sha256} not allowed")


def _window(path: Iterable[x509.Certificate], cap: float) -> tuple[float, float]:
    certs = list(path)
    start = max(c.not_valid_before_utc.timestamp() for c in certs)
    end = min([c.not_valid_after_utc.timestamp() for c in certs] + [cap])
    return start, end


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# ---- certificate-bound keys -----------------------------------------------------------------


def compile_certificate_binding(spec: ApiSpec) -> "KeyCertificateCheck | None":
    """For the auth-token stage of a static-mTLS API: refuse a key bound to other certificates."""
    if not mtls_settings(spec).static:
        return None
    org = spec.org_id

    def check_binding(req: Request, session: "SessionState") -> Denial | None:
        bindings = session.mtls_static_certificate_bindings
        if not bindings:
            return None  # keys without bindings work with any allowlisted certificate
        peer: PeerCertificate | None = req.peer_cert
        if peer is None:
            return CERT_MISMATCH
        if peer.expired():
            return CERT_EXPIRED
        if org + peer.sha256 not in bindings:
            return CERT_MISMATCH
        return None

    return check_binding


KeyCertificateCheck = Callable[[Request, "SessionState"], "Denial | None"]


def compile_token_certificate_checks(spec: ApiSpec, services: "Services") -> KeyCertificateCheck | None:
    """What the auth-token stage checks on a found key: its certificate bindings (static mTLS
    APIs), and that a key derived from a certificate is not presented as a plain token."""
    binding = compile_certificate_binding(spec)
    refuse_derived = not services.config.security.allow_unsafe_dynamic_mtls_token
    if binding is None and not refuse_derived:
        return None

    def check_key_certificate(req: Request, session: "SessionState") -> Denial | None:
        if refuse_derived and session.certificate:
            return KEY_NOT_FOUND
        return binding(req, session) if binding is not None else None

    return check_key_certificate


# ---- certificate-derived keys ---------------------------------------------------------------


def identity_of(peer: "PeerCertificate", kind: str, org_id: str) -> str:
    """The key credential ``peer`` stands for: ``org_id + sha256`` (Tyk's certificate hash) or
    ``"<kind>:<value>"`` for a SAN URI, SAN DNS name or subject CN; "" when it has none."""
    if kind == "sha256":
        return org_id + peer.sha256
    key = ("identity", kind)
    found = peer.memo.get(key)
    if found is None:
        found = peer.memo[key] = _identity_value(peer.x509, kind)
    return f"{kind}:{found}" if found else ""


def _identity_value(cert: x509.Certificate, kind: str) -> str:
    if kind == "subject_cn":
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    values = (san.get_values_for_type(x509.UniformResourceIdentifier) if kind == "san_uri"
              else san.get_values_for_type(x509.DNSName))
    return str(values[0]) if values else ""


def compile_certificate_auth(spec: ApiSpec, services: "Services", extract: Callable[[Request], str],
                             base: str) -> Stage:
    """The auth-token stage of a dynamic-mTLS API: the client certificate is the key."""
    config = services.config
    settings = _validate(spec, config)
    sessions = services.sessions
    certs = services.certificates
    unsafe = config.security.allow_unsafe_dynamic_mtls_token
    revocations = _revocations(settings, config)
    kind = settings.identity
    org = spec.org_id
    by_hash = kind == "sha256"

    def check_certificate_key(req: Request) -> Denial | None | Awaitable[Denial | None]:
        peer: PeerCertificate | None = req.peer_cert
        credential = ""
        if peer is not None:
            if peer.expired():
                return CERT_EXPIRED
            if revocations is not None and revocations.revoked_peer(peer):
                return CERT_REVOKED
            credential = identity_of(peer, kind, org)
        if unsafe:
            return _legacy(req, credential, extract(req))
        if peer is None:
            return CLIENT_CERT_REQUIRED
        if not credential:
            return CERT_MISMATCH
        found = sessions.cached(credential, spec)
        if found is None:
            return _by_certificate(req, credential)
        if found is False:
            return CERT_MISMATCH
        storage_id, session = found
        if by_hash:
            if session.certificate != credential or certs is None or not certs.live:
                return _finish(req, storage_id, session, credential)
            if certs.get(credential) is None:
                return CERT_NOT_FOUND
        offer_session(req, base, "auth_token", storage_id, session)
        return None

    async def _by_certificate(req: Request, credential: str) -> Denial | None:
        found = await sessions.lookup(credential, spec)
        if not found:
            return CERT_MISMATCH
        return await _finish(req, found[0], found[1], credential)

    async def _finish(req: Request, storage_id: str, session: "SessionState", credential: str) -> Denial | None:
        if by_hash:
            if session.certificate != credential:
                # Tyk keeps the key's certificate current (a key made under the certificate's id
                # without the field, or after the field was lost).
                await _remember_certificate(services, storage_id, credential)
            if certs is None or await certs.fetch(credential) is None:
                return CERT_NOT_FOUND
        offer_session(req, base, "auth_token", storage_id, session)
        return None

    async def _legacy(req: Request, credential: str, token: str) -> Denial | None:
        found = None
        if credential:
            found = await sessions.lookup(credential, spec)
            if not found:
                return CERT_MISMATCH
        if token:
            found = await sessions.lookup(token, spec)
            if not found:
                return KEY_NOT_FOUND
        if not found:
            return FIELD_MISSING
        storage_id, session = found
        if credential and not token:
            return await _finish(req, storage_id, session, credential)
        if session.certificate and by_hash and (certs is None or await certs.fetch(session.certificate) is None):
            return CERT_NOT_FOUND
        offer_session(req, base, "auth_token", storage_id, session)
        return None

    return check_certificate_key


async def _remember_certificate(services: "Services", storage_id: str, credential: str) -> None:
    raw = await services.store.get_session(storage_id)
    if raw is None:
        return
    stored = decode_session(raw)
    stored.certificate = credential
    ttl = stored.lifetime(now=time.time())
    await services.sessions.put(storage_id, stored, ttl if ttl > 0 else None)


# ---- what the listener asks for -------------------------------------------------------------


def client_auth(specs: Iterable[ApiSpec], certs: CertificateStore | None, config: Config,
                admin_on_main: bool) -> tuple[Literal["none", "optional", "required"], list[bytes]]:
    """Which client certificates the TLS listener asks for (``none``, ``optional`` or
    ``required``) and which it trusts (DER), for the loaded APIs ``specs`` (recomputed after
    every API load and every certificate store change)."""
    trusted: dict[bytes, None] = {}
    settings = [mtls_settings(spec) for spec in specs]
    for api in settings:
        if api.static:
            entries, _ = Allowlist(api.allowlist, certs, config).current()
            for entry in entries:
                trusted.update(dict.fromkeys(entry.chain_der))
    if certs is not None and any(api.dynamic for api in settings):
        # A certificate-derived key's certificate is trusted by being in the store.
        for stored in certs.all():
            trusted.update(dict.fromkeys(stored.chain_der))
    mode: Literal["none", "optional", "required"]
    if not any(api.static or api.dynamic for api in settings):
        mode = "none"
    elif all(api.static for api in settings) and not admin_on_main:
        mode = "required"
    else:
        mode = "optional"
    return mode, list(trusted)


# ---- revocation lists (the lists themselves: fastgate.certs.crl) ------------------------------


def _revocations(settings: MtlsSettings, config: "Config") -> Revocations | None:
    paths = [config.resolve(p) for p in (config.http_server_options.crl_file, settings.crl_file) if p]
    if not paths:
        return None
    found = load_crl_files(paths)
    assert found is not None
    # A private copy: the cached lists are shared, and this one may be refreshed in place.
    return Revocations(found.by_issuer, found.next_update, found.sources,
                       not config.http_server_options.allow_expired_crl)


# ---- helpers --------------------------------------------------------------------------------


def _from_pem(data: bytes) -> list[AllowedCertificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        return []
    ders = tuple(c.public_bytes(serialization.Encoding.DER) for c in certs)
    return [AllowedCertificate(_sha256(ders[0]), certs[0], ders, _is_ca(certs[0]), certs[0].not_valid_after_utc.timestamp())]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _sha256(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()
