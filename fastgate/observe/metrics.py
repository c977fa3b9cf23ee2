"""Prometheus metrics: plain integers counted per worker, turned into text only at scrape.

The request path pays one list increment per request (and two for the latency histograms of a
proxied one): every API gets one flat ``list[int]`` (``ApiCounters``, laid out by the ``*_BASE``
constants below), handed to its ``CompiledApi`` at load and kept by API id across reloads, and
``fastgate.gateway.Gateway.record`` bumps its slots. No lock, no label lookup, no formatting per
request. Refusals (rarer) go through ``Metrics.refused`` with the stage that decided and its
message as labels (bounded: at most ``MAX_REASONS`` distinct reasons per API, then "other").

With ``workers > 1`` every worker writes its counters as JSON to ``<shared dir>/<pid>.json`` once
a second (``Metrics.publish``, on the clock tick); the worker that answers a scrape adds the files
of its living siblings to its own live counters. So a scrape sees every worker, each sibling at
most a second late; counters of a worker that died go with it (Prometheus reads that as a reset).

The text is made with prometheus-client's exposition (``generate_latest`` over a custom
collector), so the format is exactly what Prometheus parses.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Final, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = [
    "CONTENT_TYPE", "LATENCY_BOUNDS", "METHOD_SLOTS", "Metrics", "count_fetches", "new_counters", "set_shared_dir",
]

log = logging.getLogger("fastgate.metrics")

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST.encode()

from fastgate.observe.counting import (  # noqa: E402 - the layout the request path counts in
    AUTH_ALLOWED, AUTH_REPORTED, BUCKETS, COUNTERS_SIZE, LATENCY_BOUNDS, METHODS, OVERHEAD_BASE, OVERHEAD_SUM_US,
    REQUESTS_SIZE, STATUS_CLASSES, UPSTREAM_BASE, UPSTREAM_SUM_US,
)

from fastgate.store.stats import (  # noqa: E402 - the store's round trips, read at scrape
    BUCKETS as STORE_BUCKETS, ERRORS as STORE_ERRORS, ERRORS_AT as STORE_ERRORS_AT, OPERATIONS as STORE_OPERATIONS,
    STORE_BOUNDS, STRIDE as STORE_STRIDE, SUM_US as STORE_SUM_US,
)

METHOD_SLOTS: Final = {m: i for i, m in enumerate(METHODS[:-1])}
OTHER_METHOD: Final = len(METHODS) - 1
assert REQUESTS_SIZE == len(METHODS) * len(STATUS_CLASSES) and BUCKETS == len(LATENCY_BOUNDS) + 1
assert COUNTERS_SIZE == AUTH_REPORTED + 1 and UPSTREAM_SUM_US == UPSTREAM_BASE + BUCKETS

MAX_REASONS: Final = 64
_PUBLISH_EVERY: Final = 1.0

_shared_dir: str = ""  # set by the supervisor before it forks the workers


def new_counters() -> list[int]:
    """One API's counters, all zero."""
    return [0] * COUNTERS_SIZE


def set_shared_dir(path: str) -> None:
    """Where the workers of this supervisor publish their counters (called before forking)."""
    global _shared_dir
    _shared_dir = path


def make_shared_dir() -> str:
    """A fresh private directory for the workers' counter files."""
    path = tempfile.mkdtemp(prefix="fastgate-metrics-")
    set_shared_dir(path)
    return path


def stage_name(stage: Callable[..., Any]) -> str:
    """A stage's name for labels: its module's last part (``token``, ``jwt``, ``post_auth``...),
    so methods added later are named without an edit here."""
    module = getattr(stage, "__module__", None)
    if not module:  # a compiled bound method: its object's class names the module
        module = type(getattr(stage, "__self__", None)).__module__
    parts = [p for p in module.split(".") if p not in ("fastgate", "stage", "auth")]
    return parts[-1] if parts else "stage"


def count_fetches(owner: Any, attribute: str, metrics: "Metrics", name: str) -> None:
    """Wrap the async fetch function ``owner.<attribute>`` (e.g. the JWKS manager's ``_fetcher``)
    so every call counts in ``<name>_total`` and every failure in ``<name>_failures_total``."""
    fetch = getattr(owner, attribute, None)
    if fetch is None:
        return
    counts = {"calls": 0, "failures": 0}

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counts["calls"] += 1
        try:
            return await fetch(*args, **kwargs)
        except BaseException:
            counts["failures"] += 1
            raise

    setattr(owner, attribute, counted)
    metrics.counters[name] = lambda: counts["calls"]
    metrics.counters[name + "_failures"] = lambda: counts["failures"]


class Metrics:
    """This worker's counters and the scrape."""

    def __init__(self) -> None:
        self.apis: dict[str, list[int]] = {}
        # (api_id, stage, outcome, reason) -> count; reasons bounded per API
        self.refusals: dict[tuple[str, str, str, str], int] = {}
        self.reasons: dict[str, set[str]] = {}
        self.limits: dict[tuple[str, str], int] = {}  # (api_id, "rate"|"quota") -> refusals
        self.gauges: dict[str, Callable[[], float]] = {}  # name -> read at scrape
        self.counters: dict[str, Callable[[], int]] = {}  # name -> read at scrape (monotonic)
        self.store: list[int] | None = None  # the Redis store's counters (fastgate.store.stats)
        self.build: tuple[str, str] = ("", "")
        self.published_at = 0.0

    def counters_for(self, api_id: str) -> list[int]:
        """The counters of ``api_id`` (the same list across reloads)."""
        counters = self.apis.get(api_id)
        if counters is None:
            counters = self.apis[api_id] = new_counters()
        return counters

    def refused(self, api_id: str, stage: str, status: int, message: str, outcome: str = "refused") -> None:
        """One refusal by ``stage`` (off the fast path: denials only); ``outcome`` "report_only"
        for one an ``auth_report_only`` API let through."""
        seen = self.reasons.setdefault(api_id, set())
        reason = message if message in seen or len(seen) < MAX_REASONS else "other"
        seen.add(reason)
        key = (api_id, stage, outcome, reason)
        self.refusals[key] = self.refusals.get(key, 0) + 1
        kind = "rate" if status == 429 else "quota" if message == "Quota exceeded" else ""
        if kind and outcome == "refused":
            self.limits[(api_id, kind)] = self.limits.get((api_id, kind), 0) + 1

    # ---- workers ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """This worker's counters as JSON-ready data."""
        return {
            "apis": self.apis,
            "refusals": [[*k, v] for k, v in self.refusals.items()],
            "limits": [[*k, v] for k, v in self.limits.items()],
            "counters": {name: read() for name, read in self.counters.items()},
            "store": list(self.store) if self.store is not None else [],
        }

    def publish(self, now: float) -> None:
        """Under the supervisor: write this worker's snapshot for its siblings (once a second)."""
        if not _shared_dir or now - self.published_at < _PUBLISH_EVERY:
            return
        self.published_at = now
        target = Path(_shared_dir) / f"{os.getpid()}.json"
        try:
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(json.dumps(self.snapshot()).encode())
            tmp.replace(target)
        except OSError as exc:
            log.warning("cannot publish metrics to %s: %s", target, exc)

    def siblings(self) -> list[dict[str, Any]]:
        """The published snapshots of the other living workers."""
        if not _shared_dir:
            return []
        found = []
        me = os.getpid()
        for file in Path(_shared_dir).glob("*.json"):
            try:
                pid = int(file.stem)
                if pid == me:
                    continue
                os.kill(pid, 0)  # still alive?
                found.append(json.loads(file.read_bytes()))
            except (ValueError, OSError):
                continue
        return found

    # ---- scrape -------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's counters plus this worker's gauges."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, [self.snapshot(), *self.siblings()]))
        return generate_latest(registry)


class _Collector(Collector):
    def __init__(self, metrics: Metrics, snapshots: list[dict[str, Any]]) -> None:
        self.metrics = metrics
        self.snapshots = snapshots

    def collect(self) -> Iterable[Any]:
        apis: dict[str, list[int]] = {}
        refusals: dict[tuple[str, ...], int] = {}
        limits: dict[tuple[str, ...], int] = {}
        counters: dict[str, int] = {}
        store = [0] * (len(STORE_OPERATIONS) * STORE_STRIDE)
        has_store = False
        for snap in self.snapshots:
            values = snap.get("store") or []
            if len(values) == len(store):
                has_store = True
                for i, v in enumerate(values):
                    store[i] += v
            for api_id, values in snap["apis"].items():
                total = apis.setdefault(api_id, new_counters())
                for i, v in enumerate(values[:COUNTERS_SIZE]):
                    total[i] += v
            for *key, v in snap["refusals"]:
                refusals[tuple(key)] = refusals.get(tuple(key), 0) + v
            for *key, v in snap["limits"]:
                limits[tuple(key)] = limits.get(tuple(key), 0) + v
            for name, v in snap["counters"].items():
                counters[name] = counters.get(name, 0) + v

        requests = CounterMetricFamily("fastgate_requests", "Requests answered, by API, method and status class",
                                       labels=["api_id", "method", "status_class"])
        auth = CounterMetricFamily("fastgate_auth_decisions", "Auth decisions by API, deciding stage and outcome",
                                   labels=["api_id", "stage", "outcome", "reason"])
        limit = CounterMetricFamily("fastgate_limit_refusals", "Rate-limit and quota refusals",
                                    labels=["api_id", "kind"])
        upstream = HistogramMetricFamily("fastgate_upstream_latency_seconds",
                                         "From the request sent upstream to the response head", labels=["api_id"])
        overhead = HistogramMetricFamily("fastgate_gateway_overhead_seconds",
                                         "The gateway's own time before the request leaves for the upstream",
                                         labels=["api_id"])
        for api_id, c in sorted(apis.items()):
            for m, method in enumerate(METHODS):
                for s, status in enumerate(STATUS_CLASSES):
                    value = c[m * len(STATUS_CLASSES) + s]
                    if value:
                        requests.add_metric([api_id, method, status], value)
            if c[AUTH_ALLOWED]:
                auth.add_metric([api_id, "auth", "allowed", ""], c[AUTH_ALLOWED])
            for base, sum_slot, family in ((UPSTREAM_BASE, UPSTREAM_SUM_US, upstream),
                                           (OVERHEAD_BASE, OVERHEAD_SUM_US, overhead)):
                if any(c[base:base + BUCKETS]):
                    family.add_metric([api_id], _buckets(c[base:base + BUCKETS]), c[sum_slot] / 1e6)
        for (api_id, stage, outcome, reason), value in sorted(refusals.items()):
            auth.add_metric([api_id, stage, outcome, reason], value)
        for (api_id, kind), value in sorted(limits.items()):
            limit.add_metric([api_id, kind], value)
        yield from (requests, auth, limit, upstream, overhead)
        if has_store:
            yield from _store_families(store)
        for name, value in sorted(counters.items()):
            family = CounterMetricFamily(f"fastgate_{name}", name.replace("_", " "))
            family.add_metric([], value)
            yield family
        for name, read in sorted(self.metrics.gauges.items()):
            gauge = GaugeMetricFamily(f"fastgate_{name}", name.replace("_", " ") + " (this worker)")
            gauge.add_metric([], read())
            yield gauge
        version, build = self.metrics.build
        info = GaugeMetricFamily("fastgate_build_info", "The running fastgate", labels=["version", "build"])
        info.add_metric([version, build], 1)
        yield info


def _store_families(store: list[int]) -> Iterable[Any]:
    """The Redis store's round trips (histogram) and errors, by operation."""
    trips = HistogramMetricFamily("fastgate_store_operation_seconds",
                                  "Round trips to the Redis store by operation (failed ones too)",
                                  labels=["operation"])
    errors = CounterMetricFamily("fastgate_store_errors", "Failed store operations by operation and error kind",
                                 labels=["operation", "error"])
    for op, name in enumerate(STORE_OPERATIONS):
        base = op * STORE_STRIDE
        trips.add_metric([name], _buckets(store[base:base + STORE_BUCKETS], STORE_BOUNDS),
                         store[base + STORE_SUM_US] / 1e6)
        for kind, error in enumerate(STORE_ERRORS):
            errors.add_metric([name, error], store[base + STORE_ERRORS_AT + kind])
    return trips, errors


def _buckets(counts: list[int], bounds: tuple[float, ...] = LATENCY_BOUNDS) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs, as Prometheus histograms are written."""
    out = []
    running = 0
    for bound, count in zip((*(repr(b) for b in bounds), "+Inf"), counts):
        running += count
        out.append((bound, running))
    return out
