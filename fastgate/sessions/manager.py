"""From a presented credential to the session the post-auth checks use.

Lookup follows Tyk's ``SessionDetail``: the credential as is when its org is the API's, otherwise
the org-prefixed form, the raw form and the fallback hash forms, all fetched in one round trip;
each candidate is hashed for storage when ``hash_keys`` is on. Policies are applied to the found
session for every request (so a policy change takes effect at once), through a ``PolicyApplier``
that remembers the result per stored session object.

Caching is ``SessionCache``'s (bounded, TTL'd, invalidated on every node by cluster events,
bypassed while its subscription is down, single-flight on misses). On top of it this module keeps
only a memo of which storage id a credential resolved to, which never goes stale (the id is a
pure function of the credential), so a known key is answered without awaiting anything, and the
answers of ``cached`` themselves, kept only while nothing they stand on can have changed (see
``cached``): every auth method that asks the same credential again gets them for a dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Final, Literal, Mapping

from fastgate.apidef.spec import ApiSpec
from fastgate.config import Config
from fastgate.sessions.key_ids import lookup_candidates, storage_key_id, too_short
from fastgate.sessions.policies import Policy
from fastgate.sessions.policy_apply import PolicyApplier, PolicyError
from fastgate.sessions.session import SessionState
from fastgate.sessions.cache import MISS, SessionCache
from fastgate.store.base import Store, StoreUnavailable

__all__ = ["SessionManager", "Found"]

log = logging.getLogger("fastgate.sessions")

Found = tuple[str, SessionState]  # (storage id, session with policies applied)

MAX_MEMO: Final = 100_000
MAX_ANSWERS: Final = 10_000


class SessionManager:
    """Session lookups for auth stages, and the one path every key write takes."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.cache = SessionCache(store)
        self.applier = PolicyApplier({})
        self._ids: OrderedDict[tuple[str, str], str] = OrderedDict()
        # credential -> (org id, answer, valid until, cache version, applier): see ``cached``.
        self._answers: dict[str, tuple[str, Found, float, int, PolicyApplier]] = {}
        self._starter: asyncio.Task[None] | None = None

    @property
    def policies(self) -> Mapping[str, Policy]:
        return self.applier.policies

    async def start(self) -> None:
        """Subscribe the cache to cluster events, retrying in the background while the store is down."""
        try:
            await self.cache.start()
        except StoreUnavailable:
            log.warning("session cache is bypassed until the store answers")
            self._starter = asyncio.get_running_loop().create_task(self._retry_start())

    async def _retry_start(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.cache.start()
                log.info("session cache subscribed to cluster events")
                return
            except StoreUnavailable:
                continue

    async def close(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
        await self.cache.close()

    # ---- policies ----------------------------------------------------------------------------

    def set_policies(self, policies: Mapping[str, Policy]) -> None:
        """Swap the policy set; sessions get the new policies on their next request."""
        self.applier = PolicyApplier(policies)

    def apply(self, session: SessionState, spec: ApiSpec | None = None) -> SessionState | PolicyError:
        """``session`` with its policies applied (for ``spec``'s organisation when given)."""
        org = spec.org_id if spec is not None and spec.org_id else None
        return self.applier.apply(session, org)

    # ---- lookups -----------------------------------------------------------------------------

    def cached(self, credential: str, spec: ApiSpec) -> Found | Literal[False] | None:
        """Without awaiting: ``Found``, ``False`` (known but unusable), or ``None`` when the store
        must be asked (``lookup``).

        A ``Found`` answer is remembered per credential while nothing it depends on can have
        changed: no invalidation anywhere (the cache's ``version``), the same policy set (the
        applier), the cached session not expired. So it is exactly as strict as the caches it
        stands on, and a repeated credential costs one dict lookup, not the id memo, the cache
        and the policy applier (≈ 5,000 instructions a request, ``bench/instr.py jwt``)."""
        org = spec.org_id
        cache = self.cache
        hit = self._answers.get(credential)
        if (hit is not None and hit[0] == org and hit[3] == cache.version and hit[4] is self.applier
                and cache.now() < hit[2]):
            return hit[1]
        version = cache.version
        storage_id = self._ids.get((credential, org))
        if storage_id is None:
            return None
        stored = cache.peek(storage_id)
        if stored is MISS or stored is None:
            return None
        applied = self.apply(stored, spec)
        if isinstance(applied, PolicyError):
            return False
        found = (storage_id, applied)
        if version >= 0:
            answers = self._answers
            if len(answers) >= MAX_ANSWERS:
                answers.clear()
            answers[credential] = (org, found, cache.expires_at(storage_id), version, self.applier)
        return found

    async def lookup(self, credential: str, spec: ApiSpec) -> Found | None:
        """Find ``credential``'s session (raises ``StoreUnavailable``)."""
        if too_short(credential, self.config.min_token_length):
            return None
        hash_keys = self.config.hash_keys
        candidates = lookup_candidates(credential, spec.org_id, hash_algo=self.config.hash_key_function)
        found = await self.cache.get_first([storage_key_id(c, hash_keys) for c in candidates])
        if found is None:
            return None
        storage_id, stored = found
        memo = self._ids
        memo[(credential, spec.org_id)] = storage_id
        if len(memo) > MAX_MEMO:
            memo.popitem(last=False)
        applied = self.apply(stored, spec)
        if isinstance(applied, PolicyError):
            log.info("key %.8s…: its policies cannot be applied: %s", storage_id, applied)
            return None
        return storage_id, applied

    # ---- the one write path ------------------------------------------------------------------

    async def put(self, storage_id: str, session: SessionState, ttl: float | None = None) -> None:
        """Store ``session`` as ``storage_id`` (expiring after ``ttl`` seconds when given) and
        drop every node's cached copy: every key write (Gateway API, JWT, mTLS) comes here."""
        await self.cache.put_session(storage_id, session, ttl)

    async def delete(self, storage_id: str) -> bool:
        """Delete ``storage_id`` and drop every node's cached copy; True when it existed."""
        return await self.cache.delete_session(storage_id)
