"""The JWT settings of one API, read once from its Classic or OAS definition.

Classic keeps them as flat ``jwt_*`` fields, ``scopes.jwt`` (or the deprecated flat
``jwt_scope_claim_name`` / ``jwt_scope_to_policy_mapping``) and ``auth_configs.jwt``; OAS as a
``{type: http, scheme: bearer, bearerFormat: JWT}`` security scheme with its vendor block under
``x-tyk-api-gateway.server.authentication.securitySchemes.<name>``. Both become one ``JwtConfig``.

``key_source`` says where verification keys come from, as Tyk decides it: OAS ``jwksURIs``; else
``jwt_source`` as a JWKS URL (plain or base64), or base64 of an HMAC secret or of a PEM public
key or certificate; else the keys themselves ("one-to-one": each key's ``jwt_data.secret``).
A source that cannot work (bad base64, a PEM that is not a key of the configured family, an HMAC
secret that is a public key) refuses every token with 403, as in Tyk, and says why at load.
An HMAC secret shorter than 32 bytes (decoded) refuses the whole definition (RFC 8725 §3.5;
Tyk takes any length) unless the API sets ``jwt_allow_short_hmac_secret`` (Classic) or
``allowShortHmacSecret`` (OAS vendor scheme): the opt-out is per API, so accepting one legacy
issuer's weak secret loosens nothing else.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import msgspec

from fastgate.apidef.spec import ApiSpec, AuthSource, DefinitionError
from fastgate.auth.jwt.jose import FAMILIES, key_from_material
from fastgate.validation import split_error

__all__ = ["ClaimRule", "JwtConfig", "KeySource", "jwt_config", "parse_duration"]

EXTENSION: Final = "x-tyk-api-gateway"
_HTTP_URL: Final = re.compile(r"(?i)^https?://")
# RFC 8725 section 3.5: an HMAC key must have at least the hash's output length (HS256: 32 bytes).
MIN_HMAC_SECRET_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class ClaimRule:
    """One OAS ``customClaimValidation`` entry."""

    path: str
    type: str  # required | exact_match | contains (anything else: presence only, as Tyk)
    allowed: tuple[Any, ...]
    non_blocking: bool


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where verification keys come from."""

    kind: Literal["static", "jwks", "session"]
    key: Any = None  # static: the parsed key, None when the configured source is unusable
    problem: str = ""  # static: why the key is unusable
    jwks: tuple[tuple[str, float | None], ...] = ()  # (url, cache timeout or None for the default)


@dataclass(frozen=True, slots=True)
class JwtConfig:
    """Everything the JWT stage of one API needs, with Tyk's defaults applied."""

    source: AuthSource
    family: str  # hmac | rsa | ecdsa | eddsa
    key_source: KeySource
    is_oas: bool = False
    identity_fields: tuple[str, ...] = ()  # Classic: one field then `sub`; OAS: subjectClaims
    skip_kid: bool = False
    policy_fields: tuple[str, ...] = ()
    client_base_field: str = ""
    default_policies: tuple[str, ...] = ()
    scope_claims: tuple[str, ...] = ()
    scope_to_policy: dict[str, str] = field(default_factory=dict)
    iat_skew: int = 0
    nbf_skew: int = 0
    exp_skew: int = 0
    allowed_issuers: tuple[str, ...] = ()
    allowed_audiences: tuple[str, ...] = ()
    allowed_subjects: tuple[str, ...] = ()
    jti_required: bool = False
    custom_claims: tuple[ClaimRule, ...] = ()
    idp_client_id_mapping_disabled: bool = False
    context_vars: bool = False
    session_lifetime: int = 0

    @property
    def centralised(self) -> bool:
        """True when sessions are virtual (built from claims), not keys named by the token."""
        return self.key_source.kind != "session"


def jwt_config(spec: ApiSpec) -> JwtConfig | None:
    """The API's JWT settings, None when it does not use JWT; raises ``DefinitionError``."""
    if spec.use_keyless:
        return None
    return _from_oas(spec) if spec.format == "oas" else _from_classic(spec)


# ---- Classic -------------------------------------------------------------------------------------


class _ScopeClaim(msgspec.Struct, kw_only=True):
    scope_claim_name: str | None = None
    scope_to_policy: dict[str, str] | None = None


class _Scopes(msgspec.Struct, kw_only=True):
    jwt: _ScopeClaim | None = None
    oidc: _ScopeClaim | None = None


class _Classic(msgspec.Struct, kw_only=True):
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


def _from_classic(spec: ApiSpec) -> JwtConfig | None:
    api = _convert(spec.raw, _Classic, "")
    if not api.enable_jwt:
        return None
    family = _family(api.jwt_signing_method)
    scope = _classic_scope(api)
    return JwtConfig(
        source=spec.auth_configs.get("jwt") or AuthSource(),
        family=family,
        key_source=_key_source(api.jwt_source or "", family, (), "jwt_source",
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


def _classic_scope(api: _Classic) -> _ScopeClaim:
    # Tyk's GetScopeClaimName / GetScopeToPolicyMapping: the deprecated flat fields while `scopes`
    # is empty; then scopes.oidc when OpenID Connect is on, else scopes.jwt.
    scopes = api.scopes or _Scopes()
    nested = [s for s in (scopes.jwt, scopes.oidc) if s is not None and (s.scope_claim_name or s.scope_to_policy)]
    if not nested:
        return _ScopeClaim(scope_claim_name=api.jwt_scope_claim_name, scope_to_policy=api.jwt_scope_to_policy_mapping)
    chosen = scopes.oidc if api.use_openid else scopes.jwt
    return chosen or _ScopeClaim()


# ---- OAS -----------------------------------------------------------------------------------------


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


def _from_oas(spec: ApiSpec) -> JwtConfig | None:
    found = _oas_jwt_scheme(spec.raw)
    if found is None:
        return None
    name, vendor = found
    where = f"{EXTENSION}.server.authentication.securitySchemes.{name}"
    jwt = _convert(vendor, _OasJwt, where)
    if not jwt.enabled:
        return None
    family = _family(jwt.signingMethod)
    uris = tuple((u.url, parse_duration(u.cacheTimeout)) for u in jwt.jwksURIs or () if u.url)
    scopes = jwt.scopes or _OasScopes()
    claim_names = tuple(scopes.claims or ()) or ((scopes.claimName,) if scopes.claimName else ())
    ctx = (((spec.raw.get(EXTENSION) or {}).get("middleware") or {}).get("global") or {}).get("contextVariables")
    return JwtConfig(
        source=_oas_source(jwt),
        family=family,
        key_source=_key_source(jwt.source or "", family, uris, f"{where}.source",
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


def _oas_source(jwt: _OasJwt) -> AuthSource:
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


# ---- shared --------------------------------------------------------------------------------------


def _key_source(source: str, family: str, jwks_uris: tuple[tuple[str, float | None], ...],
                field: str = "jwt_source", allow_field: str = "jwt_allow_short_hmac_secret",
                allow_short: bool = False) -> KeySource:
    if jwks_uris:
        return KeySource("jwks", jwks=jwks_uris)
    source = source.strip()
    if not source:
        return KeySource("session")
    if _HTTP_URL.match(source):
        return KeySource("jwks", jwks=((source, None),))
    if source.startswith("-----BEGIN"):
        material = source.encode()  # a PEM pasted as is: Tyk wants base64 of it, we take both
    else:
        try:
            material = base64.b64decode(source, validate=True)
        except (binascii.Error, ValueError):
            return KeySource("static", problem="jwt_source is neither a URL nor standard base64")
        if _HTTP_URL.match(material.decode("latin-1")):
            return KeySource("jwks", jwks=((material.decode("latin-1").strip(), None),))
    key = key_from_material(family, material)
    if key is None:
        problem = (
            "jwt_source is a public key, not an HMAC secret" if family == "hmac"
            else f"jwt_source is not a PEM public key or certificate for signing method {family!r}"
        )
        return KeySource("static", problem=problem)
    if family == "hmac" and not allow_short and len(material) < MIN_HMAC_SECRET_BYTES:
        raise DefinitionError(field, (
            f"the HMAC secret is {len(material)} bytes once decoded; at least {MIN_HMAC_SECRET_BYTES} are "
            f"needed (RFC 8725 section 3.5); set {allow_field}: true to accept a shorter one"))
    return KeySource("static", key=key)


def _family(method: str | None) -> str:
    method = (method or "").lower()
    return method if method in FAMILIES else "hmac"  # Tyk: empty or unknown means HMAC


def _skew(value: int | None, field_name: str) -> int:
    if value is not None and value < 0:
        raise DefinitionError(field_name, "a validation skew is a number of seconds, 0 or more")
    return value or 0


def _convert(raw: Any, struct: type[Any], where: str) -> Any:
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
