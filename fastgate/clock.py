"""A coarse monotonic clock, advanced by the gateway's tick (every 250 ms).

Deadlines (header read, body read, idle, upstream) are plain float comparisons against
``CLOCK.now`` checked by the same tick, so arming a timeout on the request path is one attribute
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

__all__ = ["Clock", "CLOCK", "tick", "reset", "TICK_SECONDS"]

TICK_SECONDS: Final = 0.25


class Clock:
    """``now`` (monotonic) and ``wall`` as of the last tick, and ``slack``, the longest recent
    gap between ticks. One instance, ``CLOCK``: compiled, reading ``CLOCK.now`` is a field load
    (a module attribute would be a dict lookup and a boxed float per read)."""

    __slots__ = ("now", "wall", "slack")

    def __init__(self) -> None:
        self.now = time.monotonic()
        self.wall = time.time()
        self.slack = TICK_SECONDS


CLOCK: Final = Clock()

# The gaps between the last 64 ticks (16 s at the normal pace): a late tick keeps counting for
# the deadlines armed during it until they are long past.
_gaps: Final[deque[float]] = deque([TICK_SECONDS], maxlen=64)


def tick() -> None:
    """Advance the clock; called by the gateway's periodic tick."""
    current = time.monotonic()
    _gaps.append(current - CLOCK.now)
    CLOCK.slack = max(_gaps)
    CLOCK.now = current
    CLOCK.wall = time.time()


def reset() -> None:
    """Start afresh just before listening: the time spent starting up is no tick gap."""
    CLOCK.now = time.monotonic()
    CLOCK.wall = time.time()
    CLOCK.slack = TICK_SECONDS
    _gaps.clear()
    _gaps.append(TICK_SECONDS)
