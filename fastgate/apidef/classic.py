"""Tyk Classic API definitions (the flat JSON Tyk has used since 1.x) into ``ApiSpec``.

Only the fields the gateway acts on are typed here; Tyk definitions carry many more, and those are
kept untouched in ``ApiSpec.raw`` and ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec

from fastgate.apidef.access import classic_access, unenforced_classic
from fastgate.apidef.auth_decode import classic_auth
from fastgate.apidef.auth_decode_idp import classic_idp_auth
from fastgate.apidef.common import check_api_id, check_listen_path, check_target_url
from fastgate.apidef.plugin_decode import classic_plugins
from fastgate.apidef.security_decode import classic_security
from fastgate.apidef.observe_decode import classic_observe
from fastgate.apidef.spec import ApiSpec, AuthSource, DefinitionError
from fastgate.validation import split_error

__all__ = ["decode_classic"]


class _AuthConfig(msgspec.Struct, kw_only=True):
    auth_header_name: str | None = None
    disable_header: bool | None = None
    use_param: bool | None = None
    param_name: str | None = None
    use_cookie: bool | None = None
    cookie_name: str | None = None
    use_certificate: bool | None = None


class _Proxy(msgspec.Struct, kw_only=True):
    listen_path: str | None = None
    target_url: str | None = None
    strip_listen_path: bool | None = None
    preserve_host_header: bool | None = None


class _Version(msgspec.Struct, kw_only=True):
    global_size_limit: int | None = None


class _VersionData(msgspec.Struct, kw_only=True):
    versions: dict[str, _Version] | None = None


class _Classic(msgspec.Struct, kw_only=True):
    api_id: str | None = None
    name: str | None = None
    org_id: str | None = None
    active: bool | None = None
    use_keyless: bool | None = None
    use_standard_auth: bool | None = None
    strip_auth_data: bool | None = None
    domain: str | None = None
    proxy: _Proxy | None = None
    auth: _AuthConfig | None = None
    auth_configs: dict[str, _AuthConfig] | None = None
    version_data: _VersionData | None = None
    max_request_body_bytes: int | None = None  # fastgate's own; Tyk uses global_size_limit
    allow_path_parameters: bool | None = None  # fastgate's own: ";" path parameters pass


def decode_classic(raw: dict[str, Any], source: str) -> ApiSpec:
    """Build an ``ApiSpec`` from a decoded Classic definition, or raise ``DefinitionError``."""
    try:
        api = msgspec.convert(raw, _Classic)  # strict, as Go decodes: "true" is not a bool
    except msgspec.ValidationError as exc:
        raise DefinitionError(*split_error(exc)) from None
    if not api.api_id:
        raise DefinitionError("api_id", "missing: every API needs an id")
    check_api_id("api_id", api.api_id)
    unenforced_classic(raw)
    access = classic_access(raw)
    proxy = api.proxy or _Proxy()
    listen_path = check_listen_path("proxy.listen_path", proxy.listen_path)
    target_url = check_target_url("proxy.target_url", proxy.target_url)
    auth_configs = _auth_configs(api)
    use_keyless = bool(api.use_keyless)
    use_standard_auth = bool(api.use_standard_auth)
    auth = classic_auth(raw, auth_configs, use_keyless=use_keyless, use_standard_auth=use_standard_auth)
    idp = classic_idp_auth(raw, auth_configs, use_keyless=use_keyless)
    return ApiSpec(
        api_id=api.api_id,
        name=api.name or api.api_id,
        org_id=api.org_id or "",
        # Tyk's own sample files omit "active"; only an explicit false switches an API off.
        active=api.active is not False,
        listen_path=listen_path,
        strip_listen_path=bool(proxy.strip_listen_path),
        target_url=target_url,
        preserve_host_header=bool(proxy.preserve_host_header),
        domain=(api.domain or "").lower().rstrip("."),  # requests' hosts lose a trailing dot too
        use_keyless=use_keyless,
        use_standard_auth=use_standard_auth,
        strip_auth_data=bool(api.strip_auth_data),
        auth_configs=auth_configs,
        token=auth.token,
        basic=auth.basic,
        hmac=auth.hmac,
        jwt=auth.jwt,
        mtls=auth.mtls,
        oauth=auth.oauth,
        external_oauth=idp.external_oauth,
        oidc=idp.oidc,
        base_identity=auth.base_identity,
        plugins=classic_plugins(raw, use_keyless),
        security=classic_security(raw, use_keyless),
        max_request_body_bytes=_size_limit(api),
        access=access,
        allow_path_parameters=bool(api.allow_path_parameters),
        format="classic",
        observe=classic_observe(raw),
        source=source,
        raw=raw,
    )


def _auth_configs(api: _Classic) -> dict[str, AuthSource]:
    configs = dict(api.auth_configs or {})
    # The deprecated top-level "auth" block is Tyk's fallback for authToken and jwt.
    if api.auth is not None:
        configs.setdefault("authToken", api.auth)
        configs.setdefault("jwt", api.auth)
    return {name: _source(c) for name, c in configs.items()}


def _source(c: _AuthConfig) -> AuthSource:
    header = c.auth_header_name or "Authorization"
    return AuthSource(
        header_name=header,
        disable_header=bool(c.disable_header),
        use_param=bool(c.use_param),
        param_name=c.param_name or header,
        use_cookie=bool(c.use_cookie),
        cookie_name=c.cookie_name or header,
        use_certificate=bool(c.use_certificate),
    )


def _size_limit(api: _Classic) -> int:
    if api.max_request_body_bytes:
        return api.max_request_body_bytes
    versions = (api.version_data.versions if api.version_data else None) or {}
    limits = [v.global_size_limit for v in versions.values() if v.global_size_limit]
    return max(limits) if limits else 0
