"""A coarse monotonic clock, advanced by the gateway's tick (every 250 ms).

Deadlines (header read, body read, idle, upstream) are plain float comparisons against
``clock.now`` checked by the same tick, so arming a timeout on the request path is one attribute
store instead of a ``loop.call_later`` handle (about 1.5 µs to create and cancel, per request).
A deadline is armed from a value up to one tick old, so the checker compares it with
``now - TICK_SECONDS``: a timeout never fires early and fires up to two ticks late, which is fine
for timeouts measured in seconds.
"""

from __future__ import annotations

import time

__all__ = ["now", "wall", "tick", "TICK_SECONDS"]

TICK_SECONDS = 0.25

now: float = time.monotonic()
wall: float = time.time()


def tick() -> None:
    """Advance the clock; called by the gateway's periodic tick."""
    global now, wall
    now = time.monotonic()
    wall = time.time()
