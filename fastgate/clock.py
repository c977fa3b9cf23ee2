"""A coarse monotonic clock, advanced by the gateway's tick (every 250 ms).

Deadlines (header read, body read, idle, upstream) are plain float comparisons against
``clock.now`` checked by the same tick, so arming a timeout on the request path is one attribute
store instead of a ``loop.call_later`` handle (about 1.5 µs to create and cancel, per request).

A deadline is armed from ``now`` as of the last tick, which is as old as the gap between two
ticks: 250 ms normally, more when the process was starved of CPU and the tick ran late. The
checker therefore compares deadlines with ``now - slack``, where ``slack`` is the longest recent
gap: a timeout does not fire early, and fires up to about two gaps late, which is fine for
timeouts measured in seconds.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Final

__all__ = ["now", "wall", "slack", "tick", "reset", "TICK_SECONDS"]

TICK_SECONDS: Final = 0.25

now: float = time.monotonic()
wall: float = time.time()
slack: float = TICK_SECONDS

# The gaps between the last 64 ticks (16 s at the normal pace): a late tick keeps counting for
# the deadlines armed during it until they are long past.
_gaps: deque[float] = deque([TICK_SECONDS], maxlen=64)


def tick() -> None:
    """Advance the clock; called by the gateway's periodic tick."""
    global now, wall, slack
    current = time.monotonic()
    _gaps.append(current - now)
    slack = max(_gaps)
    now = current
    wall = time.time()


def reset() -> None:
    """Start afresh just before listening: the time spent starting up is no tick gap."""
    global now, wall, slack
    now = time.monotonic()
    wall = time.time()
    slack = TICK_SECONDS
    _gaps.clear()
    _gaps.append(TICK_SECONDS)
