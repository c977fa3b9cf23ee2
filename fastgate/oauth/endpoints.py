"""The OAuth 2.0 server's HTTP endpoints under each OAuth API's listen path.

``with_oauth_endpoints`` wraps a compiled OAuth API's stage-set selection: a request for
``<listen>/oauth/authorize``, ``/oauth/token``, ``/oauth/revoke``, ``/oauth/revoke_all`` or
``/tyk/oauth/authorize-client`` (trailing slash optional) is answered by the gateway itself (the
connection reads its whole body, bounded) instead of being proxied; every other path of the API
goes through its stages as before. Only OAuth APIs pay for the check: one dict lookup.

Shapes are Tyk's: token-endpoint errors are ``{"error", "error_description"}`` with
``oauth_error_status_code`` and Tyk's security headers; revoke errors ``{"status": "error",
"message"}``.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Final, Protocol
from urllib.parse import parse_qsl

import orjson

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.mtls import compile_static_mtls
from fastgate.http.h1 import simple_response
from fastgate.pipeline.access import compile_ip_check
from fastgate.pipeline.stage import Denial, Stage
from fastgate.oauth.server import TOKEN_HEADERS, OAuthError, OAuthServer, Reply, client_credentials_from_basic

if TYPE_CHECKING:
    from fastgate.http.request import Request
    from fastgate.pipeline.compile import CompiledApi
    from fastgate.services import Services

__all__ = ["LOCAL_HANDLER", "OAuthEndpoints", "with_oauth_endpoints"]

log = logging.getLogger("fastgate.oauth")

LOCAL_HANDLER: Final = "local"  # the ``Request.ctx`` entry holding an API's own local answer
MAX_BODY: Final = 64 * 1024
ADMIN_FORBIDDEN: Final = "Attempted administrative access with invalid or missing key!"
_DONE: Final = 5  # fastgate.server.exchange.DONE: the client went away

Handler = Callable[["Request", bytes], Awaitable[Reply]]


class Exchange(Protocol):
    """What an endpoint needs of the connection's exchange (``fastgate.server.exchange.Exchange``,
    which sits above this package): the request, its state, and the way to answer."""

    req: "Request"
    state: int
    keep_alive: bool
    client: Any

    def respond(self, status: int, data: bytes, keep_alive: bool) -> None:
        """Write a complete response and finish."""


def with_oauth_endpoints(api: "CompiledApi", services: "Services") -> "CompiledApi":
    """``api`` answering its OAuth endpoints itself, when it is an OAuth API."""
    spec = api.spec
    if spec.use_keyless or spec.oauth is None:
        return api
    endpoints = OAuthEndpoints(spec, services)
    routes: dict[str, Callable[[Exchange, bytes], Awaitable[None]]] = {
        "/oauth/authorize": endpoints.responder(endpoints.authorize, token_headers=False),
        "/oauth/token": endpoints.responder(endpoints.token, token_headers=True),
        "/oauth/revoke": endpoints.responder(endpoints.revoke, token_headers=True),
        "/oauth/revoke_all": endpoints.responder(endpoints.revoke_all, token_headers=True),
        "/tyk/oauth/authorize-client": endpoints.responder(endpoints.authorize_client, token_headers=False),
    }
    inner = api.select

    def select(req: "Request") -> "CompiledApi | None":
        local = routes.get(req.path[len(req.listen_base):].rstrip("/"))
        if local is not None:
            req.ctx = {LOCAL_HANDLER: local}
            return None  # answered by the gateway (Gateway.run_local)
        return api if inner is None else inner(req)

    return replace(api, select=select)


class OAuthEndpoints:
    """The handlers of one OAuth API."""

    def __init__(self, spec: ApiSpec, services: "Services") -> None:
        self.spec = spec
        self.server: OAuthServer = services.oauth
        self.secret = services.config.secret.encode()
        self.unavailable = services.unavailable_errors
        # The API's IP lists and static mTLS hold for its OAuth endpoints too: a client shut out
        # of the API cannot mint tokens for it either.
        ip_check = compile_ip_check(spec.access, services.config.security.client_ip_header)
        self.guards: tuple[Stage, ...] = (*((ip_check,) if ip_check is not None else ()),
                                          *compile_static_mtls(spec, services))

    def responder(self, handler: Handler, *, token_headers: bool) -> Callable[["Exchange", bytes], Awaitable[None]]:
        """What answers one request with ``handler`` and finishes its exchange."""
        server = self.server
        extra_headers = TOKEN_HEADERS if token_headers else ()

        async def respond(exchange: "Exchange", body: bytes) -> None:
            req = exchange.req
            try:
                refusal = await self._guard(req)
                reply = await handler(req, body) if refusal is None else \
                    Reply(refusal.status, {"error": refusal.message}, refusal.headers)
            except OAuthError as exc:
                reply = Reply(exc.status or server.error_status,
                              {"error": exc.code, "error_description": exc.description}, extra_headers + exc.headers)
            except self.unavailable:
                reply = Reply(503, {"error": "temporarily_unavailable",
                                    "error_description": "the gateway's store is unavailable; try again shortly"},
                              extra_headers)
            except Exception:
                log.exception("OAuth endpoint failed for %s on API %r", req.method, self.spec.api_id)
                reply = Reply(500, {"error": "server_error", "error_description": "internal error"}, extra_headers)
            if exchange.state == _DONE:
                return
            keep_alive = exchange.keep_alive and not exchange.client.closing
            payload = b"" if reply.payload is None else orjson.dumps(reply.payload)
            exchange.respond(reply.status, simple_response(reply.status, payload, keep_alive=keep_alive,
                                                           extra=reply.headers), keep_alive)

        return respond

    async def _guard(self, req: "Request") -> Denial | None:
        for guard in self.guards:
            result = guard(req)
            if result is not None and type(result) is not Denial:
                result = await result  # type: ignore[misc]  # not a Denial: the awaitable
            if result is not None:
                return result  # type: ignore[return-value]
        return None

    # ---- endpoints ---------------------------------------------------------------------------

    async def authorize(self, req: "Request", body: bytes) -> Reply:
        if req.method not in ("GET", "POST"):
            raise OAuthError("invalid_request", "use GET or POST", 405)
        params = _params(req.query.encode("latin-1", "replace"))
        if req.method == "POST":
            params.update(_body_params(req, body))
        return await self.server.authorize(self.spec, params, req.query if req.method == "GET" else "")

    async def authorize_client(self, req: "Request", body: bytes) -> Reply:
        if not self._admin(req):
            return Reply(403, {"status": "error", "message": ADMIN_FORBIDDEN})
        if req.method != "POST":
            raise OAuthError("invalid_request", "use POST", 405)
        return await self.server.authorize_client(self.spec, _body_params(req, body))

    async def token(self, req: "Request", body: bytes) -> Reply:
        if req.method != "POST":
            raise OAuthError("invalid_request", "the token endpoint only accepts POST")
        params = _body_params(req, body, strict=True)
        basic = client_credentials_from_basic(req.header(b"authorization"))
        return await self.server.token(self.spec, basic, params)

    async def revoke(self, req: "Request", body: bytes) -> Reply:
        params = _body_params(req, body)
        token = params.get("token", "")
        if not token:
            return Reply(400, {"status": "error", "message": "token is required"}, TOKEN_HEADERS)
        client = None
        if req.header(b"authorization") is not None:
            try:
                client = await self.server.authenticate(self.spec, client_credentials_from_basic(
                    req.header(b"authorization")))
            except OAuthError:
                return Reply(401, {"status": "error", "message": "client authentication failed"}, TOKEN_HEADERS)
        await self.server.revoke_token(self.spec, token, params.get("token_type_hint", ""), client)
        return Reply(200, {"status": "ok", "message": "token revoked successfully"}, TOKEN_HEADERS)

    async def revoke_all(self, req: "Request", body: bytes) -> Reply:
        params = _body_params(req, body)
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        if not client_id:
            return Reply(401, {"status": "error", "message": "client_id is required"}, TOKEN_HEADERS)
        if not secret:
            return Reply(401, {"status": "error", "message": "client_secret is required"}, TOKEN_HEADERS)
        failures = self.server.client_failures
        key = f"{self.spec.api_id}\0{client_id}"
        wait = failures.retry_after(key)
        if wait:
            return Reply(429, {"status": "error", "message": f"too many failed attempts; retry in {wait} seconds"},
                         TOKEN_HEADERS + ((b"Retry-After", str(wait).encode()),))
        client = await self.server.storage.client(self.spec.api_id, client_id)
        if client is None:
            failures.failed(key)
            return Reply(404, {"status": "error", "message": "OAuth Client ID not found"}, TOKEN_HEADERS)
        if not hmac.compare_digest(client.secret.encode(), secret.encode()):
            failures.failed(key)
            return Reply(401, {"status": "error", "message": "client secret is wrong"}, TOKEN_HEADERS)
        await self.server.revoke_all(self.spec.api_id, client_id)
        return Reply(200, {"status": "ok", "message": "tokens revoked successfully"}, TOKEN_HEADERS)

    def _admin(self, req: "Request") -> bool:
        presented = req.header(b"x-tyk-authorization")
        return bool(self.secret) and presented is not None and hmac.compare_digest(presented, self.secret)


def _params(raw: bytes, *, strict: bool = False) -> dict[str, str]:
    """Form-encoded parameters; with ``strict``, a repeated one is refused (RFC 6749 §3.2)."""
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the parameters are not valid form encoding") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if strict and name in params:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
        params.setdefault(name, value)
    return params


def _body_params(req: "Request", body: bytes, *, strict: bool = False) -> dict[str, str]:
    """The body's parameters: form-encoded, or a JSON object (``Content-Type: application/json``,
    as Tyk accepts on the token endpoint)."""
    if len(body) > MAX_BODY:
        raise OAuthError("invalid_request", f"the request body is larger than {MAX_BODY} bytes", 413)
    content_type = (req.header(b"content-type") or b"").split(b";", 1)[0].strip().lower()
    if content_type == b"application/json":
        try:
            value = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            raise OAuthError("invalid_request", "the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise OAuthError("invalid_request", "the JSON body must be an object")
        return {str(k): v if isinstance(v, str) else _json_text(v) for k, v in value.items()}
    return _params(body, strict=strict)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value).lower() \
        if isinstance(value, bool) else str(value)
