"""Verification keys from JWKS URLs for the methods that verify tokens of an identity provider
(external OAuth's JWT path, OpenID Connect): ``JwksKeys`` finds the keys for a token's ``kid``
and ``alg`` in the sets ``JwksManager`` keeps, fetching when none was ever fetched and refetching
once (throttled by the manager) when the ``kid`` is unknown, as the JWT method does.
"""

from __future__ import annotations

from fastgate.auth.jwt.jose import Jws, verify
from fastgate.auth.jwt.jwks import JwkKey, JwksManager

__all__ = ["JwksKeys"]


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
