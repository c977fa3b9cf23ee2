"""The OAuth 2.0 server settings of a Classic or OAS definition, typed (``OAuthSettings``).

Classic: ``use_oauth2`` with ``oauth_meta`` {``allowed_access_types``, ``allowed_authorize_types``,
``auth_login_redirect``}, ``notifications`` {``shared_secret``, ``oauth_on_keychange_url``} and
``auth_configs.oauth``. OAS: a ``components.securitySchemes`` entry of ``type: oauth2`` whose
``flows`` name the grants, with the vendor ``securitySchemes.<name>`` (``enabled``,
``allowedAuthorizeTypes``, ``refreshToken``, ``authLoginRedirect``, ``notifications``). An OAS
``oauth2`` scheme whose vendor entry lists ``providers`` is external OAuth, not this server.
fastgate's own: ``oauth_meta.require_pkce`` / vendor ``requirePkce``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from fastgate.apidef.auth_settings import AuthSource, OAuthSettings
from fastgate.apidef.spec import DefinitionError

__all__ = ["ACCESS_TYPES", "AUTHORIZE_TYPES", "classic_oauth", "oas_oauth"]

ACCESS_TYPES: Final = ("authorization_code", "refresh_token", "password", "client_credentials")
AUTHORIZE_TYPES: Final = ("code", "token")
# osin also knows these; fastgate does not implement them, so they grant nothing (closed).
_IGNORED_ACCESS_TYPES: Final = ("assertion", "__implicit", "implicit")
_OAS_FLOWS: Final = {
    "authorizationCode": "authorization_code", "clientCredentials": "client_credentials", "password": "password",
}
EXTENSION: Final = "x-tyk-api-gateway"


def classic_oauth(raw: dict[str, Any], auth_configs: dict[str, AuthSource]) -> OAuthSettings | None:
    """``OAuthSettings`` of a protected Classic definition with ``use_oauth2``, else None."""
    if not raw.get("use_oauth2"):
        return None
    meta = _object(raw.get("oauth_meta"), "oauth_meta")
    notes = _object(raw.get("notifications"), "notifications")
    return OAuthSettings(
        source=auth_configs.get("oauth") or AuthSource(),
        access_types=_types(meta.get("allowed_access_types"), "oauth_meta.allowed_access_types", ACCESS_TYPES,
                            _IGNORED_ACCESS_TYPES),
        authorize_types=_types(meta.get("allowed_authorize_types"), "oauth_meta.allowed_authorize_types",
                               AUTHORIZE_TYPES, ()),
        login_redirect=_url(meta.get("auth_login_redirect"), "oauth_meta.auth_login_redirect"),
        shared_secret=_text(notes.get("shared_secret"), "notifications.shared_secret"),
        keychange_url=_url(notes.get("oauth_on_keychange_url"), "notifications.oauth_on_keychange_url"),
        require_pkce=_flag(meta.get("require_pkce"), "oauth_meta.require_pkce"),
    )


def oas_oauth(raw: dict[str, Any]) -> OAuthSettings | None:
    """``OAuthSettings`` of the first enabled OAS ``oauth2`` scheme served by this gateway."""
    schemes = (raw.get("components") or {}).get("securitySchemes") or {}
    auth = ((raw.get(EXTENSION) or {}).get("server") or {}).get("authentication") or {}
    vendor_schemes = auth.get("securitySchemes") or {}
    if not isinstance(schemes, dict) or not isinstance(vendor_schemes, dict):
        return None
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict) or scheme.get("type") != "oauth2":
            continue
        vendor = vendor_schemes.get(name)
        if not isinstance(vendor, dict) or not vendor.get("enabled") or "providers" in vendor:
            continue
        where = f"{EXTENSION}.server.authentication.securitySchemes.{name}"
        scope_check = vendor.get("scopeCheck")
        if isinstance(scope_check, dict) and scope_check.get("enabled"):
            # It restricts access: served without it, every token would pass (fail closed).
            raise DefinitionError(f"{where}.scopeCheck", "scope checks are not implemented by this gateway;"
                                  " the API would be served without them")
        flows = scheme.get("flows") or {}
        access = {grant for flow, grant in _OAS_FLOWS.items() if isinstance(flows, dict) and flow in flows}
        if _flag(vendor.get("refreshToken"), f"{where}.refreshToken"):
            access.add("refresh_token")
        authorize = _types(vendor.get("allowedAuthorizeTypes"), f"{where}.allowedAuthorizeTypes", AUTHORIZE_TYPES, ())
        if not vendor.get("allowedAuthorizeTypes"):
            authorize = frozenset(
                t for flow, t in (("authorizationCode", "code"), ("implicit", "token")) if flow in flows)
        notes = _object(vendor.get("notifications"), f"{where}.notifications")
        return OAuthSettings(
            source=_source(vendor),
            access_types=frozenset(access),
            authorize_types=authorize,
            login_redirect=_url(vendor.get("authLoginRedirect"), f"{where}.authLoginRedirect"),
            shared_secret=_text(notes.get("sharedSecret"), f"{where}.notifications.sharedSecret"),
            keychange_url=_url(notes.get("onKeyChangeUrl"), f"{where}.notifications.onKeyChangeUrl"),
            require_pkce=_flag(vendor.get("requirePkce"), f"{where}.requirePkce"),
        )
    return None


def _source(vendor: dict[str, Any]) -> AuthSource:
    header = vendor.get("header") or {}
    name = header.get("name") if isinstance(header, dict) and header.get("name") else "Authorization"
    return AuthSource(header_name=str(name))


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DefinitionError(field, "must be an object")
    return value


def _types(value: Any, field: str, known: tuple[str, ...], ignored: tuple[str, ...]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DefinitionError(field, "must be a list of strings")
    unknown = [v for v in value if v not in known and v not in ignored]
    if unknown:
        raise DefinitionError(field, f"{unknown[0]!r} is not one of {', '.join(known)}")
    return frozenset(v for v in value if v in known)


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DefinitionError(field, "must be a string")
    return value


def _flag(value: Any, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DefinitionError(field, "must be true or false")
    return value


def _url(value: Any, field: str) -> str:
    url = _text(value, field)
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
        raise DefinitionError(field, f"{url!r} is not an http(s) URL")
    return url
