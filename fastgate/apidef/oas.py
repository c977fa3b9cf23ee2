"""Tyk OAS documents (OpenAPI 3 with an ``x-tyk-api-gateway`` extension) into ``ApiSpec``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from fastgate.apidef.access import oas_access, unenforced_oas
from fastgate.apidef.auth_decode import oas_auth
from fastgate.apidef.auth_decode_idp import oas_idp_auth
from fastgate.apidef.common import check_api_id, check_listen_path, check_target_url
from fastgate.apidef.plugin_decode import oas_plugins
from fastgate.apidef.security_decode import oas_security
from fastgate.apidef.observe_decode import oas_observe
from fastgate.apidef.spec import ApiSpec, AuthSource, DefinitionError
from fastgate.validation import split_error

__all__ = ["decode_oas", "EXTENSION"]

EXTENSION = "x-tyk-api-gateway"


class _State(msgspec.Struct, kw_only=True):
    active: bool | None = None


class _Info(msgspec.Struct, kw_only=True):
    id: str | None = None
    name: str | None = None
    orgId: str | None = None
    state: _State | None = None


class _ListenPath(msgspec.Struct, kw_only=True):
    value: str | None = None
    strip: bool | None = None


class _Domain(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    name: str | None = None


class _Authentication(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    stripAuthorizationData: bool | None = None


class _Server(msgspec.Struct, kw_only=True):
    listenPath: _ListenPath | None = None
    # Older documents write a plain string, newer ones {enabled, name}.
    customDomain: str | _Domain | None = None
    authentication: _Authentication | None = None
    allowPathParameters: bool | None = None  # fastgate's own: ";" path parameters pass


class _Upstream(msgspec.Struct, kw_only=True):
    url: str | None = None


class _SizeLimit(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    value: int | None = None


class _Global(msgspec.Struct, kw_only=True):
    requestSizeLimit: _SizeLimit | None = None


class _Middleware(msgspec.Struct, kw_only=True):
    # "global" is a Python keyword: msgspec renames it.
    global_: _Global | None = msgspec.field(default=None, name="global")


class _Extension(msgspec.Struct, kw_only=True):
    info: _Info | None = None
    server: _Server | None = None
    upstream: _Upstream | None = None
    middleware: _Middleware | None = None


def decode_oas(raw: dict[str, Any], source: str) -> ApiSpec:
    """Build an ``ApiSpec`` from a decoded Tyk OAS document, or raise ``DefinitionError``."""
    if EXTENSION not in raw:
        raise DefinitionError(
            EXTENSION, "missing: a plain OpenAPI document is not a Tyk API definition"
        )
    try:
        ext = msgspec.convert(raw[EXTENSION], _Extension)  # strict, as Go decodes
    except msgspec.ValidationError as exc:
        where, what = split_error(exc)
        raise DefinitionError(f"{EXTENSION}.{where}", what) from None
    info = ext.info or _Info()
    server = ext.server or _Server()
    listen = server.listenPath or _ListenPath()
    auth = server.authentication or _Authentication()
    api_id = check_api_id(f"{EXTENSION}.info.id", info.id or Path(source).stem)
    unenforced_oas(raw)
    access = oas_access(raw)
    title = (raw.get("info") or {}).get("title") if isinstance(raw.get("info"), dict) else None
    auth_configs = _api_key_sources(raw)
    decoded = oas_auth(raw, auth_configs, use_keyless=not auth.enabled)
    idp = oas_idp_auth(raw, use_keyless=not auth.enabled)
    return ApiSpec(
        api_id=api_id,
        name=info.name or title or api_id,
        org_id=info.orgId or "",
        active=not (info.state is not None and info.state.active is False),
        listen_path=check_listen_path(f"{EXTENSION}.server.listenPath.value", listen.value),
        strip_listen_path=bool(listen.strip),
        target_url=check_target_url(f"{EXTENSION}.upstream.url", (ext.upstream or _Upstream()).url),
        domain=_domain(server.customDomain),
        use_keyless=not auth.enabled,
        strip_auth_data=bool(auth.stripAuthorizationData),
        auth_configs=auth_configs,
        token=decoded.token,
        basic=decoded.basic,
        hmac=decoded.hmac,
        jwt=decoded.jwt,
        mtls=decoded.mtls,
        oauth=decoded.oauth,
        external_oauth=idp.external_oauth,
        oidc=idp.oidc,
        base_identity=decoded.base_identity,
        plugins=oas_plugins(raw, not auth.enabled),
        security=oas_security(raw, not auth.enabled),
        max_request_body_bytes=_size_limit(ext),
        access=access,
        allow_path_parameters=bool(server.allowPathParameters),
        format="oas",
        observe=oas_observe(raw),
        source=source,
        raw=raw,
    )


def _size_limit(ext: _Extension) -> int:
    """``middleware.global.requestSizeLimit`` (Tyk's API-wide body limit, as Classic's
    ``global_size_limit``); 0: the gateway-wide limit applies."""
    limit = ext.middleware.global_ if ext.middleware is not None else None
    size = limit.requestSizeLimit if limit is not None else None
    if size is None or not size.enabled or not size.value or size.value < 0:
        return 0
    return size.value


def _domain(custom: str | _Domain | None) -> str:
    # Requests' hosts lose a trailing dot (fastgate.http.h1.canonical_host): so do domains.
    if isinstance(custom, str):
        return custom.lower().rstrip(".")
    if custom is not None and custom.enabled is not False and custom.name:
        return custom.name.lower().rstrip(".")
    return ""


def _api_key_sources(raw: dict[str, Any]) -> dict[str, AuthSource]:
    """The first OAS ``apiKey`` scheme as the ``authToken`` source (the auth issues refine this)."""
    schemes = ((raw.get("components") or {}).get("securitySchemes") or {}) if isinstance(raw, dict) else {}
    for scheme in schemes.values() if isinstance(schemes, dict) else ():
        if isinstance(scheme, dict) and scheme.get("type") == "apiKey" and scheme.get("name"):
            name = scheme["name"]
            where = scheme.get("in", "header")
            return {
                "authToken": AuthSource(
                    header_name=name,
                    disable_header=where != "header",
                    use_param=where == "query",
                    param_name=name,
                    use_cookie=where == "cookie",
                    cookie_name=name,
                )
            }
    return {}
