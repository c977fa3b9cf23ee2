"""Where the OAuth 2.0 server keeps its state: clients, codes, refresh tokens, grants.

Everything lives in the shared store (memory or Redis), so a code issued on one node is redeemed
on another and a revocation anywhere holds everywhere. Keys follow Tyk's layout, per API
(``oauth-data.<api_id>.``): ``oauth-clientid.<client>``, ``oauth-authorize.<code>``,
``oauth-refresh.<token>``, ``oauth-client-tokens.<client>.<token>``. Codes and refresh tokens
appear in key names only as sha256 hex digests (``digest``), like hashed keys: reading the store
gives no usable credential. Access tokens are ordinary keys (``SessionManager``), hashed as every
key is.

A *grant* ties the tokens one authorization produced: the code (or first token request), every
access token and refresh token rotated from it. Reuse of a redeemed code or of a rotated refresh
token revokes the whole grant (RFC 6749 §4.1.2, RFC 9700 §4.14.2). "Used" markers are written
with ``kv_set_if_absent``, so of two nodes redeeming the same code at once exactly one wins.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import msgspec

from fastgate.store.base import Store

__all__ = [
    "CODE_LIFETIME", "ClientRecord", "CodeRecord", "GrantRecord", "OAuthStorage", "RefreshRecord", "TokenEntry",
    "digest",
]

CODE_LIFETIME: Final = 250.0  # seconds a code lives (Tyk's figure)


class ClientRecord(msgspec.Struct, kw_only=True):
    """A registered OAuth client of one API (Tyk's ``OAuthClient``)."""

    client_id: str
    secret: str
    redirect_uri: str
    api_id: str = ""
    policy_id: str = ""
    meta_data: dict[str, Any] = {}
    description: str = ""


class CodeRecord(msgspec.Struct, kw_only=True):
    """What an authorization code was issued for (stored under its digest)."""

    client_id: str
    redirect_uri: str
    grant: str
    redirect_asked: bool = True  # the authorization request named it: the token request must too
    state: str = ""
    challenge: str = ""  # PKCE S256 code_challenge ("" : none)
    key_rules: dict[str, Any] | None = None  # the session the login app asked for


class RefreshRecord(msgspec.Struct, kw_only=True):
    """A refresh token (stored under its digest)."""

    client_id: str
    grant: str
    expires: float
    key_rules: dict[str, Any] | None = None
    user_session: bytes = b""  # password grant: the user's session the tokens act for


class GrantRecord(msgspec.Struct, kw_only=True):
    """The live tokens of one grant: what reuse of its code or a rotated token revokes."""

    client_id: str
    access: list[str] = []  # access tokens' storage ids
    refresh: list[str] = []  # refresh token digests


class TokenEntry(msgspec.Struct, kw_only=True):
    """One access token in a client's list (``/tyk/oauth/clients/.../tokens``)."""

    code: str  # the token's storage id (its hash): the list never holds a usable token
    expires: int


_ENC: Final = msgspec.json.Encoder()


def digest(secret: str) -> str:
    """The sha256 hex digest a code or refresh token is stored under."""
    return hashlib.sha256(secret.encode()).hexdigest()


class OAuthStorage:
    """Typed reads and writes of the OAuth records of every API, on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- clients -----------------------------------------------------------------------------

    async def client(self, api_id: str, client_id: str) -> ClientRecord | None:
        return _decode(await self.store.kv_get(_client_key(api_id, client_id)), ClientRecord)

    async def put_client(self, api_id: str, client: ClientRecord) -> None:
        await self.store.kv_set(_client_key(api_id, client.client_id), _ENC.encode(client))

    async def delete_client(self, api_id: str, client_id: str) -> bool:
        return await self.store.kv_delete(_client_key(api_id, client_id))

    async def clients(self, api_id: str) -> list[ClientRecord]:
        prefix = _client_key(api_id, "")
        found = []
        for key in sorted(await self.store.kv_keys(prefix)):
            record = _decode(await self.store.kv_get(key), ClientRecord)
            if record is not None:
                found.append(record)
        return found

    async def client_apis(self, client_id: str) -> list[str]:
        """Ids of the APIs a client is registered on."""
        keys = await self.store.kv_keys("oauth-data.")
        suffix = ".oauth-clientid." + client_id
        return sorted(k[len("oauth-data."):-len(suffix)] for k in keys if k.endswith(suffix))

    # ---- codes -------------------------------------------------------------------------------

    async def put_code(self, api_id: str, code_digest: str, record: CodeRecord) -> None:
        await self.store.kv_set(_key(api_id, "oauth-authorize", code_digest), _ENC.encode(record), CODE_LIFETIME)

    async def code(self, api_id: str, code_digest: str) -> CodeRecord | None:
        return _decode(await self.store.kv_get(_key(api_id, "oauth-authorize", code_digest)), CodeRecord)

    async def claim_code(self, api_id: str, code_digest: str) -> bool:
        """Mark a code redeemed; True for the one caller (on any node) that redeems it first."""
        return await self.store.kv_set_if_absent(_key(api_id, "oauth-code-used", code_digest), b"1", CODE_LIFETIME)

    # ---- refresh tokens ----------------------------------------------------------------------

    async def put_refresh(self, api_id: str, token_digest: str, record: RefreshRecord, ttl: float) -> None:
        await self.store.kv_set(_key(api_id, "oauth-refresh", token_digest), _ENC.encode(record), ttl)

    async def refresh(self, api_id: str, token_digest: str) -> RefreshRecord | None:
        return _decode(await self.store.kv_get(_key(api_id, "oauth-refresh", token_digest)), RefreshRecord)

    async def delete_refresh(self, api_id: str, token_digest: str) -> bool:
        return await self.store.kv_delete(_key(api_id, "oauth-refresh", token_digest))

    async def claim_refresh(self, api_id: str, token_digest: str, ttl: float) -> bool:
        """Mark a refresh token rotated; True for the one caller that rotates it first."""
        return await self.store.kv_set_if_absent(_key(api_id, "oauth-refresh-used", token_digest), b"1", ttl)

    # ---- grants ------------------------------------------------------------------------------

    async def grant(self, api_id: str, grant_id: str) -> GrantRecord | None:
        return _decode(await self.store.kv_get(_key(api_id, "oauth-grant", grant_id)), GrantRecord)

    async def put_grant(self, api_id: str, grant_id: str, record: GrantRecord, ttl: float) -> None:
        await self.store.kv_set(_key(api_id, "oauth-grant", grant_id), _ENC.encode(record), ttl)

    async def delete_grant(self, api_id: str, grant_id: str) -> None:
        await self.store.kv_delete(_key(api_id, "oauth-grant", grant_id))

    async def user_grant(self, api_id: str, client_id: str, user_id: str) -> str | None:
        """The grant of a user's last password-grant token for a client."""
        value = await self.store.kv_get(_key(api_id, "oauth-user-grant", f"{client_id}/{user_id}"))
        return value.decode() if value is not None else None

    async def put_user_grant(self, api_id: str, client_id: str, user_id: str, grant_id: str, ttl: float) -> None:
        await self.store.kv_set(_key(api_id, "oauth-user-grant", f"{client_id}/{user_id}"), grant_id.encode(), ttl)

    # ---- a client's tokens -------------------------------------------------------------------

    async def add_token(self, api_id: str, client_id: str, storage_id: str, expires: int, ttl: float) -> None:
        entry = TokenEntry(code=storage_id, expires=expires)
        await self.store.kv_set(_token_key(api_id, client_id, storage_id), _ENC.encode(entry), ttl)

    async def remove_token(self, api_id: str, client_id: str, storage_id: str) -> None:
        await self.store.kv_delete(_token_key(api_id, client_id, storage_id))

    async def tokens(self, api_id: str, client_id: str) -> list[TokenEntry]:
        found = []
        for key in await self.store.kv_keys(_token_key(api_id, client_id, "")):
            entry = _decode(await self.store.kv_get(key), TokenEntry)
            if entry is not None:
                found.append(entry)
        found.sort(key=lambda e: (e.expires, e.code))
        return found

    async def add_client_refresh(self, api_id: str, client_id: str, token_digest: str, ttl: float) -> None:
        await self.store.kv_set(_key(api_id, "oauth-client-refresh", f"{client_id}/{token_digest}"), b"1", ttl)

    async def client_refresh_tokens(self, api_id: str, client_id: str) -> list[str]:
        prefix = _key(api_id, "oauth-client-refresh", f"{client_id}/")
        return [k[len(prefix):] for k in await self.store.kv_keys(prefix)]

    async def remove_client_refresh(self, api_id: str, client_id: str, token_digest: str) -> None:
        await self.store.kv_delete(_key(api_id, "oauth-client-refresh", f"{client_id}/{token_digest}"))


def _key(api_id: str, kind: str, name: str) -> str:
    return f"oauth-data.{api_id}.{kind}.{name}"


def _client_key(api_id: str, client_id: str) -> str:
    return _key(api_id, "oauth-clientid", client_id)


def _token_key(api_id: str, client_id: str, storage_id: str) -> str:
    return _key(api_id, "oauth-client-tokens", f"{client_id}/{storage_id}")


def _decode(data: bytes | None, kind: type[Any]) -> Any:
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError:
        return None
