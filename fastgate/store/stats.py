"""Counters of the Redis store's round trips, by operation: a flat ``list[int]`` the store bumps
and ``fastgate.observe.metrics`` reads at scrape (so the arrow points down: store/ knows nothing
of metrics). Per call: one bucket scan and a few list increments, no lock, no label lookup.

For every operation kind (``OPERATIONS``): a latency histogram of the round trips sent to Redis
(successful or not; ``BUCKETS`` counts then the sum in microseconds) and errors by kind
(``ERRORS``): ``timeout`` (no reply or no connection in time), ``unavailable`` (refused,
connection lost, a topology in change, or refused at once by the store's breaker after a failure:
no round trip then) and ``other`` (an error reply). The memory store has no round trips and
no counters.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Final

__all__ = ["ERRORS", "OPERATIONS", "STORE_BOUNDS", "new_stats"]

OPERATIONS: Final = ("session_read", "session_write", "session_delete", "session_scan", "limits",
                     "quota_read", "limits_reset", "kv_read", "kv_write", "kv_delete", "kv_scan",
                     "publish", "ping")
SESSION_READ: Final = 0
SESSION_WRITE: Final = 1
SESSION_DELETE: Final = 2
SESSION_SCAN: Final = 3
LIMITS: Final = 4
QUOTA_READ: Final = 5
LIMITS_RESET: Final = 6
KV_READ: Final = 7
KV_WRITE: Final = 8
KV_DELETE: Final = 9
KV_SCAN: Final = 10
PUBLISH: Final = 11
PING: Final = 12

ERRORS: Final = ("timeout", "unavailable", "other")
TIMEOUT: Final = 0
UNAVAILABLE: Final = 1
OTHER: Final = 2

STORE_BOUNDS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                       0.5, 1.0, 2.5)
BUCKETS: Final = len(STORE_BOUNDS) + 1  # the bounds and +Inf
SUM_US: Final = BUCKETS  # offset of the latency sum (microseconds) in an operation's slots
ERRORS_AT: Final = BUCKETS + 1  # offset of the three error counts
STRIDE: Final = BUCKETS + 1 + len(ERRORS)


def new_stats() -> list[int]:
    """All counters of one store, zero."""
    return [0] * (len(OPERATIONS) * STRIDE)


def count_trip(stats: list[int], op: int, seconds: float) -> None:
    """One round trip of operation ``op`` that took ``seconds``."""
    stats[op * STRIDE + bisect_left(STORE_BOUNDS, seconds)] += 1  # the first bound not below it
    stats[op * STRIDE + SUM_US] += int(seconds * 1e6)


def count_error(stats: list[int], op: int, kind: int) -> None:
    """One failed operation ``op`` (``kind``: TIMEOUT, UNAVAILABLE or OTHER)."""
    stats[op * STRIDE + ERRORS_AT + kind] += 1
