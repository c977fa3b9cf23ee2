"""The OAuth 2.0 authorization server as Tyk runs it (osin's flows), with PKCE, one-time codes
and refresh-token reuse detection.

Every entry point takes the API (``ApiSpec`` with its ``OAuthSettings``) and the request's
parameters, and returns a ``Reply``; the HTTP glue is ``fastgate.oauth.endpoints``. State is in
the shared store (``fastgate.oauth.storage``); access tokens are ordinary keys written through the
session manager's one write path, so rate, quota, ACL, expiry and ``/tyk/keys`` work on them and
a revocation drops every node's cached copy at once.

Beyond Tyk (each documented in the README):

* PKCE S256 (RFC 7636): a code issued with ``code_challenge`` is redeemed only with the matching
  ``code_verifier``; ``plain`` is refused; ``oauth_meta.require_pkce`` makes the challenge
  mandatory.
* A code is redeemed once; a second redemption fails and revokes every token the first produced.
* Refresh tokens rotate; presenting a rotated one again fails and revokes the grant's newest
  tokens (RFC 9700 §4.14.2).
* Redirect URIs match a registered one exactly (string equality, query and scheme included).
* Codes and refresh tokens are stored under sha256 digests, access tokens hashed as keys; client
  secrets are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, Mapping
from urllib.parse import unquote, urlencode

import msgspec

from fastgate.apidef.auth_settings import OAuthSettings
from fastgate.apidef.spec import ApiSpec
from fastgate.auth.passwords import check_fast
from fastgate.auth.throttle import FailureCounter
from fastgate.oauth.notify import Notifier
from fastgate.oauth.storage import (
    ClientRecord, CodeRecord, GrantRecord, OAuthStorage, RefreshRecord, digest,
)
from fastgate.sessions.key_ids import generate_token, storage_key_id
from fastgate.sessions.session import AccessDefinition, SessionState, decode_session, encode_session

if TYPE_CHECKING:
    from fastgate.auth.passwords import PasswordChecker
    from fastgate.config import Config
    from fastgate.sessions.manager import SessionManager

__all__ = ["OAuthError", "OAuthServer", "Reply", "TOKEN_HEADERS", "client_credentials_from_basic"]

log = logging.getLogger("fastgate.oauth")

# Tyk's headers on every token-endpoint answer, success or error.
TOKEN_HEADERS: Final = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-XSS-Protection", b"1; mode=block"),
    (b"X-Frame-Options", b"DENY"),
    (b"Strict-Transport-Security", b"max-age=63072000; includeSubDomains"),
    (b"Cache-Control", b"no-cache, no-store, must-revalidate"),
    (b"Pragma", b"no-cache"),
    (b"Expires", b"0"),
)
_PKCE_CHALLENGE: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_PKCE_VERIFIER: Final = _PKCE_CHALLENGE
MAX_PARAMETER: Final = 4096  # bytes of one token-endpoint parameter
EXPIRED_GRACE: Final = 60


class OAuthError(Exception):
    """A refused OAuth request: ``{"error": code, "error_description": description}``.

    ``status`` None means the gateway's ``oauth_error_status_code`` (Tyk: 403)."""

    def __init__(self, code: str, description: str, status: int | None = None,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Reply:
    """A JSON answer with its status and extra headers."""

    status: int
    payload: Any
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class _Issued:
    access_token: str
    expires_in: int
    refresh_token: str = ""
    storage_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def client_credentials_from_basic(value: bytes | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from an ``Authorization: Basic`` value (RFC 6749 §2.3.1: each
    part form-urlencoded), or None when there is none or it is malformed."""
    if not value or len(value) > 2 * MAX_PARAMETER:
        return None
    scheme, _, encoded = value.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        text = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = text.partition(":")
    if not colon or not client_id:
        return None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


class OAuthServer:
    """The authorization server of one gateway process (every OAuth API shares it)."""

    def __init__(self, storage: OAuthStorage, sessions: "SessionManager", config: "Config",
                 passwords: "PasswordChecker") -> None:
        self.storage = storage
        self.sessions = sessions
        self.config = config
        self.passwords = passwords
        self.notifier = Notifier()
        # Guessing a client secret or a password-grant password costs one request per guess:
        # failures are counted per client (and per user) like basic-auth logins, and past the
        # limit of a window the next attempts get 429 until the window ends.
        limit, window = config.basic_auth_failures_per_user, config.basic_auth_failure_window
        self.client_failures = FailureCounter(limit, window)
        self.user_failures = FailureCounter(limit, window)

    @property
    def error_status(self) -> int:
        return self.config.oauth_error_status_code

    # ---- clients -----------------------------------------------------------------------------

    def redirect_uris(self, client: ClientRecord) -> list[str]:
        """The client's registered redirect URIs (several with ``oauth_redirect_uri_separator``)."""
        separator = self.config.oauth_redirect_uri_separator
        if separator:
            return [u for u in client.redirect_uri.split(separator) if u]
        return [client.redirect_uri] if client.redirect_uri else []

    def _redirect_for(self, client: ClientRecord, asked: str) -> str:
        """The redirect URI to use: ``asked`` when it equals a registered one (exact string
        match), the only registered one when none is asked; else ``OAuthError``."""
        registered = self.redirect_uris(client)
        if not asked:
            if len(registered) == 1:
                return registered[0]
            raise OAuthError("invalid_request", "redirect_uri is required")
        for uri in registered:
            if hmac.compare_digest(uri.encode(), asked.encode()):
                return uri
        raise OAuthError("invalid_request", "redirect_uri does not match a registered redirect URI")

    async def _client(self, spec: ApiSpec, client_id: str) -> ClientRecord:
        client = await self.storage.client(spec.api_id, client_id) if client_id else None
        if client is None:
            raise OAuthError("unauthorized_client", "the client is not registered for this API")
        return client

    async def authenticate(self, spec: ApiSpec, basic: tuple[str, str] | None) -> ClientRecord:
        """The client named by HTTP Basic credentials, its secret checked in constant time."""
        if basic is None:
            raise OAuthError("invalid_client", "client authentication (HTTP Basic client_id:secret) is required")
        client_id, secret = basic
        key = f"{spec.api_id}\0{client_id}"
        _throttled(self.client_failures, key, "invalid_client", "client authentication")
        client = await self.storage.client(spec.api_id, client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            if self.client_failures.failed(key) == self.client_failures.limit:
                log.warning("OAuth API %r: %d failed authentications of client %r within %gs; it gets 429 until"
                            " the window ends", spec.api_id, self.client_failures.limit, client_id,
                            self.client_failures.window)
            raise OAuthError("invalid_client", "client authentication failed")
        return client

    # ---- /oauth/authorize ----------------------------------------------------------------------

    async def authorize(self, spec: ApiSpec, params: Mapping[str, str], query: str) -> Reply:
        """Validate an authorization request and send the user to the login page (307)."""
        settings = _settings(spec)
        try:
            await self._authorization_request(spec, settings, params)
        except OAuthError as exc:
            return Reply(self.error_status, {"status": "error", "message": exc.description, "error": exc.code})
        if not settings.login_redirect:
            return Reply(self.error_status, {"status": "error", "message": "this API has no auth_login_redirect",
                                             "error": "server_error"})
        location = settings.login_redirect
        if query:
            location += ("&" if "?" in location else "?") + query
        return Reply(307, None, ((b"Location", location.encode("utf-8", "replace")),))

    async def _authorization_request(self, spec: ApiSpec, settings: OAuthSettings,
                                     params: Mapping[str, str]) -> tuple[ClientRecord, str, str]:
        response_type = params.get("response_type", "")
        if response_type not in settings.authorize_types:
            raise OAuthError("unsupported_response_type", f"response_type {response_type!r} is not allowed")
        client = await self._client(spec, params.get("client_id", ""))
        redirect_uri = self._redirect_for(client, params.get("redirect_uri", ""))
        return client, redirect_uri, response_type

    # ---- /tyk/oauth/authorize-client (the login app, with the gateway secret) -------------------

    async def authorize_client(self, spec: ApiSpec, params: Mapping[str, str]) -> Reply:
        """Issue a code (or, implicit, a token) for a user the login app has authenticated."""
        settings = _settings(spec)
        client, redirect_uri, response_type = await self._authorization_request(spec, settings, params)
        key_rules = _key_rules(params.get("key_rules", ""))
        state = params.get("state", "")
        if response_type == "token":
            grant = secrets.token_hex(16)
            issued = await self._issue(spec, client, grant, key_rules, None, refresh=False)
            fragment = {"access_token": issued.access_token, "expires_in": str(issued.expires_in),
                        "token_type": "bearer"}
            if state:
                fragment["state"] = state
            return Reply(200, {"access_token": issued.access_token, "expires_in": issued.expires_in,
                               "token_type": "bearer", "redirect_to": redirect_uri + "#" + urlencode(fragment)})
        challenge = _pkce_challenge(params, settings.require_pkce)
        code = secrets.token_urlsafe(32)
        record = CodeRecord(client_id=client.client_id, redirect_uri=redirect_uri, grant=secrets.token_hex(16),
                            redirect_asked=bool(params.get("redirect_uri")), state=state, challenge=challenge,
                            key_rules=key_rules)
        await self.storage.put_code(spec.api_id, digest(code), record)
        query = {"code": code}
        if state:
            query["state"] = state
        redirect_to = redirect_uri + ("&" if "?" in redirect_uri else "?") + urlencode(query)
        payload: dict[str, Any] = {"code": code, "redirect_to": redirect_to}
        if state:
            payload["state"] = state
        return Reply(200, payload)

    # ---- /oauth/token ----------------------------------------------------------------------------

    async def token(self, spec: ApiSpec, basic: tuple[str, str] | None, params: Mapping[str, str]) -> Reply:
        """The token endpoint: every grant the API allows."""
        settings = _settings(spec)
        grant_type = params.get("grant_type", "")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        client = await self.authenticate(spec, basic)
        if grant_type not in settings.access_types:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not allowed on this API")
        if grant_type == "client_credentials":
            issued = await self._issue(spec, client, secrets.token_hex(16), None, None, refresh=False)
            self._notify(settings, issued, "new")
        elif grant_type == "authorization_code":
            issued, code = await self._redeem_code(spec, client, params)
            self._notify(settings, issued, "new", auth_code=code)
        elif grant_type == "refresh_token":
            issued, old = await self._rotate(spec, client, params.get("refresh_token", ""))
            self._notify(settings, issued, "refresh", old_refresh_token=old)
        elif grant_type == "password":
            issued = await self._password(spec, client, params)
            self._notify(settings, issued, "new")
        else:  # pragma: no cover - access_types only holds the four above
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        body: dict[str, Any] = {"access_token": issued.access_token, "token_type": "bearer",
                                "expires_in": issued.expires_in}
        if issued.refresh_token:
            body["refresh_token"] = issued.refresh_token
        if params.get("scope"):
            body["scope"] = params["scope"]
        return Reply(200, body, TOKEN_HEADERS)

    async def _redeem_code(self, spec: ApiSpec, client: ClientRecord,
                           params: Mapping[str, str]) -> tuple[_Issued, str]:
        code = params.get("code", "")
        if not code or len(code) > MAX_PARAMETER:
            raise OAuthError("invalid_request" if not code else "invalid_grant", "code is required" if not code
                             else "the authorization code is not valid")
        code_digest = digest(code)
        record = await self.storage.code(spec.api_id, code_digest)
        if record is None or not hmac.compare_digest(record.client_id.encode(), client.client_id.encode()):
            raise OAuthError("invalid_grant", "the authorization code is not valid or has expired")
        asked = params.get("redirect_uri", "")
        if (asked or record.redirect_asked) and not hmac.compare_digest(asked.encode(), record.redirect_uri.encode()):
            # RFC 6749 §4.1.3: the very redirect_uri of the authorization request, when it had one.
            raise OAuthError("invalid_grant", "redirect_uri differs from the one the code was issued for")
        if record.challenge:
            verifier = params.get("code_verifier", "")
            if not verifier or not _PKCE_VERIFIER.fullmatch(verifier):
                raise OAuthError("invalid_grant", "code_verifier is missing or malformed (PKCE)")
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
            if not hmac.compare_digest(computed, record.challenge.encode()):
                raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
        if not await self.storage.claim_code(spec.api_id, code_digest):
            # Redeemed before: whoever holds it now may be an attacker; revoke what it issued.
            await self.revoke_grant(spec.api_id, record.grant)
            log.warning("OAuth API %r: client %r redeemed an authorization code twice; its tokens are revoked",
                        spec.api_id, client.client_id)
            raise OAuthError("invalid_grant", "the authorization code was already used")
        issued = await self._issue(spec, client, record.grant, record.key_rules, None, refresh=True)
        return issued, code

    async def _rotate(self, spec: ApiSpec, client: ClientRecord, refresh_token: str) -> tuple[_Issued, str]:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required")
        if len(refresh_token) > MAX_PARAMETER:
            raise OAuthError("invalid_grant", "the refresh token is not valid")
        token_digest = digest(refresh_token)
        record = await self.storage.refresh(spec.api_id, token_digest)
        if record is None or record.expires < time.time():
            raise OAuthError("invalid_grant", "the refresh token is not valid, was revoked or has expired")
        if not hmac.compare_digest(record.client_id.encode(), client.client_id.encode()):
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        ttl = max(1.0, record.expires - time.time())
        if not await self.storage.claim_refresh(spec.api_id, token_digest, ttl):
            await self.revoke_grant(spec.api_id, record.grant)
            log.warning("OAuth API %r: client %r presented a rotated refresh token again; the grant's tokens"
                        " are revoked", spec.api_id, client.client_id)
            raise OAuthError("invalid_grant", "the refresh token was already used")
        grant = await self.storage.grant(spec.api_id, record.grant)
        if grant is None:
            raise OAuthError("invalid_grant", "the refresh token's grant was revoked")
        # The old access tokens stop working: rotation replaces them.
        for storage_id in grant.access:
            await self.sessions.delete(storage_id)
            await self.storage.remove_token(spec.api_id, client.client_id, storage_id)
        grant.access = []
        await self.storage.put_grant(spec.api_id, record.grant, grant, ttl)
        user = decode_session(record.user_session) if record.user_session else None
        issued = await self._issue(spec, client, record.grant, record.key_rules, user, refresh=True)
        return issued, refresh_token

    async def _password(self, spec: ApiSpec, client: ClientRecord, params: Mapping[str, str]) -> _Issued:
        username, password = params.get("username", ""), params.get("password", "")
        if not username or not password:
            raise OAuthError("invalid_request", "username and password are required")
        key = f"{spec.org_id}\0{username}"
        _throttled(self.user_failures, key, "access_denied", "password-grant login")
        found = await self._basic_user(spec, username, password.encode())
        if found is None:
            self.user_failures.failed(key)
            raise OAuthError("access_denied", "the user name or password is wrong")
        user_id, user = found
        # As Tyk: a user holds one password-grant token per client; the previous one is revoked.
        previous = await self.storage.user_grant(spec.api_id, client.client_id, user_id)
        if previous is not None:
            await self.revoke_grant(spec.api_id, previous)
        grant_id = secrets.token_hex(16)
        issued = await self._issue(spec, client, grant_id, None, user, refresh=True)
        await self.storage.put_user_grant(spec.api_id, client.client_id, user_id, grant_id,
                                          float(self.config.oauth_refresh_token_expire))
        return issued

    async def _basic_user(self, spec: ApiSpec, username: str, password: bytes) -> tuple[str, SessionState] | None:
        """The basic-auth user's session when ``password`` is theirs (as basic auth finds users)."""
        candidates = []
        try:
            candidates.append(generate_token(spec.org_id, username, self.config.hash_key_function))
        except ValueError:
            return None
        candidates.append(spec.org_id + username.removeprefix(spec.org_id))
        for token in candidates:
            found = await self.sessions.lookup(token, spec)
            if not found:
                continue
            stored = found[1].basic_auth_data
            if not stored.password:
                return None
            ok = check_fast(stored, password)
            if ok is None:
                ok = await self.passwords.check(self.passwords.cache_key(stored.password, password), password,
                                                remember=True)
            return (found[0], found[1]) if ok else None
        return None

    # ---- issuing -------------------------------------------------------------------------------

    async def _issue(self, spec: ApiSpec, client: ClientRecord, grant_id: str, key_rules: dict[str, Any] | None,
                     user: SessionState | None, *, refresh: bool) -> _Issued:
        """Write a new access token (and refresh token) for ``client`` in grant ``grant_id``."""
        config = self.config
        now = time.time()
        expires_in = config.oauth_token_expire
        session = _token_session(spec, client, key_rules, user)
        session.expires = int(now + expires_in)
        session.date_created = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
        token = generate_token(spec.org_id, None, config.hash_key_function)
        storage_id = storage_key_id(token, config.hash_keys)
        # Kept past its expiry (at least EXPIRED_GRACE s) so a late request is told "Key has
        # expired, please renew" (401, as Tyk) rather than "Key not authorised".
        retain = expires_in + max(config.oauth_token_expired_retain_period, EXPIRED_GRACE)
        await self.sessions.put(storage_id, session, retain)
        await self.storage.add_token(spec.api_id, client.client_id, storage_id, session.expires, retain)
        refresh_ttl = float(config.oauth_refresh_token_expire)
        issued = _Issued(access_token=token, expires_in=expires_in, storage_id=storage_id)
        if not refresh:
            return issued  # client_credentials, implicit: nothing to rotate or revoke as a family
        grant = await self.storage.grant(spec.api_id, grant_id) or GrantRecord(client_id=client.client_id)
        grant.access.append(storage_id)
        issued.refresh_token = secrets.token_urlsafe(32)
        token_digest = digest(issued.refresh_token)
        record = RefreshRecord(client_id=client.client_id, grant=grant_id, expires=now + refresh_ttl,
                               key_rules=key_rules, user_session=encode_session(user) if user else b"")
        await self.storage.put_refresh(spec.api_id, token_digest, record, refresh_ttl)
        await self.storage.add_client_refresh(spec.api_id, client.client_id, token_digest, refresh_ttl)
        grant.refresh.append(token_digest)
        await self.storage.put_grant(spec.api_id, grant_id, grant, max(refresh_ttl, float(retain)))
        return issued

    def _notify(self, settings: OAuthSettings, issued: _Issued, kind: str, *, auth_code: str = "",
                old_refresh_token: str = "") -> None:
        if not settings.keychange_url:
            return
        self.notifier.send(settings.keychange_url, settings.shared_secret, {
            "auth_code": auth_code, "new_oauth_token": issued.access_token, "refresh_token": issued.refresh_token,
            "old_refresh_token": old_refresh_token, "notification_type": kind,
        })

    # ---- revocation ----------------------------------------------------------------------------

    async def revoke_grant(self, api_id: str, grant_id: str) -> None:
        """Revoke every access and refresh token of a grant (code or refresh-token reuse)."""
        grant = await self.storage.grant(api_id, grant_id)
        if grant is None:
            return
        for storage_id in grant.access:
            await self.sessions.delete(storage_id)
            await self.storage.remove_token(api_id, grant.client_id, storage_id)
        for token_digest in grant.refresh:
            await self.storage.delete_refresh(api_id, token_digest)
            await self.storage.remove_client_refresh(api_id, grant.client_id, token_digest)
        await self.storage.delete_grant(api_id, grant_id)

    async def revoke_token(self, spec: ApiSpec, token: str, hint: str, client: ClientRecord | None) -> None:
        """``/oauth/revoke``: an access token (a key) and/or a refresh token; with ``client``, only
        that client's tokens."""
        if hint in ("", "access_token"):
            storage_id = storage_key_id(token, self.config.hash_keys)
            found = await self.sessions.lookup(token, spec)
            if found and found[1].oauth_client_id and (client is None or found[1].oauth_client_id == client.client_id):
                await self.sessions.delete(found[0])
                await self.storage.remove_token(spec.api_id, found[1].oauth_client_id, storage_id)
        if hint in ("", "refresh_token"):
            token_digest = digest(token)
            record = await self.storage.refresh(spec.api_id, token_digest)
            if record is not None and (client is None or record.client_id == client.client_id):
                await self.storage.delete_refresh(spec.api_id, token_digest)
                await self.storage.remove_client_refresh(spec.api_id, record.client_id, token_digest)

    async def revoke_all(self, api_id: str, client_id: str) -> None:
        """Every access and refresh token ``client_id`` holds on ``api_id``."""
        for entry in await self.storage.tokens(api_id, client_id):
            await self.sessions.delete(entry.code)
            await self.storage.remove_token(api_id, client_id, entry.code)
        for token_digest in await self.storage.client_refresh_tokens(api_id, client_id):
            await self.storage.delete_refresh(api_id, token_digest)
            await self.storage.remove_client_refresh(api_id, client_id, token_digest)


def _throttled(counter: FailureCounter, key: str, code: str, what: str) -> None:
    wait = counter.retry_after(key)
    if wait:
        raise OAuthError(code, f"too many failed {what} attempts; retry in {wait} seconds", 429,
                         ((b"Retry-After", str(wait).encode()),))


def _settings(spec: ApiSpec) -> OAuthSettings:
    assert spec.oauth is not None  # only OAuth APIs get the endpoints
    return spec.oauth


def _pkce_challenge(params: Mapping[str, str], required: bool) -> str:
    challenge = params.get("code_challenge", "")
    method = params.get("code_challenge_method", "")
    if not challenge:
        if method:
            raise OAuthError("invalid_request", "code_challenge_method without code_challenge")
        if required:
            raise OAuthError("invalid_request", "this API requires PKCE: send code_challenge with method S256")
        return ""
    if method != "S256":
        raise OAuthError("invalid_request", "code_challenge_method must be S256 (plain is not accepted)")
    if not _PKCE_CHALLENGE.fullmatch(challenge):
        raise OAuthError("invalid_request", "code_challenge must be 43 to 128 characters of base64url")
    return challenge


def _key_rules(raw: str) -> dict[str, Any] | None:
    """The ``key_rules`` form field: a session JSON object the token's session is built from."""
    if not raw:
        return None
    try:
        value = msgspec.json.decode(raw.encode())
        msgspec.convert(value, SessionState)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OAuthError("invalid_request", f"key_rules is not a valid session object: {exc}") from None
    if not isinstance(value, dict):
        raise OAuthError("invalid_request", "key_rules must be a JSON object")
    return value


def _token_session(spec: ApiSpec, client: ClientRecord, key_rules: dict[str, Any] | None,
                   user: SessionState | None) -> SessionState:
    """The session of a new access token: ``key_rules``, else the password grant's user, else
    the client's policy, else access to this API alone; the client's ``meta_data`` merged under
    the session's own."""
    if key_rules is not None:
        session = msgspec.convert(key_rules, SessionState)
    elif user is not None:
        session = decode_session(encode_session(user))
        session.basic_auth_data = type(session.basic_auth_data)()
        session.oauth_keys = {}
    elif client.policy_id:
        session = SessionState(apply_policies=[client.policy_id])
    else:
        session = SessionState(access_rights={spec.api_id: AccessDefinition(
            api_id=spec.api_id, api_name=spec.name, versions=["Default"])})
    session.org_id = spec.org_id
    session.oauth_client_id = client.client_id
    session.meta_data = {**client.meta_data, **session.meta_data}
    return session
