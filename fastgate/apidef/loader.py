"""Reading a directory of API definitions: each file decoded on its own, bad ones reported.

A file that cannot work is refused with ``file: field: what is wrong`` and the others still
load, so one broken definition never takes the gateway's other APIs down with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import orjson

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.common import check_upstream_host
from fastgate.apidef.oas import EXTENSION, decode_oas
from fastgate.apidef.shape import check_shape
from fastgate.apidef.spec import ApiSpec, DefinitionError

__all__ = ["LoadResult", "decode_definition", "load_api_dir", "route_of"]


class LoadResult(msgspec.Struct, kw_only=True):
    """What a load produced: APIs to serve, switched-off APIs and refused files with reasons."""

    apis: list[ApiSpec] = []
    inactive: list[ApiSpec] = []
    problems: list[str] = []


def decode_definition(body: bytes, source: str) -> ApiSpec:
    """Decode one definition, Classic or OAS told apart by content; raise ``DefinitionError``."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DefinitionError("", f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError("", "not a JSON object")
    oas = EXTENSION in raw or "openapi" in raw
    check_shape(raw, oas)  # the decoders walk these containers: their types first
    return decode_oas(raw, source) if oas else decode_classic(raw, source)


def route_of(spec: ApiSpec) -> tuple[str, str]:
    """What the router serves ``spec`` on: ``/api`` and ``/api/`` are one route."""
    return spec.domain, spec.listen_path.rstrip("/")


def load_api_dir(path: Path, *, allow_link_local: bool = False) -> LoadResult:
    """Load every ``*.json`` under ``path`` (sorted by name, so the first of two clashing wins);
    ``allow_link_local`` is ``security.allow_link_local_upstreams``."""
    result = LoadResult()
    if not path.is_dir():
        result.problems.append(f"{path}: app_path: not a directory")
        return result
    routes: dict[tuple[str, str], ApiSpec] = {}
    ids: dict[str, ApiSpec] = {}
    for file in sorted(path.glob("*.json")):
        try:
            spec = decode_definition(file.read_bytes(), str(file))
            check_upstream_host(spec, allow_link_local)
        except DefinitionError as exc:
            result.problems.append(f"{file}: {exc}")
            continue
        except OSError as exc:
            result.problems.append(f"{file}: cannot be read: {exc.strerror}")
            continue
        if not spec.active:
            result.inactive.append(spec)
            continue
        clash = _clash(spec, routes, ids)
        if clash:
            result.problems.append(f"{file}: {clash}")
            continue
        routes[route_of(spec)] = spec
        ids[spec.api_id] = spec
        result.apis.append(spec)
    return result


def _clash(spec: ApiSpec, routes: dict[tuple[str, str], ApiSpec], ids: dict[str, Any]) -> str:
    if spec.api_id in ids:
        return f"api_id: {spec.api_id!r} is already used by {ids[spec.api_id].source}"
    other = routes.get(route_of(spec))
    if other is not None:
        where = f" on domain {spec.domain!r}" if spec.domain else ""
        field = "proxy.listen_path" if spec.format == "classic" else f"{EXTENSION}.server.listenPath.value"
        return f"{field}: {spec.listen_path!r}{where} is already served by {other.source} (api_id {other.api_id!r})"
    return ""
