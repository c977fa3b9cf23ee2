"""From a presented credential to the session the post-auth checks use, through a node cache.

Lookup follows Tyk's ``SessionDetail``: the credential as is when its org is the API's, otherwise
the org-prefixed form, the raw form and the fallback hash forms, all fetched in one round trip;
each candidate is hashed for storage when ``hash_keys`` is on. The found session gets its
policies applied (on every request in Tyk, so a policy change takes effect at once; here the
applied result is cached and re-applied whenever the policy set changes).

Cache rules (DESIGN.md "hot-path rules"):
- keyed by the exact credential string and the API's org, so one secret never unlocks another;
- bounded (LRU, ``MAX_ENTRIES``) and short-lived (``TTL`` seconds), so a change made by a node
  that could not publish (or a missed message) heals by itself;
- every write through the Gateway API publishes the storage id; every node drops the entries of
  that id at once (and everything after a pub/sub gap), so a deleted key stops working on every
  node well within a second;
- only positive results are cached; an unknown key goes to the store every time.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

import msgspec

from fastgate import clock
from fastgate.apidef.spec import ApiSpec
from fastgate.config import Config
from fastgate.keys import lookup_candidates, storage_key_id, too_short
from fastgate.policy import Policy, PolicyError, apply_policies
from fastgate.session import SessionState, decode_session
from fastgate.store.base import CLUSTER_CHANNEL, NOTICE_KEY_UPDATED, Store, decode_event, encode_event

__all__ = ["SessionManager", "Found"]

log = logging.getLogger("fastgate.sessions")

Found = tuple[str, SessionState]  # (storage id, session with policies applied)

MAX_ENTRIES = 100_000
TTL = 10.0  # Tyk's local session cache lives 10 s as well


@dataclass(slots=True)
class _Entry:
    storage_id: str
    stored: SessionState
    applied: SessionState | None  # None: its policies cannot be applied (treated as unknown)
    generation: int
    expires_at: float


class SessionManager:
    """Session lookups, the node-local cache and its cluster-wide invalidation."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.policies: Mapping[str, Policy] = {}
        self.generation = 0
        self._cache: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._by_storage_id: dict[str, set[tuple[str, str]]] = {}

    # ---- policies ----------------------------------------------------------------------------

    def set_policies(self, policies: Mapping[str, Policy]) -> None:
        """Swap the policy set; cached sessions are re-applied on their next use."""
        self.policies = policies
        self.generation += 1

    def apply(self, session: SessionState, spec: ApiSpec | None = None) -> SessionState | PolicyError:
        """``session`` with its policies applied (for ``spec``'s organisation when given)."""
        org = spec.org_id if spec is not None and spec.org_id else None
        return apply_policies(session, self.policies, org_id=org)

    # ---- lookups -----------------------------------------------------------------------------

    def cached(self, credential: str, spec: ApiSpec) -> Found | bool | None:
        """The cached result for ``credential``: ``Found``, ``False`` (known unusable), or ``None``
        when the store must be asked."""
        key = (credential, spec.org_id)
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires_at < clock.now:
            self._forget(key)
            return None
        self._cache.move_to_end(key)
        if entry.generation != self.generation:
            entry.applied = self._applied_or_none(entry.stored, spec)
            entry.generation = self.generation
        if entry.applied is None:
            return False
        return entry.storage_id, entry.applied

    async def lookup(self, credential: str, spec: ApiSpec) -> Found | None:
        """Find ``credential``'s session in the store (raises ``StoreUnavailable``)."""
        if too_short(credential, self.config.min_token_length):
            return None
        hash_keys = self.config.hash_keys
        candidates = lookup_candidates(credential, spec.org_id, hash_algo=self.config.hash_key_function)
        ids = [storage_key_id(c, hash_keys) for c in candidates]
        raw = await self.store.get_sessions(ids)
        for storage_id, data in zip(ids, raw):
            if data is None:
                continue
            try:
                stored = decode_session(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("stored session %s is not valid JSON; treated as unknown", storage_id[:8])
                return None
            applied = self._applied_or_none(stored, spec)
            self._remember((credential, spec.org_id), _Entry(storage_id, stored, applied, self.generation,
                                                              clock.now + TTL))
            return (storage_id, applied) if applied is not None else None
        return None

    def _applied_or_none(self, stored: SessionState, spec: ApiSpec) -> SessionState | None:
        applied = self.apply(stored, spec)
        if isinstance(applied, PolicyError):
            log.info("key's policies cannot be applied: %s", applied)
            return None
        return applied

    # ---- cache upkeep ------------------------------------------------------------------------

    def _remember(self, key: tuple[str, str], entry: _Entry) -> None:
        self._forget(key)
        self._cache[key] = entry
        self._by_storage_id.setdefault(entry.storage_id, set()).add(key)
        while len(self._cache) > MAX_ENTRIES:
            self._forget(next(iter(self._cache)))

    def _forget(self, key: tuple[str, str]) -> None:
        entry = self._cache.pop(key, None)
        if entry is not None:
            keys = self._by_storage_id.get(entry.storage_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_storage_id[entry.storage_id]

    def invalidate(self, storage_ids: list[str]) -> None:
        """Drop every cached entry of these storage ids (this node only)."""
        for storage_id in storage_ids:
            for key in list(self._by_storage_id.get(storage_id, ())):
                self._forget(key)

    def clear(self) -> None:
        self._cache.clear()
        self._by_storage_id.clear()

    async def announce(self, storage_ids: list[str]) -> None:
        """Tell every node (this one included) that these keys changed."""
        self.invalidate(storage_ids)
        await self.store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_KEY_UPDATED, ",".join(storage_ids)))

    def on_event(self, message: bytes) -> Any:
        """Cluster-channel callback: key updates invalidate; other commands are handled elsewhere."""
        event = decode_event(message)
        if event is not None and event.command == NOTICE_KEY_UPDATED:
            self.invalidate([i for i in event.payload.split(",") if i])
        return None
