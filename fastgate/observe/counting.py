"""The per-request half of the metrics: which slot of an API's counter list a response bumps.

Compiled with mypyc (``fastgate/build.py``): the slot layout is ``Final`` literals folded into the
code and ``count_response`` is a direct C call from ``Gateway.record``. Measured with
``bench/loopbench.py keyless --clock cpu`` (compiled, 6 rounds each, a loaded 2-core machine):
counting adds ~0.7 us per request (9.2-9.8 us with ``--no-metrics``, 10.1-10.3 with); the same
counting written in ``gateway.py`` against an interpreted layout module with ``bisect`` added
1.0-1.5 us. ``fastgate.observe.metrics`` reads the same layout at scrape time.
"""

from __future__ import annotations

from typing import Final

__all__ = ["count_response"]

METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other")
STATUS_CLASSES: Final = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
REQUESTS_SIZE: Final = 48  # methods x status classes
# Latency histograms (seconds): upstream (request sent -> response head) and the gateway's own
# time before the request left for the upstream.
LATENCY_BOUNDS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS: Final = 15  # the bounds and +Inf
UPSTREAM_BASE: Final = 48
UPSTREAM_SUM_US: Final = 63  # the sum in microseconds (ints only)
OVERHEAD_BASE: Final = 64
OVERHEAD_SUM_US: Final = 79
AUTH_ALLOWED: Final = 80  # requests of an API with auth that passed every stage
AUTH_REPORTED: Final = 81  # auth_report_only: refused by auth but proxied anyway
COUNTERS_SIZE: Final = 82


def count_response(counters: list[int], method: str, status: int, started: float, sent: float, head: float,
                   allowed: bool) -> None:
    """Bump ``counters`` for one response: its method and status class, and for a proxied
    request (``sent`` > 0) the two latency histograms and the auth "allowed" count."""
    if method == "GET":
        slot = 0
    elif method == "POST":
        slot = 6
    elif method == "PUT":
        slot = 12
    elif method == "PATCH":
        slot = 18
    elif method == "DELETE":
        slot = 24
    elif method == "HEAD":
        slot = 30
    elif method == "OPTIONS":
        slot = 36
    else:
        slot = 42
    # ``c[i] = c[i] + n`` rather than ``c[i] += n``: compiled, the first is native int arithmetic,
    # the second a generic in-place add (count_response 1,590 -> 1,440 instructions, bench/instr.py).
    i = slot + (status // 100 if 100 <= status < 600 else 0)
    counters[i] = counters[i] + 1
    if sent <= 0.0:
        return
    if head > 0.0:
        spent = head - sent
        i = UPSTREAM_BASE + _bucket(spent)
        counters[i] = counters[i] + 1
        counters[UPSTREAM_SUM_US] = counters[UPSTREAM_SUM_US] + int(spent * 1e6)
    spent = sent - started
    i = OVERHEAD_BASE + _bucket(spent)
    counters[i] = counters[i] + 1
    counters[OVERHEAD_SUM_US] = counters[OVERHEAD_SUM_US] + int(spent * 1e6)
    if allowed:
        counters[AUTH_ALLOWED] = counters[AUTH_ALLOWED] + 1


def _bucket(seconds: float) -> int:
    """The histogram bucket of ``seconds`` (Prometheus ``le``: the first bound not below it).

    A binary search over ``LATENCY_BOUNDS`` written out with literals: compiled, it is a few
    float comparisons, where a loop over the ``Final`` tuple made mypyc box its 14 floats into a
    new tuple on every call (≈ 1,500 instructions a call, two calls a request, by
    ``bench/instr.py``). ``tests/unit/test_metrics.py`` checks it against the bounds."""
    if seconds <= 0.025:
        if seconds <= 0.0025:
            if seconds <= 0.0005:
                return 0
            return 1 if seconds <= 0.001 else 2
        if seconds <= 0.005:
            return 3
        return 4 if seconds <= 0.01 else 5
    if seconds <= 0.5:
        if seconds <= 0.05:
            return 6
        if seconds <= 0.1:
            return 7
        return 8 if seconds <= 0.25 else 9
    if seconds <= 1.0:
        return 10
    if seconds <= 2.5:
        return 11
    if seconds <= 5.0:
        return 12
    return 13 if seconds <= 10.0 else 14
