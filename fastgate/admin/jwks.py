"""Gateway API for JWT: flushing JWKS caches (Tyk's endpoints) and revoking tokens (fastgate's).

* ``DELETE /tyk/cache/jwks`` and ``DELETE /tyk/cache/jwks/{apiID}`` → 200
  ``{"status": "ok", "message": "cache invalidated"}`` (idempotent, as in Tyk). The key sets are
  dropped and fetched again at once, verified-token caches of the API(s) are emptied, and the
  other nodes are told to do the same.
* ``POST /tyk/jwt/revocations`` with ``{"jti": "..."}`` or ``{"sub": "..."}`` and optionally
  ``"until"`` (Unix time the entry is kept; default a day) → 200 ``{"status": "ok", "message":
  "revoked"}``; ``GET /tyk/jwt/revocations`` lists them; ``DELETE
  /tyk/jwt/revocations/{jti|sub}/{value}`` lifts one (404 when there is none).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from fastgate.admin.common import ApiError
from fastgate.auth.jwt.revocation import DEFAULT_KEEP
from fastgate.auth.jwt.services import announce_jwks_flush

if TYPE_CHECKING:
    from fastgate.admin.common import Registrar
    from fastgate.http.request import Request

__all__ = ["register"]

INVALIDATED = {"status": "ok", "message": "cache invalidated"}


def register(admin: "Registrar") -> None:
    """Add the JWT endpoints to ``admin``."""
    services = admin.services
    jwks, revocations, store = services.jwks, services.jwt_revocations, services.store

    async def flush_all(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        jwks.flush(None)
        await announce_jwks_flush(store, services.event_source, "")
        return 200, INVALIDATED

    async def flush_api(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        api_id = unquote(params["apiID"])
        jwks.flush(api_id)
        await announce_jwks_flush(store, services.event_source, api_id)
        return 200, INVALIDATED

    async def list_revocations(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        return 200, revocations.as_json()

    async def revoke(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        kind, value, until = _revocation(body)
        await revocations.change(store, kind, value, until)
        return 200, {"status": "ok", "message": "revoked"}

    async def unrevoke(req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        kind = params["kind"]
        if kind not in ("jti", "sub"):
            raise ApiError(404, "Not found")
        existed = await revocations.change(store, kind, unquote(params["value"]), None)
        if not existed:
            raise ApiError(404, "Revocation not found")
        return 200, {"status": "ok", "message": "revocation lifted"}

    admin.add("DELETE", "/tyk/cache/jwks", flush_all)
    admin.add("DELETE", "/tyk/cache/jwks/{apiID}", flush_api)
    admin.add("GET", "/tyk/jwt/revocations", list_revocations)
    admin.add("POST", "/tyk/jwt/revocations", revoke)
    admin.add("DELETE", "/tyk/jwt/revocations/{kind}/{value}", unrevoke)


def _revocation(body: bytes) -> tuple[str, str, float]:
    try:
        doc = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError(400, 'Expected {"jti": "..."} or {"sub": "..."}')
    kinds = [k for k in ("jti", "sub") if k in doc]
    if len(kinds) != 1 or not isinstance(doc[kinds[0]], str) or not doc[kinds[0]]:
        raise ApiError(400, 'Give exactly one of "jti" or "sub", a non-empty string')
    until = doc.get("until", time.time() + DEFAULT_KEEP)
    if type(until) not in (int, float) or until <= time.time():
        raise ApiError(400, '"until" must be a Unix time in the future')
    return kinds[0], doc[kinds[0]], float(until)

