"""HMAC and RSA request signatures (Tyk's ``enable_signature_checking``), with three additions.

As Tyk (tyk-reference §7): the ``Signature`` credential names a key (``keyId``) whose session has
``hmac_enabled`` + ``hmac_string`` (HMAC) or ``enable_http_signature_validation`` +
``rsa_certificate_id`` (RSA, PKCS#1 v1.5 SHA-256); ``hmac_allowed_algorithms`` restricts the
algorithm; the ``Date`` (or ``X-Aux-Date``) must parse and be within ``hmac_allowed_clock_skew``
(milliseconds) of now. Unlike Tyk, an unset or 0 skew means 300 000 ms (5 minutes), not "any
date": a month-old signature is refused. Only an explicit negative value switches the window off
(logged as a warning at load). Every failure is 400 "Authorization
field missing, malformed or invalid"; an RSA key whose certificate cannot be found is 500
"Certificate not found". Signing strings and signature decoding: ``fastgate.auth.signature``.

Beyond Tyk (per API, Classic top-level fields / OAS ``server.authentication.hmac``):

* ``hmac_required_headers`` / ``requiredHeaders``: names the signature must cover, e.g.
  ``["(request-target)", "date", "digest"]`` (Tyk accepts a signature over ``date`` alone, which
  binds neither the path nor the body, its issue #3040); requiring ``(request-target)`` also
  means the query is covered (only the standard draft-cavage form is accepted then);
* ``hmac_validate_digest`` / ``validateDigest``: a request with a body must carry a signed
  ``Digest: SHA-256=<base64>`` (or SHA-512) that matches the body, checked as the body streams
  (``fastgate.auth.body``); a body-less request's ``Digest``, if any, must match the empty body;
* ``hmac_replay_protection`` / ``replayProtection``: a signature is accepted once; the store
  (``kv_set_if_absent``, so every node agrees) remembers it for twice the clock skew, which is as
  long as its date stays acceptable. Needs a positive clock skew.

Comparison is constant time on the decoded signature bytes, and unknown algorithm names are
refused (Tyk falls back to HMAC-SHA1).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from fastgate.apidef.auth_decode import DEFAULT_CLOCK_SKEW_MS
from fastgate.apidef.auth_settings import HmacSettings
from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.auth.signature import (
    HMAC_HASHES, HashFactory, decode_signature, parse_digest, parse_http_date,
    parse_signature_header, request_date, signing_strings,
)
from fastgate.auth.sources import compile_extractor
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.certs.store import CertificateStore
    from fastgate.services import Services

__all__ = ["DEFAULT_CLOCK_SKEW_MS", "hmac_config", "compile_hmac_auth", "digest_of", "rsa_public_key", "INVALID"]

INVALID = Denial(400, "Authorization field missing, malformed or invalid")
REPLAYED = Denial(400, "Request signature has already been used")
CERT_NOT_FOUND = Denial(500, "Certificate not found")
NOT_RSA = Denial(500, "Certificate doesn't contain RSA Public key")
REPLAY_PREFIX = "hmac-replay-"
log = logging.getLogger("fastgate.auth")


def hmac_config(spec: ApiSpec) -> HmacSettings | None:
    """``spec``'s signature settings (decoded with the definition), None when it does not check
    signatures."""
    return spec.hmac


def hmac_warnings(spec: ApiSpec) -> list[str]:
    """Weak but working signature settings of ``spec``, as ``field: what`` (``fastgate check``)."""
    config = spec.hmac
    if config is None:
        return []
    found = []
    if "(request-target)" not in config.required_headers:
        found.append(
            f"{config.required_field}: a signature over the date alone is accepted, which binds neither"
            ' the method, the path nor the body; require ["(request-target)", "date"] (and "digest"'
            " with digest validation for requests with a body)")
    if config.clock_skew_ms < 0:
        found.append(f"{config.skew_field}: negative, so signatures of any age are accepted")
    return found


def digest_of(req: Request) -> tuple[HashFactory, bytes] | None:
    """The body digest ``req`` announces (its ``Digest`` header), for the body tap."""
    return parse_digest(req.header(b"digest"))


def compile_hmac_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The signature stage for ``spec``, or nothing when the API does not check signatures."""
    config = spec.hmac
    if config is None:
        return ()
    if config.clock_skew_ms < 0:
        log.warning("API %r: %s is negative: HMAC signatures of any age are accepted",
                    spec.api_id, config.skew_field)
    extract = compile_extractor(config.source, strip_bearer=False)
    sessions = services.sessions
    store = services.store
    certs = services.certificates
    base = spec.base_identity
    allowed = config.allowed_algorithms
    skew = config.clock_skew_ms / 1000.0
    required = config.required_headers
    replay_ttl = 2 * skew
    uncovered = Denial(400, "The request signature must cover: " + " ".join(required))
    # Tyk's (request-target) leaves the query unsigned: not good enough for an API that asks for
    # the target to be signed (fastgate.auth.signature).
    tyk_target = "(request-target)" not in required

    def check_signature(req: Request) -> Denial | None | Awaitable[Denial | None]:
        value = extract(req)
        params = parse_signature_header(value) if value else None
        if params is None or not params.key_id or not params.signature:
            return INVALID
        algorithm = params.algorithm
        if (allowed and algorithm not in allowed) or not (algorithm in HMAC_HASHES or algorithm == "rsa-sha256"):
            return INVALID
        for name in required:
            if name not in params.headers:
                return uncovered
        if config.validate_digest and not _digest_ok(req, params.headers):
            return INVALID
        signature = decode_signature(params.signature)
        if signature is None or not _date_ok(req, skew):
            return INVALID
        found = sessions.cached(params.key_id, spec)
        if found is None:
            return _lookup(req, params.key_id, algorithm, params.headers, signature)
        if found is False:
            return INVALID
        return finish(req, found[0], found[1], algorithm, params.headers, signature)

    def finish(req: Request, storage_id: str, session: SessionState, algorithm: str,
               headers: tuple[str, ...], signature: bytes) -> Denial | None | Awaitable[Denial | None]:
        verdict = _verify(certs, req, session, algorithm, headers, signature, tyk_target)
        if verdict is not None:
            if type(verdict) is Denial:
                return verdict
            return _after(verdict, req, storage_id, session, signature)  # type: ignore[arg-type]
        return accept(req, storage_id, session, signature)

    def accept(req: Request, storage_id: str, session: SessionState,
               signature: bytes) -> None | Awaitable[Denial | None]:
        if config.replay_protection:
            return _remember(req, storage_id, session, signature)
        offer_session(req, base, "hmac_key", storage_id, session)
        return None

    async def _after(verdict: Awaitable[Denial | None], req: Request, storage_id: str,
                     session: SessionState, signature: bytes) -> Denial | None:
        denied = await verdict
        if denied is not None:
            return denied
        result = accept(req, storage_id, session, signature)
        return None if result is None else await result

    async def _lookup(req: Request, key_id: str, algorithm: str, headers: tuple[str, ...],
                      signature: bytes) -> Denial | None:
        found = await sessions.lookup(key_id, spec)
        if not found:
            return INVALID
        result = finish(req, found[0], found[1], algorithm, headers, signature)
        return result if result is None or type(result) is Denial else await result  # type: ignore[misc]

    async def _remember(req: Request, storage_id: str, session: SessionState, signature: bytes) -> Denial | None:
        fingerprint = hashlib.sha256(storage_id.encode() + b"\0" + signature).hexdigest()[:40]
        if not await store.kv_set_if_absent(REPLAY_PREFIX + fingerprint, b"1", replay_ttl):
            return REPLAYED
        offer_session(req, base, "hmac_key", storage_id, session)
        return None

    return (check_signature,)


def _verify(certs: "CertificateStore", req: Request, session: SessionState, algorithm: str, headers: tuple[str, ...],
            signature: bytes, tyk_target: bool) -> Denial | None | Awaitable[Denial | None]:
    """None when ``signature`` is ``session``'s over one of ``req``'s signing strings."""
    if algorithm == "rsa-sha256":
        if not (session.enable_http_signature_validation and session.rsa_certificate_id):
            return INVALID
        key = rsa_public_key(certs, session.rsa_certificate_id)
        if isinstance(key, (rsa.RSAPublicKey, Denial)):
            return _verify_rsa(key, req, headers, signature, tyk_target)
        return _verify_rsa_later(key, req, headers, signature, tyk_target)
    secret = session.hmac_string
    if not secret or not (session.hmac_enabled or session.enable_http_signature_validation):
        return INVALID
    digestmod = HMAC_HASHES[algorithm]
    key_bytes = secret.encode()
    for text in signing_strings(req, headers, tyk_target=tyk_target):
        if hmac.compare_digest(hmac.digest(key_bytes, text, digestmod), signature):
            return None
    return INVALID


def _verify_rsa(key: rsa.RSAPublicKey | Denial, req: Request, headers: tuple[str, ...],
                signature: bytes, tyk_target: bool) -> Denial | None:
    if isinstance(key, Denial):
        return key
    for text in signing_strings(req, headers, tyk_target=tyk_target):
        try:
            key.verify(signature, text, padding.PKCS1v15(), hashes.SHA256())
            return None
        except InvalidSignature:
            continue
    return INVALID


async def _verify_rsa_later(key: Awaitable[rsa.RSAPublicKey | Denial], req: Request,
                            headers: tuple[str, ...], signature: bytes, tyk_target: bool) -> Denial | None:
    return _verify_rsa(await key, req, headers, signature, tyk_target)


def _date_ok(req: Request, skew: float) -> bool:
    value = request_date(req)
    if not value:
        return False
    when = parse_http_date(value)
    if when is None:
        return False
    return skew <= 0 or abs(time.time() - when) <= skew


def _digest_ok(req: Request, headers: tuple[str, ...]) -> bool:
    """The ``Digest`` policy before the body is seen: present and signed when there is a body
    (the body tap compares it), matching the empty body when there is none."""
    announced = req.header(b"digest")
    if announced is None:
        return not req.has_body
    if "digest" not in headers:
        return False
    digest = parse_digest(announced)
    if digest is None:
        return False
    if req.has_body:
        tap = req.body_tap  # made at head time from the same header; it compares the body
        return tap is not None and tap.checks_digest
    return hmac.compare_digest(digest[0](b"").digest(), digest[1])


# Inline PEM keys, parsed once: parsing costs far more than a verification.
_PEM_KEYS: dict[str, rsa.RSAPublicKey | Denial] = {}


def rsa_public_key(certs: "CertificateStore", reference: str
                   ) -> rsa.RSAPublicKey | Denial | Awaitable[rsa.RSAPublicKey | Denial]:
    """The RSA public key a session's ``rsa_certificate_id`` names, or Tyk's 500 denial.

    The id is looked up in the certificate store (``Services.certificates``: its
    node-local mirror without awaiting, the store itself while the mirror is not current). The
    reference may also be the PEM itself (a public key or a certificate), for keys written
    before certificates could be uploaded. This is the one place that knows where keys live."""
    if "-----BEGIN" in reference:
        key = _PEM_KEYS.get(reference)
        if key is None:
            key = _load_pem(reference.encode())
            if len(_PEM_KEYS) > 1000:
                _PEM_KEYS.clear()
            _PEM_KEYS[reference] = key
        return key
    found = certs.get(reference)
    if found is not None:
        return _as_rsa(found.public_key)
    return CERT_NOT_FOUND if certs.live else _fetch_key(certs, reference)


async def _fetch_key(certs: "CertificateStore", reference: str) -> rsa.RSAPublicKey | Denial:
    found = await certs.fetch(reference)
    return CERT_NOT_FOUND if found is None else _as_rsa(found.public_key)


def _as_rsa(public: Any) -> rsa.RSAPublicKey | Denial:
    return public if isinstance(public, rsa.RSAPublicKey) else NOT_RSA


def _load_pem(data: bytes) -> rsa.RSAPublicKey | Denial:
    try:
        if b"CERTIFICATE" in data:
            public: Any = load_pem_x509_certificate(data).public_key()
        else:
            public = serialization.load_pem_public_key(data)
    except ValueError:
        return CERT_NOT_FOUND
    return _as_rsa(public)
