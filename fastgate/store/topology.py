"""Redis topologies: which redis-py clients a storage URL (`fastgate.store.urls`) gets.

| URL | clients |
|---|---|
| `redis://[user:pw@]host:port/db`, `rediss://...` (TLS) | one `redis.asyncio.Redis` |
| `redis+sentinel://[user:pw@]host:port[,host:port...]/service_name[/db]` | `redis.asyncio.sentinel.Sentinel(...).master_for(service_name)` |
| `redis+cluster://[user:pw@]host:port[,host:port...]` | `redis.asyncio.cluster.RedisCluster` |

This module only builds redis-py's own clients; it is not a topology layer. Sentinel: every
new connection asks the sentinels where the master is, so after a failover the store reaches the
new master by itself; the user and password are the data nodes', `sentinel_password` (a query
parameter) the sentinels'. Cluster: redis-py follows MOVED/ASK and re-reads the slot map; the
store keeps every multi-key script in one slot with hash tags, and carries its events on classic
(node) Pub/Sub, which a Redis Cluster broadcasts to every node: the subscriber connects to one
node of the URL (the next one after a failure) and hears what is published on any node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from fastgate.store.urls import Topology

__all__ = ["Clients", "open_clients"]

@dataclass(slots=True)
class Clients:
    """The clients of one store: commands, and one (or, on a cluster, one per node) for Pub/Sub."""

    topology: Topology
    commands: Any  # redis.asyncio.Redis or RedisCluster
    pubsub: list[aioredis.Redis]


def open_clients(topology: Topology, *, socket_timeout: float, socket_connect_timeout: float,
                 max_connections: int, pool_timeout: float, options: dict[str, Any],
                 pubsub: bool = True) -> Clients:
    """redis-py clients for `topology`; nothing connects until the first command. With
    ``pubsub=False`` no Pub/Sub client is made (``Clients.pubsub`` is empty).

    Commands retry once on a connection error (a pooled connection that died), the Pub/Sub
    connections never (the store's listener reconnects and reports the gap itself).
    """
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout,
                "socket_keepalive": True}
    once = Retry(NoBackoff(), 1, (RedisConnectionError,))
    never = Retry(NoBackoff(), 0)
    if topology.kind == "standalone":
        pool = aioredis.BlockingConnectionPool.from_url(
            topology.url, max_connections=max_connections, timeout=pool_timeout, retry=once,
            **timeouts, **options)
        return Clients(topology, aioredis.Redis(connection_pool=pool),
                       [aioredis.Redis.from_url(topology.url, retry=never, **timeouts, **options)]
                       if pubsub else [])
    auth = {"username": topology.username, "password": topology.password}
    if topology.kind == "sentinel":
        sentinel_options = {k[len("sentinel_"):]: options.pop(k) for k in list(options)
                            if k in ("sentinel_username", "sentinel_password")}
        sentinel = Sentinel(list(topology.nodes), sentinel_kwargs={**timeouts, **sentinel_options},
                            **timeouts)
        common = {**auth, **timeouts, "db": topology.db, **options}
        return Clients(
            topology,
            sentinel.master_for(topology.service_name, retry=once, max_connections=max_connections,
                                **common),
            [sentinel.master_for(topology.service_name, retry=never, **common)] if pubsub else [])
    cluster = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in topology.nodes], retry=once,
        max_connections=max_connections, require_full_coverage=True, **auth, **timeouts, **options)
    return Clients(topology, cluster, [
        aioredis.Redis(host=h, port=p, retry=never, **auth, **timeouts, **options)
        for h, p in topology.nodes] if pubsub else [])
