"""The store interface: what every backend (memory, Redis) offers the gateway.

One async interface, in five groups. Names passed in are the gateway's own ids; each backend adds
Tyk's prefixes (plus its configurable extra prefix), so in Redis the data sits where Tyk keeps it:

| group | methods | Redis key |
|---|---|---|
| sessions | `get_session`, `get_sessions`, `set_session`, `delete_session`, `list_sessions` | `apikey-<id>` |
| rate limits | `rate_hit` (atomic GCRA step, see `fastgate.store.limits`) | `rate-limit-<name>` |
| quotas | `quota_hit` (atomic), `quota_status`, `reset_limits` | `quota-<name>` |
| both | `limits_hit`: rate then quota, one atomic step (what a request calls) | |
| key/value | `kv_get`, `kv_set`, `kv_delete`, `kv_set_if_absent`, `kv_keys` (OAuth tokens, certificates, JWT revocations, HMAC replay cache) | `<key>` |
| events | `publish`, `subscribe` (callbacks, survive reconnection) | channel names |

plus `ping()` and `close()`. Session ids are storage ids (`fastgate.sessions.key_ids.storage_key_id`: the
token or its hash); rate and quota names come from `fastgate.store.limits.rate_limit_key` /
`quota_key`. Values are bytes; sessions are encoded by `fastgate.sessions.session`.

Errors: every method raises `StoreUnavailable` when the backend cannot be reached in time (the
HTTP layer answers 503) and never a backend's own exception type; the next call after the
backend is back simply works. `StoreError` is any other failure.

Events: `publish` is fire-and-forget to every subscriber on every node, including this one.
Delivery is at-most-once; when a subscription had to be re-established, messages may have been
missed, so the subscriber's `on_gap` callback runs (a cache then drops everything it holds).
"""

from __future__ import annotations

from typing import Awaitable, Callable, Final, Protocol, Sequence

import msgspec

from fastgate.store.limits import QuotaDecision, RateDecision, RateParams

__all__ = [
    "CLUSTER_CHANNEL", "ClusterEvent", "EventCallback", "GapCallback", "KEY_PREFIX",
    "NOTICE_API_UPDATED", "NOTICE_GROUP_RELOAD", "NOTICE_KEY_UPDATED", "NOTICE_POLICY_CHANGED",
    "QUOTA_PREFIX", "RATE_LIMIT_PREFIX", "Store", "StoreError", "StoreUnavailable",
    "Subscription", "decode_event", "encode_event",
]

KEY_PREFIX: Final = "apikey-"
QUOTA_PREFIX: Final = "quota-"
RATE_LIMIT_PREFIX: Final = "rate-limit-"

CLUSTER_CHANNEL: Final = "fastgate.cluster.notifications"
# Command names are Tyk's (gateway/redis_signals.go), so logs read the same.
NOTICE_KEY_UPDATED: Final = "KeySpaceUpdateNotification"  # payload: storage ids, comma-separated
NOTICE_GROUP_RELOAD: Final = "GroupReload"
NOTICE_API_UPDATED: Final = "ApiUpdated"
NOTICE_POLICY_CHANGED: Final = "PolicyChanged"

EventCallback = Callable[[bytes], "None | Awaitable[None]"]
GapCallback = Callable[[], "None | Awaitable[None]"]


class StoreError(Exception):
    """A store operation failed for a reason other than reachability."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (connection refused, timeout, loading): answer 503."""


class ClusterEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message on CLUSTER_CHANNEL: `{"command": ..., "payload": ...}` as in Tyk.

    `source` names the sender so it can ignore its own echo (Redis delivers to the publisher too).
    """

    command: str
    payload: str = ""
    source: str = ""


_EVENT_ENC: Final = msgspec.json.Encoder()
_EVENT_DEC: Final = msgspec.json.Decoder(ClusterEvent)


def encode_event(command: str, payload: str = "", source: str = "") -> bytes:
    """Bytes to publish for a cluster event."""
    return _EVENT_ENC.encode(ClusterEvent(command, payload, source))


def decode_event(data: bytes) -> ClusterEvent | None:
    """A received cluster event, or None for a message that is not one."""
    try:
        return _EVENT_DEC.decode(data)
    except msgspec.DecodeError:
        return None


class Subscription(Protocol):
    """Handle returned by `Store.subscribe`."""

    @property
    def live(self) -> bool:
        """True while messages are delivered (False while reconnecting or after unsubscribe)."""
        ...

    async def unsubscribe(self) -> None:
        """Stop delivering to this subscription's callback (idempotent)."""
        ...


class Store(Protocol):
    """The gateway's shared state. All methods are coroutines; see the module doc for errors."""

    # -- sessions -------------------------------------------------------------------------------
    async def get_session(self, key_id: str) -> bytes | None:
        """The encoded session stored under `key_id`, None when absent or expired."""
        ...

    async def get_sessions(self, key_ids: Sequence[str]) -> list[bytes | None]:
        """Several sessions in one round trip (candidate lookup), in the order asked."""
        ...

    async def set_session(self, key_id: str, value: bytes, ttl: float | None = None) -> None:
        """Store a session; `ttl` seconds > 0 makes it expire, None / <= 0 keeps it forever."""
        ...

    async def delete_session(self, key_id: str) -> bool:
        """Delete a session; True when it existed."""
        ...

    async def list_sessions(self, prefix: str = "") -> list[str]:
        """Storage ids of all sessions whose id starts with `prefix` (e.g. a legacy org id)."""
        ...

    # -- rate limits and quotas -----------------------------------------------------------------
    async def rate_hit(self, name: str, params: RateParams) -> RateDecision:
        """Count one request against limiter `name`, atomically for every node sharing it."""
        ...

    async def quota_hit(self, name: str, quota_max: int, renewal_rate: int) -> QuotaDecision:
        """Count one request against quota `name` (renewed every `renewal_rate` s), atomically."""
        ...

    async def limits_hit(self, rate_name: str | None, params: RateParams | None,
                         quota_name: str | None, quota_max: int, renewal_rate: int
                         ) -> tuple[RateDecision | None, QuotaDecision | None]:
        """Rate then quota for one request, in one atomic step (one round trip on Redis).

        Pass None for a part that does not apply (unlimited). The quota is only counted when
        the rate allows the request (a 429 does not consume quota, as in Tyk); its decision is
        then None.
        """
        ...

    async def quota_status(self, name: str, quota_max: int) -> QuotaDecision:
        """Read quota `name` without counting (for GET /tyk/keys)."""
        ...

    async def reset_limits(self, quota_names: Sequence[str],
                           rate_names: Sequence[str] = ()) -> None:
        """Forget quota counters and limiter states (key updated without suppress_reset)."""
        ...

    # -- small key/value ------------------------------------------------------------------------
    async def kv_get(self, key: str) -> bytes | None:
        """Value of `key`, None when absent or expired."""
        ...

    async def kv_set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Set `key`; `ttl` seconds > 0 makes it expire."""
        ...

    async def kv_delete(self, key: str) -> bool:
        """Delete `key`; True when it existed."""
        ...

    async def kv_set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Atomically set `key` only if absent; True when this call set it (replay caches)."""
        ...

    async def kv_keys(self, prefix: str) -> list[str]:
        """Every live key starting with `prefix` (e.g. `cert-raw-`), in no particular order."""
        ...

    # -- events ---------------------------------------------------------------------------------
    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` to every subscriber of `channel`, on all nodes."""
        ...

    async def subscribe(self, channel: str, callback: EventCallback,
                        on_gap: GapCallback | None = None) -> Subscription:
        """Call `callback(message)` for every message on `channel` until unsubscribed.

        The subscription is live when this returns. `on_gap` runs whenever messages may have
        been lost (the connection dropped and was re-established).
        """
        ...

    # -- lifecycle ------------------------------------------------------------------------------
    async def ping(self) -> None:
        """Return when the store answers; raise StoreUnavailable otherwise."""
        ...

    async def close(self) -> None:
        """Release connections and stop subscriptions (idempotent)."""
        ...
