"""The decision trace: ``POST /tyk/debug`` (Tyk's debug endpoint shape) and ``GET /tyk/debug``.

Runs one request through a loaded API's stages *without proxying* and answers which stages ran,
which one decided, why it refused (status and message), which identity and policies won and the
effective rate limit and quota. Guarded by the Gateway API secret like every ``/tyk/`` call.

- ``POST /tyk/debug`` with ``{"api_id": "<id>", "request": {"method": "GET", "path": "/x/y",
  "query": "a=1", "headers": {"Authorization": "..."}}}`` (Tyk's body names a whole ``spec``;
  fastgate takes the id of a loaded API, or a ``spec`` whose ``api_id`` is loaded);
- ``GET /tyk/debug?api_id=<id>&method=GET&path=/x/y``: the debug call's own headers (minus
  ``X-Tyk-Authorization``) are the traced request's headers, so ``curl -H "Authorization: <key>"``
  traces that key.

Nothing is counted or consumed: the stages that count the rate limit and quota are listed as
skipped and the session's limits are reported instead. The answer never holds a credential: keys
appear only as their hash (``key_hash``, as key creation answers), headers are not echoed.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import TYPE_CHECKING, Any

from fastgate.admin.common import ApiError, json_object, query_params
from fastgate.http.request import Request
from fastgate.observe.metrics import stage_name
from fastgate.pipeline.stage import Denial

if TYPE_CHECKING:
    from fastgate.admin.common import GatewayControl, Registrar
    from fastgate.pipeline.compile import CompiledApi

__all__ = ["register"]

# Stages that write counters (rate limit, quota): never run by a trace.
_COUNTING = ("check_limits", "check_api_rate")
MAX_TRACE_HEADERS = 100


def register(admin: "Registrar") -> None:
    """Add ``/tyk/debug`` to ``admin``."""
    gateway = admin.gateway

    async def post(req: Request, body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        raw = json_object(body, "debug request")
        api_id = raw.get("api_id")
        spec = raw.get("spec")
        if api_id is None and isinstance(spec, dict):
            api_id = spec.get("api_id") or ((spec.get("x-tyk-api-gateway") or {}).get("info") or {}).get("id")
        wanted = raw.get("request") if isinstance(raw.get("request"), dict) else {}
        headers = wanted.get("headers") or {}
        if not isinstance(headers, dict) or len(headers) > MAX_TRACE_HEADERS:
            raise ApiError(400, "Request malformed: request.headers must be an object of at most "
                                f"{MAX_TRACE_HEADERS} header names to values")
        pairs = []
        for name, value in headers.items():
            values = value if isinstance(value, list) else [value]
            pairs.extend((str(name).encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
                         for v in values)
        return 200, await trace(gateway, _api(gateway, api_id), str(wanted.get("method") or "GET"),
                                str(wanted.get("path") or "/"), str(wanted.get("query") or ""), pairs, req)

    async def get(req: Request, body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        query = query_params(req)
        headers = [(k, v) for k, v in req.headers if k.lower() != b"x-tyk-authorization"]
        return 200, await trace(gateway, _api(gateway, query.get("api_id")), query.get("method") or "GET",
                                query.get("path") or "/", query.get("query") or "", headers, req)

    admin.add("POST", "/tyk/debug", post)
    admin.add("GET", "/tyk/debug", get)


def _api(gateway: "GatewayControl", api_id: Any) -> "CompiledApi":
    if not isinstance(api_id, str) or not api_id:
        raise ApiError(400, "Request malformed: name the API to trace (api_id)")
    api = gateway.apis.get(api_id)
    if api is None:
        raise ApiError(404, f"API {api_id!r} is not loaded (traces run on loaded APIs; /tyk/reload first)")
    return api


async def trace(gateway: "GatewayControl", api: "CompiledApi", method: str, path: str, query: str,
                headers: list[tuple[bytes, bytes]], origin: Request) -> dict[str, Any]:
    """Run ``api``'s stages on the described request and say what happened."""
    if not path.startswith("/"):
        raise ApiError(400, "Request malformed: request.path must start with '/'")
    req = Request()
    req.method = method.upper()
    req.path = path
    req.query = query
    req.target = (path + ("?" + query if query else "")).encode("latin-1", "replace")
    req.headers = headers
    req.host = origin.host
    req.client_ip = origin.client_ip
    req.scheme = origin.scheme
    req.peer_cert = origin.peer_cert
    req.listen_base = api.spec.listen_path
    req.complete = True
    chosen = api if api.select is None else api.select(req)
    req.api = chosen
    steps: list[dict[str, Any]] = []
    decided: dict[str, Any] = {"decision": "allowed", "decided_by": None}
    for stage in chosen.stages:
        name = stage_name(stage)
        function = getattr(stage, "__name__", None) or type(stage).__name__
        if any(word in function for word in _COUNTING):
            steps.append({"stage": name, "check": function, "result": "skipped",
                          "why": "counts the rate limit or quota; the session's limits are shown instead"})
            continue
        try:
            result = stage(req)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the store is down, or a bug: say so, never a 500 for a trace
            steps.append({"stage": name, "check": function, "result": "error", "error": type(exc).__name__})
            decided = {"decision": "error", "decided_by": name}
            break
        if type(result) is Denial:
            steps.append({"stage": name, "check": function, "result": "refused", "status": result.status,
                          "message": result.message})
            decided = {"decision": "refused", "decided_by": name, "status": result.status,
                       "message": result.message}
            break
        steps.append({"stage": name, "check": function, "result": "passed"})
    spec = api.spec
    out: dict[str, Any] = {
        "api_id": spec.api_id,
        "api_name": spec.name,
        "request": {"method": req.method, "path": path},
        "keyless": spec.use_keyless,
        "auth_report_only": spec.observe.auth_report_only,
        "stages": steps,
        **decided,
    }
    out["identity"] = _identity(req, spec.api_id, gateway.services.config.hash_keys)
    return out


def _identity(req: Request, api_id: str, hashed: bool) -> dict[str, Any] | None:
    session = req.session
    if session is None:
        return None
    key = req.session_key
    limit = None
    rights = getattr(session, "access_rights", None) or {}
    access = rights.get(api_id) if isinstance(rights, dict) else None
    if access is not None and getattr(access, "limit", None) is not None and not access.limit.is_empty():
        limit = access.limit
    source = limit or session
    return {
        # With hash_keys the storage id is the key's hash (key_hash); otherwise it is the key
        # itself, so only a digest of it is shown.
        "key_hash": key if hashed else "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16],
        "alias": getattr(session, "alias", ""),
        "org_id": getattr(session, "org_id", ""),
        "policies": list(getattr(session, "apply_policies", None) or ()),
        "rate": {"rate": source.rate, "per": source.per},
        "quota": {"max": source.quota_max, "remaining": source.quota_remaining,
                  "renewal_rate": source.quota_renewal_rate},
        "limits_from": "access_rights" if limit is not None else "session",
    }
