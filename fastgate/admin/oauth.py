"""Tyk's OAuth client and token endpoints of the Gateway API (``/tyk/oauth/...``).

Clients are registered per API (``api_id``), or, without one, on every OAuth API their policy
grants. Shapes and messages are Tyk's (``gateway/api.go``, ``oauth_manager.go``); nothing is
stored when a request is refused. A deleted client's tokens stay stored, so a request with one is
told "OAuth client access was revoked"; registering the same client id again first revokes
those leftovers, so a new client never inherits an old client's tokens.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import msgspec

from fastgate.admin.common import ApiError, json_object, malformed, query_params
from fastgate.apidef.spec import ApiSpec
from fastgate.oauth.storage import ClientRecord, digest

if TYPE_CHECKING:
    from fastgate.admin.common import Registrar
    from fastgate.http.request import Request

__all__ = ["register"]

NOT_FOUND: Final = "OAuth Client ID not found"
PAGE_SIZE: Final = 100
MAX_ID: Final = 200
MAX_SECRET: Final = 1000
_BAD_ID: Final = re.compile(r"[\s/\\%?#\x00-\x1f\x7f]")


class _NewClient(msgspec.Struct, kw_only=True):
    client_id: str = ""
    secret: str = ""
    redirect_uri: str = ""
    api_id: str = ""
    policy_id: str = ""
    meta_data: dict[str, Any] = {}
    description: str = ""


def register(admin: "Registrar") -> None:
    """Add the OAuth endpoints to ``admin``."""
    oauth = OAuthClientEndpoints(admin)
    admin.add("POST", "/tyk/oauth/clients/create", oauth.create)
    admin.add("GET", "/tyk/oauth/clients/{api_id}", oauth.list)
    admin.add("GET", "/tyk/oauth/clients/{api_id}/{client_id}", oauth.get)
    admin.add("PUT", "/tyk/oauth/clients/{api_id}/{client_id}", oauth.update)
    admin.add("DELETE", "/tyk/oauth/clients/{api_id}/{client_id}", oauth.delete)
    admin.add("PUT", "/tyk/oauth/clients/{api_id}/{client_id}/rotate", oauth.rotate)
    admin.add("GET", "/tyk/oauth/clients/{api_id}/{client_id}/tokens", oauth.tokens)
    admin.add("GET", "/tyk/oauth/clients/apis/{client_id}", oauth.client_apis)
    admin.add("DELETE", "/tyk/oauth/refresh/{token}", oauth.delete_refresh)
    admin.add("POST", "/tyk/oauth/revoke", oauth.revoke)
    admin.add("POST", "/tyk/oauth/revoke_all", oauth.revoke_all)
    admin.add("DELETE", "/tyk/oauth/tokens", oauth.purge)


class OAuthClientEndpoints:
    """Handlers bound to one gateway's OAuth server."""

    def __init__(self, admin: "Registrar") -> None:
        self.gateway = admin.gateway
        self.services = admin.services
        self.server = admin.services.oauth
        self.storage = self.server.storage

    def _api(self, api_id: str) -> ApiSpec:
        api = self.gateway.apis.get(api_id)
        if api is None:
            raise ApiError(400, "API doesn't exist")
        if api.spec.use_keyless or api.spec.oauth is None:
            raise ApiError(400, "API is not OAuth2")
        return api.spec

    async def _client(self, api_id: str, client_id: str) -> ClientRecord:
        client = await self.storage.client(api_id, client_id)
        if client is None:
            raise ApiError(404, NOT_FOUND)
        return client

    # ---- clients -----------------------------------------------------------------------------

    async def create(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        try:
            new = msgspec.convert(json_object(body, "OAuth client"), _NewClient)
        except msgspec.ValidationError as exc:
            raise malformed(exc) from None
        client_id = new.client_id or uuid.uuid4().hex
        _check_id(client_id)
        if len(new.secret) > MAX_SECRET or len(new.redirect_uri) > 8 * MAX_SECRET:
            raise ApiError(400, "Request malformed: secret or redirect_uri is too long")
        if new.policy_id and new.policy_id not in self.services.policies:
            raise ApiError(400, "Policy doesn't exist")
        if new.api_id:
            api_ids = [self._api(new.api_id).api_id]
        elif new.policy_id:
            policy = self.services.policies[new.policy_id]
            api_ids = [a for a in policy.access_rights if a in self.gateway.apis
                       and self.gateway.apis[a].spec.oauth is not None and not self.gateway.apis[a].spec.use_keyless]
            if not api_ids:
                raise ApiError(400, "API is not OAuth2")
        else:
            raise ApiError(400, "Request malformed: api_id or policy_id is required")
        client = ClientRecord(client_id=client_id, secret=new.secret or secrets.token_urlsafe(24),
                              redirect_uri=new.redirect_uri, policy_id=new.policy_id, meta_data=new.meta_data,
                              description=new.description)
        for api_id in api_ids:
            # Leftover tokens of a deleted client of the same id must not come back to life.
            await self.server.revoke_all(api_id, client_id)
            client.api_id = api_id
            await self.storage.put_client(api_id, client)
        return 200, _shape(client)

    async def list(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        self._api(params["api_id"])
        return 200, [_shape(c) for c in await self.storage.clients(params["api_id"])]

    async def get(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        return 200, _shape(await self._client(params["api_id"], params["client_id"]))

    async def update(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        client = await self._client(params["api_id"], params["client_id"])
        try:
            new = msgspec.convert(json_object(body, "OAuth client"), _NewClient)
        except msgspec.ValidationError as exc:
            raise malformed(exc) from None
        if new.policy_id and new.policy_id not in self.services.policies:
            raise ApiError(400, "Policy doesn't exist")
        client.redirect_uri = new.redirect_uri or client.redirect_uri
        client.policy_id = new.policy_id or client.policy_id
        client.meta_data = new.meta_data or client.meta_data
        client.description = new.description or client.description
        await self.storage.put_client(params["api_id"], client)
        return 200, _shape(client)

    async def delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        if not await self.storage.delete_client(params["api_id"], params["client_id"]):
            raise ApiError(404, NOT_FOUND)
        return 200, {"key": params["client_id"], "status": "ok", "action": "deleted"}

    async def rotate(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        client = await self._client(params["api_id"], params["client_id"])
        client.secret = secrets.token_urlsafe(24)
        await self.storage.put_client(params["api_id"], client)
        return 200, _shape(client)

    async def tokens(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        await self._client(params["api_id"], params["client_id"])
        now = time.time()
        live = [{"code": e.code, "expires": e.expires}
                for e in await self.storage.tokens(params["api_id"], params["client_id"]) if e.expires > now]
        page = query_params(req).get("page")
        if page is None:
            return 200, live
        try:
            number = max(1, int(page))
        except ValueError:
            raise ApiError(400, "page must be a number") from None
        total = max(1, math.ceil(len(live) / PAGE_SIZE))
        return 200, {"Pagination": {"page_num": number, "page_total": total, "page_size": PAGE_SIZE},
                     "Tokens": live[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]}

    async def client_apis(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        found = await self.storage.client_apis(params["client_id"])
        if not found:
            raise ApiError(404, NOT_FOUND)
        return 200, found

    # ---- tokens ------------------------------------------------------------------------------

    async def delete_refresh(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        api_id = query_params(req).get("api_id", "")
        if not api_id:
            raise ApiError(400, "Missing parameter api_id")
        if api_id not in self.gateway.apis:
            raise ApiError(404, "API for this refresh token not found")
        self._api(api_id)
        token_digest = digest(params["token"])
        record = await self.storage.refresh(api_id, token_digest)
        if record is not None:
            await self.storage.delete_refresh(api_id, token_digest)
            await self.storage.remove_client_refresh(api_id, record.client_id, token_digest)
        return 200, {"key": params["token"], "status": "ok", "action": "deleted"}

    async def revoke(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        form = _form(body)
        token, client_id = form.get("token", ""), form.get("client_id", "")
        if not token:
            raise ApiError(400, "token is required")
        if not client_id:
            raise ApiError(400, "client_id is required")
        for api_id in await self.storage.client_apis(client_id):
            api = self.gateway.apis.get(api_id)
            client = await self.storage.client(api_id, client_id)
            if api is not None and client is not None:
                await self.server.revoke_token(api.spec, token, form.get("token_type_hint", ""), client)
        return 200, {"status": "ok", "message": "token revoked successfully"}

    async def revoke_all(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        form = _form(body)
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not client_id:
            raise ApiError(401, "client_id is required")
        if not secret:
            raise ApiError(401, "client_secret is required")
        api_ids = await self.storage.client_apis(client_id)
        if not api_ids:
            raise ApiError(404, NOT_FOUND)

        for api_id in api_ids:
            client = await self.storage.client(api_id, client_id)
            if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
                raise ApiError(401, "client secret is wrong")
        for api_id in api_ids:
            await self.server.revoke_all(api_id, client_id)
        return 200, {"status": "ok", "message": "tokens revoked successfully"}

    async def purge(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        scope = query_params(req).get("scope")
        if scope is None:
            raise ApiError(422, "scope parameter is required")
        if scope != "lapsed":
            raise ApiError(400, "unknown scope")
        # Every OAuth record is written with its lifetime as a store TTL: lapsed ones are gone.
        return 200, {"status": "ok", "message": "lapsed tokens purged"}


def _check_id(client_id: str) -> None:
    if len(client_id) > MAX_ID or _BAD_ID.search(client_id):
        raise ApiError(400, f"Request malformed: client_id must be at most {MAX_ID} characters without"
                            " whitespace, '/', '\\\\', '%', '?', '#' or control characters")


def _shape(client: ClientRecord) -> dict[str, Any]:
    return {"client_id": client.client_id, "secret": client.secret, "redirect_uri": client.redirect_uri,
            "policy_id": client.policy_id, "meta_data": client.meta_data, "description": client.description}


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "Request malformed: not a form-encoded body") from None
