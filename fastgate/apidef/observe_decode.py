"""Reading ``ObserveSettings`` (fastgate.apidef.observe_settings) from Classic and OAS definitions."""

from __future__ import annotations

from typing import Any

from fastgate.apidef.observe_settings import ObserveSettings
from fastgate.apidef.spec import DefinitionError

__all__ = ["classic_observe", "oas_observe"]

EXTENSION = "x-tyk-api-gateway"
MAX_TAG_HEADERS = 32


def classic_observe(raw: dict[str, Any]) -> ObserveSettings:
    """The Classic fields, or ``DefinitionError`` naming a wrong one."""
    tracked: list[tuple[str, str]] = []
    versions = ((raw.get("version_data") or {}).get("versions") or {}) if isinstance(raw.get("version_data"), dict) else {}
    for name, version in versions.items() if isinstance(versions, dict) else ():
        paths = (version.get("extended_paths") or {}) if isinstance(version, dict) else {}
        entries = paths.get("track_endpoints") if isinstance(paths, dict) else None
        for i, entry in enumerate(entries or ()):
            where = f"version_data.versions.{name}.extended_paths.track_endpoints[{i}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise DefinitionError(where, "expected an object with a path and a method")
            tracked.append((str(entry.get("method") or "GET").upper(), entry["path"]))
    return ObserveSettings(
        auth_report_only=_flag(raw, "auth_report_only", "auth_report_only"),
        do_not_track=_flag(raw, "do_not_track", "do_not_track"),
        tag_headers=_headers(raw.get("tag_headers"), "tag_headers"),
        track_paths=tuple(tracked),
    )


def oas_observe(raw: dict[str, Any]) -> ObserveSettings:
    """The OAS fields, or ``DefinitionError`` naming a wrong one."""
    ext = raw.get(EXTENSION) if isinstance(raw.get(EXTENSION), dict) else {}
    server = ext.get("server") if isinstance(ext.get("server"), dict) else {}
    auth = server.get("authentication") if isinstance(server.get("authentication"), dict) else {}
    middleware = ext.get("middleware") if isinstance(ext.get("middleware"), dict) else {}
    glob = middleware.get("global") if isinstance(middleware.get("global"), dict) else {}
    logs = glob.get("trafficLogs") if isinstance(glob.get("trafficLogs"), dict) else {}
    operations = middleware.get("operations") if isinstance(middleware.get("operations"), dict) else {}
    tracked_ids = {op_id for op_id, op in operations.items()
                   if isinstance(op, dict) and isinstance(op.get("trackEndpoint"), dict)
                   and op["trackEndpoint"].get("enabled") is True}
    tracked: list[tuple[str, str]] = []
    paths = raw.get("paths") if isinstance(raw.get("paths"), dict) else {}
    for path, item in paths.items():
        for method, op in item.items() if isinstance(item, dict) else ():
            if isinstance(op, dict) and op.get("operationId") in tracked_ids:
                tracked.append((method.upper(), path))
    return ObserveSettings(
        auth_report_only=_flag(auth, "reportOnly", f"{EXTENSION}.server.authentication.reportOnly"),
        do_not_track=logs.get("enabled") is False,
        tag_headers=_headers(logs.get("tagHeaders"), f"{EXTENSION}.middleware.global.trafficLogs.tagHeaders"),
        track_paths=tuple(tracked),
    )


def _flag(parent: dict[str, Any], key: str, where: str) -> bool:
    value = parent.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DefinitionError(where, "expected true or false")
    return value


def _headers(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(h, str) and h for h in value):
        raise DefinitionError(where, "expected a list of header names")
    if len(value) > MAX_TAG_HEADERS:
        raise DefinitionError(where, f"at most {MAX_TAG_HEADERS} headers")
    return tuple(h.lower() for h in value)
