"""OpenID Connect (Tyk's OpenIDMW): ID tokens of configured issuers, a session per user.

An ID token (``Authorization: Bearer <token>``) is accepted when its ``iss`` is exactly a
configured issuer, one of its ``aud`` values is a client id that issuer maps to a policy (the
first match), it is signed with an asymmetric algorithm by a key of the issuer's JWKS (found by
discovery: ``fastgate.auth.oidc_issuers``), and it has not expired. Anything else is Tyk's 401
"Key not authorised"; an ``iss`` that is not configured is refused before anything is fetched.

The session, as in Tyk: the key ``generate_token(org, md5hex(sub))`` (``segregate_by_client``:
``md5hex(client id) + md5hex(sub)``), built from the client's policy when new (missing → 403
"Key not authorized: no matching policy"), with ``meta_data`` ``TykJWTSessionID`` and
``ClientID`` and alias ``<client id>:<sub>``, and persisted; with a scope mapping the policies
come from the scope claim too. The JWT method's centralised-session rules decide (policy switch,
``expires`` raised to ``exp``), so the two methods cannot drift.

Beyond Tyk: no key set of the issuer could ever be fetched → 503, not 401; JWT revocation by
``jti``/``sub`` applies; verified tokens are cached by their exact text until ``exp``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

from fastgate.apidef.auth_settings import JwtKeySettings, OidcProvider, OidcSettings
from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.auth.jwt.claims import check_times, scope_claim_name, scopes_in
from fastgate.auth.jwt.config import JwtConfig, KeySource
from fastgate.auth.jwt.jose import ALG_FAMILY, Jws, parse
from fastgate.auth.jwt.jwks import JwkKey
from fastgate.auth.jwt.keys import JwksKeys, fresh_window
from fastgate.auth.jwt.session import Decision, decide
from fastgate.auth.sources import compile_extractor
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage, StageResult
from fastgate.sessions.cache import MISS
from fastgate.sessions.key_ids import generate_token, storage_key_id
from fastgate.sessions.policy_apply import PolicyError
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["OpenIdConnect", "compile_oidc_auth", "oidc_session_token"]

NOT_AUTHORISED: Final = Denial(401, "Key not authorised")
NO_MATCHING_POLICY: Final = Denial(403, "Key not authorized: no matching policy")
KEYS_UNAVAILABLE: Final = Denial(503, "The identity provider's signing keys could not be fetched; try again shortly")
REVOKED: Final = Denial(401, "Key not authorized: token has been revoked")
ID_TOKEN_FAMILIES: Final = ("rsa", "ecdsa", "eddsa")  # keys of a JWKS; never a shared secret
MAX_CACHED_TOKENS: Final = 10_000


def compile_oidc_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The OpenID Connect stage for ``spec``, or nothing when the API does not use it."""
    settings = spec.oidc
    if settings is None:
        return ()
    return (OpenIdConnect(spec, settings, services).check,)


def oidc_session_token(org_id: str, client_id: str, user: str, segregate: bool, hash_algo: str) -> str:
    """Tyk's OIDC session id: ``generate_token(org, md5hex(user))``, the client's md5 first when
    sessions are segregated by client."""
    data = hashlib.md5(user.encode()).hexdigest()
    if segregate:
        data = hashlib.md5(client_id.encode()).hexdigest() + data
    return generate_token(org_id, data, hash_algo)


class _Verified:
    __slots__ = ("jws", "jwk", "until", "fresh_from", "client_id", "policy", "session_token", "storage_id", "scopes",
                 "decided", "ctx")

    def __init__(self, jws: Jws, jwk: JwkKey, until: float, client_id: str, policy: str) -> None:
        self.jws = jws
        self.jwk = jwk
        self.until = until
        self.fresh_from = math.inf  # with ``until``: where the time claims surely pass
        self.client_id = client_id
        self.policy = policy
        self.session_token = ""
        self.storage_id = ""
        self.scopes: list[str] | None = None
        self.decided: tuple[Any, Decision] | None = None  # (stored session, decision) reused while it is the same
        self.ctx: dict[str, Any] | None = None  # jwt_claims_* context variables, when the API wants them


class OpenIdConnect:
    """The OpenID Connect stage of one API."""

    def __init__(self, spec: ApiSpec, settings: OidcSettings, services: "Services") -> None:
        self.spec = spec
        self.settings = settings
        self.extract = compile_extractor(settings.source)
        self.sessions = services.sessions
        self.revocations = services.jwt_revocations
        self.issuers = services.oidc_issuers
        self.jwks = services.jwks
        self.hash_algo = services.config.hash_key_function
        self.hash_keys = services.config.hash_keys
        self.base = spec.base_identity
        self.providers: dict[str, OidcProvider] = {}
        for provider in settings.providers:
            self.providers.setdefault(provider.issuer, provider)
        self.issuers.register(self.providers)
        self.cfg = JwtConfig(
            source=settings.source, family="rsa", keys=JwtKeySettings("jwks"), scope_claims=settings.scope_claims,
            scope_to_policy=settings.scope_to_policy, key_source=KeySource("jwks"),
        )
        self.verified: OrderedDict[str, _Verified] = OrderedDict()
        self._keys: dict[tuple[str, str], JwksKeys] = {}

    def check(self, req: Request) -> StageResult:
        """Verify the request's ID token and put its session on ``req``."""
        token = self.extract(req)
        if not token:
            return NOT_AUTHORISED
        now = time.time()
        entry = self.verified.get(token)
        if entry is not None:
            keys = self.jwks.current(entry.jwk.url)
            if entry.until > now and keys is not None and keys.holds(entry.jwk):
                self.verified.move_to_end(token)
                return self._use(req, entry, now)
            del self.verified[token]
        jws = parse(token)
        if isinstance(jws, str) or jws.kid is None:
            return NOT_AUTHORISED
        family = ALG_FAMILY.get(jws.alg)
        if family not in ID_TOKEN_FAMILIES:
            return NOT_AUTHORISED
        claims = jws.claims
        issuer = claims.get("iss")
        provider = self.providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            return NOT_AUTHORISED  # never fetched: only configured issuers are contacted
        chosen = _client_of(claims.get("aud"), provider)
        if chosen is None:
            return NOT_AUTHORISED
        keys = self._keys_of(provider.issuer, family)
        candidates = keys.candidates(jws) if keys is not None else []
        if not candidates:
            return self._fetch_then_verify(req, token, jws, family, chosen, now)
        return self._verified(req, token, jws, candidates, chosen, now)

    def _keys_of(self, issuer: str, family: str) -> JwksKeys | None:
        uri = self.issuers.jwks_uri(issuer)
        if uri is None:
            return None
        keys = self._keys.get((uri, family))
        if keys is None:
            keys = self._keys[(uri, family)] = JwksKeys(self.jwks, (uri,), family)
        return keys

    async def _fetch_then_verify(self, req: Request, token: str, jws: Jws, family: str,
                                 chosen: tuple[str, str], now: float) -> Denial | None:
        issuer = jws.claims["iss"]
        if self.issuers.jwks_uri(issuer) is None and self.issuers.may_discover(issuer):
            await self.issuers.discover(issuer)
        keys = self._keys_of(issuer, family)
        candidates = await keys.fetch_candidates(jws) if keys is not None else None
        if candidates is None:
            return KEYS_UNAVAILABLE
        return await _settle(self._verified(req, token, jws, candidates, chosen, now))

    def _verified(self, req: Request, token: str, jws: Jws, candidates: list[JwkKey],
                  chosen: tuple[str, str], now: float) -> StageResult:
        jwk = JwksKeys.verified_by(jws, candidates)
        if jwk is None:
            return NOT_AUTHORISED
        claims = jws.claims
        exp, sub = claims.get("exp"), claims.get("sub")
        if type(exp) not in (int, float) or not math.isfinite(exp) or check_times(claims, int(now), self.cfg):
            return NOT_AUTHORISED  # an ID token must carry exp (OpenID Connect Core §2)
        if not isinstance(sub, str) or not sub:
            return NOT_AUTHORISED
        entry = _Verified(jws, jwk, float(exp), chosen[0], chosen[1])
        entry.fresh_from, entry.until = fresh_window(claims, self.cfg)
        entry.session_token = oidc_session_token(self.spec.org_id, entry.client_id, sub,
                                                 self.settings.segregate_by_client, self.hash_algo)
        entry.storage_id = storage_key_id(entry.session_token, self.hash_keys)
        if self.cfg.scope_to_policy:
            entry.scopes = scopes_in(claims, scope_claim_name(claims, self.cfg))
        if self.settings.context_vars:
            entry.ctx = {**{"jwt_claims_" + k: v for k, v in jws.header.items()},
                         **{"jwt_claims_" + k: v for k, v in claims.items()}, "token": token}
        self.verified[token] = entry
        if len(self.verified) > MAX_CACHED_TOKENS:
            self.verified.popitem(last=False)
        return self._use(req, entry, now)

    # ---- the session -------------------------------------------------------------------------

    def _use(self, req: Request, entry: _Verified, now: float) -> StageResult:
        claims = entry.jws.claims
        if not entry.fresh_from <= now < entry.until and check_times(claims, int(now), self.cfg) is not None:
            return NOT_AUTHORISED
        revoked = self.revocations
        if (revoked.jti or revoked.sub) and revoked.refused(claims.get("jti"), claims.get("sub"), claims.get("iat"), now):
            return REVOKED
        if not entry.policy and not self.cfg.scope_to_policy:
            return NOT_AUTHORISED  # Tyk: no policy for the client and no scope mapping
        stored = self.sessions.cache.peek(entry.storage_id)
        if stored is MISS:
            return self._after_lookup(req, entry, now)
        return self._decided(req, entry, stored, now)

    async def _after_lookup(self, req: Request, entry: _Verified, now: float) -> Denial | None:
        stored = await self.sessions.cache.get(entry.storage_id)
        return await _settle(self._decided(req, entry, stored, now))

    def _decided(self, req: Request, entry: _Verified, stored: SessionState | None, now: float) -> StageResult:
        existing: SessionState | None = None
        if stored is not None:
            applied = self.sessions.apply(stored, self.spec)
            if isinstance(applied, PolicyError):
                return NO_MATCHING_POLICY
            existing = applied
        hit = entry.decided
        if hit is not None and existing is not None and hit[0] is existing:
            decision = hit[1]
        else:
            found = decide(
                existing, cfg=self.cfg, policies=self.sessions.policies, org_id=self.spec.org_id,
                session_token=entry.session_token, identity=entry.client_id + ":" + str(entry.jws.claims["sub"]),
                base_policy=entry.policy, scopes=entry.scopes, exp=entry.jws.claims.get("exp"),
                client_id=entry.client_id, now=int(now),
            )
            if isinstance(found, str):
                return Denial(403, "K" + found[1:])  # Tyk's OIDC texts start with a capital
            decision = found
            if existing is not None and not decision.store:
                entry.decided = (existing, decision)
        if decision.store:
            session = decision.session
            if existing is None:
                session.meta_data = {"TykJWTSessionID": entry.session_token, "ClientID": entry.client_id}
            return self._store(req, entry, session, now)
        _set_ctx(req, entry.ctx)
        offer_session(req, self.base, "oidc_user", entry.storage_id, decision.session)
        return None

    async def _store(self, req: Request, entry: _Verified, session: SessionState, now: float) -> None:
        ttl = session.lifetime(0, now=now)
        await self.sessions.put(entry.storage_id, session, ttl if ttl > 0 else None)
        _set_ctx(req, entry.ctx)
        offer_session(req, self.base, "oidc_user", entry.storage_id, session)


def _set_ctx(req: Request, values: dict[str, Any] | None) -> None:
    if values is None:
        return
    if req.ctx is None:
        req.ctx = {}
    req.ctx.update(values)


def _client_of(aud: Any, provider: OidcProvider) -> tuple[str, str] | None:
    """(client id, policy id) of the first audience the provider maps, or None."""
    audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    for audience in audiences:
        for client, policy in provider.clients:
            if audience == client:
                return client, policy
    return None


async def _settle(result: StageResult) -> Denial | None:
    if result is None or isinstance(result, Denial):
        return result
    return await result
