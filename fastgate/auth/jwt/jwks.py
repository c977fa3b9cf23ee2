"""JSON Web Key Sets from identity providers: fetched early, refreshed early, kept when the IdP is down.

One ``JwksManager`` per gateway process holds the key sets of every JWKS URL any API uses (APIs
sharing an IdP share one set and one fetch). Its rules, where Tyk's users hurt (issue #6378):

* every URL is fetched when the gateway starts, before it listens (``prefetch``), and when a
  reloaded API brings a new one;
* a set is refreshed in the background once it is ``0.8 × cache_timeout`` old, so requests never
  wait for a refresh; a failed refresh keeps the last good set and is retried after
  ``refetch_cooldown``;
* a token whose ``kid`` is not in the set triggers one refetch (single flight, at most once per
  ``refetch_cooldown`` per URL), so rotated keys work at once and made-up kids cannot make the
  gateway hammer the IdP;
* a URL that never produced a set answers None (the JWT stage then says 503, not 401/403);
* ``flush`` drops the sets of one API (or all) and fetches them again (``DELETE /tyk/cache/jwks``).

Fetches run ``urllib`` in the default executor (they are rare and may use TLS); responses over
``MAX_JWKS_BYTES`` or that are not a JWK set are failures. Parsed keys are reused across refreshes
when their JWK did not change, so tokens verified with them stay cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Final, Iterable

import orjson

from fastgate.auth.jwt.jose import key_from_jwk

__all__ = ["JwkKey", "JwksManager", "KeySet", "Refresher", "MAX_JWKS_BYTES", "parse_jwks"]

log = logging.getLogger("fastgate.jwks")

MAX_JWKS_BYTES: Final = 1 << 20
REFRESH_AT: Final = 0.8  # of the cache timeout
_FAMILY_OF_KTY: Final = {"RSA": "rsa", "EC": "ecdsa", "OKP": "eddsa", "oct": "hmac"}

Fetcher = Callable[[str, float], Awaitable[bytes]]


@dataclass(eq=False, slots=True)
class JwkKey:
    """One usable key of a set; compared by identity (a verified token remembers its key)."""

    url: str
    kid: str
    family: str
    alg: str | None
    key: Any


@dataclass(slots=True)
class KeySet:
    """The keys one URL served, by ``kid``."""

    by_kid: dict[str, tuple[JwkKey, ...]]
    fetched_at: float
    by_json: dict[bytes, JwkKey] = field(default_factory=dict)

    def find(self, kid: str, alg: str, family: str) -> list[JwkKey]:
        """Keys for a token's ``kid`` and ``alg`` (a JWK's own ``alg``, when set, must match)."""
        return [k for k in self.by_kid.get(kid, ()) if k.family == family and (k.alg is None or k.alg == alg)]

    def holds(self, key: JwkKey) -> bool:
        """True while ``key`` is still served under its kid."""
        return key in self.by_kid.get(key.kid, ())


def parse_jwks(url: str, body: bytes, now: float, previous: KeySet | None = None) -> KeySet:
    """A key set from a JWKS document; raises ValueError when it is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the JWKS is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError('the JWKS has no "keys" list')
    reuse = previous.by_json if previous is not None else {}
    by_kid: dict[str, list[JwkKey]] = {}
    by_json: dict[bytes, JwkKey] = {}
    for jwk in doc["keys"]:
        if not isinstance(jwk, dict):
            continue
        canonical = orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS)
        found = reuse.get(canonical)
        if found is None:
            family = _FAMILY_OF_KTY.get(str(jwk.get("kty")))
            key = key_from_jwk(jwk, family) if family else None
            if key is None:
                continue  # unknown type, encryption key, unusable material: not for us
            kid = jwk.get("kid")
            alg = jwk.get("alg")
            found = JwkKey(url, kid if isinstance(kid, str) else "", family or "", alg if isinstance(alg, str) else None, key)
        by_json[canonical] = found
        by_kid.setdefault(found.kid, []).append(found)
    return KeySet({kid: tuple(keys) for kid, keys in by_kid.items()}, now, by_json)


class Refresher:
    """A background task that looks every ``refresh_period`` seconds for what is due to be
    fetched again (``refresh_due``), started and stopped with the gateway. The key sets here and
    the OIDC discovery documents (``fastgate.auth.oidc_issuers``) share it."""

    _task: asyncio.Task[None] | None = None
    _clock: Callable[[], float]

    def start(self) -> None:
        """Start the background refresher (idempotent; needs a running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_period())
            self.refresh_due(self._clock())

    def refresh_period(self) -> float:
        """Seconds between two looks."""
        raise NotImplementedError

    def refresh_due(self, now: float) -> None:
        """Start the fetches that are due at ``now``."""
        raise NotImplementedError


class JwksManager(Refresher):
    """Key sets of every JWKS URL in use, their fetches and refreshes."""

    def __init__(
        self,
        *,
        cache_timeout: float = 240.0,
        refetch_cooldown: float = 10.0,
        fetch_timeout: float = 5.0,
        fetcher: Fetcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_timeout = cache_timeout
        self.refetch_cooldown = refetch_cooldown
        self.fetch_timeout = fetch_timeout
        self._fetcher = fetcher or _fetch_in_thread
        self._clock = clock
        self.sets: dict[str, KeySet] = {}
        self._ttl: dict[str, float] = {}
        self._apis: dict[str, tuple[str, ...]] = {}
        self._on_flush: dict[str, Callable[[], None]] = {}
        self._inflight: dict[str, asyncio.Future[KeySet | None]] = {}
        self._attempted: dict[str, float] = {}

    # ---- registration ----------------------------------------------------------------------------

    def register(self, api_id: str, uris: Iterable[tuple[str, float | None]], on_flush: Callable[[], None]) -> None:
        """Record that ``api_id`` verifies with these URLs (per-URL cache timeout or None)."""
        urls = []
        for url, ttl in uris:
            urls.append(url)
            self._ttl[url] = ttl or self._ttl.get(url) or self.cache_timeout
        self._apis[api_id] = tuple(urls)
        self._on_flush[api_id] = on_flush
        for url in urls:
            if url not in self.sets:
                self._fetch_soon(url)

    def forget_apis(self) -> None:
        """Drop every registration (before a reload re-registers the APIs still defined); the key
        sets stay, so an API that is still there keeps its keys without a fetch."""
        self._apis.clear()
        self._on_flush.clear()

    def urls(self) -> set[str]:
        """Every URL some API uses."""
        return {url for urls in self._apis.values() for url in urls}

    # ---- reading ---------------------------------------------------------------------------------

    def current(self, url: str) -> KeySet | None:
        """The last good set of ``url`` (stale sets are kept while refreshes fail), or None."""
        return self.sets.get(url)

    def may_fetch(self, url: str) -> bool:
        """True when a fetch is in flight or the cooldown since the last attempt has passed."""
        if url in self._inflight:
            return True
        last = self._attempted.get(url)
        return last is None or self._clock() - last >= self.refetch_cooldown

    def fetch(self, url: str) -> Awaitable[KeySet | None]:
        """Fetch ``url`` now, or join the fetch in flight; resolves to the (last good) set."""
        pending = self._inflight.get(url)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[url] = pending
            self._attempted[url] = self._clock()
            asyncio.get_running_loop().create_task(self._run_fetch(url, pending))
        return asyncio.shield(pending)

    async def prefetch(self, urls: Iterable[str]) -> None:
        """Fetch every URL at once and wait for all (start-up, before the listener opens)."""
        await asyncio.gather(*(self.fetch(url) for url in set(urls)))

    # ---- flushing and refreshing -----------------------------------------------------------------

    def flush(self, api_id: str | None = None) -> None:
        """Forget the sets of ``api_id``'s URLs (all when None) and fetch them again."""
        if api_id is None:
            api_ids = list(self._apis)
        else:  # "<api id>#<method>": another method of that API (external OAuth) registered too
            api_ids = [a for a in self._apis if a == api_id or a.startswith(api_id + "#")]
        for one in api_ids:
            for url in self._apis[one]:
                self.sets.pop(url, None)
                self._attempted.pop(url, None)
                self._fetch_soon(url)
            self._on_flush[one]()

    def refresh_period(self) -> float:
        return min(1.0, max(0.05, self.refetch_cooldown / 4))

    def refresh_due(self, now: float) -> None:
        for url in self.urls():
            found = self.sets.get(url)
            due = found is None or now - found.fetched_at >= REFRESH_AT * self._ttl.get(url, self.cache_timeout)
            if due and url not in self._inflight and self.may_fetch(url):
                self.fetch(url)

    def _fetch_soon(self, url: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # compiled outside the event loop (tests, `fastgate check`): fetched on use
        if url not in self._inflight:
            self.fetch(url)

    async def _run_fetch(self, url: str, done: asyncio.Future[KeySet | None]) -> None:
        try:
            body = await asyncio.wait_for(self._fetcher(url, self.fetch_timeout), self.fetch_timeout)
            keys = parse_jwks(url, body, self._clock(), self.sets.get(url))
            self.sets[url] = keys
            log.info("JWKS %s: %d keys", url, sum(len(k) for k in keys.by_kid.values()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the IdP keeps the last good set
            kept = "keeping the last good set" if url in self.sets else "no keys yet"
            log.warning("JWKS %s could not be fetched (%s): %s", url, kept, exc or type(exc).__name__)
        finally:
            self._inflight.pop(url, None)
            if not done.done():
                done.set_result(self.sets.get(url))


async def _fetch_in_thread(url: str, timeout: float) -> bytes:
    return await asyncio.get_running_loop().run_in_executor(None, _http_get, url, timeout)


def _http_get(url: str, timeout: float) -> bytes:
    # Lazy: urllib.request (with http.client and email) costs ~15-50 ms of start-up import and
    # only a gateway with JWKS URLs fetches; this runs in a worker thread, off the event loop.
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "fastgate-jwks"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked at load
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES} bytes")
    return bytes(body)
