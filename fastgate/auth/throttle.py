"""Failed-login throttling for basic auth: a bounded table of failure counters per key.

Password guessing against basic auth costs the attacker one request per guess. Counting failures
per user name and per client address, and answering 429 once either passes its limit within the
window, turns an online guessing run into a crawl. Memory is bounded: each table keeps at most
``capacity`` keys and forgets the least recently failed one first, so a flood of made-up user
names or spoofed-looking addresses cannot grow it. Counts are per gateway process.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["FailureCounter"]


class FailureCounter:
    """Failures per key in fixed windows of ``window`` seconds; ``limit`` of them blocks the key
    until its window ends. ``limit`` 0 means no limit (nothing is counted)."""

    __slots__ = ("_clock", "_table", "capacity", "limit", "window")

    def __init__(self, limit: int, window: float, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._table: OrderedDict[str, list[float]] = OrderedDict()  # key -> [window start, count]

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may try again; 0 when it is not blocked."""
        entry = self._table.get(key)
        if entry is None or entry[1] < self.limit or not self.limit:
            return 0
        left = entry[0] + self.window - self._clock()
        if left <= 0:
            del self._table[key]
            return 0
        return max(1, math.ceil(left))

    def failed(self, key: str) -> int:
        """Count one failure of ``key``; the failures in its current window."""
        if not self.limit:
            return 0
        now = self._clock()
        entry = self._table.get(key)
        if entry is None or now - entry[0] >= self.window:
            entry = self._table[key] = [now, 0]
        entry[1] += 1
        self._table.move_to_end(key)
        while len(self._table) > self.capacity:
            self._table.popitem(last=False)
        return int(entry[1])

    def __len__(self) -> int:
        return len(self._table)
