"""External OAuth (Tyk's ExternalOAuthMiddleware): access tokens of an outside authorization
server, checked as a JWT or by RFC 7662 introspection.

Only the first provider is used, as in Tyk; its JWT path is tried when enabled, else its
introspection path. Statuses and messages are Tyk's: no token → 400 "authorization field
missing"; no provider → 404 "there should be at least one provider configured"; a JWT that fails
→ 401 "key not authorized: <reason>"; ``active: false`` → 401 "access token is not valid".
Beyond Tyk: the IdP unreachable or answering garbage → 503 (Tyk: 500), a token signed with an
algorithm outside the signing method → 401 (Tyk: 500), JWT revocation by ``jti``/``sub``
(``DELETE``-free, cluster-wide: ``fastgate.auth.jwt.revocation``) applies to these tokens too, and
the introspection cache rules of ``fastgate.auth.introspection``.

The session is Tyk's virtual one: the key ``generate_token(org, md5hex(identity))`` when it is
stored (made with the Gateway API), else a standard session of this API only (rate 10000 per
60 s, no quota, no expiry), never persisted; the post-auth checks (rate, quota) then apply.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

from fastgate.apidef.auth_settings import ExternalOAuthSettings, ExtJwtSettings
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.identity import offer_session
from fastgate.auth.idp_http import IdpError
from fastgate.auth.introspection import Introspected, Introspector, token_key
from fastgate.auth.jwt.claims import check_times, identity_of, user_id
from fastgate.auth.jwt.config import JwtConfig, parse_key_source
from fastgate.auth.jwt.jose import ALG_FAMILY, Jws, parse, verify
from fastgate.auth.jwt.jwks import JwkKey
from fastgate.auth.jwt.keys import JwksKeys, fresh_window
from fastgate.auth.jwt.session import virtual_session_token
from fastgate.auth.sources import compile_extractor
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage, StageResult
from fastgate.sessions.cache import MISS
from fastgate.sessions.key_ids import storage_key_id
from fastgate.sessions.policy_apply import PolicyError
from fastgate.sessions.session import AccessDefinition, SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["ExternalOAuth", "check_external_oauth", "compile_external_oauth", "standard_session"]

log = logging.getLogger("fastgate.ext_oauth")

MISSING: Final = Denial(400, "authorization field missing")
NO_PROVIDER: Final = Denial(404, "there should be at least one provider configured")
NOT_VALID: Final = Denial(401, "access token is not valid")
CACHED_EXPIRED: Final = Denial(401, "token is expired")
IDP_UNAVAILABLE: Final = Denial(503, "the token introspection endpoint could not be used; try again shortly")
JWKS_UNAVAILABLE: Final = Denial(503, "The identity provider's signing keys (JWKS) could not be fetched; try again shortly")
MAX_CACHED_TOKENS: Final = 10_000
NO_EXP_CACHE_SECONDS: Final = 300.0
MAX_MEMO: Final = 10_000
FAILURE_LOG_INTERVAL: Final = 10.0  # seconds between two log lines about the IdP failing


def _refused(reason: str) -> Denial:
    return Denial(401, "key not authorized: " + reason)


MALFORMED: Final = _refused("token is malformed")
UNEXPECTED_METHOD: Final = _refused("unexpected signing method")
NO_KID: Final = _refused("the token has no kid")
BAD_SIGNATURE: Final = _refused("signature is invalid")
REVOKED: Final = _refused("token has been revoked")


def compile_external_oauth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The external OAuth stage for ``spec``, or nothing when the API does not use it."""
    settings = spec.external_oauth
    if settings is None:
        return ()
    return (ExternalOAuth(spec, settings, services).check,)


def check_external_oauth(spec: ApiSpec) -> None:
    """Raise ``DefinitionError`` (naming the field) when the JWT path's key cannot verify any token:
    the API is refused at load and by ``fastgate check`` rather than served refusing everyone."""
    settings = spec.external_oauth
    jwt = settings.jwt if settings is not None else None
    if jwt is None:
        return
    source = parse_key_source(jwt.keys, jwt.family)
    if source.kind == "static" and source.key is None:
        raise DefinitionError(jwt.keys.field, f"not a key for signing method {jwt.family!r} ({source.problem})")


def standard_session(spec: ApiSpec) -> SessionState:
    """Tyk's ``CreateStandardSession`` for an identity without a stored key: this API only."""
    right = AccessDefinition(api_name=spec.name, api_id=spec.api_id, versions=["Default"])
    return SessionState(org_id=spec.org_id, rate=10000, allowance=10000, per=60, quota_max=-1,
                        quota_remaining=-1, expires=-1, access_rights={spec.api_id: right})


class _Verified:
    __slots__ = ("jws", "jwk", "until", "fresh_from", "fresh_to")

    def __init__(self, jws: Jws, jwk: JwkKey | None, until: float, window: tuple[float, float]) -> None:
        self.jws = jws
        self.jwk = jwk
        self.until = until
        self.fresh_from, self.fresh_to = window  # where the time claims surely pass


class ExternalOAuth:
    """The external OAuth stage of one API."""

    def __init__(self, spec: ApiSpec, settings: ExternalOAuthSettings, services: "Services") -> None:
        self.spec = spec
        self.settings = settings
        self.extract = compile_extractor(settings.source)
        self.sessions = services.sessions
        self.revocations = services.jwt_revocations
        self.hash_algo = services.config.hash_key_function
        self.hash_keys = services.config.hash_keys
        self.base = spec.base_identity
        self._ids: dict[str, str] = {}  # identity -> storage id of its virtual session
        self._standard = standard_session(spec)
        self.jwt = settings.jwt
        self.cfg: JwtConfig | None = None
        self.keys: JwksKeys | None = None
        self.verified: OrderedDict[str, _Verified] = OrderedDict()
        if settings.jwt is not None:
            check_external_oauth(spec)
            self.cfg = _jwt_config(settings, settings.jwt)
            source = self.cfg.key_source
            if source.kind == "jwks":
                services.jwks.register(spec.api_id + "#external_oauth", source.jwks, self.verified.clear)
                self.keys = JwksKeys(services.jwks, tuple(url for url, _ in source.jwks), settings.jwt.family)
        intro = settings.introspection
        self.introspector = Introspector(intro) if intro is not None and settings.jwt is None else None
        self._failure_logged = -math.inf

    def check(self, req: Request) -> StageResult:
        """Check the request's access token and put its session on ``req``."""
        token = self.extract(req)
        if not token:
            return MISSING
        if not self.settings.has_provider:
            return NO_PROVIDER
        now = time.time()
        if self.cfg is not None:
            return self._jwt(req, token, now)
        introspector = self.introspector
        if introspector is None:
            return NOT_VALID  # a provider with neither path enabled: as Tyk, nothing is valid
        key = token_key(token)
        found = introspector.cached(key, now)
        if found is not None:
            return self._introspected(req, found, now, cached=True)
        return self._introspect(req, token, key)

    # ---- introspection -----------------------------------------------------------------------

    async def _introspect(self, req: Request, token: str, key: bytes) -> Denial | None:
        assert self.introspector is not None
        result = await self.introspector.introspect(token, key)
        if isinstance(result, IdpError):
            moment = time.monotonic()
            if moment - self._failure_logged >= FAILURE_LOG_INTERVAL:  # an outage is one line per interval
                self._failure_logged = moment
                log.warning("API %r: introspection failed (503 until it works): %s", self.spec.api_id, result)
            return IDP_UNAVAILABLE
        return await _settle(self._introspected(req, result, time.time(), cached=False))

    def _introspected(self, req: Request, answer: Introspected, now: float, *, cached: bool) -> StageResult:
        if not answer.active:
            return NOT_VALID
        exp = answer.claims.get("exp")
        if type(exp) in (int, float) and exp <= now:
            return CACHED_EXPIRED if cached else NOT_VALID
        assert self.settings.introspection is not None
        identity, _ = user_id(answer.claims, self.settings.introspection.identity_field, True)
        if not identity:
            return NOT_VALID
        return self._session(req, identity)

    # ---- JWT ---------------------------------------------------------------------------------

    def _jwt(self, req: Request, token: str, now: float) -> StageResult:
        entry = self.verified.get(token)
        if entry is not None:
            jwk = entry.jwk
            if entry.until > now and (jwk is None or self.keys is None or self.keys.still_served(jwk)):
                self.verified.move_to_end(token)
                return self._jwt_claims(req, entry.jws, now, entry.fresh_from <= now < entry.fresh_to)
            del self.verified[token]
        jws = parse(token)
        if isinstance(jws, str):
            return MALFORMED
        cfg = self.cfg
        assert cfg is not None
        family = ALG_FAMILY.get(jws.alg)
        if family is None or family != cfg.family:
            return UNEXPECTED_METHOD
        if self.keys is None:
            key = cfg.key_source.key
            if key is None or not verify(jws, key):
                return BAD_SIGNATURE
            return self._remember(req, token, jws, None, now)
        if jws.kid is None:
            return NO_KID
        candidates = self.keys.candidates(jws)
        if not candidates:
            return self._fetch_then_verify(req, token, jws, now)
        jwk = JwksKeys.verified_by(jws, candidates)
        if jwk is None:
            return BAD_SIGNATURE
        return self._remember(req, token, jws, jwk, now)

    async def _fetch_then_verify(self, req: Request, token: str, jws: Jws, now: float) -> Denial | None:
        assert self.keys is not None
        candidates = await self.keys.fetch_candidates(jws)
        if candidates is None:
            return JWKS_UNAVAILABLE
        jwk = JwksKeys.verified_by(jws, candidates)
        if jwk is None:
            return BAD_SIGNATURE
        return await _settle(self._remember(req, token, jws, jwk, now))

    def _remember(self, req: Request, token: str, jws: Jws, jwk: JwkKey | None, now: float) -> StageResult:
        exp = jws.claims.get("exp")
        assert self.jwt is not None
        until = float(exp) + self.jwt.exp_skew if type(exp) in (int, float) and math.isfinite(exp) else now + NO_EXP_CACHE_SECONDS
        if until > now:
            assert self.cfg is not None
            self.verified[token] = _Verified(jws, jwk, until, fresh_window(jws.claims, self.cfg))
            if len(self.verified) > MAX_CACHED_TOKENS:
                self.verified.popitem(last=False)
        return self._jwt_claims(req, jws, now, False)

    def _jwt_claims(self, req: Request, jws: Jws, now: float, fresh: bool) -> StageResult:
        cfg = self.cfg
        assert cfg is not None
        claims = jws.claims
        reason = None if fresh else check_times(claims, int(now), cfg)
        if reason is not None:
            return _refused(reason)
        revoked = self.revocations
        if (revoked.jti or revoked.sub) and revoked.refused(claims.get("jti"), claims.get("sub"), claims.get("iat"), now):
            return REVOKED
        identity, error = identity_of(claims, cfg)
        if error:
            return _refused(error)
        return self._session(req, identity)

    # ---- the session -------------------------------------------------------------------------

    def _session(self, req: Request, identity: str) -> StageResult:
        storage_id = self._ids.get(identity)
        if storage_id is None:
            storage_id = storage_key_id(virtual_session_token(self.spec.org_id, identity, self.hash_algo), self.hash_keys)
            if len(self._ids) >= MAX_MEMO:
                self._ids.clear()
            self._ids[identity] = storage_id
        stored = self.sessions.cache.peek(storage_id)
        if stored is MISS:
            return self._session_after_lookup(req, storage_id)
        return self._use(req, storage_id, stored)

    async def _session_after_lookup(self, req: Request, storage_id: str) -> Denial | None:
        return self._use(req, storage_id, await self.sessions.cache.get(storage_id))

    def _use(self, req: Request, storage_id: str, stored: SessionState | None) -> Denial | None:
        if stored is None:
            offer_session(req, self.base, "oauth_key", storage_id, self._standard)
            return None
        applied = self.sessions.apply(stored, self.spec)
        if isinstance(applied, PolicyError):
            return NOT_VALID
        offer_session(req, self.base, "oauth_key", storage_id, applied)
        return None


def _jwt_config(settings: ExternalOAuthSettings, jwt: ExtJwtSettings) -> JwtConfig:
    """The JWT method's config for external OAuth's JWT path (its claim checks take one)."""
    return JwtConfig(
        source=settings.source, family=jwt.family, keys=jwt.keys,
        identity_fields=(jwt.identity_field,) if jwt.identity_field else (),
        iat_skew=jwt.iat_skew, nbf_skew=jwt.nbf_skew, exp_skew=jwt.exp_skew,
        key_source=parse_key_source(jwt.keys, jwt.family),
    )


async def _settle(result: StageResult) -> Denial | None:
    if result is None or isinstance(result, Denial):
        return result
    return await result
