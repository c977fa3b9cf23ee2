"""Node-local cache of decoded sessions, kept honest by the store's cluster events.

Every request needs its session; the store is a network round trip away (Redis: ~0.3 ms) and
decoding costs a few µs. So sessions are cached here by storage id, bounded (LRU) and short-lived
(`ttl`, 10 s as Tyk's `cached_session_timeout`). Consistency rules:

* Every session write goes through `put_session` / `delete_session`, which the session manager's
  one write path (`SessionManager.put` / `delete`) calls for the Gateway API, JWT and mTLS: the entry is dropped here at once and a cluster event drops it on
  every other node, typically within a millisecond, so a deleted key is refused everywhere.
* While the event subscription is not live (never started, or reconnecting to Redis) the cache is
  bypassed: without events it cannot know what changed. When the subscription comes back after a
  gap, everything is dropped, since invalidations may have been missed.
* A read that was in flight when an invalidation arrived is returned but not cached (a global
  generation counter), so a stale value never outlives the event that condemned it.
* Absence is cached too (for `negative_ttl`, 1 s), so candidate lookups for user names and
  custom ids do not hit the store on every request; creating a key invalidates it like an update.
* Concurrent misses for the same ids share one store read (single flight).
* `peek` answers from the cache without awaiting (0.3 µs); `get` / `get_first` go to the store
  on a miss.

Cached sessions are shared objects: treat them as read-only (`apply_policies` works on a copy).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections import OrderedDict
from typing import Callable, Final, Literal, Sequence

import msgspec

from fastgate.sessions.session import SessionState, decode_session, encode_session
from fastgate.store.base import (
    CLUSTER_CHANNEL, NOTICE_KEY_UPDATED, Store, Subscription, decode_event, encode_event,
)

__all__ = ["MISS", "SessionCache"]

log = logging.getLogger(__name__)
_ABSENT: Final = None


class _Miss(enum.Enum):
    MISS = enum.auto()


MISS: Final = _Miss.MISS  # `peek` result: not known here, `await get(...)` is needed


class SessionCache:
    """Bounded, TTL'd, event-invalidated cache in front of `Store` sessions."""

    def __init__(self, store: Store, *, max_entries: int = 10_000, ttl: float = 10.0,
                 negative_ttl: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._max = max_entries
        self._ttl = ttl
        self._negative_ttl = min(negative_ttl, ttl)
        self._clock = clock
        # storage id -> (session or None for "known absent", expires at)
        self._entries: OrderedDict[str, tuple[SessionState | None, float]] = OrderedDict()
        self._generation = 0
        self._inflight: dict[tuple[str, ...], asyncio.Future[list[SessionState | None]]] = {}
        self._sub: Subscription | None = None
        self._source = uuid.uuid4().hex  # our own events come back from Redis: skip them

    @property
    def live(self) -> bool:
        """True when the cache is in use (its event subscription is live)."""
        return self._sub is not None and self._sub.live

    async def start(self) -> None:
        """Subscribe to cluster events; until this succeeds the cache is bypassed.

        Raises StoreUnavailable when the store cannot be reached (call again later).
        """
        if self._sub is None:
            self._sub = await self._store.subscribe(CLUSTER_CHANNEL, self._on_event, self.clear)

    async def close(self) -> None:
        """Stop listening and drop everything."""
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()
        self.clear()

    def peek(self, key_id: str) -> SessionState | None | Literal[_Miss.MISS]:
        """Without awaiting: the cached session, None if known absent, MISS if not known.

        The pipeline calls this first and only awaits `get` on MISS (hot-path rule: never
        await what is already known).
        """
        if not self.live:
            return MISS
        hit = self._lookup(key_id)
        return MISS if hit is None else hit[0]

    @property
    def version(self) -> int:
        """Changes whenever anything cached here may have changed (any invalidation, a clear, a
        gap in events); -1 while the cache is bypassed. A memo built on a cached session is
        valid while this is the same (and not -1) and the entry's ``expires_at`` has not passed."""
        return self._generation if self.live else -1

    def expires_at(self, key_id: str) -> float:
        """When the cached entry for ``key_id`` stops being used (on this cache's clock); 0 when
        there is none."""
        entry = self._entries.get(key_id)
        return entry[1] if entry is not None else 0.0

    def now(self) -> float:
        """This cache's clock, the one ``expires_at`` is measured on."""
        return self._clock()

    async def get(self, key_id: str) -> SessionState | None:
        """The session stored under `key_id`, None when there is none (or it is unreadable)."""
        found = await self.get_first((key_id,))
        return found[1] if found is not None else None

    async def get_first(self, key_ids: Sequence[str]) -> tuple[str, SessionState] | None:
        """The first of `key_ids` that has a session, with its id (Tyk's candidate lookup).

        Raises StoreUnavailable when the store is needed and cannot be reached.
        """
        live = self.live
        missing: list[str] = []
        for key_id in key_ids:
            if live and not missing:
                hit = self._lookup(key_id)
                if hit is not None:
                    if hit[0] is not None:
                        return key_id, hit[0]
                    continue  # known absent: try the next candidate
            missing.append(key_id)
        if not missing:
            return None
        for key_id, session in zip(missing, await self._fetch(tuple(missing), live)):
            if session is not None:
                return key_id, session
        return None

    def invalidate(self, key_id: str) -> None:
        """Forget `key_id` on this node (and any read of it now in flight)."""
        self._generation += 1
        self._entries.pop(key_id, None)

    def clear(self) -> None:
        """Forget everything on this node."""
        self._generation += 1
        self._entries.clear()

    async def put_session(self, key_id: str, session: SessionState,
                          ttl: float | None = None) -> None:
        """Store a session and tell every node to drop its cached copy."""
        await self._store.set_session(key_id, encode_session(session), ttl)
        await self.notify_changed(key_id)

    async def delete_session(self, key_id: str) -> bool:
        """Delete a session everywhere; True when it existed."""
        existed = await self._store.delete_session(key_id)
        await self.notify_changed(key_id)
        return existed

    async def notify_changed(self, *key_ids: str) -> None:
        """Invalidate `key_ids` here and on every other node (after writing them elsewhere)."""
        for key_id in key_ids:
            self.invalidate(key_id)
            await self._store.publish(CLUSTER_CHANNEL,
                                      encode_event(NOTICE_KEY_UPDATED, key_id, self._source))

    # -- internals ---------------------------------------------------------------------------
    def _lookup(self, key_id: str) -> tuple[SessionState | None] | None:
        entry = self._entries.get(key_id)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key_id]
            return None
        self._entries.move_to_end(key_id)
        return (entry[0],)

    async def _fetch(self, key_ids: tuple[str, ...], live: bool) -> list[SessionState | None]:
        pending = self._inflight.get(key_ids)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we were cancelled ourselves
                # the request that was reading for us was cancelled: read for ourselves
        future: asyncio.Future[list[SessionState | None]] = \
            asyncio.get_running_loop().create_future()
        self._inflight[key_ids] = future
        generation = self._generation
        try:
            raw = await self._store.get_sessions(key_ids)
            sessions = [self._decode(k, data) for k, data in zip(key_ids, raw)]
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unshared failure is not logged as lost
            raise
        finally:
            del self._inflight[key_ids]
        future.set_result(sessions)
        if live and self.live and generation == self._generation:
            now = self._clock()
            for key_id, session in zip(key_ids, sessions):
                ttl = self._ttl if session is not None else self._negative_ttl
                self._entries[key_id] = (session, now + ttl)
                self._entries.move_to_end(key_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return sessions

    @staticmethod
    def _decode(key_id: str, data: bytes | None) -> SessionState | None:
        if data is None:
            return _ABSENT
        try:
            return decode_session(data)
        except (msgspec.DecodeError, ValueError):
            log.error("session %.8s… is not valid JSON; treated as not found", key_id)
            return _ABSENT

    def _on_event(self, message: bytes) -> None:
        event = decode_event(message)
        if event is None or event.source == self._source:
            return
        if event.command == NOTICE_KEY_UPDATED:
            self.invalidate(event.payload)
