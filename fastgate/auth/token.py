"""Auth token (Tyk's "standard auth"): a key in a header, query parameter or cookie.

Missing → 401 "Authorization field missing"; unknown, too short, or a key whose policies cannot
be applied → 403 "Access to this API has been disallowed". A found key's session (policies
applied) goes on the request for the post-auth checks. The lookup is synchronous when the
node-local session cache has the key, so a cached key costs no task and no store round trip.

The method is used when ``use_standard_auth`` is set, when an OAS ``apiKey`` scheme is declared,
or, as in Tyk, when a protected API enables no other method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Final

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.auth.mtls import (
    KeyCertificateCheck, compile_certificate_auth, compile_token_certificate_checks, uses_certificate_auth,
)
from fastgate.auth.sources import compile_extractor
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.services import Services
    from fastgate.sessions.manager import SessionManager

__all__ = ["compile_token_auth", "uses_token_auth", "MISSING", "DISALLOWED"]

MISSING: Final = Denial(401, "Authorization field missing")
DISALLOWED: Final = Denial(403, "Access to this API has been disallowed")

def uses_token_auth(spec: ApiSpec) -> bool:
    """True when requests to ``spec`` authenticate with an auth token."""
    return spec.token is not None


def compile_token_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The auth-token stage for ``spec``, or nothing when the API does not use it."""
    settings = spec.token
    if settings is None:
        return ()
    extract = compile_extractor(settings.source)
    sessions = services.sessions
    base = spec.base_identity
    if uses_certificate_auth(spec):
        # Dynamic mTLS: the client certificate is the key (fastgate.auth.mtls).
        return (compile_certificate_auth(spec, services, extract, base),)
    # Certificate-bound keys, and keys derived from certificates refused as header tokens.
    certificate_check = compile_token_certificate_checks(spec, services)

    # A repeated key is answered by ``sessions.cached`` from its memo (fastgate.sessions.manager).
    def check_token(req: Request) -> Denial | None | Awaitable[Denial | None]:
        credential = extract(req)
        if not credential:
            return MISSING
        found = sessions.cached(credential, spec)
        if found is None:
            return _lookup(sessions, credential, spec, req, base, certificate_check)
        if found is False:
            return DISALLOWED
        return _accept(req, found, base, certificate_check)

    return (check_token,)


async def _lookup(sessions: "SessionManager", credential: str, spec: ApiSpec, req: Request, base: str,
                  certificate_check: KeyCertificateCheck | None = None) -> Denial | None:
    found = await sessions.lookup(credential, spec)
    if not found:
        return DISALLOWED
    return _accept(req, found, base, certificate_check)


def _accept(req: Request, found: Any, base: str, certificate_check: KeyCertificateCheck | None) -> Denial | None:
    """A found key: check its certificate binding, then offer its session as the identity."""
    if certificate_check is not None:
        denial = certificate_check(req, found[1])
        if denial is not None:
            return denial
    offer_session(req, base, "auth_token", found[0], found[1])  # (storage id, session); no *args: a direct call
    return None
