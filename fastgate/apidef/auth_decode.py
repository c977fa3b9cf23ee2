"""Classic and OAS auth settings into the typed ``fastgate.apidef.auth_settings``.

``classic_auth`` and ``oas_auth`` are called by the two decoders; each method has a Classic and
an OAS reader here, and the rest of the gateway only sees the settings types. Settings that
cannot work raise ``DefinitionError`` naming the field as the definition spells it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from fastgate.apidef.auth_settings import (
    AuthSource,
    BasicSettings,
    ClaimRule,
    HmacSettings,
    JwtKeySettings,
    JwtSettings,
    MtlsSettings,
    TokenSettings,
)
from fastgate.apidef.oauth_decode import classic_oauth, oas_oauth
from fastgate.apidef.auth_settings import OAuthSettings
from fastgate.apidef.security_decode import oas_requirement_names
from fastgate.apidef.spec import DefinitionError
from fastgate.validation import as_dict, split_error

__all__ = ["DecodedAuth", "classic_auth", "oas_auth", "oas_source", "parse_duration"]

EXTENSION: Final = "x-tyk-api-gateway"
DEFAULT_BASIC_CACHE_TTL: Final = 60
DEFAULT_CLOCK_SKEW_MS: Final = 300_000.0  # when hmac_allowed_clock_skew is unset or 0
JWT_FAMILIES: Final = ("hmac", "rsa", "ecdsa", "eddsa")
_HTTP_URL: Final = re.compile(r"(?i)^https?://")

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


@dataclass(frozen=True, slots=True)
class DecodedAuth:
    """Every auth setting of one API, as the decoders hand them to ``ApiSpec``."""

    token: TokenSettings | None
    basic: BasicSettings | None
    hmac: HmacSettings | None
    jwt: JwtSettings | None
    mtls: MtlsSettings
    base_identity: str
    oauth: OAuthSettings | None = None


def classic_auth(raw: dict[str, Any], auth_configs: dict[str, AuthSource], *, use_keyless: bool,
                 use_standard_auth: bool) -> DecodedAuth:
    """The auth settings of a Classic definition (``auth_configs`` already decoded)."""
    protected = not use_keyless
    return DecodedAuth(
        token=_classic_token(raw, auth_configs, use_standard_auth) if protected else None,
        basic=_classic_basic(raw, auth_configs) if protected else None,
        hmac=_classic_hmac(raw, auth_configs) if protected else None,
        jwt=_classic_jwt(raw, auth_configs) if protected else None,
        mtls=_classic_mtls(raw, auth_configs, use_keyless),
        base_identity=str(raw.get("base_identity_provided_by") or ""),
        oauth=classic_oauth(raw, auth_configs) if protected else None,
    )


def oas_auth(raw: dict[str, Any], auth_configs: dict[str, AuthSource], *, use_keyless: bool) -> DecodedAuth:
    """The auth settings of a Tyk OAS document (``auth_configs``: its ``apiKey`` source)."""
    protected = not use_keyless
    auth = as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("server")).get("authentication"))
    return DecodedAuth(
        token=_oas_token(raw, auth_configs) if protected else None,
        basic=_oas_basic(raw) if protected else None,
        hmac=_oas_hmac(raw) if protected else None,
        jwt=_oas_jwt(raw) if protected else None,
        mtls=_oas_mtls(raw, use_keyless),
        base_identity=str(auth.get("baseIdentityProvider") or ""),
        oauth=oas_oauth(raw) if protected else None,
    )


# ---- auth token ------------------------------------------------------------------------------


def _classic_token(raw: dict[str, Any], auth_configs: dict[str, AuthSource],
                   use_standard_auth: bool) -> TokenSettings | None:
    source = TokenSettings(auth_configs.get("authToken") or AuthSource())
    if use_standard_auth:
        return source
    if (raw.get("external_oauth") or {}).get("enabled"):
        return None
    return None if any(raw.get(flag) for flag in _OTHER_METHODS) else source


def _oas_token(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> TokenSettings | None:
    schemes = _enforced_schemes(raw).values()
    types = {s.get("type") for s in schemes if isinstance(s, dict)}
    auth = ((raw.get(EXTENSION) or {}).get("server") or {}).get("authentication") or {}
    vendor_only = any((auth.get(name) or {}).get("enabled") for name in ("hmac", "oidc", "custom"))
    if "apiKey" in types or not (types or vendor_only):
        return TokenSettings(auth_configs.get("authToken") or AuthSource())
    return None


# ---- basic auth ------------------------------------------------------------------------------


class _BasicAuth(msgspec.Struct, kw_only=True):  # Classic ``basic_auth``
    disable_caching: bool = False
    cache_ttl: int = 0
    extract_from_body: bool = False
    body_user_regexp: str = ""
    body_password_regexp: str = ""


def _classic_basic(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> BasicSettings | None:
    if not raw.get("use_basic_auth"):
        return None
    return _basic("basic_auth", auth_configs.get("basic") or AuthSource(), raw.get("basic_auth") or {})


def _oas_basic(raw: dict[str, Any]) -> BasicSettings | None:
    schemes = _enforced_schemes(raw)
    vendor_schemes = (((raw.get(EXTENSION) or {}).get("server") or {})
                      .get("authentication") or {}).get("securitySchemes") or {}
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict) or scheme.get("type") != "http":
            continue
        if str(scheme.get("scheme", "")).lower() != "basic":
            continue
        vendor = vendor_schemes.get(name) or {}
        if isinstance(vendor, dict) and vendor.get("enabled"):
            where = f"{EXTENSION}.server.authentication.securitySchemes.{name}"
            body = vendor.get("extractCredentialsFromBody") or {}
            settings = {
                "disable_caching": vendor.get("disableCaching") or False,
                "cache_ttl": vendor.get("cacheTTL") or 0,
                "extract_from_body": body.get("enabled") or False,
                "body_user_regexp": body.get("userRegexp") or "",
                "body_password_regexp": body.get("passwordRegexp") or "",
            }
            return _basic(where, oas_source(vendor), settings)
    return None


def _basic(where: str, source: AuthSource, settings: Any) -> BasicSettings:
    try:
        conf = msgspec.convert(settings, _BasicAuth, strict=False)
    except msgspec.ValidationError as exc:
        raise DefinitionError(where, str(exc)) from None
    user_re = password_re = None
    if conf.extract_from_body:
        user_re = _regexp(f"{where}.body_user_regexp", conf.body_user_regexp)
        password_re = _regexp(f"{where}.body_password_regexp", conf.body_password_regexp)
    ttl = conf.cache_ttl if conf.cache_ttl > 0 else DEFAULT_BASIC_CACHE_TTL
    return BasicSettings(source, conf.disable_caching, float(ttl), user_re, password_re)


def _regexp(field: str, pattern: str) -> re.Pattern[bytes]:
    if not pattern:
        raise DefinitionError(field, "required when credentials are extracted from the body")
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        raise DefinitionError(field, f"not a valid regular expression: {exc}") from None


def oas_source(vendor: dict[str, Any]) -> AuthSource:
    """Where an OAS vendor scheme (``header``/``query``/``cookie`` {enabled, name}) reads from."""
    header = vendor.get("header") or {}
    query = vendor.get("query") or {}
    cookie = vendor.get("cookie") or {}
    name = header.get("name") or "Authorization"
    return AuthSource(
        header_name=name,
        disable_header=header.get("enabled") is False,
        use_param=bool(query.get("enabled")),
        param_name=query.get("name") or name,
        use_cookie=bool(cookie.get("enabled")),
        cookie_name=cookie.get("name") or name,
    )


# ---- HMAC signatures -------------------------------------------------------------------------


class _HmacSettings(msgspec.Struct, kw_only=True):
    allowed_algorithms: list[str] = []
    clock_skew: float = 0.0
    required_headers: list[str] = []
    validate_digest: bool = False
    replay_protection: bool = False


def _classic_hmac(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> HmacSettings | None:
    if not raw.get("enable_signature_checking"):
        return None
    settings = {"allowed_algorithms": raw.get("hmac_allowed_algorithms") or [],
                "clock_skew": raw.get("hmac_allowed_clock_skew") or 0,
                "required_headers": raw.get("hmac_required_headers") or [],
                "validate_digest": raw.get("hmac_validate_digest") or False,
                "replay_protection": raw.get("hmac_replay_protection") or False}
    return _hmac(auth_configs.get("hmac") or AuthSource(), settings, "hmac",
                 "hmac_allowed_clock_skew", "hmac_required_headers")


def _oas_hmac(raw: dict[str, Any]) -> HmacSettings | None:
    where = f"{EXTENSION}.server.authentication.hmac"
    vendor = (((raw.get(EXTENSION) or {}).get("server") or {})
              .get("authentication") or {}).get("hmac") or {}
    if not isinstance(vendor, dict) or not vendor.get("enabled"):
        return None
    settings = {"allowed_algorithms": vendor.get("allowedAlgorithms") or [],
                "clock_skew": vendor.get("allowedClockSkew") or 0,
                "required_headers": vendor.get("requiredHeaders") or [],
                "validate_digest": vendor.get("validateDigest") or False,
                "replay_protection": vendor.get("replayProtection") or False}
    return _hmac(oas_source(vendor), settings, where, f"{where}.allowedClockSkew", f"{where}.requiredHeaders")


def _hmac(source: AuthSource, settings: dict[str, Any], where: str, skew_field: str,
          required_field: str) -> HmacSettings:
    try:
        conf = msgspec.convert(settings, _HmacSettings, strict=False)
    except msgspec.ValidationError as exc:
        raise DefinitionError(where, str(exc)) from None
    required = tuple(h.strip().lower() for h in conf.required_headers if h.strip())
    skew = conf.clock_skew if conf.clock_skew != 0 else DEFAULT_CLOCK_SKEW_MS
    if conf.replay_protection and skew < 0:
        raise DefinitionError(where, "replay protection needs a positive allowed clock skew "
                                     "(it bounds how long a signature is remembered)")
    return HmacSettings(source, frozenset(conf.allowed_algorithms), skew, required,
                        conf.validate_digest, conf.replay_protection, where, skew_field, required_field)


# ---- mTLS ------------------------------------------------------------------------------------


def _classic_mtls(raw: dict[str, Any], auth_configs: dict[str, AuthSource], use_keyless: bool) -> MtlsSettings:
    token = auth_configs.get("authToken")
    return MtlsSettings(
        static=bool(raw.get("use_mutual_tls_auth")),
        allowlist=_strings(raw.get("client_certificates")),
        dynamic=bool(token is not None and token.use_certificate) and not use_keyless,
        identity=str(raw.get("client_certificate_identity") or "sha256"),
        crl_file=str(raw.get("client_certificate_crl_file") or ""),
    )


def _oas_mtls(raw: dict[str, Any], use_keyless: bool) -> MtlsSettings:
    server = as_dict(as_dict(raw.get(EXTENSION)).get("server"))
    client_certs = as_dict(server.get("clientCertificates"))
    auth = as_dict(server.get("authentication"))
    cert_auth = as_dict(auth.get("certificateAuth"))
    schemes = as_dict(auth.get("securitySchemes")).values()
    dynamic = bool(cert_auth.get("enabled")) or (
        "certificateAuth" not in auth and any(as_dict(s).get("enableClientCertificate") for s in schemes))
    return MtlsSettings(
        static=bool(client_certs.get("enabled")),
        allowlist=_strings(client_certs.get("allowlist")),
        dynamic=dynamic and not use_keyless,
        identity=str(cert_auth.get("identity") or "sha256"),
        crl_file=str(client_certs.get("crlFile") or ""),
        identity_field="certificateAuth.identity",
        crl_field="server.clientCertificates.crlFile",
    )


# ---- JWT: Classic ----------------------------------------------------------------------------


class _ScopeClaim(msgspec.Struct, kw_only=True):
    scope_claim_name: str | None = None
    scope_to_policy: dict[str, str] | None = None


class _Scopes(msgspec.Struct, kw_only=True):
    jwt: _ScopeClaim | None = None
    oidc: _ScopeClaim | None = None


class _ClassicJwt(msgspec.Struct, kw_only=True):
    enable_jwt: bool | None = None
    use_openid: bool | None = None
    jwt_signing_method: str | None = None
    jwt_source: str | None = None
    jwt_identity_base_field: str | None = None
    jwt_client_base_field: str | None = None
    jwt_policy_field_name: str | None = None
    jwt_default_policies: list[str] | None = None
    jwt_skip_kid: bool | None = None
    jwt_allow_short_hmac_secret: bool | None = None
    jwt_issued_at_validation_skew: int | None = None
    jwt_expires_at_validation_skew: int | None = None
    jwt_not_before_validation_skew: int | None = None
    jwt_scope_claim_name: str | None = None
    jwt_scope_to_policy_mapping: dict[str, str] | None = None
    scopes: _Scopes | None = None
    idp_client_id_mapping_disabled: bool | None = None
    enable_context_vars: bool | None = None
    session_lifetime: int | None = None


def _classic_jwt(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> JwtSettings | None:
    api = convert_settings(raw, _ClassicJwt, "")
    if not api.enable_jwt:
        return None
    scope = _classic_scope(api)
    return JwtSettings(
        source=auth_configs.get("jwt") or AuthSource(),
        family=_family(api.jwt_signing_method),
        keys=_key_settings(api.jwt_source or "", (), "jwt_source",
                           "jwt_allow_short_hmac_secret", bool(api.jwt_allow_short_hmac_secret)),
        identity_fields=(api.jwt_identity_base_field,) if api.jwt_identity_base_field else (),
        skip_kid=bool(api.jwt_skip_kid),
        policy_fields=(api.jwt_policy_field_name,) if api.jwt_policy_field_name else (),
        client_base_field=api.jwt_client_base_field or "",
        default_policies=tuple(api.jwt_default_policies or ()),
        scope_claims=(scope.scope_claim_name,) if scope.scope_claim_name else (),
        scope_to_policy=dict(scope.scope_to_policy or {}),
        iat_skew=_skew(api.jwt_issued_at_validation_skew, "jwt_issued_at_validation_skew"),
        nbf_skew=_skew(api.jwt_not_before_validation_skew, "jwt_not_before_validation_skew"),
        exp_skew=_skew(api.jwt_expires_at_validation_skew, "jwt_expires_at_validation_skew"),
        idp_client_id_mapping_disabled=bool(api.idp_client_id_mapping_disabled),
        context_vars=bool(api.enable_context_vars),
        session_lifetime=max(api.session_lifetime or 0, 0),
    )


def _classic_scope(api: _ClassicJwt) -> _ScopeClaim:
    # Tyk's GetScopeClaimName / GetScopeToPolicyMapping: the deprecated flat fields while `scopes`
    # is empty; then scopes.oidc when OpenID Connect is on, else scopes.jwt.
    scopes = api.scopes or _Scopes()
    nested = [s for s in (scopes.jwt, scopes.oidc) if s is not None and (s.scope_claim_name or s.scope_to_policy)]
    if not nested:
        return _ScopeClaim(scope_claim_name=api.jwt_scope_claim_name, scope_to_policy=api.jwt_scope_to_policy_mapping)
    chosen = scopes.oidc if api.use_openid else scopes.jwt
    return chosen or _ScopeClaim()


# ---- JWT: OAS --------------------------------------------------------------------------------


class _Source(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    name: str | None = None


class _Jwk(msgspec.Struct, kw_only=True):
    url: str | None = None
    cacheTimeout: str | float | None = None


class _ScopeToPolicy(msgspec.Struct, kw_only=True):
    scope: str | None = None
    policyId: str | None = None


class _OasScopes(msgspec.Struct, kw_only=True):
    claimName: str | None = None
    claims: list[str] | None = None
    scopeToPolicyMapping: list[_ScopeToPolicy] | None = None


class _Rule(msgspec.Struct, kw_only=True):
    type: str | None = None
    allowedValues: list[Any] | None = None
    nonBlocking: bool | None = None


class _Jti(msgspec.Struct, kw_only=True):
    enabled: bool | None = None


class _OasJwt(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    header: _Source | None = None
    query: _Source | None = None
    cookie: _Source | None = None
    source: str | None = None
    jwksURIs: list[_Jwk] | None = None
    signingMethod: str | None = None
    identityBaseField: str | None = None
    subjectClaims: list[str] | None = None
    skipKid: bool | None = None
    allowShortHmacSecret: bool | None = None
    policyFieldName: str | None = None
    basePolicyClaims: list[str] | None = None
    clientBaseField: str | None = None
    scopes: _OasScopes | None = None
    defaultPolicies: list[str] | None = None
    issuedAtValidationSkew: int | None = None
    notBeforeValidationSkew: int | None = None
    expiresAtValidationSkew: int | None = None
    allowedIssuers: list[str] | None = None
    allowedAudiences: list[str] | None = None
    allowedSubjects: list[str] | None = None
    jtiValidation: _Jti | None = None
    idpClientIdMappingDisabled: bool | None = None
    customClaimValidation: dict[str, _Rule] | None = None


def _oas_jwt(raw: dict[str, Any]) -> JwtSettings | None:
    found = _oas_jwt_scheme(raw)
    if found is None:
        return None
    name, vendor = found
    where = f"{EXTENSION}.server.authentication.securitySchemes.{name}"
    jwt = convert_settings(vendor, _OasJwt, where)
    if not jwt.enabled:
        return None
    uris = tuple((u.url, parse_duration(u.cacheTimeout)) for u in jwt.jwksURIs or () if u.url)
    scopes = jwt.scopes or _OasScopes()
    claim_names = tuple(scopes.claims or ()) or ((scopes.claimName,) if scopes.claimName else ())
    ctx = (((raw.get(EXTENSION) or {}).get("middleware") or {}).get("global") or {}).get("contextVariables")
    return JwtSettings(
        source=_oas_jwt_source(jwt),
        family=_family(jwt.signingMethod),
        keys=_key_settings(jwt.source or "", uris, f"{where}.source",
                           "allowShortHmacSecret", bool(jwt.allowShortHmacSecret)),
        is_oas=True,
        identity_fields=tuple(jwt.subjectClaims or ()) or ((jwt.identityBaseField,) if jwt.identityBaseField else ()),
        skip_kid=bool(jwt.skipKid),
        policy_fields=tuple(jwt.basePolicyClaims or ()) or ((jwt.policyFieldName,) if jwt.policyFieldName else ()),
        client_base_field=jwt.clientBaseField or "",
        default_policies=tuple(jwt.defaultPolicies or ()),
        scope_claims=claim_names,
        scope_to_policy={m.scope: m.policyId or "" for m in scopes.scopeToPolicyMapping or () if m.scope},
        iat_skew=_skew(jwt.issuedAtValidationSkew, f"{where}.issuedAtValidationSkew"),
        nbf_skew=_skew(jwt.notBeforeValidationSkew, f"{where}.notBeforeValidationSkew"),
        exp_skew=_skew(jwt.expiresAtValidationSkew, f"{where}.expiresAtValidationSkew"),
        allowed_issuers=tuple(jwt.allowedIssuers or ()),
        allowed_audiences=tuple(jwt.allowedAudiences or ()),
        allowed_subjects=tuple(jwt.allowedSubjects or ()),
        jti_required=bool(jwt.jtiValidation and jwt.jtiValidation.enabled),
        custom_claims=tuple(
            ClaimRule(path, rule.type or "", tuple(rule.allowedValues or ()), bool(rule.nonBlocking))
            for path, rule in (jwt.customClaimValidation or {}).items()
        ),
        idp_client_id_mapping_disabled=bool(jwt.idpClientIdMappingDisabled),
        context_vars=isinstance(ctx, dict) and bool(ctx.get("enabled")),
    )


def _oas_jwt_scheme(raw: dict[str, Any]) -> tuple[str, Any] | None:
    """(name, vendor config) of the JWT scheme Tyk would enable, or None."""
    schemes = (raw.get("components") or {}).get("securitySchemes") or {}
    auth = ((raw.get(EXTENSION) or {}).get("server") or {}).get("authentication") or {}
    vendor = auth.get("securitySchemes") or {}
    security = raw.get("security") or []
    if not isinstance(schemes, dict) or not isinstance(vendor, dict) or not isinstance(security, list):
        return None
    # Legacy processing uses the first requirement only; compliant mode looks at all of them.
    requirements = security if auth.get("securityProcessingMode") == "compliant" else security[:1]
    for requirement in requirements:
        for name in requirement if isinstance(requirement, dict) else ():
            scheme = schemes.get(name)
            if (
                isinstance(scheme, dict)
                and scheme.get("type") == "http"
                and str(scheme.get("scheme", "")).lower() == "bearer"
                and scheme.get("bearerFormat") == "JWT"
                and isinstance(vendor.get(name), dict)
            ):
                return name, vendor[name]
    return None


def _oas_jwt_source(jwt: _OasJwt) -> AuthSource:
    header, query, cookie = jwt.header, jwt.query, jwt.cookie
    if header is None and query is None and cookie is None:
        # Tyk would refuse the definition ("all auth sources are disabled"); the Authorization
        # header is what every importer writes, so it is the sensible reading.
        return AuthSource()
    name = (header.name if header else None) or "Authorization"
    return AuthSource(
        header_name=name,
        disable_header=not (header and header.enabled),
        use_param=bool(query and query.enabled),
        param_name=(query.name if query else None) or name,
        use_cookie=bool(cookie and cookie.enabled),
        cookie_name=(cookie.name if cookie else None) or name,
    )


# ---- JWT: shared -----------------------------------------------------------------------------


def _key_settings(source: str, jwks_uris: tuple[tuple[str, float | None], ...], field: str,
                  allow_field: str, allow_short: bool) -> JwtKeySettings:
    """Tyk's reading of where keys come from: OAS ``jwksURIs``; else ``jwt_source`` as a JWKS URL
    (plain or base64), or base64 of a secret / PEM; else the keys themselves ("session")."""
    if jwks_uris:
        return JwtKeySettings("jwks", jwks=jwks_uris)
    source = source.strip()
    if not source:
        return JwtKeySettings("session")
    if _HTTP_URL.match(source):
        return JwtKeySettings("jwks", jwks=((source, None),))
    if source.startswith("-----BEGIN"):
        material = source.encode()  # a PEM pasted as is: Tyk wants base64 of it, we take both
    else:
        try:
            material = base64.b64decode(source, validate=True)
        except (binascii.Error, ValueError):
            return JwtKeySettings("static", problem="jwt_source is neither a URL nor standard base64")
        if _HTTP_URL.match(material.decode("latin-1")):
            return JwtKeySettings("jwks", jwks=((material.decode("latin-1").strip(), None),))
    return JwtKeySettings("static", material=material, field=field, allow_short_field=allow_field,
                          allow_short=allow_short)


def _family(method: str | None) -> str:
    method = (method or "").lower()
    return method if method in JWT_FAMILIES else "hmac"  # Tyk: empty or unknown means HMAC


def _skew(value: int | None, field_name: str) -> int:
    if value is not None and value < 0:
        raise DefinitionError(field_name, "a validation skew is a number of seconds, 0 or more")
    return value or 0


def convert_settings(raw: Any, struct: type[Any], where: str) -> Any:
    """``raw`` as ``struct`` (lenient about number spellings); a wrong type is a ``DefinitionError``
    naming ``where`` and the field inside it."""
    try:
        return msgspec.convert(raw, struct, strict=False)
    except msgspec.ValidationError as exc:
        at, what = split_error(exc)
        raise DefinitionError(".".join(p for p in (where, at) if p), what) from None


_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str | float | None) -> float | None:
    """Seconds in a Go duration string ("90s", "1m30s") or a number; None for empty or invalid."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) or None
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            return None  # as Tyk: an invalid duration counts as unset
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return total or None



def _enforced_schemes(raw: dict[str, Any]) -> dict[str, Any]:
    """The declared security schemes Tyk enforces: those a requirement names (legacy mode: the
    first requirement only); all of them when the document has no ``security``."""
    schemes = as_dict(as_dict(raw.get("components")).get("securitySchemes"))
    if not raw.get("security"):
        return schemes
    wanted = {name for names in oas_requirement_names(raw) for name in names}
    return {name: scheme for name, scheme in schemes.items() if name in wanted}


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()
