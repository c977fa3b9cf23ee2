"""OpenID Connect issuers: discovery documents fetched early, refreshed, last good kept.

One ``OidcIssuers`` per gateway process knows the issuers the loaded APIs configure and, for
each, the ``jwks_uri`` its discovery document (``<issuer>/.well-known/openid-configuration``)
names; the key sets themselves live in the process's ``JwksManager`` (fetched, refreshed and kept
like every JWKS). Its rules:

* only configured issuers are ever contacted: the ``iss`` of a token is matched against the API's
  providers before anything is fetched, and ``discover`` refuses an issuer no API registered, so
  a token cannot make the gateway fetch from a host of its choosing (SSRF);
* every issuer is discovered, and its JWKS fetched, before the listener opens (``start_oidc``);
  an issuer a reload brings is discovered at once in the background;
* a document is used only when its ``issuer`` is exactly the configured one (OpenID Connect
  Discovery 1.0 §4.3) and its ``jwks_uri`` is an http(s) URL;
* documents are refetched every ``refresh`` seconds; a failure keeps the last good ``jwks_uri``
  and is retried after ``cooldown``, which also throttles discovery asked by requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, Final, Iterable

import orjson

from fastgate.apidef.loader import load_api_dir
from fastgate.auth.idp_http import IdpError, idp_request
from fastgate.auth.jwt.jwks import JwksManager, Refresher
from fastgate.config import Config

__all__ = ["DISCOVERY_PATH", "OidcIssuers", "discovery_url", "start_oidc"]

log = logging.getLogger("fastgate.oidc")

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
MAX_DISCOVERY_BYTES: Final = 256 * 1024

Fetcher = Callable[[str], Awaitable[bytes]]


def discovery_url(issuer: str) -> str:
    """Where ``issuer``'s discovery document is (OpenID Connect Discovery 1.0 §4)."""
    return issuer.rstrip("/") + DISCOVERY_PATH


class OidcIssuers(Refresher):
    """The configured issuers and the ``jwks_uri`` each one's discovery document names."""

    def __init__(self, jwks: JwksManager, *, refresh: float = 240.0, cooldown: float = 10.0,
                 timeout: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.jwks = jwks
        self.refresh = refresh
        self.cooldown = cooldown
        self.timeout = timeout
        self._clock = clock
        self.configured: set[str] = set()
        self.jwks_uris: dict[str, str] = {}
        self._fetched_at: dict[str, float] = {}
        self._attempted: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    def register(self, issuers: Iterable[str]) -> None:
        """Record issuers an API configures (discovered now in the background when unknown)."""
        for issuer in issuers:
            self.configured.add(issuer)
            uri = self.jwks_uris.get(issuer)
            if uri is not None:
                self._register_jwks(issuer, uri)
            elif _loop_running() and issuer not in self._inflight:
                self.discover(issuer)

    def forget(self) -> None:
        """Drop every configured issuer (before a reload registers those still configured)."""
        self.configured.clear()

    def jwks_uri(self, issuer: str) -> str | None:
        """The last good ``jwks_uri`` of a configured ``issuer``, or None."""
        return self.jwks_uris.get(issuer) if issuer in self.configured else None

    def may_discover(self, issuer: str) -> bool:
        if issuer in self._inflight:
            return True
        last = self._attempted.get(issuer)
        return last is None or self._clock() - last >= self.cooldown

    def discover(self, issuer: str) -> Awaitable[str | None]:
        """Fetch ``issuer``'s discovery document now (or join the fetch in flight); resolves to
        the (last good) ``jwks_uri``. An issuer no API configures is never contacted."""
        loop = asyncio.get_running_loop()
        if issuer not in self.configured:
            done: asyncio.Future[str | None] = loop.create_future()
            done.set_result(None)
            return done
        pending = self._inflight.get(issuer)
        if pending is None:
            pending = loop.create_future()
            self._inflight[issuer] = pending
            self._attempted[issuer] = self._clock()
            loop.create_task(self._run(issuer, pending))
        return asyncio.shield(pending)

    async def prefetch(self) -> None:
        """Discover every configured issuer and fetch its JWKS; wait for all (start-up)."""
        await asyncio.gather(*(self.discover(i) for i in list(self.configured)))
        uris = {u for i, u in self.jwks_uris.items() if i in self.configured}
        await self.jwks.prefetch(uris)

    def refresh_period(self) -> float:
        return min(1.0, max(0.05, self.cooldown / 4))

    def refresh_due(self, now: float) -> None:
        for issuer in list(self.configured):
            fetched = self._fetched_at.get(issuer)
            due = fetched is None or now - fetched >= self.refresh
            if due and issuer not in self._inflight and self.may_discover(issuer):
                self.discover(issuer)

    async def _run(self, issuer: str, done: asyncio.Future[str | None]) -> None:
        try:
            uri = await self._fetch(issuer)
            self.jwks_uris[issuer] = uri
            self._fetched_at[issuer] = self._clock()
            self._register_jwks(issuer, uri)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the IdP's failure keeps the last good document
            kept = "keeping the last good document" if issuer in self.jwks_uris else "no keys yet"
            log.warning("OIDC issuer %s: discovery failed (%s): %s", issuer, kept, exc or type(exc).__name__)
        finally:
            self._inflight.pop(issuer, None)
            if not done.done():
                done.set_result(self.jwks_uris.get(issuer))

    async def _fetch(self, issuer: str) -> str:
        response = await idp_request(discovery_url(issuer), connect_timeout=min(2.0, self.timeout),
                                     read_timeout=self.timeout, max_bytes=MAX_DISCOVERY_BYTES)
        if response.status != 200:
            raise IdpError(f"the discovery document answered {response.status}")
        try:
            doc = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise IdpError("the discovery document is not JSON") from None
        if not isinstance(doc, dict):
            raise IdpError("the discovery document is not a JSON object")
        if doc.get("issuer") != issuer:
            raise IdpError(f"the discovery document names another issuer: {doc.get('issuer')!r}")
        uri = doc.get("jwks_uri")
        if not isinstance(uri, str) or not uri.lower().startswith(("http://", "https://")):
            raise IdpError('the discovery document has no http(s) "jwks_uri"')
        return uri

    def _register_jwks(self, issuer: str, uri: str) -> None:
        self.jwks.register("oidc:" + issuer, ((uri, None),), _nothing)


def _nothing() -> None:
    return None


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False  # compiled outside the event loop (`fastgate check`, tests): fetched on use
    return True


async def start_oidc(issuers: OidcIssuers, config: Config) -> None:
    """Discover every issuer the API definitions about to be loaded configure, fetch their JWKS
    (before the listener opens), then keep refreshing."""
    for spec in load_api_dir(config.resolve(config.app_path)).apis:
        if spec.oidc is not None:
            issuers.register(p.issuer for p in spec.oidc.providers)
    if issuers.configured:
        await issuers.prefetch()
        ready = sum(1 for i in issuers.configured if i in issuers.jwks_uris)
        log.info("OIDC: %d of %d issuers discovered before listening", ready, len(issuers.configured))
    issuers.start()
