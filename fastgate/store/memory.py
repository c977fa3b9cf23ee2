"""The embedded single-process store: plain dicts on the event loop.

Everything runs on one loop thread and no method awaits in the middle of a change, so every
operation is atomic exactly as the Redis scripts are. TTLs use the monotonic clock; expired
entries vanish on access and in a sweep every `_SWEEP_EVERY` writes (so memory stays bounded by
live data). Published messages reach this store's subscribers on the next loop iteration, the
way Redis delivers them. It is one process only: the gateway refuses `workers > 1` with it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Final, Sequence

from mypy_extensions import mypyc_attr

from fastgate.store.limits import (
    QuotaDecision, RateDecision, RateParams, gcra_step_us, quota_decision, quota_step, rate_decision,
    rate_state_ttl_ms,
)
from fastgate.store.base import EventCallback, GapCallback, StoreUnavailable

__all__ = ["MemoryStore"]

log = logging.getLogger(__name__)
_SWEEP_EVERY: Final = 4096
_Entry = tuple[Any, float]  # (value, expires_at on the monotonic clock; 0 = never)


@dataclass(slots=True, eq=False)
class _MemorySubscription:
    store: MemoryStore
    channel: str
    callback: EventCallback
    live: bool = True

    async def unsubscribe(self) -> None:
        """Stop delivery (idempotent)."""
        self.live = False
        subs = self.store._subs.get(self.channel, [])
        if self in subs:
            subs.remove(self)


# Compiled, it stays open to subclasses in plain Python (tests hold reads in flight with one).
@mypyc_attr(allow_interpreted_subclasses=True)
class MemoryStore:
    """In-process implementation of `fastgate.store.base.Store`."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._sessions: dict[str, _Entry] = {}
        self._kv: dict[str, _Entry] = {}
        # name -> [TAT in µs, expiry]: a list, so the hit of a busy key updates it in place
        self._rates: dict[str, list[Any]] = {}
        self._quotas: dict[str, _Entry] = {}  # name -> (counter, expiry)
        self._subs: dict[str, list[_MemorySubscription]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes = 0
        self._closed = False

    # -- sessions ----------------------------------------------------------------------------
    async def get_session(self, key_id: str) -> bytes | None:
        value: bytes | None = self._get(self._sessions, key_id)
        return value

    async def get_sessions(self, key_ids: Sequence[str]) -> list[bytes | None]:
        return [self._get(self._sessions, k) for k in key_ids]

    async def set_session(self, key_id: str, value: bytes, ttl: float | None = None) -> None:
        self._set(self._sessions, key_id, value, ttl)

    async def delete_session(self, key_id: str) -> bool:
        return self._delete(self._sessions, key_id)

    async def list_sessions(self, prefix: str = "") -> list[str]:
        self._check()
        now = self._clock()
        return [k for k, (_, exp) in self._sessions.items()
                if k.startswith(prefix) and not (exp and exp <= now)]

    # -- rate limits and quotas --------------------------------------------------------------
    # The memory store never waits, so each limit operation also has a plain-call form: the
    # pipeline uses it to decide a request without creating a task (about 5 µs a request).
    def rate_hit_now(self, name: str, params: RateParams) -> RateDecision:
        """`rate_hit` without awaiting."""
        allowed, tat, now_us = self.rate_step_now(name, params)
        return rate_decision(allowed, tat, now_us, params)

    def rate_step_now(self, name: str, params: RateParams) -> tuple[bool, int, int]:
        """One GCRA hit without awaiting and without a decision object: (allowed, TAT after the
        hit, now in µs), what `fastgate.store.limits.rate_decision` turns into header values.
        One clock read; a live limiter's state is updated in place."""
        return self.gcra_now(name, params.interval_us, params.tolerance_us)

    def gcra_now(self, name: str, interval_us: int, tolerance_us: int) -> tuple[bool, int, int]:
        """`rate_step_now` on the limit's two numbers: a compiled caller that keeps them as native
        ints (``fastgate.pipeline.post_auth``) reads no Struct field per request."""
        self._check()
        now = self._clock()
        now_us = int(now * 1_000_000)
        state = self._rates.get(name)
        tat = 0
        if state is not None:
            if state[1] <= now:
                del self._rates[name]
                state = None
            else:
                tat = state[0]
        allowed, tat = gcra_step_us(tat, now_us, interval_us, tolerance_us)
        if allowed:
            expires = now + rate_state_ttl_ms(tat, now_us) / 1000
            if state is not None:
                state[0] = tat
                state[1] = expires
            else:
                self._rates[name] = [tat, expires]
                self._wrote()
        return allowed, tat, now_us

    def quota_hit_now(self, name: str, quota_max: int, renewal_rate: int) -> QuotaDecision:
        """`quota_hit` without awaiting."""
        allowed, remaining, renews_at = self.quota_now(name, quota_max, renewal_rate)
        return QuotaDecision(allowed, quota_max, remaining, renews_at)

    def quota_now(self, name: str, quota_max: int, renewal_rate: int) -> tuple[bool, int, int]:
        """One quota hit without a decision object: (allowed, remaining, renews at in unix
        seconds, 0: never), the values of `fastgate.store.limits.quota_decision`."""
        now = self._clock()  # one read for the step (each is a call through a Callable)
        used, ttl_ms, expires = self._quota_state(name, now)
        allowed, used_after, ttl_ms, new_period = quota_step(used, ttl_ms, quota_max, renewal_rate)
        if new_period:
            self._quotas[name] = (used_after, now + ttl_ms / 1000 if ttl_ms > 0 else 0.0)
            self._wrote()
        elif allowed:  # same period: the counter keeps its expiry
            self._quotas[name] = (used_after, expires)
        renews_at = int(self._wall() + ttl_ms / 1000) if ttl_ms > 0 else 0
        return allowed, max(quota_max - used_after, 0), renews_at

    def limits_hit_now(self, rate_name: str | None, params: RateParams | None,
                       quota_name: str | None, quota_max: int, renewal_rate: int
                       ) -> tuple[RateDecision | None, QuotaDecision | None]:
        """`limits_hit` without awaiting."""
        rate = self.rate_hit_now(rate_name, params) \
            if rate_name is not None and params is not None else None
        if quota_name is None or (rate is not None and not rate.allowed):
            return rate, None
        return rate, self.quota_hit_now(quota_name, quota_max, renewal_rate)

    async def rate_hit(self, name: str, params: RateParams) -> RateDecision:
        return self.rate_hit_now(name, params)

    async def quota_hit(self, name: str, quota_max: int, renewal_rate: int) -> QuotaDecision:
        return self.quota_hit_now(name, quota_max, renewal_rate)

    async def limits_hit(self, rate_name: str | None, params: RateParams | None,
                         quota_name: str | None, quota_max: int, renewal_rate: int
                         ) -> tuple[RateDecision | None, QuotaDecision | None]:
        return self.limits_hit_now(rate_name, params, quota_name, quota_max, renewal_rate)

    async def quota_status(self, name: str, quota_max: int) -> QuotaDecision:
        used, ttl_ms, _ = self._quota_state(name, self._clock())
        used = used or 0
        return quota_decision(used < quota_max, used, ttl_ms, quota_max, self._wall())

    async def reset_limits(self, quota_names: Sequence[str],
                           rate_names: Sequence[str] = ()) -> None:
        self._check()
        for name in quota_names:
            self._quotas.pop(name, None)
        for name in rate_names:
            self._rates.pop(name, None)

    # -- small key/value ---------------------------------------------------------------------
    async def kv_get(self, key: str) -> bytes | None:
        value: bytes | None = self._get(self._kv, key)
        return value

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._set(self._kv, key, value, ttl)

    async def kv_delete(self, key: str) -> bool:
        return self._delete(self._kv, key)

    async def kv_set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        if self._get(self._kv, key) is not None:
            return False
        self._set(self._kv, key, value, ttl)
        return True

    async def kv_keys(self, prefix: str) -> list[str]:
        self._check()
        now = self._clock()
        return [k for k, (_, exp) in self._kv.items() if k.startswith(prefix) and not (exp and exp <= now)]

    # -- events ------------------------------------------------------------------------------
    async def publish(self, channel: str, message: bytes) -> None:
        self._check()
        loop = asyncio.get_running_loop()
        for sub in list(self._subs.get(channel, ())):
            loop.call_soon(self._deliver, sub, message)

    async def subscribe(self, channel: str, callback: EventCallback,
                        on_gap: GapCallback | None = None) -> _MemorySubscription:
        self._check()
        sub = _MemorySubscription(self, channel, callback)
        self._subs.setdefault(channel, []).append(sub)
        return sub  # a local subscription can never miss a message: on_gap is never needed

    # -- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        self._check()

    async def close(self) -> None:
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.live = False
        self._subs.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- internals ---------------------------------------------------------------------------
    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable("memory store is closed")

    def _get(self, table: dict[str, _Entry], key: str) -> Any:
        self._check()
        entry = table.get(key)
        if entry is None:
            return None
        if entry[1] and entry[1] <= self._clock():
            del table[key]
            return None
        return entry[0]

    def _set(self, table: dict[str, _Entry], key: str, value: Any, ttl: float | None) -> None:
        self._check()
        table[key] = (value, self._clock() + ttl if ttl and ttl > 0 else 0.0)
        self._wrote()

    def _delete(self, table: dict[str, _Entry], key: str) -> bool:
        return self._get(table, key) is not None and table.pop(key, None) is not None

    def _quota_state(self, name: str, now: float) -> tuple[int | None, int, float]:
        """A quota counter at ``now``: (count, None when absent or expired; TTL in ms, -2 when
        absent, -1 when it never expires; its expiry, 0.0 for none). An expired one is dropped."""
        self._check()
        entry = self._quotas.get(name)
        if entry is not None and entry[1] and entry[1] <= now:
            del self._quotas[name]
            entry = None
        if entry is None:
            return None, -2, 0.0
        expires = entry[1]
        return entry[0], max(int((expires - now) * 1000), 1) if expires else -1, expires

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self._clock()
            for table in (self._sessions, self._kv, self._quotas):
                for key in [k for k, (_, exp) in table.items() if exp and exp <= now]:
                    del table[key]
            for name in [k for k, state in self._rates.items() if state[1] <= now]:
                del self._rates[name]

    def _deliver(self, sub: _MemorySubscription, message: bytes) -> None:
        if not sub.live:
            return
        try:
            result = sub.callback(message)
        except Exception:  # a broken subscriber must not break the publisher's loop
            log.exception("event callback failed on channel %s", sub.channel)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_guard(result, sub.channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _guard(awaitable: Awaitable[None], channel: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("event callback failed on channel %s", channel)
