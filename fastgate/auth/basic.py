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
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Final


from fastgate.apidef.auth_settings import BasicSettings
from fastgate.apidef.spec import ApiSpec
from fastgate.auth.body import BodyTap
from fastgate.auth.identity import offer_session
from fastgate.auth.passwords import check_fast
from fastgate.auth.sources import compile_extractor
from fastgate.sessions.key_ids import generate_token
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["basic_config", "compile_basic_auth", "parse_basic_credentials",
           "credentials_from_body", "needs_body"]

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
MAX_MEMO: Final = 10_000  # Authorization values remembered per API
# Checked for users that do not exist, so they cost what a wrong password costs. Cost 10 as
# passwords are stored (fastgate.auth.passwords.BCRYPT_COST); the password is random and forgotten.
DUMMY_BCRYPT_HASH: Final = "$2b$10$JJaQ4PmR3ZEfEN0U2oochuRumEjjXcBxo49Uuw.ztZryLG8.zhYfW"
THROTTLED_MESSAGE: Final = "Too many failed login attempts; try again in {} seconds"
log = logging.getLogger("fastgate.auth")


def basic_config(spec: ApiSpec) -> BasicSettings | None:
    """``spec``'s basic-auth settings (decoded with the definition), None when it does not use
    basic auth."""
    return spec.basic


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


def credentials_from_body(body: bytes, config: BasicSettings) -> tuple[str, bytes] | Denial:
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
    config = spec.basic
    if config is None or config.user_regexp is None:
        return None
    extract = compile_extractor(config.source, strip_bearer=False)

    def from_body(req: Request) -> bool:
        value = extract(req)
        return not value or type(parse_basic_credentials(value)) is Denial

    return from_body


def compile_basic_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The basic-auth stage for ``spec``, or nothing when the API does not use it."""
    config = spec.basic
    if config is None:
        return ()
    # The API name goes into a header: control characters dropped, quotes escaped.
    realm = "".join(c for c in spec.name if c >= " " and c != "\x7f").replace("\\", "\\\\").replace('"', '\\"')
    challenge = ((b"WWW-Authenticate", f'Basic realm="{realm}"'.encode("utf-8", "replace")),)
    missing = Denial(401, "Authorization field missing", challenge)
    not_authorised = Denial(401, "User not authorised", challenge)
    extract = compile_extractor(config.source, strip_bearer=False)
    sessions = services.sessions
    checker = services.passwords
    base = spec.base_identity
    hash_function = services.config.hash_key_function
    from_body = config.user_regexp is not None
    body_timeout = services.config.http_server_options.read_timeout
    caching = not config.disable_caching
    ttl = config.cache_ttl
    dummy_check = services.config.basic_auth_hash_key_function in ("", "bcrypt")
    per_user, per_client = services.basic_failures.per_user, services.basic_failures.per_client
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

    # The exact Authorization value -> (throttle key, storage id, session, valid until,
    # session-cache version, policy applier) after a password check that needed no waiting: kept
    # while no key was invalidated anywhere, no policy reloaded, and neither the cached session
    # nor the cached bcrypt result (both on time.monotonic) has expired, so it is exactly as
    # strict as the caches it stands on. Throttling still applies on every request. Bounded.
    memo: dict[str, tuple[str, str, SessionState, float, int, Any]] = {}

    def check_basic(req: Request) -> Denial | None | Awaitable[Denial | None]:
        value = extract(req)
        if value:
            hit = memo.get(value)
            cache = sessions.cache
            if hit is not None and hit[4] == cache.version and hit[5] is sessions.applier and cache.now() < hit[3]:
                if throttling:
                    denial = throttled(req, hit[0])
                    if denial is not None:
                        return denial
                offer_session(req, base, "basic_auth_user", hit[1], hit[2])
                return None
        creds = parse_basic_credentials(value) if value else missing
        if isinstance(creds, Denial):
            return _from_body(req) if from_body else creds
        user, password = creds
        version = sessions.cache.version
        applier = sessions.applier
        result = guarded(req, user, password)
        if result is None and version >= 0:
            remember(value, user, password, version, applier)
        return result

    def remember(value: str, user: str, password: bytes, version: int, applier: Any) -> None:
        """Keep what a password check that has just passed synchronously stood on."""
        token = user_token(user)
        found = sessions.cached(token, spec) if token is not None else None
        if not found:
            return
        storage_id, session = found
        stored = session.basic_auth_data
        until = sessions.cache.expires_at(storage_id)
        if check_fast(stored, password) is None:  # bcrypt: only as long as its result is cached
            if not caching:
                return
            until = min(until, checker.cached_until(checker.cache_key(stored.password, password), ttl))
        if len(memo) >= MAX_MEMO:
            memo.clear()
        memo[value] = (org + "\0" + user, storage_id, session, until, version, applier)

    def throttled(req: Request, user_key: str) -> Denial | None:
        wait = max(per_user.retry_after(user_key), per_client.retry_after(req.client_ip))
        if wait:
            return Denial(429, THROTTLED_MESSAGE.format(wait), ((b"Retry-After", str(wait).encode()),))
        return None

    def guarded(req: Request, user: str, password: bytes) -> Denial | None | Awaitable[Denial | None]:
        """``verify``, refused while the user or the client is throttled, failures counted."""
        if not throttling:
            return verify(req, user, password)
        user_key = org + "\0" + user
        denial = throttled(req, user_key)
        if denial is not None:
            return denial
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
