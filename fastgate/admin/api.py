"""The Gateway API: Tyk's ``/tyk/...`` endpoints and the unauthenticated ``/hello``.

Every ``/tyk/`` request must carry ``X-Tyk-Authorization`` equal to the gateway ``secret``,
compared in constant time; anything else gets Tyk's 403. Endpoints are registered as
``(method, pattern) -> handler`` where a pattern like ``/tyk/keys/{key}`` binds path segments;
a handler gets ``(req, body, params)`` and returns ``(status, json_value)`` or raises
``ApiError``. Client input never causes a 5xx: a handler that raises anything else is a bug,
logged, and answered 500 without detail.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from fastgate import __version__
from fastgate.admin import apis, certs, jwks, keys, oauth, policies
from fastgate.admin import debug, oas_import
from fastgate.admin.common import ApiError, GatewayControl, Handler
from fastgate.admin.guard import SecretThrottle
from fastgate.admin.metrics_endpoint import scrape, serves_metrics
from fastgate.http.h1 import simple_response
from fastgate.observe.access_log import redact_path

if TYPE_CHECKING:
    from fastgate.http.request import Request
    from fastgate.server.exchange import Exchange

__all__ = ["AdminApi", "ApiError", "GatewayControl", "Handler"]

log = logging.getLogger("fastgate.admin")

FORBIDDEN = "Attempted administrative access with invalid or missing key!"


class AdminApi:
    """Dispatches Gateway API requests for one gateway process."""

    def __init__(self, gateway: GatewayControl) -> None:
        self.gateway = gateway
        self.services = gateway.services
        self.secret = gateway.services.config.secret.encode()
        self.throttle = SecretThrottle()
        # pattern segments -> {method: handler}
        self.routes: list[tuple[tuple[str, ...], dict[str, Handler]]] = []
        self.add("GET", "/tyk/reload", self.reload)
        self.add("GET", "/tyk/reload/group", self.reload_group)
        self.add("GET", "/tyk/health", self.health)
        keys.register(self)
        policies.register(self)
        apis.register(self)
        certs.register(self)
        jwks.register(self)
        oauth.register(self)
        oas_import.register(self)
        debug.register(self)

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Register ``handler`` for ``method`` on ``pattern`` (``{name}`` binds one segment)."""
        segments = tuple(pattern.strip("/").split("/"))
        for existing, methods in self.routes:
            if existing == segments:
                methods[method] = handler
                return
        self.routes.append((segments, {method: handler}))
        # Literal segments beat bindings: /tyk/keys/create before /tyk/keys/{key}.
        self.routes.sort(key=lambda r: tuple(s.startswith("{") for s in r[0]))

    async def respond(self, exchange: "Exchange", body: bytes) -> None:
        """Answer one local request and finish ``exchange``."""
        req = exchange.req
        if req.path == "/metrics" and serves_metrics(self.services.config, exchange.client.admin):
            scrape(exchange, self.services.metrics)
            return
        extra: tuple[tuple[bytes, bytes], ...] = ()
        try:
            status, payload = await self.dispatch(req, body)
        except ApiError as exc:
            status, payload = exc.status, {"status": "error", "message": exc.message}
            extra = exc.headers
        except self.services.unavailable_errors as exc:
            log.warning("Gateway API %s %s: store unavailable: %s", req.method, redact_path(req.path), exc)
            status, payload = 503, {"status": "error", "message": "The store is unavailable; nothing was changed"}
        except Exception:
            log.exception("Gateway API handler failed for %s %s", req.method, redact_path(req.path))
            status, payload = 500, {"status": "error", "message": "Internal error"}
        keep_alive = exchange.keep_alive and not exchange.client.closing
        if exchange.state == 5:  # the client went away while we worked
            return
        exchange.respond(
            status,
            simple_response(status, orjson.dumps(payload), keep_alive=keep_alive, extra=extra),
            keep_alive,
        )

    async def dispatch(self, req: "Request", body: bytes) -> tuple[int, Any]:
        path = req.path.rstrip("/") or "/"
        if path == "/hello":
            return await self.hello(req, body, {})
        self._guard(req)
        segments = tuple(path.strip("/").split("/"))
        for pattern, methods in self.routes:
            params = _bind(pattern, segments)
            if params is None:
                continue
            handler = methods.get(req.method)
            if handler is None:
                raise ApiError(405, "Method not supported")
            return await handler(req, body, params)
        raise ApiError(404, "Not found")

    def _guard(self, req: Request) -> None:
        """Refuse a throttled client (429) or a missing or wrong secret (403, counted)."""
        now = time.monotonic()
        client = req.client_ip
        wait = self.throttle.retry_after(client, now)
        if wait:
            raise ApiError(429, f"Too many failed attempts at the Gateway API secret; retry in {wait} seconds",
                           ((b"Retry-After", str(wait).encode()),))
        if self._authorised(req):
            return
        failures = self.throttle.failed(client, now)
        # The presented value is never logged: it may be a near miss of the real secret.
        log.warning("Gateway API: %s %s from %s refused: %s X-Tyk-Authorization (%d of %d allowed failures"
                    " this minute; %d refused in all)", req.method, redact_path(req.path), client,
                    "missing" if req.header(b"x-tyk-authorization") is None else "wrong",
                    failures, self.throttle.limit, self.throttle.failed_total)
        raise ApiError(403, FORBIDDEN)

    def _authorised(self, req: "Request") -> bool:
        presented = req.header(b"x-tyk-authorization")
        if not self.secret or presented is None:
            return False
        return hmac.compare_digest(presented, self.secret)

    # ---- endpoints ---------------------------------------------------------------------------

    async def hello(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """Tyk's health check: ``pass``, or ``fail`` with 503 while the Redis store is unreachable
        (one PING per call, bounded by the store's timeout; memory stores have no component)."""
        gw = self.gateway
        details: dict[str, Any] = {
            "apis": {"status": "pass", "loaded": len(gw.apis), "rejected": len(gw.load_problems)},
        }
        status = "pass"
        store = self.services.store
        if not self.services.config.storage.url.startswith("memory:"):
            checked = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            try:
                await store.ping()
                details["redis"] = {"status": "pass", "componentType": "datastore", "time": checked}
            except self.services.unavailable_errors as exc:
                status = "fail"
                details["redis"] = {"status": "fail", "componentType": "datastore", "time": checked,
                                    "output": f"Redis is not reachable: {exc}"}
        details["uptime_seconds"] = int(time.time() - gw.started_at)
        return (200 if status == "pass" else 503), {
            "status": status,
            "version": __version__,
            "description": "fastgate",
            "details": details,
        }

    async def health(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        return await self.hello(req, body, params)

    async def reload(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        self.gateway.reload_everywhere()
        return 200, {"status": "ok", "message": ""}

    async def reload_group(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        await self.services.reload_group()
        return 200, {"status": "ok", "message": ""}


def _bind(pattern: tuple[str, ...], segments: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params
