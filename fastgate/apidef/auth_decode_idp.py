"""Classic and OAS settings of the identity-provider methods: external OAuth and OpenID Connect.

``classic_idp_auth`` and ``oas_idp_auth`` fill ``ExternalOAuthSettings`` and ``OidcSettings``
(``fastgate.apidef.auth_settings``) from either format, beside ``auth_decode`` (kept in a module
of its own so the methods added in parallel do not all edit one file). Where they are read:

* Classic: ``external_oauth`` {``enabled``, ``providers``: [{``jwt``, ``introspection``}]} with
  ``auth_configs.externalOAuth``; ``use_openid`` + ``openid_options`` {``providers``:
  [{``issuer``, ``client_ids``: {base64(client id): policy id}}], ``segregate_by_client``} with
  ``scopes.oidc`` and ``auth_configs.oidc``.
* OAS: a ``components.securitySchemes`` entry of ``type: oauth2`` whose vendor block (under
  ``x-tyk-api-gateway.server.authentication.securitySchemes``) has ``providers`` (the same fields
  in camelCase; an ``oauth2`` scheme without ``providers`` is the OAuth 2.0 server's);
  ``server.authentication.oidc``.

Settings that cannot work (an introspection URL that is not http(s), an issuer that is not a URL,
a client id that is not base64) raise ``DefinitionError`` naming the field: these methods guard
access, so a definition they cannot enforce is refused, never served open.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from fastgate.apidef.auth_decode import EXTENSION, convert_settings, oas_source
from fastgate.apidef.auth_settings import (
    AuthSource,
    ExternalOAuthSettings,
    ExtJwtSettings,
    IntrospectionSettings,
    JwtKeySettings,
    OidcProvider,
    OidcSettings,
)
from fastgate.apidef.spec import DefinitionError
from fastgate.validation import as_dict

__all__ = ["IdpAuth", "classic_idp_auth", "oas_idp_auth"]

_HTTP_URL: Final = re.compile(r"(?i)^https?://[^/\s?#]+")
JWT_FAMILIES: Final = ("hmac", "rsa", "ecdsa", "eddsa")


@dataclass(frozen=True, slots=True)
class IdpAuth:
    """The external OAuth and OpenID Connect settings of one API (None: not used)."""

    external_oauth: ExternalOAuthSettings | None = None
    oidc: OidcSettings | None = None


def classic_idp_auth(raw: dict[str, Any], auth_configs: dict[str, AuthSource], *, use_keyless: bool) -> IdpAuth:
    """External OAuth and OIDC settings of a Classic definition."""
    if use_keyless:
        return IdpAuth()
    return IdpAuth(_classic_external(raw, auth_configs), _classic_oidc(raw, auth_configs))


def oas_idp_auth(raw: dict[str, Any], *, use_keyless: bool) -> IdpAuth:
    """External OAuth and OIDC settings of a Tyk OAS document."""
    if use_keyless:
        return IdpAuth()
    return IdpAuth(_oas_external(raw), _oas_oidc(raw))


# ---- external OAuth ----------------------------------------------------------------------------


class _Cache(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    timeout: float | None = None


class _Jwt(msgspec.Struct, kw_only=True):  # both spellings: Classic snake_case, OAS camelCase
    enabled: bool | None = None
    signing_method: str | None = None
    source: str | None = None
    identity_base_field: str | None = None
    issued_at_validation_skew: int | None = None
    not_before_validation_skew: int | None = None
    expires_at_validation_skew: int | None = None


class _Introspection(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    identity_base_field: str | None = None
    cache: _Cache | None = None
    client_auth: str | None = None  # fastgate's own: "post" (Tyk's form fields) or "basic"


_CAMEL: Final = {
    "signingMethod": "signing_method", "identityBaseField": "identity_base_field",
    "issuedAtValidationSkew": "issued_at_validation_skew", "notBeforeValidationSkew": "not_before_validation_skew",
    "expiresAtValidationSkew": "expires_at_validation_skew", "clientId": "client_id",
    "clientSecret": "client_secret", "clientAuth": "client_auth",
}


def _classic_external(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> ExternalOAuthSettings | None:
    ext = raw.get("external_oauth")
    if not isinstance(ext, dict) or not ext.get("enabled"):
        return None
    source = auth_configs.get("externalOAuth") or AuthSource()
    return _external(ext.get("providers"), source, "external_oauth", camel=False)


def _oas_external(raw: dict[str, Any]) -> ExternalOAuthSettings | None:
    found = _oas_scheme(raw, lambda scheme, vendor: scheme.get("type") == "oauth2" and "providers" in vendor)
    if found is None:
        return None
    name, vendor = found
    where = f"{EXTENSION}.server.authentication.securitySchemes.{name}"
    if not vendor.get("enabled"):
        return None
    return _external(vendor.get("providers"), oas_source(vendor), f"{where}.providers", camel=True)


def _external(providers: Any, source: AuthSource, where: str, *, camel: bool) -> ExternalOAuthSettings:
    if not isinstance(providers, list) or not providers:
        return ExternalOAuthSettings(source=source, has_provider=False, where=where)
    first = providers[0] if isinstance(providers[0], dict) else {}
    at = f"{where}.providers[0]" if not camel else f"{where}[0]"
    jwt_raw = _renamed(first.get("jwt"), camel)
    intro_raw = _renamed(first.get("introspection"), camel)
    jwt = convert_settings(jwt_raw, _Jwt, f"{at}.jwt")
    intro = convert_settings(intro_raw, _Introspection, f"{at}.introspection")
    return ExternalOAuthSettings(
        source=source,
        has_provider=True,
        jwt=_ext_jwt(jwt, f"{at}.jwt", camel) if jwt.enabled else None,
        introspection=_introspection(intro, f"{at}.introspection", camel) if intro.enabled else None,
        where=where,
    )


def _ext_jwt(jwt: _Jwt, where: str, camel: bool) -> ExtJwtSettings:
    family = (jwt.signing_method or "").lower()
    if family not in JWT_FAMILIES:
        field = "signingMethod" if camel else "signing_method"
        raise DefinitionError(f"{where}.{field}", f"{jwt.signing_method!r} is not one of {', '.join(JWT_FAMILIES)}")
    source_field = f"{where}.source"
    keys = _key_settings((jwt.source or "").strip(), source_field)
    if keys.kind == "session":
        raise DefinitionError(source_field, "required: a base64 secret or PEM key, or a JWKS URL")
    if keys.kind == "static" and keys.problem:
        raise DefinitionError(source_field, keys.problem)
    skews = [(jwt.issued_at_validation_skew, "issued_at_validation_skew"),
             (jwt.not_before_validation_skew, "not_before_validation_skew"),
             (jwt.expires_at_validation_skew, "expires_at_validation_skew")]
    for value, name in skews:
        if value is not None and value < 0:
            raise DefinitionError(f"{where}.{name}", "a validation skew is a number of seconds, 0 or more")
    return ExtJwtSettings(
        family=family, keys=keys, identity_field=jwt.identity_base_field or "",
        iat_skew=jwt.issued_at_validation_skew or 0, nbf_skew=jwt.not_before_validation_skew or 0,
        exp_skew=jwt.expires_at_validation_skew or 0,
    )


def _key_settings(source: str, field: str) -> JwtKeySettings:
    """Tyk's reading of ``source``: a JWKS URL (plain or base64), else base64 of a secret or PEM."""
    if not source:
        return JwtKeySettings("session")
    if _HTTP_URL.match(source):
        return JwtKeySettings("jwks", jwks=((source, None),), field=field)
    if source.startswith("-----BEGIN"):
        return JwtKeySettings("static", material=source.encode(), field=field)
    try:
        material = base64.b64decode(source, validate=True)
    except (binascii.Error, ValueError):
        return JwtKeySettings("static", problem="neither a URL nor standard base64", field=field)
    text = material.decode("latin-1").strip()
    if _HTTP_URL.match(text):
        return JwtKeySettings("jwks", jwks=((text, None),), field=field)
    return JwtKeySettings("static", material=material, field=field, allow_short=True)


def _introspection(intro: _Introspection, where: str, camel: bool) -> IntrospectionSettings:
    url = (intro.url or "").strip()
    if not _HTTP_URL.match(url):
        raise DefinitionError(f"{where}.url", "required: the http(s) URL of the RFC 7662 introspection endpoint")
    client_auth = (intro.client_auth or "post").lower()
    if client_auth not in ("post", "basic"):
        raise DefinitionError(f"{where}.{'clientAuth' if camel else 'client_auth'}", 'must be "post" or "basic"')
    cache = intro.cache or _Cache()
    timeout = cache.timeout or 0.0
    if timeout < 0:
        raise DefinitionError(f"{where}.cache.timeout", "a number of seconds, 0 (until the token's exp) or more")
    return IntrospectionSettings(
        url=url, client_id=intro.client_id or "", client_secret=intro.client_secret or "",
        identity_field=intro.identity_base_field or "", cache_enabled=bool(cache.enabled),
        cache_timeout=float(timeout), basic_auth=client_auth == "basic", where=where,
    )


# ---- OpenID Connect ----------------------------------------------------------------------------


def _classic_oidc(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> OidcSettings | None:
    if not raw.get("use_openid"):
        return None
    options = raw.get("openid_options")
    options = options if isinstance(options, dict) else {}
    providers = []
    listed = options.get("providers")
    for i, provider in enumerate(listed if isinstance(listed, list) else ()):
        at = f"openid_options.providers[{i}]"
        provider = provider if isinstance(provider, dict) else {}
        issuer = _issuer(provider.get("issuer"), f"{at}.issuer")
        clients = []
        ids = provider.get("client_ids")
        for encoded, policy in (ids.items() if isinstance(ids, dict) else ()):
            try:
                client = base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, ValueError, UnicodeDecodeError):
                raise DefinitionError(f"{at}.client_ids", f"{encoded!r} is not the standard base64 of a client id") from None
            clients.append((client, str(policy or "")))
        providers.append(OidcProvider(issuer, tuple(clients)))
    scopes = raw.get("scopes")
    oidc_scopes = scopes.get("oidc") if isinstance(scopes, dict) else None
    oidc_scopes = oidc_scopes if isinstance(oidc_scopes, dict) else {}
    mapping = oidc_scopes.get("scope_to_policy")
    claim = oidc_scopes.get("scope_claim_name")
    return OidcSettings(
        source=auth_configs.get("oidc") or AuthSource(),
        providers=tuple(providers),
        segregate_by_client=bool(options.get("segregate_by_client")),
        scope_claims=(str(claim),) if claim else (),
        scope_to_policy={str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {},
        where="openid_options",
        context_vars=bool(raw.get("enable_context_vars")),
    )


def _oas_oidc(raw: dict[str, Any]) -> OidcSettings | None:
    where = f"{EXTENSION}.server.authentication.oidc"
    auth = as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("server")).get("authentication"))
    oidc = as_dict(auth.get("oidc"))
    if not oidc.get("enabled"):
        return None
    providers = []
    listed = oidc.get("providers")
    for i, provider in enumerate(listed if isinstance(listed, list) else ()):
        at = f"{where}.providers[{i}]"
        provider = as_dict(provider)
        issuer = _issuer(provider.get("issuer"), f"{at}.issuer")
        mappings = provider.get("clientToPolicyMapping")
        clients = tuple((str(m.get("clientId") or ""), str(m.get("policyId") or ""))
                        for m in (mappings if isinstance(mappings, list) else ()) if isinstance(m, dict))
        providers.append(OidcProvider(issuer, clients))
    scopes = as_dict(oidc.get("scopes"))
    names = scopes.get("claims") if isinstance(scopes.get("claims"), list) else None
    claim_names = tuple(str(n) for n in names or ()) or ((str(scopes["claimName"]),) if scopes.get("claimName") else ())
    mapping = scopes.get("scopeToPolicyMapping")
    return OidcSettings(
        source=oas_source(oidc),
        providers=tuple(providers),
        segregate_by_client=bool(oidc.get("segregateByClientId")),
        scope_claims=claim_names,
        scope_to_policy={str(m["scope"]): str(m.get("policyId") or "")
                         for m in (mapping if isinstance(mapping, list) else ()) if isinstance(m, dict) and m.get("scope")},
        where=where,
        context_vars=bool(as_dict(as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("middleware")).get("global"))
                               .get("contextVariables")).get("enabled")),
    )


def _issuer(value: Any, field: str) -> str:
    issuer = str(value or "").strip()
    if not _HTTP_URL.match(issuer):
        raise DefinitionError(field, "required: the issuer's http(s) URL (its discovery document is read from it)")
    return issuer


# ---- helpers -----------------------------------------------------------------------------------


def _oas_scheme(raw: dict[str, Any], wanted: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, vendor block) of the first scheme of the enforced requirements ``wanted`` accepts."""
    schemes = as_dict(as_dict(raw.get("components")).get("securitySchemes"))
    auth = as_dict(as_dict(as_dict(raw.get(EXTENSION)).get("server")).get("authentication"))
    vendor = as_dict(auth.get("securitySchemes"))
    security = raw.get("security") if isinstance(raw.get("security"), list) else []
    requirements = security if auth.get("securityProcessingMode") == "compliant" else security[:1]
    for requirement in requirements:
        for name in requirement if isinstance(requirement, dict) else ():
            scheme, block = schemes.get(name), vendor.get(name)
            if isinstance(scheme, dict) and isinstance(block, dict) and wanted(scheme, block):
                return name, block
    return None


def _renamed(value: Any, camel: bool) -> dict[str, Any]:
    value = as_dict(value)
    return {_CAMEL.get(k, k): v for k, v in value.items()} if camel else value


