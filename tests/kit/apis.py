"""Builders of API definitions and access rights: Tyk Classic and Tyk OAS, keyless or keyed.

Every test module builds its APIs from these, so a definition field the gateway starts to need
is added once here and not in each module's own copy.
"""

from __future__ import annotations

from typing import Any


def classic_api(api_id: str, listen_path: str, target_url: str, **fields: Any) -> dict[str, Any]:
    """A keyless Tyk Classic API definition with the given overrides (``proxy`` is merged)."""
    api: dict[str, Any] = {
        "name": api_id,
        "api_id": api_id,
        "org_id": "default",
        "use_keyless": True,
        "active": True,
        "proxy": {"listen_path": listen_path, "target_url": target_url, "strip_listen_path": True},
    }
    proxy = fields.pop("proxy", None)
    if proxy:
        api["proxy"].update(proxy)
    api.update(fields)
    return api


def token_api(api_id: str, upstream_url: str, listen_path: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Classic API protected by auth tokens (``use_standard_auth``), on ``/<api_id>/`` by default."""
    return classic_api(api_id, listen_path or f"/{api_id}/", upstream_url, use_keyless=False,
                       use_standard_auth=True, **fields)


def oas_api(
    api_id: str | None,
    listen_path: str,
    upstream_url: str,
    *,
    title: str | None = None,
    version: str = "1.0.0",
    paths: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
    document: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A Tyk OAS API definition: an OpenAPI 3.0.3 document with an active ``x-tyk-api-gateway``.

    ``info``, ``server`` and ``upstream`` add keys to those sections of the extension, other
    keyword arguments are further extension sections (``middleware=...``), ``document`` adds
    top-level OpenAPI keys (``components``, ``security``). Without ``api_id`` the extension has
    no id (the Gateway API then assigns one).
    """
    name = api_id or "unnamed"
    ext_info: dict[str, Any] = {"name": name, "state": {"active": True}, **(info or {})}
    if api_id is not None:
        ext_info = {"id": api_id, **ext_info}
    ext: dict[str, Any] = {
        "info": ext_info,
        "upstream": {"url": upstream_url, **(upstream or {})},
        "server": {"listenPath": {"value": listen_path, "strip": True}, **(server or {})},
        **sections,
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": title or name, "version": version},
        "paths": paths or {},
        **(document or {}),
        "x-tyk-api-gateway": ext,
    }


def rights(*api_ids: str, **extra: Any) -> dict[str, dict[str, Any]]:
    """A session's ``access_rights`` for the given APIs (``Default`` version); ``extra`` is added
    to each entry (``limit=...``, ``allowed_urls=...``)."""
    return {a: {"api_id": a, "api_name": a, "versions": ["Default"], **extra} for a in api_ids}


def oas_jwt_api(api_id: str, upstream_url: str, scheme: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Tyk OAS API on ``/<api_id>/`` whose one security scheme is a JWT bearer token; ``scheme``
    is that scheme's Tyk settings (``source``, ``signingMethod``, ...), ``fields`` go to ``oas_api``."""
    return oas_api(
        api_id, f"/{api_id}/", upstream_url, version="1",
        document={
            "components": {"securitySchemes": {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
            "security": [{"jwt": []}],
        },
        server={"authentication": {"enabled": True, "securitySchemes": {"jwt": {"enabled": True, **scheme}}}},
        **fields,
    )
