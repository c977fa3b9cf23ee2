"""Shared state for the gateway: `open_store(url)` gives a `Store` (see `base` for the contract).

* `memory://` — the embedded single-process store;
* `redis://[user:password@]host:port/db` (or `rediss://` for TLS; or a Sentinel or Cluster URL,
  see `topology`) — the Redis store. Query
  parameters tune it: `prefix` (prepended to every key and channel), `socket_timeout`,
  `socket_connect_timeout` (seconds, default 1 each), `max_connections` (default 64),
  `pool_timeout` (wait for a free connection, default 2), `breaker_seconds` (fail-fast window
  after a failure, default 0.25), `fast_path` (default true: the per-request commands use the
  store's own pipelined client, see `redis`); any other parameter is passed on to redis-py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastgate.store.base import (
    CLUSTER_CHANNEL, KEY_PREFIX, NOTICE_API_UPDATED, NOTICE_GROUP_RELOAD, NOTICE_KEY_UPDATED,
    NOTICE_POLICY_CHANGED, QUOTA_PREFIX, RATE_LIMIT_PREFIX, ClusterEvent, Store, StoreError,
    StoreUnavailable, Subscription, decode_event, encode_event,
)
from fastgate.store.memory import MemoryStore
from fastgate.store.urls import SCHEMES, parse_topology

__all__ = [
    "CLUSTER_CHANNEL", "ClusterEvent", "KEY_PREFIX", "NOTICE_API_UPDATED", "NOTICE_GROUP_RELOAD",
    "NOTICE_KEY_UPDATED", "NOTICE_POLICY_CHANGED", "QUOTA_PREFIX", "RATE_LIMIT_PREFIX", "Store",
    "StoreError", "StoreUnavailable", "Subscription", "decode_event", "encode_event",
    "open_redis_client", "open_store",
]

_FLOAT_OPTIONS = ("socket_timeout", "socket_connect_timeout", "pool_timeout", "breaker_seconds")


def open_store(url: str, **options: Any) -> Store:
    """A store for `url`; keyword `options` override the URL's query parameters.

    Raises ValueError for an unknown scheme or a malformed option. No connection is made here:
    the first call (or `ping()`) connects.
    """
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryStore()
    if parts.scheme not in SCHEMES:
        raise ValueError(f"storage url {url.rpartition('@')[2]!r}: use memory:// or redis://host:port/db"
                         " (or rediss://, redis+sentinel://host:port[,...]/service_name[/db],"
                         " redis+cluster://host:port[,...])")
    clean, ours = _split_options(url)
    ours.update(options)
    # Lazy: redis-py costs ~100 ms of import at start-up and only a redis:// store needs it.
    from fastgate.store.redis import RedisStore

    return RedisStore(clean, **ours)


def open_redis_client(url: str, *, timeout: float, max_connections: int = 4) -> Any:
    """A redis-py command client for any Redis storage URL the store accepts (`redis://`,
    `rediss://`, Sentinel, Cluster, with the same query parameters), for a writer beside the
    store (the analytics pusher): built by the store's own topology code, so TLS options, the
    Sentinel master and the Cluster's slot map work as they do for the store. The store's own
    parameters (`prefix`, `fast_path`, ...) are taken out; `socket_timeout` and
    `socket_connect_timeout` in the URL win over `timeout`. Raises ValueError for a URL that
    is not a Redis one. Nothing connects until the first command.
    """
    if urlsplit(url).scheme not in SCHEMES:
        raise ValueError(f"storage url {url.rpartition('@')[2]!r}: not a Redis URL")
    clean, ours = _split_options(url)
    from fastgate.store.topology import open_clients

    clients = open_clients(parse_topology(clean),
                           socket_timeout=float(ours.get("socket_timeout", timeout)),
                           socket_connect_timeout=float(ours.get("socket_connect_timeout", timeout)),
                           max_connections=max_connections, pool_timeout=timeout, options={},
                           pubsub=False)
    return clients.commands


def _split_options(url: str) -> tuple[str, dict[str, Any]]:
    """`url` without the store's own query parameters, and those parameters, checked.

    Raises ValueError with what is wrong in the URL or a parameter."""
    parts = urlsplit(url)
    parse_topology(url)  # ValueError with what is wrong
    ours: dict[str, Any] = {}
    passed: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query):
        if name == "prefix":
            ours[name] = value
        elif name == "fast_path":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"storage url: fast_path={value!r} is not true or false")
            ours[name] = value.lower() in ("true", "1")
        elif name in _FLOAT_OPTIONS or name == "max_connections":
            try:
                ours[name] = int(value) if name == "max_connections" else float(value)
            except ValueError:
                raise ValueError(f"storage url: {name}={value!r} is not a number") from None
        else:
            passed.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(passed))), ours
