"""JWT authentication (Tyk's JWTMiddleware): the token is read, verified and turned into a session.

Statuses and messages are Tyk's: no token → 400 "Authorization field missing"; malformed, bad
signature, unknown key → 403 "Key not authorized"; an ``alg`` outside the API's signing method →
403 "Key not authorized: Unexpected signing method"; ``exp``/``iat``/``nbf`` and the OAS claim
checks → 401 "Key not authorized: <reason>"; policy problems of centralised mode → 403 with Tyk's
texts (``fastgate.auth.jwt.session``). Beyond Tyk: no JWKS ever fetched → 503, a revoked token → 401
"Key not authorized: token has been revoked".

Two modes, as in Tyk. With ``jwt_source`` / JWKS ("centralised") the token is verified with the
configured keys and a virtual session per identity is kept in the store. Without ("one-to-one")
the ``kid`` (or identity claim) names an existing key whose ``jwt_data.secret`` verifies the
token, and that key's session is used.

The hot path: verified tokens are cached per API by their exact text until ``exp`` (bounded
LRU), so a repeated token costs a dict lookup, the time checks and a session-cache peek; its
signature is never checked twice. A cached entry stays valid only while what verified it does:
the same JWK still served under its kid, the same secret on the one-to-one key. The stage is
synchronous unless a session or a key set must be fetched.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Awaitable, Final

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.auth.jwt.jose import ALG_FAMILY, Jws, key_from_material, parse, verify
from fastgate.auth.jwt.jwks import JwkKey
from fastgate.auth.jwt.keys import fresh_window
from fastgate.auth.jwt.claims import (
    NOT_VALID_YET, TIME_OUT_OF_RANGE, TOKEN_EXPIRED, USED_BEFORE_ISSUED, check_extra_claims, check_times, claim_string,
    identity_of, scope_claim_name, scopes_in, subject_of,
)
from fastgate.auth.jwt.config import JwtConfig, jwt_config
from fastgate.auth.jwt.session import Decision, decide, oauth_client_id, virtual_session_token
from fastgate.auth.sources import compile_extractor
from fastgate.sessions.key_ids import storage_key_id
from fastgate.pipeline.stage import Denial, Stage, StageResult
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["JwtAuth", "compile_jwt_auth", "MISSING", "NOT_AUTHORIZED", "UNEXPECTED_METHOD", "JWKS_UNAVAILABLE", "REVOKED"]

log = logging.getLogger("fastgate.jwt")

MISSING: Final = Denial(400, "Authorization field missing")
NOT_AUTHORIZED: Final = Denial(403, "Key not authorized")
UNEXPECTED_METHOD: Final = Denial(403, "Key not authorized: Unexpected signing method")
JWKS_UNAVAILABLE: Final = Denial(503, "The identity provider's signing keys (JWKS) could not be fetched; try again shortly")
REVOKED: Final = Denial(401, "Key not authorized: token has been revoked")
_TIME_DENIALS: Final = {r: Denial(401, "Key not authorized: " + r)
                        for r in (TOKEN_EXPIRED, USED_BEFORE_ISSUED, NOT_VALID_YET, TIME_OUT_OF_RANGE)}

MAX_CACHED_TOKENS: Final = 10_000  # per API
NO_EXP_CACHE_SECONDS: Final = 300.0
MAX_SECRETS: Final = 1_000
MAX_MEMO: Final = 10_000  # identities and session decisions remembered per API


def compile_jwt_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The JWT stage for ``spec``, or nothing when the API does not use JWT."""
    cfg = jwt_config(spec)
    if cfg is None:
        return ()
    return (JwtAuth(spec, cfg, services).check,)


class _Verified:
    """A token whose signature was verified, with everything later requests need from it."""

    __slots__ = (
        "jws", "jwk", "secret", "until", "fresh_from", "fresh_to", "extra", "identity", "identity_error",
        "session_token", "storage_id", "base_policy", "client_key", "scopes", "client_id", "ctx", "decision_key",
    )

    def __init__(self, jws: Jws, jwk: JwkKey | None, secret: str | None) -> None:
        self.jws = jws
        self.jwk = jwk
        self.secret = secret
        self.until = 0.0
        self.fresh_from = math.inf
        self.fresh_to = -math.inf
        self.extra: Denial | None = None
        self.identity = ""
        self.identity_error = ""
        self.session_token = ""
        self.storage_id = ""
        self.base_policy = ""
        self.client_key = ""
        self.scopes: list[str] | None = None
        self.client_id = ""
        self.ctx: dict[str, Any] | None = None
        self.decision_key: tuple[Any, ...] = ()  # what the session decision depends on besides the session


class JwtAuth:
    """The JWT stage of one API."""

    def __init__(self, spec: ApiSpec, cfg: JwtConfig, services: "Services") -> None:
        self.spec = spec
        self.cfg = cfg
        self.extract = compile_extractor(cfg.source)
        self.sessions = services.sessions
        self.base = spec.base_identity
        self.kind = cfg.key_source.kind
        self.revocations = services.jwt_revocations
        self.hash_algo = services.config.hash_key_function
        self.hash_keys = services.config.hash_keys
        self.cache: OrderedDict[str, _Verified] = OrderedDict()
        self._secret_keys: dict[str, Any] = {}
        # identity -> (virtual session token, storage id): a generate_token and a hash saved per new token
        self._virtual: dict[str, tuple[str, str]] = {}
        # (stored session, what the token says) -> Decision: tokens of one identity that say the same
        # thing (a new token per request, same exp and policy) share one decision per session version
        self._decisions: dict[tuple[Any, ...], tuple[Any, Decision]] = {}
        self.jwks = services.jwks if self.kind == "jwks" else None
        self.urls = tuple(url for url, _ in cfg.key_source.jwks)
        if self.jwks is not None:
            self.jwks.register(spec.api_id, cfg.key_source.jwks, self.cache.clear)
        if self.kind == "static" and cfg.key_source.key is None:
            log.warning("API %r: every JWT will be refused: %s", spec.api_id, cfg.key_source.problem)

    # ---- the stage ---------------------------------------------------------------------------

    def check(self, req: Request) -> StageResult:
        """Verify the request's JWT and put its session on ``req``."""
        token = self.extract(req)
        if not token:
            return MISSING
        now = time.time()
        entry = self.cache.get(token)
        if entry is not None:
            jwk = entry.jwk
            if entry.until > now and (jwk is None or self._still_served(jwk)):
                self.cache.move_to_end(token)
                return self._use(req, entry, now)
            del self.cache[token]
        verified = self._verify(token, now)
        if isinstance(verified, _Verified):
            return self._use(req, verified, now)
        if isinstance(verified, Denial):
            return verified
        return self._verify_then_use(req, verified, now)

    def _still_served(self, jwk: JwkKey) -> bool:
        keys = self.jwks.current(jwk.url) if self.jwks is not None else None
        return keys is not None and keys.holds(jwk)

    # ---- verification (a cache miss) -----------------------------------------------------------

    def _verify(self, token: str, now: float) -> _Verified | Denial | Awaitable[_Verified | Denial]:
        jws = parse(token)
        if isinstance(jws, str):
            log.debug("API %r: malformed JWT: %s", self.spec.api_id, jws)
            return NOT_AUTHORIZED
        family = ALG_FAMILY.get(jws.alg)
        if family is None:
            return NOT_AUTHORIZED
        if family != self.cfg.family:
            return UNEXPECTED_METHOD
        if self.kind == "static":
            key = self.cfg.key_source.key
            if key is None or not verify(jws, key):
                return NOT_AUTHORIZED
            return self._remember(token, jws, now)
        if self.kind == "jwks":
            if jws.kid is None:
                return NOT_AUTHORIZED
            keys = self._jwk_candidates(jws)
            if not keys:
                return self._fetch_and_verify(token, jws, now)
            return self._verify_with_jwks(token, jws, keys, now)
        identity, error = subject_of(jws.header, jws.claims, self.cfg)
        if error:
            return NOT_AUTHORIZED
        found = self.sessions.cached(identity, self.spec)
        if found is None:
            return self._lookup_and_verify(token, jws, identity, now)
        return self._verify_with_session(token, jws, identity, found or None, now)

    def _jwk_candidates(self, jws: Jws) -> list[JwkKey]:
        assert self.jwks is not None and jws.kid is not None
        found: list[JwkKey] = []
        for url in self.urls:
            keys = self.jwks.current(url)
            if keys is not None:
                found.extend(keys.find(jws.kid, jws.alg, self.cfg.family))
        return found

    def _verify_with_jwks(self, token: str, jws: Jws, keys: list[JwkKey], now: float) -> _Verified | Denial:
        for jwk in keys:
            if verify(jws, jwk.key):
                return self._remember(token, jws, now, jwk=jwk)
        return NOT_AUTHORIZED

    async def _fetch_and_verify(self, token: str, jws: Jws, now: float) -> _Verified | Denial:
        manager = self.jwks
        assert manager is not None
        first = [manager.fetch(u) for u in self.urls if manager.current(u) is None and manager.may_fetch(u)]
        for pending in first:
            await pending
        if all(manager.current(u) is None for u in self.urls):
            return JWKS_UNAVAILABLE
        keys = self._jwk_candidates(jws)
        if not keys:  # an unknown kid: one refetch per cooldown, shared by every request
            again = [manager.fetch(u) for u in self.urls if manager.may_fetch(u)]
            for pending in again:
                await pending
            keys = self._jwk_candidates(jws)
        return self._verify_with_jwks(token, jws, keys, now)

    async def _lookup_and_verify(self, token: str, jws: Jws, identity: str, now: float) -> _Verified | Denial:
        found = await self.sessions.lookup(identity, self.spec)
        return self._verify_with_session(token, jws, identity, found, now)

    def _verify_with_session(self, token: str, jws: Jws, identity: str, found: Any, now: float) -> _Verified | Denial:
        if not found:
            return NOT_AUTHORIZED
        secret = found[1].jwt_data.secret
        key = self._secret_key(secret)
        if key is None or not verify(jws, key):
            return NOT_AUTHORIZED
        entry = self._remember(token, jws, now, secret=secret)
        entry.identity = identity
        return entry

    def _secret_key(self, secret: str) -> Any:
        """A one-to-one key's ``jwt_data.secret`` as a verification key (parsed once)."""
        if secret in self._secret_keys:
            return self._secret_keys[secret]
        key = key_from_material(self.cfg.family, secret.encode()) if secret else None
        if len(self._secret_keys) >= MAX_SECRETS:
            self._secret_keys.clear()
        self._secret_keys[secret] = key
        return key

    def _remember(self, token: str, jws: Jws, now: float, *, jwk: JwkKey | None = None, secret: str | None = None) -> _Verified:
        cfg = self.cfg
        entry = _Verified(jws, jwk, secret)
        claims = jws.claims
        entry.fresh_from, entry.fresh_to = fresh_window(claims, cfg)
        entry.until = entry.fresh_to if entry.fresh_to != math.inf else now + NO_EXP_CACHE_SECONDS
        if cfg.is_oas:
            reason = check_extra_claims(claims, jws.header, cfg)
            entry.extra = Denial(401, "Key not authorized: " + reason) if reason else None
        if cfg.centralised:
            entry.identity, entry.identity_error = identity_of(claims, cfg)
            if not entry.identity_error:
                entry.session_token, entry.storage_id = self._virtual_ids(entry.identity)
            if cfg.policy_fields:
                entry.base_policy = next((p for p in map(lambda f: claim_string(claims, f), cfg.policy_fields) if p), "")
            elif cfg.client_base_field:
                value = claims.get(cfg.client_base_field)
                entry.client_key = value if isinstance(value, str) else ""
            if cfg.scope_to_policy:
                entry.scopes = scopes_in(claims, scope_claim_name(claims, cfg))
            entry.client_id = oauth_client_id(claims, cfg)
            exp = claims.get("exp")
            entry.decision_key = (
                entry.session_token, tuple(entry.scopes) if entry.scopes is not None else None,
                exp if type(exp) in (int, float) else None, entry.client_id,
            )
        if cfg.context_vars:
            entry.ctx = {**{"jwt_claims_" + k: v for k, v in jws.header.items()},
                         **{"jwt_claims_" + k: v for k, v in claims.items()}, "token": token}
        if entry.until > now:
            self.cache[token] = entry
            if len(self.cache) > MAX_CACHED_TOKENS:
                self.cache.popitem(last=False)
        return entry

    def _virtual_ids(self, identity: str) -> tuple[str, str]:
        found = self._virtual.get(identity)
        if found is None:
            token = virtual_session_token(self.spec.org_id, identity, self.hash_algo)
            found = (token, storage_key_id(token, self.hash_keys))
            if len(self._virtual) >= MAX_MEMO:
                self._virtual.clear()
            self._virtual[identity] = found
        return found

    async def _verify_then_use(self, req: Request, pending: Awaitable[_Verified | Denial], now: float) -> Denial | None:
        verified = await pending
        if isinstance(verified, Denial):
            return verified
        return await _settle(self._use(req, verified, now))

    # ---- using a verified token ---------------------------------------------------------------

    def _use(self, req: Request, entry: _Verified, now: float) -> StageResult:
        if self.kind == "session":
            found = self.sessions.cached(entry.identity, self.spec)
            if found is None:
                return self._one_to_one_after_lookup(req, entry, now)
            return self._one_to_one(req, entry, found, now)
        denial = self._claims_denial(entry, now)
        if denial is not None:
            return denial
        if entry.identity_error:
            return Denial(403, entry.identity_error)
        base_policy = entry.base_policy
        if entry.client_key:
            client = self.sessions.cached(entry.client_key, self.spec)
            if client is None:
                return self._centralised_after_lookups(req, entry, now)
            base_policy = _first_policy(client)
        existing = self.sessions.cached(entry.session_token, self.spec)
        if existing is None:
            return self._centralised_after_lookups(req, entry, now)
        return self._decided(req, entry, base_policy, existing or None, now)

    def _claims_denial(self, entry: _Verified, now: float) -> Denial | None:
        claims = entry.jws.claims
        if not (entry.fresh_from <= now < entry.fresh_to):
            reason = check_times(claims, int(now), self.cfg)
            if reason is not None:
                return _TIME_DENIALS[reason]
        if entry.extra is not None:
            return entry.extra
        revoked = self.revocations
        if (revoked.jti or revoked.sub) and revoked.refused(claims.get("jti"), claims.get("sub"), claims.get("iat"), now):
            return REVOKED
        return None

    async def _one_to_one_after_lookup(self, req: Request, entry: _Verified, now: float) -> Denial | None:
        return self._one_to_one(req, entry, await self.sessions.lookup(entry.identity, self.spec), now)

    def _one_to_one(self, req: Request, entry: _Verified, found: Any, now: float) -> Denial | None:
        if not found:
            return NOT_AUTHORIZED
        storage_id, session = found
        secret = session.jwt_data.secret
        if secret != entry.secret:  # the key was given a new secret since this token was verified
            key = self._secret_key(secret)
            if key is None or not verify(entry.jws, key):
                return NOT_AUTHORIZED
            entry.secret = secret
        denial = self._claims_denial(entry, now)
        if denial is not None:
            return denial
        if entry.ctx is not None:
            _set_ctx(req, entry.ctx)
        offer_session(req, self.base, "jwt_claim", storage_id, session)
        return None

    async def _centralised_after_lookups(self, req: Request, entry: _Verified, now: float) -> Denial | None:
        sessions = self.sessions
        base_policy = entry.base_policy
        if entry.client_key:
            client = sessions.cached(entry.client_key, self.spec)
            if client is None:
                client = await sessions.lookup(entry.client_key, self.spec)
            base_policy = _first_policy(client)
        existing = sessions.cached(entry.session_token, self.spec)
        if existing is None:
            existing = await sessions.lookup(entry.session_token, self.spec)
        return await _settle(self._decided(req, entry, base_policy, existing or None, now))

    def _decided(self, req: Request, entry: _Verified, base_policy: str, existing: Any, now: float) -> StageResult:
        stored = existing[1] if existing is not None else None
        key = (id(stored), base_policy, entry.decision_key)
        hit = self._decisions.get(key) if stored is not None else None
        if hit is not None and hit[0] is stored:  # identity: an id may be reused once freed
            decision = hit[1]
        else:
            found = decide(
                stored,
                cfg=self.cfg,
                policies=self.sessions.policies,
                org_id=self.spec.org_id,
                session_token=entry.session_token,
                identity=entry.identity,
                base_policy=base_policy,
                scopes=entry.scopes,
                exp=entry.jws.claims.get("exp"),
                client_id=entry.client_id,
                now=int(now),
            )
            if isinstance(found, str):
                return Denial(403, found)
            decision = found
            if stored is not None and not decision.store:
                if len(self._decisions) >= MAX_MEMO:
                    self._decisions.clear()
                self._decisions[key] = (stored, decision)
        storage_id = existing[0] if existing is not None else entry.storage_id
        if decision.store:
            return self._store(req, entry, storage_id, decision.session, now)
        if entry.ctx is not None:
            _set_ctx(req, entry.ctx)
        offer_session(req, self.base, "jwt_claim", storage_id, decision.session)
        return None

    async def _store(self, req: Request, entry: _Verified, storage_id: str, session: Any, now: float) -> None:
        ttl = session.lifetime(self.cfg.session_lifetime, now=now)
        await self.sessions.put(storage_id, session, ttl if ttl > 0 else None)
        if entry.ctx is not None:
            _set_ctx(req, entry.ctx)
        offer_session(req, self.base, "jwt_claim", storage_id, session)
        return None


def _first_policy(found: Any) -> str:
    if not found:
        return ""
    ids = found[1].policy_ids()
    return ids[0] if ids else ""


def _set_ctx(req: Request, values: dict[str, Any]) -> None:
    if req.ctx is None:
        req.ctx = {}
    req.ctx.update(values)


async def _settle(result: StageResult) -> Denial | None:
    if result is None or isinstance(result, Denial):
        return result
    return await result
