"""The Redis store: how several gateway nodes share keys, counters and events.

* One `redis.asyncio` client over a blocking connection pool: a burst of requests waits (up to
  `pool_timeout`) for a free connection instead of failing with "too many connections".
* Every call is bounded by `socket_timeout` / `socket_connect_timeout`, retried once only on a
  connection error (a pooled connection that died while Redis restarted), never on a timeout (a
  quota increment must not run twice). Failures become `StoreUnavailable`.
* After a failure, calls fail fast for `breaker_seconds` instead of each waiting for a connect
  timeout: a dead Redis costs the gateway one timeout, not one per request. Then the next call
  tries again, so the store recovers by itself when Redis is back.
* Rate limits and quotas are one Lua script (EVALSHA, loaded on first use): one atomic step on
  the server whatever the number of nodes, and one round trip per request for both checks. It
  takes the time from Redis itself (`TIME`) so that nodes with skewed clocks share one timeline.
  The arithmetic is `fastgate.store.limits`, which the memory store runs directly; the script mirrors
  it line for line.
* Events use one dedicated Pub/Sub connection per store, read by a background task that
  re-subscribes after any disconnection and then calls every subscriber's `on_gap`.
* The commands every request sends (the limits step, session reads) go through the store's own
  pipelined client (`fastgate.store.resp`, about half redis-py's CPU per command, see
  `bench/micro_redis.py`) when the URL is plain `redis://host:port/db` with no redis-py options.
  Anything else (`rediss://`, redis-py options in the URL, `fast_path=false`) sends them through
  redis-py, batched into pipelines. redis-py always carries Pub/Sub and the admin paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Final, Sequence
from urllib.parse import unquote, urlsplit

from redis.crc import key_slot
from redis.exceptions import ClusterDownError, ReadOnlyError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import MaxConnectionsError, TryAgainError

from fastgate.store.limits import (
    QuotaDecision, RateDecision, RateParams, quota_decision, rate_decision,
)
from fastgate.store.base import (
    KEY_PREFIX, QUOTA_PREFIX, RATE_LIMIT_PREFIX, EventCallback, GapCallback, StoreError,
    StoreUnavailable,
)
from fastgate.store import stats
from fastgate.store.resp import Overloaded, ReplyError, RespClient, encode_command
from fastgate.store.topology import open_clients
from fastgate.store.urls import parse_topology

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)
_LIMIT_PIPELINES: Final = 2
_MAX_LIMIT_COMMANDS: Final = 10_000  # encoded limits steps kept (one per key and limit)
_UNREACHABLE: Final = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError,
                       # a topology in change: a cluster without a master for a slot (or no
                       # node reachable), a slot migrating, a demoted master during failover
                       ClusterDownError, TryAgainError, ReadOnlyError, RedisClusterException)
# The same states as error replies to the pipelined client: Redis loading its data after a
# restart (found by bench/soak.py: a 500 in the second after Redis came back), a replica that
# lost its master or was just demoted, a busy script.
_UNAVAILABLE_REPLIES: Final = ("LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "BUSY ")

# One request against a limiter and a quota, in the order Tyk checks them: the GCRA step of
# fastgate.store.limits.gcra_step, then (only when the rate allows) fastgate.store.limits.quota_step.
# KEYS: limiter, counter. ARGV: use_rate, interval_us, tolerance_us, use_quota, quota_max,
# renewal_ms. Returns {rate_allowed, tat_us, now_us, quota_allowed, used, ttl_ms}.
_LIMITS_LUA: Final = """
local now, tat = 0, 0
if ARGV[1] == '1' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  if tat - now > tonumber(ARGV[3]) then return {0, tat, now, 0, 0, 0} end
  tat = tat + tonumber(ARGV[2])
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
end
if ARGV[4] ~= '1' then return {1, tat, now, 0, 0, 0} end
local quota_max = tonumber(ARGV[5])
local renew_ms = tonumber(ARGV[6])
local ttl = redis.call('PTTL', KEYS[2])
local used
if ttl == -2 or (ttl == -1 and renew_ms > 0) then
  used = 0
  if renew_ms > 0 then
    redis.call('SET', KEYS[2], 0, 'PX', renew_ms)
    ttl = renew_ms
  else
    redis.call('SET', KEYS[2], 0)
    ttl = -1
  end
else
  used = tonumber(redis.call('GET', KEYS[2]))
end
if used >= quota_max then return {1, tat, now, 0, used, ttl} end
return {1, tat, now, 1, redis.call('INCR', KEYS[2]), ttl}
"""


@dataclass(slots=True, eq=False)
class _RedisSubscription:
    store: RedisStore
    channel: str
    callback: EventCallback
    on_gap: GapCallback | None
    active: bool = True

    @property
    def live(self) -> bool:
        """True while messages are being received (subscribed and connected)."""
        return self.active and self.channel in self.store._confirmed

    async def unsubscribe(self) -> None:
        """Stop delivery (idempotent); the channel is left when its last subscriber goes."""
        await self.store._unsubscribe(self)


class RedisStore:
    """`fastgate.store.base.Store` on Redis: a server (`redis://`, `rediss://`), Sentinel or Cluster
    (`fastgate.store.topology`)."""

    def __init__(self, url: str, *, prefix: str = "", socket_timeout: float = 1.0,
                 socket_connect_timeout: float = 1.0, max_connections: int = 64,
                 pool_timeout: float = 2.0, breaker_seconds: float = 0.25,
                 fast_path: bool = True, **redis_options: Any) -> None:
        # pool_timeout bounds the wait for a free connection under load (then 503: shedding).
        topology = parse_topology(url)
        clients = open_clients(topology, socket_timeout=socket_timeout,
                               socket_connect_timeout=socket_connect_timeout,
                               max_connections=max_connections, pool_timeout=pool_timeout,
                               options=redis_options)
        self._redis = clients.commands
        self._cluster = topology.kind == "cluster"
        # Pub/Sub gets its own connection that never retries by itself: redis-py would
        # otherwise reconnect and resubscribe silently, hiding a gap in which events were lost.
        # On a cluster there is one client per node of the URL, tried in turn.
        self._pubsub_clients = clients.pubsub
        self._pubsub_next = 0
        self._where = topology.where  # never log a password
        self._p = prefix
        self._op_timeout = socket_connect_timeout + socket_timeout
        self._pool_timeout = pool_timeout
        self._breaker = breaker_seconds
        self._down_until = 0.0
        self._limits = self._redis.register_script(_LIMITS_LUA)
        self._subs: dict[str, list[_RedisSubscription]] = {}
        self._pubsub: Any = None  # redis.asyncio.client.PubSub while connected
        self._listener: asyncio.Task[None] | None = None
        self._confirmed: set[str] = set()  # channels Redis confirmed on the current connection
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit_batch: list[tuple[list[str], list[int], asyncio.Future[list[Any]]]] = []
        self._limit_inflight = 0
        self._closed = False
        self._fast = _fast_client(url, socket_timeout, socket_connect_timeout) \
            if fast_path and not redis_options and topology.kind == "standalone" else None
        self._limits_sha = hashlib.sha1(_LIMITS_LUA.encode()).hexdigest()
        self._limit_commands: dict[tuple[Any, ...], bytes] = {}
        self.stats = stats.new_stats()  # round trips and errors (fastgate.store.stats), read at scrape

    # -- sessions ----------------------------------------------------------------------------
    async def get_session(self, key_id: str) -> bytes | None:
        return (await self.get_sessions((key_id,)))[0]

    async def get_sessions(self, key_ids: Sequence[str]) -> list[bytes | None]:
        if not key_ids:
            return []
        keys = [f"{self._p}{KEY_PREFIX}{k}" for k in key_ids]
        if self._fast is not None:
            return list(await self._fast_call(encode_command(["MGET", *keys]), stats.SESSION_READ))
        if self._cluster:  # the keys sit in several slots: one MGET per node, in parallel
            return list(await self._run(stats.SESSION_READ, self._redis.mget_nonatomic, keys))
        return list(await self._run(stats.SESSION_READ, self._redis.mget, keys))

    async def set_session(self, key_id: str, value: bytes, ttl: float | None = None) -> None:
        await self._set(stats.SESSION_WRITE, f"{self._p}{KEY_PREFIX}{key_id}", value, ttl)

    async def delete_session(self, key_id: str) -> bool:
        return bool(await self._run(stats.SESSION_DELETE, self._redis.delete, f"{self._p}{KEY_PREFIX}{key_id}"))

    async def list_sessions(self, prefix: str = "") -> list[str]:
        head = f"{self._p}{KEY_PREFIX}"
        pattern = _glob_escape(head + prefix) + "*"

        async def scan() -> list[str]:
            return [k.decode()[len(head):]
                    async for k in self._redis.scan_iter(match=pattern, count=1000)]
        found: list[str] = await self._run(stats.SESSION_SCAN, scan, bounded=False)
        return found

    # -- rate limits and quotas --------------------------------------------------------------
    async def rate_hit(self, name: str, params: RateParams) -> RateDecision:
        rate, _ = await self.limits_hit(name, params, None, 0, 0)
        assert rate is not None
        return rate

    async def quota_hit(self, name: str, quota_max: int, renewal_rate: int) -> QuotaDecision:
        _, quota = await self.limits_hit(None, None, name, quota_max, renewal_rate)
        assert quota is not None
        return quota

    async def limits_hit(self, rate_name: str | None, params: RateParams | None,
                         quota_name: str | None, quota_max: int, renewal_rate: int
                         ) -> tuple[RateDecision | None, QuotaDecision | None]:
        use_rate = rate_name is not None and params is not None
        use_quota = quota_name is not None
        if self._fast is not None:
            # The command depends only on the limit, not on the time (Redis' clock is used):
            # encoded once per limit (about 8 µs), then looked up.
            spec = (rate_name, params, quota_name, quota_max, renewal_rate)
            command = self._limit_commands.get(spec)
            if command is None:
                keys, args = self._limits_args(*spec)
                command = encode_command(["EVALSHA", self._limits_sha, 2, *keys, *args])
                if len(self._limit_commands) >= _MAX_LIMIT_COMMANDS:
                    self._limit_commands.clear()
                self._limit_commands[spec] = command
            reply = await self._fast_call(command, stats.LIMITS, script=True)
            if isinstance(reply, ReplyError):  # NOSCRIPT: Redis restarted, or SCRIPT FLUSH
                keys, args = self._limits_args(*spec)  # EVAL sends the script and caches it
                reply = await self._fast_call(encode_command(["EVAL", _LIMITS_LUA, 2, *keys, *args]), stats.LIMITS)
            r_ok, tat, now, q_ok, used, ttl = reply
        elif self._cluster:
            r_ok, tat, now, q_ok, used, ttl = await self._cluster_limits(
                rate_name, params, quota_name, quota_max, renewal_rate)
        else:
            keys, args = self._limits_args(rate_name, params, quota_name, quota_max, renewal_rate)
            r_ok, tat, now, q_ok, used, ttl = await self._batched_limits(keys, args)
        rate = rate_decision(bool(r_ok), int(tat), int(now), params) \
            if use_rate and params is not None else None
        if not r_ok or not use_quota:
            return rate, None
        return rate, quota_decision(bool(q_ok), int(used), int(ttl), quota_max, time.time())

    def _limits_args(self, rate_name: str | None, params: RateParams | None,
                     quota_name: str | None, quota_max: int, renewal_rate: int
                     ) -> tuple[list[str], list[int]]:
        """KEYS and ARGV of the limits script."""
        use_rate = rate_name is not None and params is not None
        use_quota = quota_name is not None
        keys = [self._counter_key(RATE_LIMIT_PREFIX, rate_name) if use_rate else "",
                self._counter_key(QUOTA_PREFIX, quota_name) if use_quota else ""]
        args = [int(use_rate), params.interval_us if params else 0,
                params.tolerance_us if params else 0, int(use_quota), quota_max,
                max(renewal_rate, 0) * 1000]
        return keys, args

    def _counter_key(self, prefix: str, name: str | None) -> str:
        """The Redis key of a limiter or a quota counter.

        On a cluster the name is a hash tag (`quota-{<name>}`): a key's limiter and counter have
        the same name (`fastgate.store.limits.rate_limit_key` / `quota_key` of one key and
        scope), so the limits script's two keys sit in one slot.
        """
        return f"{self._p}{prefix}{{{name}}}" if self._cluster else f"{self._p}{prefix}{name}"

    async def _cluster_limits(self, rate_name: str | None, params: RateParams | None,
                              quota_name: str | None, quota_max: int, renewal_rate: int
                              ) -> list[Any]:
        """The limits step on a cluster: one script when both keys share a slot (the usual
        case, see `_counter_key`), else the rate step and then the quota step as two scripts
        (each still atomic; Tyk's own order, rate first)."""
        keys, args = self._limits_args(rate_name, params, quota_name, quota_max, renewal_rate)
        if not keys[0] or not keys[1] or key_slot(keys[0].encode()) == key_slot(keys[1].encode()):
            slot_keys = [k or keys[0] or keys[1] for k in keys]  # an unused key: the other one
            result: list[Any] = await self._run(stats.LIMITS, self._limits, keys=slot_keys, args=args)
            return result
        rate = await self._run(stats.LIMITS, self._limits, keys=[keys[0], keys[0]], args=[*args[:3], 0, 0, 0])
        if not rate[0]:
            return list(rate)
        quota = await self._run(stats.LIMITS, self._limits, keys=[keys[1], keys[1]], args=[0, 0, 0, *args[3:]])
        return [1, rate[1], rate[2], *quota[3:]]

    def _batched_limits(self, keys: list[str], args: list[int]) -> asyncio.Future[list[Any]]:
        """Queue one limits step; queued steps go out together as one pipeline (no fast path).

        A call through redis-py costs about 170 µs of CPU, a pipelined command about 30 µs. At
        most ``_LIMIT_PIPELINES`` pipelines are in flight: steps that arrive meanwhile wait for
        the next one, so under load batches grow with the load, and when idle a step is sent in
        the next loop iteration.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._limit_batch.append((keys, args, future))
        if len(self._limit_batch) == 1 and self._limit_inflight < _LIMIT_PIPELINES:
            loop.call_soon(self._flush_limits)
        return future

    def _flush_limits(self) -> None:
        batch, self._limit_batch = self._limit_batch, []
        if not batch:
            return
        self._limit_inflight += 1
        task = asyncio.get_running_loop().create_task(self._send_limits(batch))
        self._tasks.add(task)
        task.add_done_callback(self._limits_sent)

    def _limits_sent(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._limit_inflight -= 1
        if self._limit_batch and not self._closed:
            self._flush_limits()

    async def _send_limits(self, batch: list[tuple[list[str], list[int], asyncio.Future[list[Any]]]]) -> None:
        async def send() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    await self._limits(keys=keys, args=args, client=pipe)
                return await pipe.execute(raise_on_error=False)

        try:
            results = await self._run(stats.LIMITS, send)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, StoreError) else StoreError(str(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(StoreError(f"redis at {self._where}: {result}"))
            else:
                future.set_result(result)

    async def quota_status(self, name: str, quota_max: int) -> QuotaDecision:
        key = self._counter_key(QUOTA_PREFIX, name)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                return await pipe.execute()
        raw, ttl = await self._run(stats.QUOTA_READ, read)
        used = int(raw) if raw is not None else 0
        return quota_decision(used < quota_max, used, int(ttl), quota_max, time.time())

    async def reset_limits(self, quota_names: Sequence[str],
                           rate_names: Sequence[str] = ()) -> None:
        keys = [self._counter_key(QUOTA_PREFIX, n) for n in quota_names]
        keys += [self._counter_key(RATE_LIMIT_PREFIX, n) for n in rate_names]
        if keys:
            await self._run(stats.LIMITS_RESET, self._redis.delete, *keys)

    # -- small key/value ---------------------------------------------------------------------
    async def kv_get(self, key: str) -> bytes | None:
        value: bytes | None = await self._run(stats.KV_READ, self._redis.get, self._p + key)
        return value

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._set(stats.KV_WRITE, self._p + key, value, ttl)

    async def kv_delete(self, key: str) -> bool:
        return bool(await self._run(stats.KV_DELETE, self._redis.delete, self._p + key))

    async def kv_set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        px = max(int(ttl * 1000), 1) if ttl and ttl > 0 else None
        return bool(await self._run(stats.KV_WRITE, self._redis.set, self._p + key, value, nx=True, px=px))

    async def kv_keys(self, prefix: str) -> list[str]:
        head = self._p
        pattern = _glob_escape(head + prefix) + "*"

        async def scan() -> list[str]:
            return [k.decode()[len(head):] async for k in self._redis.scan_iter(match=pattern, count=1000)]
        found: list[str] = await self._run(stats.KV_SCAN, scan, bounded=False)
        return found

    # -- events ------------------------------------------------------------------------------
    async def publish(self, channel: str, message: bytes) -> None:
        await self._run(stats.PUBLISH, self._redis.publish, self._p + channel, message)

    async def subscribe(self, channel: str, callback: EventCallback,
                        on_gap: GapCallback | None = None) -> _RedisSubscription:
        self._check()
        sub = _RedisSubscription(self, channel, callback, on_gap)
        self._subs.setdefault(channel, []).append(sub)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._listen())
        elif self._pubsub is not None and channel not in self._confirmed:
            try:  # the listener resubscribes everything if this connection breaks meanwhile
                await self._pubsub.subscribe(self._p + channel)
            except _UNREACHABLE + (RedisError,):
                pass
        deadline = time.monotonic() + self._op_timeout
        while channel not in self._confirmed:  # polled: confirmation normally takes < 1 ms
            if time.monotonic() > deadline:
                await sub.unsubscribe()
                raise StoreUnavailable(f"redis at {self._where}: cannot subscribe to {channel}")
            await asyncio.sleep(0.002)
        return sub

    # -- lifecycle ---------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(stats.PING, self._redis.ping)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._drop_pubsub()
        for task in list(self._tasks):
            task.cancel()
        if self._fast is not None:
            await self._fast.close()
        await self._redis.aclose()
        if not self._cluster:  # (a cluster client closes its nodes' pools in aclose)
            await self._redis.connection_pool.disconnect()
        for client in self._pubsub_clients:
            await client.aclose()

    # -- calls -------------------------------------------------------------------------------
    async def _run(self, op: int, fn: Callable[..., Awaitable[Any]], *args: Any, bounded: bool = True,
                   **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, bounded, with the breaker; counted as operation ``op``
        (`fastgate.store.stats`)."""
        self._check()
        started = time.monotonic()
        if started < self._down_until:
            stats.count_error(self.stats, op, stats.UNAVAILABLE)
            raise StoreUnavailable(f"redis at {self._where} is unavailable (retrying shortly)")
        # The outer bound catches what socket timeouts cannot (a script load after a NOSCRIPT, a
        # reconnect and its retry); each round trip has its own socket timeout. A SCAN over a
        # large keyspace is many round trips and is left unbounded.
        limit = self._op_timeout * 2 + self._pool_timeout if bounded else None
        try:
            async with asyncio.timeout(limit):
                result = await fn(*args, **kwargs)
        except _UNREACHABLE as exc:
            now = time.monotonic()
            stats.count_trip(self.stats, op, now - started)
            stats.count_error(self.stats, op, _error_kind(exc))
            if not _pool_exhausted(exc):  # a busy pool is load, not a dead Redis
                self._down_until = now + self._breaker
            raise StoreUnavailable(f"redis at {self._where} is unavailable: {exc}") from exc
        except RedisError as exc:
            stats.count_trip(self.stats, op, time.monotonic() - started)
            stats.count_error(self.stats, op, stats.OTHER)
            raise StoreError(f"redis at {self._where}: {exc}") from exc
        stats.count_trip(self.stats, op, time.monotonic() - started)
        return result

    async def _fast_call(self, command: bytes, op: int, script: bool = False) -> Any:
        """One command on the pipelined client, with the breaker of `_run`.

        A reply error is returned (`ReplyError`) only for a script call, to see NOSCRIPT;
        otherwise it raises StoreError.
        """
        self._check()
        started = time.monotonic()
        if started < self._down_until:
            stats.count_error(self.stats, op, stats.UNAVAILABLE)
            raise StoreUnavailable(f"redis at {self._where} is unavailable (retrying shortly)")
        assert self._fast is not None
        try:
            reply = await self._fast.execute(command)
        except Overloaded:
            stats.count_error(self.stats, op, stats.UNAVAILABLE)  # load: no round trip, no breaker
            raise
        except StoreError as exc:
            now = time.monotonic()
            stats.count_trip(self.stats, op, now - started)
            if isinstance(exc, StoreUnavailable):
                stats.count_error(self.stats, op, _error_kind(exc))
                self._down_until = now + self._breaker
            else:  # an error reply to the connection's handshake (AUTH, SELECT)
                stats.count_error(self.stats, op, stats.OTHER)
            raise
        stats.count_trip(self.stats, op, time.monotonic() - started)
        if isinstance(reply, ReplyError):
            text = str(reply)
            if text.startswith(_UNAVAILABLE_REPLIES):  # a restart or failover in progress: 503
                stats.count_error(self.stats, op, stats.UNAVAILABLE)
                self._down_until = time.monotonic() + self._breaker
                raise StoreUnavailable(f"redis at {self._where} is unavailable: {text}")
            if not (script and text.startswith("NOSCRIPT")):
                stats.count_error(self.stats, op, stats.OTHER)
                raise StoreError(f"redis at {self._where}: {text}")
        return reply

    async def _set(self, op: int, key: str, value: bytes, ttl: float | None) -> None:
        px = max(int(ttl * 1000), 1) if ttl and ttl > 0 else None
        await self._run(op, self._redis.set, key, value, px=px)

    def _check(self) -> None:
        if self._closed:
            raise StoreUnavailable("redis store is closed")

    # -- pub/sub internals -------------------------------------------------------------------
    async def _connect_pubsub(self) -> None:
        # On a cluster: the next node of the URL after a failure (node Pub/Sub is broadcast).
        client = self._pubsub_clients[self._pubsub_next % len(self._pubsub_clients)]
        self._pubsub_next += 1
        pubsub = client.pubsub()
        requested: set[str] = set()
        try:
            # Loop: `subscribe()` may add channels while we wait; the new connection becomes
            # visible to it (self._pubsub) only once it carries every channel asked for so far.
            while missing := [c for c in self._subs if c not in requested]:
                await pubsub.subscribe(*[self._p + c for c in missing])
                requested.update(missing)
        except BaseException:
            await _close_quietly(pubsub)
            raise
        self._pubsub = pubsub

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._confirmed.clear()
        if pubsub is not None:
            await _close_quietly(pubsub)

    async def _listen(self) -> None:
        backoff, connected_before = 0.05, False
        while not self._closed:
            if not self._subs:  # nothing to listen for: stop; subscribe() starts a new listener
                await self._drop_pubsub()
                if not self._subs:  # (unless one arrived meanwhile: it relies on this task)
                    return
                continue
            try:
                if self._pubsub is None:
                    async with asyncio.timeout(self._op_timeout):
                        await self._connect_pubsub()
                    if connected_before:
                        self._dispatch_gap()  # drop what was cached while events were lost
                    connected_before = True
                msg = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.05
            except _UNREACHABLE + (RedisError,) as exc:
                log.warning("redis pub/sub at %s lost (%s); reconnecting", self._where, exc)
                lost = self._pubsub is not None and bool(self._confirmed)
                await self._drop_pubsub()
                if lost:
                    self._dispatch_gap()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            if msg is not None:
                self._on_message(msg)

    def _on_message(self, msg: dict[str, Any]) -> None:
        channel = msg["channel"].decode()[len(self._p):]
        if msg["type"] == "subscribe":
            self._confirmed.add(channel)
        elif msg["type"] == "message":
            for sub in list(self._subs.get(channel, ())):
                self._call(sub, sub.callback, msg["data"])

    def _dispatch_gap(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                if sub.on_gap is not None:
                    self._call(sub, sub.on_gap)

    def _call(self, sub: _RedisSubscription, fn: Callable[..., Any], *args: Any) -> None:
        if not sub.active:
            return
        try:
            result = fn(*args)
        except Exception:  # a broken subscriber must not stop the listener
            log.exception("event callback failed on channel %s", sub.channel)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(_guard(result, sub.channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, sub: _RedisSubscription) -> None:
        sub.active = False
        subs = self._subs.get(sub.channel, [])
        if sub in subs:
            subs.remove(sub)
        if subs or sub.channel not in self._subs:
            return
        del self._subs[sub.channel]
        self._confirmed.discard(sub.channel)
        pubsub = self._pubsub
        # With no channel left the listener closes the connection itself; otherwise leave this
        # channel (best effort: a reconnect will not resubscribe it, it is gone from _subs).
        if pubsub is not None and self._subs and not self._closed:
            try:
                await pubsub.unsubscribe(self._p + sub.channel)
            except Exception:
                log.debug("unsubscribe from %s failed; the connection is being replaced",
                          sub.channel)


async def _close_quietly(pubsub: Any) -> None:
    try:
        await pubsub.aclose()
    except Exception:  # the connection is already broken; nothing left to release
        pass


def _fast_client(url: str, timeout: float, connect_timeout: float) -> RespClient | None:
    """The pipelined client for `url`, or None when it is not plain `redis://host:port/db`.

    TLS (`rediss://`), Unix sockets and redis-py options in the query are left to redis-py.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.query or not parts.hostname:
        return None
    path = parts.path.strip("/")
    password = unquote(parts.password or "") or None
    if (path and not path.isdigit()) or (parts.username and password is None):
        return None
    return RespClient(
        parts.hostname, parts.port or 6379, db=int(path or 0),
        username=unquote(parts.username) if parts.username else None, password=password,
        timeout=timeout, connect_timeout=connect_timeout, where=url.split("@")[-1])


def _error_kind(exc: BaseException) -> int:
    """`fastgate.store.stats`' kind of a failure: TIMEOUT when Redis did not answer (or accept
    the connection) in time, else UNAVAILABLE."""
    seen: BaseException | None = exc
    for _ in range(4):  # the exception and its causes
        if seen is None:
            break
        if isinstance(seen, (RedisTimeoutError, TimeoutError)) or "no reply within" in str(seen):
            return stats.TIMEOUT
        seen = seen.__cause__ or seen.__context__
    return stats.UNAVAILABLE


def _pool_exhausted(exc: BaseException) -> bool:
    return isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, RedisConnectionError) and "No connection available" in str(exc))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def _guard(awaitable: Awaitable[None], channel: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("event callback failed on channel %s", channel)
