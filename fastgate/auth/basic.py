"""Basic authentication (Tyk's ``use_basic_auth``): users are keys with ``basic_auth_data``.

Statuses and messages are Tyk's (tyk-reference §6):

* no credential → 401 "Authorization field missing"; unknown user or wrong password → 401 "User
  not authorised"; both carry ``WWW-Authenticate: Basic realm="<API name>"``;
* a value that is not two space-separated words, not standard base64, or without a ``:`` → the
  three 400 "Attempted access with malformed header, …" (the scheme word is not checked). The
  pair is split on the first ``:`` (RFC 7617), so a password may contain ``:`` (Tyk refuses it);
  a user name cannot, and the Gateway API refuses to create such a user;
* with ``extract_from_body``, a missing or malformed header makes the stage read the body (up to
  64 KiB, see ``fastgate.auth.body``) with the API's two regexps (first group): 400 "Body do not
  contain username" / "... password", 400 "... should be inside regexp match group".

A user is found like Tyk finds it: the key ``generate_token(api org, user name)``, then, when a
``hash_key_function`` is configured, the legacy ``org_id + user name``. The password check is
constant time for plain and hashed (sha256, murmur) passwords and goes through
``PasswordChecker`` for bcrypt: cached, single-flight, off the event loop. A cached user with a
cached bcrypt result is answered without awaiting anything.

Differences from Tyk, on purpose: a key without a password is never a basic-auth user (Tyk lets
any key id in with an empty password), and passwords over 72 bytes never match a bcrypt hash.
With bcrypt passwords, an unknown user costs a bcrypt check against a dummy hash, like a wrong
password, so timing does not tell which users exist. Failed logins are counted per user and per
client address (``fastgate.auth.throttle``, config ``basic_auth_failures_per_user`` /
``_per_client`` / ``basic_auth_failure_window``); past the limit, 429 with ``Retry-After``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Final

import msgspec

from fastgate.apidef.spec import ApiSpec, AuthSource, DefinitionError
from fastgate.auth.body import BodyTap
from fastgate.auth.identity import base_identity, offer_session
from fastgate.auth.passwords import PasswordChecker, check_fast
from fastgate.auth.throttle import FailureCounter
from fastgate.auth.sources import compile_extractor
from fastgate.sessions.key_ids import generate_token
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

__all__ = ["BasicConfig", "basic_config", "compile_basic_auth", "parse_basic_credentials",
           "credentials_from_body", "needs_body", "oas_source", "password_checker"]

MALFORMED_HEADER: Final = Denial(400, "Attempted access with malformed header, header not in basic auth format")
MALFORMED_ENCODING: Final = Denial(400, "Attempted access with malformed header, auth data not encoded correctly")
MALFORMED_VALUES: Final = Denial(400, "Attempted access with malformed header, values not in basic auth format")
NO_BODY_USER: Final = Denial(400, "Body do not contain username")
USER_GROUP: Final = Denial(400, "username should be inside regexp match group")
NO_BODY_PASSWORD: Final = Denial(400, "Body do not contain password")
PASSWORD_GROUP: Final = Denial(400, "password should be inside regexp match group")
BODY_TOO_LARGE: Final = Denial(413, "Request body is too large to read credentials from")
BODY_TIMEOUT: Final = Denial(408, "Request timed out")
BUSY: Final = Denial(503, "Too many password checks in progress; try again shortly", ((b"Retry-After", b"1"),))
DEFAULT_CACHE_TTL: Final = 60
# Checked for users that do not exist, so they cost what a wrong password costs. Cost 10 as
# passwords are stored (fastgate.auth.passwords.BCRYPT_COST); the password is random and forgotten.
DUMMY_BCRYPT_HASH: Final = "$2b$10$JJaQ4PmR3ZEfEN0U2oochuRumEjjXcBxo49Uuw.ztZryLG8.zhYfW"
THROTTLED_MESSAGE: Final = "Too many failed login attempts; try again in {} seconds"
log = logging.getLogger("fastgate.auth")


@dataclass(frozen=True, slots=True)
class BasicConfig:
    """An API's basic-auth settings, parsed once."""

    source: AuthSource
    disable_caching: bool
    cache_ttl: float
    user_regexp: re.Pattern[bytes] | None  # set when credentials may come from the body
    password_regexp: re.Pattern[bytes] | None


class _BasicAuth(msgspec.Struct, kw_only=True):  # Classic ``basic_auth``
    disable_caching: bool = False
    cache_ttl: int = 0
    extract_from_body: bool = False
    body_user_regexp: str = ""
    body_password_regexp: str = ""


def basic_config(spec: ApiSpec) -> BasicConfig | None:
    """``spec``'s basic-auth settings (Classic or OAS), None when it does not use basic auth.

    Raises ``DefinitionError`` for settings that cannot work (bad regexps, wrong types)."""
    if spec.use_keyless:
        return None
    raw = spec.raw
    if spec.format == "oas":
        found = _oas_basic(raw)
        if found is None:
            return None
        vendor, source, where = found
        body = vendor.get("extractCredentialsFromBody") or {}
        settings = {
            "disable_caching": vendor.get("disableCaching") or False,
            "cache_ttl": vendor.get("cacheTTL") or 0,
            "extract_from_body": body.get("enabled") or False,
            "body_user_regexp": body.get("userRegexp") or "",
            "body_password_regexp": body.get("passwordRegexp") or "",
        }
    else:
        if not raw.get("use_basic_auth"):
            return None
        where = "basic_auth"
        source = spec.auth_configs.get("basic") or AuthSource()
        settings = raw.get("basic_auth") or {}
    try:
        conf = msgspec.convert(settings, _BasicAuth, strict=False)
    except msgspec.ValidationError as exc:
        raise DefinitionError(where, str(exc)) from None
    user_re = password_re = None
    if conf.extract_from_body:
        user_re = _regexp(f"{where}.body_user_regexp", conf.body_user_regexp)
        password_re = _regexp(f"{where}.body_password_regexp", conf.body_password_regexp)
    ttl = conf.cache_ttl if conf.cache_ttl > 0 else DEFAULT_CACHE_TTL
    return BasicConfig(source, conf.disable_caching, float(ttl), user_re, password_re)


def parse_basic_credentials(value: str) -> tuple[str, bytes] | Denial:
    """(user name, password bytes) from ``Basic <base64(user:password)>``, or Tyk's 400."""
    parts = value.split(" ")
    if len(parts) != 2:
        return MALFORMED_HEADER
    try:
        decoded = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return MALFORMED_ENCODING
    user, colon, password = decoded.partition(b":")  # RFC 7617: the user name has no ":"
    if not colon:
        return MALFORMED_VALUES
    return user.decode("utf-8", "replace"), password


def credentials_from_body(body: bytes, config: BasicConfig) -> tuple[str, bytes] | Denial:
    """(user name, password) found in ``body`` by the API's regexps (first group), or Tyk's 400."""
    assert config.user_regexp is not None and config.password_regexp is not None
    user = config.user_regexp.search(body)
    if user is None:
        return NO_BODY_USER
    if config.user_regexp.groups < 1:
        return USER_GROUP
    password = config.password_regexp.search(body)
    if password is None:
        return NO_BODY_PASSWORD
    if config.password_regexp.groups < 1:
        return PASSWORD_GROUP
    return (user.group(1) or b"").decode("utf-8", "replace"), password.group(1) or b""


def needs_body(spec: ApiSpec) -> Callable[[Request], bool] | None:
    """For ``CompiledApi.body_tap``: whether a request's credentials will be read from its body."""
    config = basic_config(spec)
    if config is None or config.user_regexp is None:
        return None
    extract = compile_extractor(config.source, strip_bearer=False)

    def from_body(req: Request) -> bool:
        value = extract(req)
        return not value or type(parse_basic_credentials(value)) is Denial

    return from_body


def password_checker(gateway: Any) -> PasswordChecker:
    """The gateway's one ``PasswordChecker`` (created on first use, closed at shutdown)."""
    checker: PasswordChecker | None = gateway.state.get("passwords")
    if checker is None:
        made = gateway.state["passwords"] = PasswordChecker()

        async def close() -> None:
            made.close()

        gateway.state.setdefault("closers", []).append(close)
        return made
    return checker


def failure_counters(gateway: Any) -> tuple[FailureCounter, FailureCounter]:
    """The gateway's failed-login counters (per user, per client address), made on first use."""
    counters: tuple[FailureCounter, FailureCounter] | None = gateway.state.get("basic_auth_failures")
    if counters is None:
        config = gateway.config
        window = config.basic_auth_failure_window
        counters = gateway.state["basic_auth_failures"] = (
            FailureCounter(config.basic_auth_failures_per_user, window),
            FailureCounter(config.basic_auth_failures_per_client, window),
        )
    return counters


def compile_basic_auth(spec: ApiSpec, gateway: Any) -> tuple[Stage, ...]:
    """The basic-auth stage for ``spec``, or nothing when the API does not use it."""
    config = basic_config(spec)
    if config is None:
        return ()
    # The API name goes into a header: control characters dropped, quotes escaped.
    realm = "".join(c for c in spec.name if c >= " " and c != "\x7f").replace("\\", "\\\\").replace('"', '\\"')
    challenge = ((b"WWW-Authenticate", f'Basic realm="{realm}"'.encode("utf-8", "replace")),)
    missing = Denial(401, "Authorization field missing", challenge)
    not_authorised = Denial(401, "User not authorised", challenge)
    extract = compile_extractor(config.source, strip_bearer=False)
    sessions = gateway.state["sessions"]
    checker = password_checker(gateway)
    base = base_identity(spec)
    hash_function = gateway.config.hash_key_function
    from_body = config.user_regexp is not None
    body_timeout = gateway.options.read_timeout
    caching = not config.disable_caching
    ttl = config.cache_ttl
    dummy_check = gateway.config.basic_auth_hash_key_function in ("", "bcrypt")
    per_user, per_client = failure_counters(gateway)
    throttling = bool(per_user.limit or per_client.limit)
    org = spec.org_id
    tokens: dict[str, str | None] = {}  # user name -> key token (pure, so never stale)

    def user_token(user: str) -> str | None:
        token = tokens.get(user, "")
        if token == "":
            try:
                token = generate_token(spec.org_id, user, hash_function)
            except ValueError:  # a name with '"' or '\' can never be a key
                token = None
            if len(tokens) > 10_000:
                tokens.clear()
            tokens[user] = token
        return token

    def check_basic(req: Request) -> Denial | None | Awaitable[Denial | None]:
        value = extract(req)
        creds = parse_basic_credentials(value) if value else missing
        if type(creds) is Denial:
            return _from_body(req) if from_body else creds
        return guarded(req, *creds)  # type: ignore[misc]

    def guarded(req: Request, user: str, password: bytes) -> Denial | None | Awaitable[Denial | None]:
        """``verify``, refused while the user or the client is throttled, failures counted."""
        if not throttling:
            return verify(req, user, password)
        user_key = org + "\0" + user
        wait = max(per_user.retry_after(user_key), per_client.retry_after(req.client_ip))
        if wait:
            return Denial(429, THROTTLED_MESSAGE.format(wait), ((b"Retry-After", str(wait).encode()),))
        result = verify(req, user, password)
        if result is None:
            return None
        if type(result) is Denial:
            if result is not_authorised:
                failed(req, user, user_key)
            return result
        return _counted(result, req, user, user_key)  # type: ignore[arg-type]

    async def _counted(pending: Awaitable[Denial | None], req: Request, user: str, user_key: str) -> Denial | None:
        result = await pending
        if result is not_authorised:
            failed(req, user, user_key)
        return result

    def failed(req: Request, user: str, user_key: str) -> None:
        # Logged once, when a limit is reached; never with the password.
        if per_user.failed(user_key) == per_user.limit:
            log.warning("basic auth on API %r: %d failed logins for user %r within %gs; its logins get 429 "
                        "until the window ends", spec.api_id, per_user.limit, user, per_user.window)
        if per_client.failed(req.client_ip) == per_client.limit:
            log.warning("basic auth on API %r: %d failed logins from client %s within %gs; its logins get 429 "
                        "until the window ends", spec.api_id, per_client.limit, req.client_ip, per_client.window)

    def verify(req: Request, user: str, password: bytes) -> Denial | None | Awaitable[Denial | None]:
        token = user_token(user)
        if token is None:
            return no_such_user(password)
        found = sessions.cached(token, spec)
        if found is None:
            return _lookup(req, token, user, password)
        if found is False:
            return no_such_user(password)
        return check_password(req, found[0], found[1], password)

    def no_such_user(password: bytes) -> Denial | Awaitable[Denial | None]:
        """``not_authorised``, after the work a wrong password would have cost (a bcrypt check
        against a dummy hash, cached like a real one), so timing does not reveal accounts."""
        if not dummy_check:
            return not_authorised
        key = checker.cache_key(DUMMY_BCRYPT_HASH, password)
        if caching and checker.cached(key, ttl) is not None:
            return not_authorised
        return _dummy_bcrypt(key, password)

    async def _dummy_bcrypt(key: tuple[str, bytes], password: bytes) -> Denial | None:
        ok = await checker.check(key, password, remember=caching)
        return BUSY if ok is None else not_authorised

    def check_password(req: Request, storage_id: str, session: SessionState,
                       password: bytes) -> Denial | None | Awaitable[Denial | None]:
        stored = session.basic_auth_data
        if not stored.password:
            return no_such_user(password)
        ok = check_fast(stored, password)
        if ok is None:
            key = checker.cache_key(stored.password, password)
            ok = checker.cached(key, ttl) if caching else None
            if ok is None:
                return _bcrypt(req, storage_id, session, key, password)
        if not ok:
            return not_authorised
        offer_session(req, base, "basic_auth_user", storage_id, session)
        return None

    async def _bcrypt(req: Request, storage_id: str, session: SessionState,
                      key: tuple[str, bytes], password: bytes) -> Denial | None:
        ok = await checker.check(key, password, remember=caching)
        if ok is None:
            return BUSY
        if not ok:
            return not_authorised
        offer_session(req, base, "basic_auth_user", storage_id, session)
        return None

    async def _lookup(req: Request, token: str, user: str, password: bytes) -> Denial | None:
        found = await sessions.lookup(token, spec)
        if not found and hash_function:
            # Users made before a hash_key_function was configured: Tyk's legacy key format.
            found = await sessions.lookup(spec.org_id + user.removeprefix(spec.org_id), spec)
        if not found:
            denial = no_such_user(password)
            return denial if type(denial) is Denial else await denial  # type: ignore[misc]
        result = check_password(req, found[0], found[1], password)
        return result if result is None or type(result) is Denial else await result  # type: ignore[misc]

    async def _from_body(req: Request) -> Denial | None:
        body = b""
        tap: BodyTap | None = req.body_tap
        if tap is not None and req.has_body:
            try:
                found = await tap.body(body_timeout)
            except TimeoutError:
                return BODY_TIMEOUT
            if found is None:
                return BODY_TOO_LARGE
            body = found
        creds = credentials_from_body(body, config)
        if type(creds) is Denial:
            return creds
        result = guarded(req, *creds)  # type: ignore[misc]
        return result if result is None or type(result) is Denial else await result  # type: ignore[misc]

    return (check_basic,)


def oas_source(vendor: dict[str, Any]) -> AuthSource:
    """Where an OAS vendor scheme (``header``/``query``/``cookie`` {enabled, name}) reads from."""
    header = vendor.get("header") or {}
    query = vendor.get("query") or {}
    cookie = vendor.get("cookie") or {}
    name = header.get("name") or "Authorization"
    return AuthSource(
        header_name=name,
        disable_header=header.get("enabled") is False,
        use_param=bool(query.get("enabled")),
        param_name=query.get("name") or name,
        use_cookie=bool(cookie.get("enabled")),
        cookie_name=cookie.get("name") or name,
    )


def _oas_basic(raw: dict[str, Any]) -> tuple[dict[str, Any], AuthSource, str] | None:
    schemes = (raw.get("components") or {}).get("securitySchemes") or {}
    vendor_schemes = (((raw.get("x-tyk-api-gateway") or {}).get("server") or {})
                      .get("authentication") or {}).get("securitySchemes") or {}
    for name, scheme in schemes.items():
        if not isinstance(scheme, dict) or scheme.get("type") != "http":
            continue
        if str(scheme.get("scheme", "")).lower() != "basic":
            continue
        vendor = vendor_schemes.get(name) or {}
        if isinstance(vendor, dict) and vendor.get("enabled"):
            where = f"x-tyk-api-gateway.server.authentication.securitySchemes.{name}"
            return vendor, oas_source(vendor), where
    return None


def _regexp(field: str, pattern: str) -> re.Pattern[bytes]:
    if not pattern:
        raise DefinitionError(field, "required when credentials are extracted from the body")
    try:
        return re.compile(pattern.encode())
    except re.error as exc:
        raise DefinitionError(field, f"not a valid regular expression: {exc}") from None
