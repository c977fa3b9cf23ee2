"""Tyk's key endpoints: ``/tyk/keys`` create, read, update, delete, list, preview, policy.

Shapes, statuses and messages are Tyk's (``gateway/api.go``), with one deliberate difference:
malformed JSON is always a 400 (Tyk answers 500 "Unmarshalling failed" on ``/keys/create``),
because client input never causes a 5xx here. Nothing is stored when a request is refused.

Every write goes through the session manager's one write path (``SessionManager.put`` /
``delete``): stored, then announced on the cluster channel, so every node drops its cached copy
of the key at once. Without ``suppress_reset=1`` a create or update
resets the key's rate and quota counters, as Tyk does.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import msgspec
import orjson

from fastgate.admin.common import ApiError, json_object, malformed, query_params
from fastgate.admin.certs import certificate_key_id, check_key_certificates
from fastgate.sessions.key_ids import generate_token, lookup_candidates, min_token_length, storage_key_id, unsafe_id
from fastgate.sessions.policy_apply import PolicyError, expiry_for_new_key
from fastgate.store.limits import limit_problems, quota_key, rate_limit_key
from fastgate.auth.passwords import PasswordTooLong, hash_password
from fastgate.sessions.session import BasicAuthData, SessionState, decode_session, to_wire

if TYPE_CHECKING:
    from fastgate.admin.common import Registrar
    from fastgate.http.request import Request

__all__ = ["register"]

_HEX = re.compile(r"[0-9a-f]{8,128}")
UNSAFE = "may not contain '\"', '\\' or control characters"
MASTER_KEYS_REFUSED = "Failed to create key, keys must have at least one Access Rights record set."
BASIC_USER_COLON = ("Failed to create key: a basic auth user name may not contain \":\" (RFC 7617: the "
                    "client sends user:password and the first colon ends the user name)")


def register(admin: "Registrar") -> None:
    """Add the key endpoints to ``admin``."""
    keys = KeyEndpoints(admin)
    admin.add("POST", "/tyk/keys/create", keys.create)
    admin.add("POST", "/tyk/keys/preview", keys.preview)
    admin.add("POST", "/tyk/keys/policy/{key}", keys.set_policy)
    admin.add("GET", "/tyk/keys", keys.list)
    admin.add("POST", "/tyk/keys", keys.create)
    admin.add("GET", "/tyk/keys/{key}", keys.get)
    admin.add("POST", "/tyk/keys/{key}", keys.create_named)
    admin.add("PUT", "/tyk/keys/{key}", keys.update)
    admin.add("DELETE", "/tyk/keys/{key}", keys.delete)


class KeyEndpoints:
    """Handlers bound to one gateway's store, session manager and config."""

    def __init__(self, admin: "Registrar") -> None:
        services = self.services = admin.services
        self.config = services.config
        self.store = services.store
        self.sessions = services.sessions

    # ---- create ------------------------------------------------------------------------------

    async def create(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/keys/create`` and ``POST /tyk/keys``: a key with a generated id."""
        session = _decode(body)
        return await self._add(req, session, key_id=None)

    async def create_named(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/keys/{key}``: a key with the caller's own id."""
        session = _decode(body)
        custom = _key_id(params["key"])
        if len(custom) < min_token_length(self.config.min_token_length):
            raise ApiError(400, f"Failed to create key, key must be at least "
                                f"{min_token_length(self.config.min_token_length)} characters long")
        return await self._add(req, session, key_id=custom)

    async def _add(self, req: "Request", session: SessionState, key_id: str | None) -> tuple[int, Any]:
        query = query_params(req)
        now = time.time()
        if session.certificate and key_id is None:
            key_id = await certificate_key_id(self.services, session)  # dynamic mTLS
        await check_key_certificates(self.services, session, None)
        if session.basic_auth_data.password and key_id is not None and ":" in key_id:
            raise ApiError(400, BASIC_USER_COLON)
        token = generate_token(session.org_id, key_id, self.config.hash_key_function)
        storage_id = storage_key_id(token, self.config.hash_keys)
        if session.basic_auth_data.password:
            session.basic_auth_data = await self._hash_password(session.basic_auth_data.password)
        if session.hmac_enabled and not session.hmac_string:
            session.hmac_string = base64.b64encode(secrets.token_bytes(24)).decode()
        if session.expires > 1 and session.expires < now:
            session.expires = 0
        session.expires = expiry_for_new_key(session, self.sessions.policies, int(now))
        session.date_created = _rfc3339(now)
        session.last_updated = str(int(now))
        applied = self._apply(session)
        if not applied.access_rights and not self.config.allow_master_keys:
            raise ApiError(400, MASTER_KEYS_REFUSED)
        await self._store(storage_id, applied, reset=query.get("suppress_reset") != "1")
        # As Tyk: a basic-auth user is addressed by its name; its hashed key is not shown.
        shown = "" if self.config.hash_keys and session.basic_auth_data.password else token
        reply = {"key": shown, "status": "ok", "action": "added"}
        if self.config.hash_keys:
            reply["key_hash"] = storage_id
        return 200, reply

    # ---- read --------------------------------------------------------------------------------

    async def get(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/keys/{key}``: the session with policies applied and quotas read."""
        storage_id, session = await self._find(req, params["key"], missing="Key not found")
        applied = self._apply(session)
        await self._fill_quota_remaining(storage_id, applied)
        applied.basic_auth_data.password = ""
        wire = to_wire(applied)
        # Zero is an answer here ("nothing left"), so it is written even though Tyk's encoding
        # omits zero fields.
        if applied.quota_max > 0:
            wire["quota_remaining"] = applied.quota_remaining
        for api_id, right in applied.access_rights.items():
            if right.limit.quota_max > 0:
                wire["access_rights"][api_id].setdefault("limit", {})["quota_remaining"] = right.limit.quota_remaining
        return 200, wire

    async def list(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``GET /tyk/keys``: stored key ids (hashes when keys are hashed)."""
        if self.config.hash_keys and not self.config.enable_hashed_keys_listing:
            raise ApiError(404, "Hashed key listing is disabled in config (enable_hashed_keys_listing)")
        query = query_params(req)
        ids = await self.store.list_sessions(query.get("filter", ""))
        api_id = query.get("api_id")
        if api_id:
            wanted = []
            for key in ids:
                data = await self.store.get_session(key)
                if data is not None and api_id in decode_session(data).access_rights:
                    wanted.append(key)
            ids = wanted
        return 200, {"keys": ids}

    async def preview(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/keys/preview``: the session after policies, not stored."""
        return 200, to_wire(self._apply(_decode(body)))

    # ---- update ------------------------------------------------------------------------------

    async def update(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``PUT /tyk/keys/{key}``: replace a key's session, keeping what Tyk keeps."""
        session = _decode(body)
        storage_id, stored = await self._find(req, params["key"], missing="Key is not found")
        await check_key_certificates(self.services, session, stored)
        session.date_created = stored.date_created
        if session.expires > 1 and session.expires < time.time():
            session.expires = stored.expires
        new_password = session.basic_auth_data.password
        if new_password == "" or new_password == stored.basic_auth_data.password:
            # No password, or the stored hash sent back: keep it (Tyk re-hashes only a change).
            session.basic_auth_data = stored.basic_auth_data
        else:
            if ":" in params["key"] and not stored.basic_auth_data.password:
                raise ApiError(400, BASIC_USER_COLON)  # a token key made into a basic-auth user
            session.basic_auth_data = await self._hash_password(new_password)
        session.last_updated = str(int(time.time()))
        applied = self._apply(session)
        if not applied.access_rights and not self.config.allow_master_keys:
            raise ApiError(400, MASTER_KEYS_REFUSED)
        await self._store(storage_id, applied, reset=query_params(req).get("suppress_reset") != "1")
        return 200, self._reply(req, params["key"], storage_id, "modified")

    async def set_policy(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``POST /tyk/keys/policy/{key}``: body ``{"policy": id}`` or ``{"apply_policies": [...]}``."""
        try:
            change = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "Couldn't decode instruction") from None
        if not isinstance(change, dict):
            raise ApiError(400, "Couldn't decode instruction")
        policies = change.get("apply_policies")
        if policies is None and isinstance(change.get("policy"), str):
            policies = [change["policy"]]
        if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
            raise ApiError(400, "Couldn't decode instruction: give \"policy\" or \"apply_policies\"")
        storage_id, stored = await self._find(req, params["key"], missing="Key not found")
        stored.apply_policies = policies
        stored.apply_policy_id = ""
        applied = self._apply(stored)
        await self._store(storage_id, applied, reset=False)
        return 200, {"key": params["key"], "status": "ok", "action": "updated"}

    # ---- delete ------------------------------------------------------------------------------

    async def delete(self, req: "Request", body: bytes, params: dict[str, str]) -> tuple[int, Any]:
        """``DELETE /tyk/keys/{key}``: remove the key and its counters."""
        storage_id, stored = await self._find(req, params["key"], missing="There is no such key found")
        await self.sessions.delete(storage_id)
        await self._reset_limits(storage_id, stored)
        return 200, {"key": params["key"], "status": "ok", "action": "deleted"}

    # ---- helpers -----------------------------------------------------------------------------

    async def _hash_password(self, password: str) -> BasicAuthData:
        """``password`` hashed with ``basic_auth_hash_key_function``, off the event loop (bcrypt
        takes ~0.1 s); 400 when bcrypt cannot hold it without truncating."""
        function = self.config.basic_auth_hash_key_function
        try:
            return await asyncio.get_running_loop().run_in_executor(None, hash_password, password, function)
        except PasswordTooLong as exc:
            raise ApiError(400, f"Failed to create key: {exc}") from None

    def _apply(self, session: SessionState) -> SessionState:
        applied = self.sessions.apply(session)
        if isinstance(applied, PolicyError):
            raise ApiError(400, f"Failed to apply policies: {applied}")
        return applied

    async def _find(self, req: "Request", key: str, *, missing: str) -> tuple[str, SessionState]:
        query = query_params(req)
        _key_id(key)
        if unsafe_id(query.get("org_id", "")):
            raise ApiError(400, f"Request malformed: org_id: {UNSAFE}")
        if query.get("hashed") in ("1", "true"):
            if not self.config.hash_keys:
                raise ApiError(400, "Key requested by hash but key hashing is not enabled")
            if not _HEX.fullmatch(key):
                raise ApiError(404, missing)
            candidates = [key]
        else:
            tokens = [key] + lookup_candidates(key, query.get("org_id", ""), hash_algo=self.config.hash_key_function)
            candidates = list(dict.fromkeys(storage_key_id(t, self.config.hash_keys) for t in tokens))
        found = await self.store.get_sessions(candidates)
        for storage_id, data in zip(candidates, found):
            if data is not None:
                return storage_id, decode_session(data)
        raise ApiError(404, missing)

    async def _store(self, storage_id: str, session: SessionState, *, reset: bool) -> None:
        ttl = session.lifetime(now=time.time())
        await self.sessions.put(storage_id, session, ttl if ttl > 0 else None)
        if reset:
            await self._reset_limits(storage_id, session)

    async def _reset_limits(self, storage_id: str, session: SessionState) -> None:
        scopes = {""} | {right.allowance_scope for right in session.access_rights.values()}
        await self.store.reset_limits(
            [quota_key(storage_id, s) for s in scopes], [rate_limit_key(storage_id, s) for s in scopes]
        )

    async def _fill_quota_remaining(self, storage_id: str, session: SessionState) -> None:
        if session.quota_max > 0:
            status = await self.store.quota_status(quota_key(storage_id), session.quota_max)
            session.quota_remaining = status.remaining
            session.quota_renews = status.renews_at or session.quota_renews
        for api_id, right in session.access_rights.items():
            limit = right.limit
            if limit.quota_max > 0:
                status = await self.store.quota_status(quota_key(storage_id, right.allowance_scope), limit.quota_max)
                limit.quota_remaining = status.remaining
                limit.quota_renews = status.renews_at or limit.quota_renews

    def _reply(self, req: "Request", key: str, storage_id: str, action: str) -> dict[str, Any]:
        reply = {"key": key, "status": "ok", "action": action}
        if self.config.hash_keys:
            reply["key_hash"] = storage_id
        return reply


def _decode(body: bytes) -> SessionState:
    raw = json_object(body, "session (key)")
    try:
        session = msgspec.convert(raw, SessionState, strict=False)
    except msgspec.ValidationError as exc:
        raise malformed(exc) from None
    problems = [f"org_id: {UNSAFE}"] if unsafe_id(session.org_id) else []
    problems += limit_problems(session)
    if problems:
        raise ApiError(400, "Request malformed: " + "; ".join(problems))
    return session


def _key_id(key: str) -> str:
    """``key`` (from the URL), or a 400 when it holds what no key id may, as sent or
    percent-decoded (Tyk decodes the path, so ``%22`` is how a client sends a quote)."""
    if unsafe_id(key) or ("%" in key and unsafe_id(unquote(key))):
        raise ApiError(400, f"Request malformed: the key id {UNSAFE}")
    return key


def _rfc3339(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).isoformat().replace("+00:00", "Z")

