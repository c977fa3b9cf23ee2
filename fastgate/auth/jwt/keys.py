"""Verification keys from JWKS URLs for the methods that verify tokens of an identity provider
(external OAuth's JWT path, OpenID Connect): ``JwksKeys`` finds the keys for a token's ``kid``
and ``alg`` in the sets ``JwksManager`` keeps, fetching when none was ever fetched and refetching
once (throttled by the manager) when the ``kid`` is unknown, as the JWT method does.
"""

from __future__ import annotations

import math
from typing import Any

from fastgate.auth.jwt.claims import times_in_range
from fastgate.auth.jwt.config import JwtConfig
from fastgate.auth.jwt.jose import Jws, verify
from fastgate.auth.jwt.jwks import JwkKey, JwksManager

__all__ = ["JwksKeys", "fresh_window"]


def fresh_window(claims: dict[str, Any], cfg: JwtConfig) -> tuple[float, float]:
    """[from, to) in Unix time where ``check_times(claims, now, cfg)`` surely passes (empty when
    it may not), so a cached token's time claims cost one comparison per request."""
    start, end = -math.inf, math.inf
    if not times_in_range(claims):
        return math.inf, -math.inf
    for name, skew in (("iat", cfg.iat_skew), ("nbf", cfg.nbf_skew), ("exp", cfg.exp_skew)):
        if name not in claims:
            continue
        value = claims[name]
        if type(value) not in (int, float) or not math.isfinite(value):
            return math.inf, -math.inf
        seconds = int(value)
        if seconds == 0:
            continue
        if name == "exp":
            end = float(seconds + skew)
        else:
            start = max(start, float(seconds - skew))
    return start, end


class JwksKeys:
    """The keys of some JWKS URLs, for tokens of one signing ``family``."""

    __slots__ = ("manager", "urls", "family")

    def __init__(self, manager: JwksManager, urls: tuple[str, ...], family: str) -> None:
        self.manager = manager
        self.urls = urls
        self.family = family

    def candidates(self, jws: Jws) -> list[JwkKey]:
        """Keys already held for ``jws``'s kid and alg (the token's alg must fit ``family``)."""
        found: list[JwkKey] = []
        kid = jws.kid
        if kid is None:
            return found
        for url in self.urls:
            keys = self.manager.current(url)
            if keys is not None:
                found.extend(keys.find(kid, jws.alg, self.family))
        return found

    def ever_fetched(self) -> bool:
        return any(self.manager.current(u) is not None for u in self.urls)

    async def fetch_candidates(self, jws: Jws) -> list[JwkKey] | None:
        """After fetching what is missing (or refetching for an unknown kid): the keys for
        ``jws``, or None when no set of these URLs could ever be fetched."""
        manager = self.manager
        for url in self.urls:
            if manager.current(url) is None and manager.may_fetch(url):
                await manager.fetch(url)
        if not self.ever_fetched():
            return None
        keys = self.candidates(jws)
        if not keys:
            for url in self.urls:
                if manager.may_fetch(url):
                    await manager.fetch(url)
            keys = self.candidates(jws)
        return keys

    def still_served(self, jwk: JwkKey) -> bool:
        """True while ``jwk`` is in the current set of its URL (a rotated-out key stops working)."""
        keys = self.manager.current(jwk.url)
        return keys is not None and keys.holds(jwk)

    @staticmethod
    def verified_by(jws: Jws, keys: list[JwkKey]) -> JwkKey | None:
        """The first of ``keys`` whose signature check passes, or None."""
        for jwk in keys:
            if verify(jws, jwk.key):
                return jwk
        return None
