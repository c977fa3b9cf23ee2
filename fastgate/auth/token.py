"""Auth token (Tyk's "standard auth"): a key in a header, query parameter or cookie.

Missing → 401 "Authorization field missing"; unknown, too short, or a key whose policies cannot
be applied → 403 "Access to this API has been disallowed". A found key's session (policies
applied) goes on the request for the post-auth checks. The lookup is synchronous when the
node-local session cache has the key, so a cached key costs no task and no store round trip.

The method is used when ``use_standard_auth`` is set, when an OAS ``apiKey`` scheme is declared,
or, as in Tyk, when a protected API enables no other method.
"""

from __future__ import annotations

from typing import Any, Awaitable, Final

from fastgate.apidef.spec import ApiSpec, AuthSource
from fastgate.auth.identity import base_identity, offer_session
from fastgate.auth.mtls import (
    KeyCertificateCheck, compile_certificate_auth, compile_token_certificate_checks, uses_certificate_auth,
)
from fastgate.auth.sources import compile_extractor
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request

__all__ = ["compile_token_auth", "uses_token_auth", "MISSING", "DISALLOWED"]

MISSING: Final = Denial(401, "Authorization field missing")
DISALLOWED: Final = Denial(403, "Access to this API has been disallowed")

# Classic flags of the other methods: a protected API with none of them defaults to auth token.
_OTHER_METHODS: Final = (
    "use_oauth2",
    "use_basic_auth",
    "enable_signature_checking",
    "enable_jwt",
    "use_openid",
    "custom_plugin_auth_enabled",
    "use_go_plugin_auth",
    "enable_coprocess_auth",
)


def uses_token_auth(spec: ApiSpec) -> bool:
    """True when requests to ``spec`` authenticate with an auth token."""
    if spec.use_keyless:
        return False
    if spec.use_standard_auth:
        return True
    raw = spec.raw
    if spec.format == "oas":
        schemes = ((raw.get("components") or {}).get("securitySchemes") or {}).values()
        types = {s.get("type") for s in schemes if isinstance(s, dict)}
        auth = ((raw.get("x-tyk-api-gateway") or {}).get("server") or {}).get("authentication") or {}
        vendor_only = any((auth.get(name) or {}).get("enabled") for name in ("hmac", "oidc", "custom"))
        return "apiKey" in types or not (types or vendor_only)
    if (raw.get("external_oauth") or {}).get("enabled"):
        return False
    return not any(raw.get(flag) for flag in _OTHER_METHODS)


def compile_token_auth(spec: ApiSpec, gateway: Any) -> tuple[Stage, ...]:
    """The auth-token stage for ``spec``, or nothing when the API does not use it."""
    if not uses_token_auth(spec):
        return ()
    source = spec.auth_configs.get("authToken") or AuthSource()
    extract = compile_extractor(source)
    sessions = gateway.state["sessions"]
    base = base_identity(spec)
    if uses_certificate_auth(spec):
        # Dynamic mTLS: the client certificate is the key (fastgate.auth.mtls).
        return (compile_certificate_auth(spec, gateway, extract, base),)
    # Certificate-bound keys, and keys derived from certificates refused as header tokens.
    certificate_check = compile_token_certificate_checks(spec, gateway)

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


async def _lookup(sessions: Any, credential: str, spec: ApiSpec, req: Request, base: str,
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
    offer_session(req, base, "auth_token", *found)
    return None
