"""The two-node fault soak: two fastgate nodes (workers = 2 each) on one Redis, an nginx upstream,
wrk on both nodes, and faults on a schedule. Not part of `make test` (minutes, and wrk/nginx).

    .venv/bin/python bench/soak.py --out bench/results/<date>-soak.md

Phases (wrk -c8 on each node for the whole phase, statuses counted per phase):
  baseline, redis-down (Redis stopped for 10 s, then started), after-redis, sigterm (node A gets
  SIGTERM with 20 slow requests in flight, then is started again), reload (`/tyk/reload` and SIGHUP
  on both), crud (steady), final.
Throughout the run:
  - keys are created, updated and deleted through the Gateway API, alternating nodes; after each
    delete both nodes are probed every 50 ms for 2 s: no 200 may come more than 1 s after the
    delete answered;
  - one key with quota N is used from both nodes at once (one thread per node): exactly N
    answers 200 over the whole run;
  - RSS and open descriptors of every worker are read at the start and the end.
Redis is a private redis-server (AOF on, so keys and counters survive the stop); the shared
server on 6379 is not touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nodes import ADMIN, Bench, http, open_fds, rss_kib, wait_ready, worker_pids, wrk

from tests.kit.apis import classic_api, rights, token_api

QUOTA = 600
RSS_BOUND_KIB = 30 * 1024  # growth allowed per worker over the run
FD_BOUND = 20


class SlowUpstream:
    """Answers every request after `delay` seconds (the in-flight requests at SIGTERM)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    await asyncio.sleep(self.delay)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()

        server = self.loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bench = Bench()
        self.stop = threading.Event()
        self.phase = "setup"
        self.events: list[str] = []
        self.crud = Counter[str]()
        self.late_200: list[str] = []
        self.refusal_delays: list[float] = []
        self.quota_statuses: Counter[int] = Counter()
        self.quota_log: list[tuple[str, str, int, str | None]] = []
        self.inflight: list[int] = []
        self.memory: dict[str, dict[int, tuple[int, int]]] = {}
        self.quota_remaining: int | None = None

    def note(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.events.append(f"{stamp} [{self.phase}] {text}")
        print(f"{stamp} [{self.phase}] {text}", flush=True)

    # -- setup -------------------------------------------------------------------------------
    def start(self) -> None:
        b = self.bench
        upstream = b.upstream()
        self.slow = SlowUpstream(2.0)
        redis_url = b.start_redis()
        apis = [token_api("tok", upstream), classic_api("slow", "/slow/", f"http://127.0.0.1:{self.slow.port}")]
        settings = {"workers": self.args.workers, "storage": {"url": redis_url},
                    "http_server_options": {"shutdown_grace_period": 15}}
        self.a = b.node(apis, settings)
        self.b = b.node(apis, settings)
        for gw in (self.a, self.b):
            wait_ready(gw)
        self.load_key = self.create_key(self.a, {"access_rights": rights("tok")})
        self.quota_key = self.create_key(self.b, {"access_rights": rights("tok"), "quota_max": QUOTA,
                                                  "quota_renewal_rate": 3600, "rate": 1000, "per": 1})

    def create_key(self, gw: Any, body: dict[str, Any]) -> str:
        status, answer = http("POST", gw.url + "/tyk/keys/create", body)
        if status != 200:
            raise RuntimeError(f"key creation: {status} {answer}")
        return answer["key"]

    # -- background checks -------------------------------------------------------------------
    def crud_loop(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            maker, other = (self.a, self.b) if i % 2 else (self.b, self.a)
            status, answer = http("POST", maker.url + "/tyk/keys/create", {"access_rights": rights("tok")})
            self.crud[f"create {status}"] += 1
            if status != 200:
                time.sleep(0.5)
                continue
            key = answer["key"]
            for gw in (self.a, self.b):
                self.crud[f"use {http('GET', gw.url + '/tok/', headers={'Authorization': key})[0]}"] += 1
            status, _ = http("PUT", other.url + f"/tyk/keys/{key}",
                             {"access_rights": rights("tok"), "meta_data": {"round": i}})
            self.crud[f"update {status}"] += 1
            status, _ = http("DELETE", maker.url + f"/tyk/keys/{key}")
            self.crud[f"delete {status}"] += 1
            if status != 200:
                continue
            deleted = time.monotonic()
            refused: dict[str, float] = {}
            while time.monotonic() - deleted < 2.0:
                for name, gw in (("A", self.a), ("B", self.b)):
                    code = http("GET", gw.url + "/tok/", headers={"Authorization": key}, timeout=2)[0]
                    since = time.monotonic() - deleted
                    if code == 200 and since > 1.0:
                        self.late_200.append(f"{key[:12]}… on {name} {since:.2f} s after the delete")
                    if code != 200 and name not in refused:
                        refused[name] = since
                time.sleep(0.05)
            self.refusal_delays.extend(refused.values())

    def quota_loop(self, gw: Any) -> None:
        while not self.stop.is_set():
            req = urllib.request.Request(gw.url + "/tok/", headers={"Authorization": self.quota_key})
            remaining = None
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    code, remaining = r.status, r.headers.get("X-RateLimit-Remaining")
                    r.read()
            except urllib.error.HTTPError as e:
                code = e.code
            except OSError:
                code = 0
            self.quota_statuses[code] += 1
            self.quota_log.append((time.strftime("%H:%M:%S"), self.phase, code, remaining))
            time.sleep(0.25)

    def quota_gaps(self) -> list[str]:
        """Where a quota unit was used without a 200: the `X-RateLimit-Remaining` values the 200
        answers carried skip a number; the requests around the gap say when (and what they got)."""
        seen = {int(r): i for i, (_, _, c, r) in enumerate(self.quota_log) if c == 200 and r is not None}
        gaps = []
        for missing in sorted(set(range(0, QUOTA)) - set(seen)):
            after = seen.get(missing - 1)
            before = seen.get(missing + 1)
            window = self.quota_log[(before or 0): (after or len(self.quota_log)) + 1]
            gaps.append(f"remaining={missing} never answered: between {window[0][:2]} and {window[-1][:2]}, "
                        f"statuses there {dict(Counter(c for _, _, c, _ in window))}")
        return gaps

    # -- phases ------------------------------------------------------------------------------
    def run_phase(self, name: str, seconds: float, events: list[tuple[float, Any]]) -> dict[str, Any]:
        self.phase = name
        self.note(f"start ({seconds:.0f} s)")
        headers = {"Authorization": self.load_key}
        with ThreadPoolExecutor(2) as pool:
            runs = {label: pool.submit(wrk, gw.url + "/tok/", seconds, self.args.connections, 1, headers)
                    for label, gw in (("A", self.a), ("B", self.b))}
            began = time.monotonic()
            for at, action in events:
                time.sleep(max(0.0, began + at - time.monotonic()))
                action()
            return {label: f.result() for label, f in runs.items()}

    def redis_down(self) -> None:
        self.bench.stop_redis()
        self.note("redis stopped")

    def redis_up(self) -> None:
        self.bench.start_redis()
        self.note("redis started")

    def sigterm_a(self) -> None:
        results: list[int] = []

        def slow() -> None:
            results.append(http("GET", self.a.url + "/slow/", timeout=20)[0])

        threads = [threading.Thread(target=slow) for _ in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # all 20 are at the upstream now (it answers after 2 s)
        self.memory["A before SIGTERM"] = self.read_memory(self.a)
        self.note("SIGTERM to node A with 20 slow requests in flight")
        code = self.a.stop(timeout=30)
        for t in threads:
            t.join()
        self.inflight = results
        self.note(f"node A exited with {code}; in-flight answers: {dict(Counter(results))}")
        self.a.start(wait=False)
        wait_ready(self.a)
        self.note("node A started again")
        self.memory["A after restart"] = self.read_memory(self.a)

    def reload_both(self) -> None:
        for name, gw in (("A", self.a), ("B", self.b)):
            status, _ = http("GET", gw.url + "/tyk/reload", headers=ADMIN)
            self.note(f"/tyk/reload on {name}: {status}")

    def sighup_both(self) -> None:
        import signal
        for name, gw in (("A", self.a), ("B", self.b)):
            gw.signal(signal.SIGHUP)
            self.note(f"SIGHUP to {name}")

    def read_memory(self, gw: Any) -> dict[int, tuple[int, int]]:
        return {pid: (rss_kib(pid), open_fds(pid)) for pid in worker_pids(gw)}

    def run(self) -> dict[str, dict[str, Any]]:
        self.start()
        crud = threading.Thread(target=self.crud_loop, daemon=True)
        quotas = [threading.Thread(target=self.quota_loop, args=(gw,), daemon=True) for gw in (self.a, self.b)]
        results: dict[str, dict[str, Any]] = {}
        results["warm-up"] = self.run_phase("warm-up", 5, [])
        self.memory["A start"] = self.read_memory(self.a)
        self.memory["B start"] = self.read_memory(self.b)
        crud.start()
        for t in quotas:
            t.start()
        results["baseline"] = self.run_phase("baseline", 15, [])
        results["redis-down"] = self.run_phase("redis-down", 20, [(3, self.redis_down), (13, self.redis_up)])
        results["after-redis"] = self.run_phase("after-redis", 10, [])
        results["sigterm"] = self.run_phase("sigterm", 25, [(2, self.sigterm_a)])
        results["reload"] = self.run_phase("reload", 15, [(3, self.reload_both), (8, self.sighup_both)])
        results["crud"] = self.run_phase("crud", 20, [])
        results["final"] = self.run_phase("final", 10, [])
        self.stop.set()
        crud.join(10)
        for t in quotas:
            t.join(10)
        status, key = http("GET", self.b.url + f"/tyk/keys/{self.quota_key}")
        self.quota_remaining = key.get("quota_remaining") if status == 200 and isinstance(key, dict) else None
        self.memory["A end"] = self.read_memory(self.a)
        self.memory["B end"] = self.read_memory(self.b)
        return results


def report(soak: Soak, results: dict[str, dict[str, Any]], args: argparse.Namespace, seconds: float) -> tuple[str, bool]:
    lines = [f"# Fault soak: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC", "",
             f"Command: `.venv/bin/python bench/soak.py --workers {args.workers} --connections {args.connections}`",
             f"Machine: {os.cpu_count()} cores shared with four other engineers' builds and tests: rps are "
             "indicative only; the checks are what this run is for.", "",
             "Two nodes (A, B) × `workers = 2`, one private redis-server (AOF), an nginx upstream; wrk "
             f"`-t1 -c{args.connections}` on each node's auth-token API for every phase.", "",
             "| phase | node | requests | rps | statuses | socket errors (connect/read/write/timeout) |",
             "|---|---|---|---|---|---|"]
    ok = True
    total = 0
    for phase, per_node in results.items():
        for node, r in per_node.items():
            total += r.requests
            e = r.errors
            lines.append(f"| {phase} | {node} | {r.requests} | {r.rps:.0f} | {dict(sorted(r.statuses.items()))} | "
                         f"{e['connect']}/{e['read']}/{e['write']}/{e['timeout']} |")
            bad = {s: n for s, n in r.statuses.items() if s >= 500 and not (s == 503 and phase == "redis-down")}
            if bad:
                ok = False
                lines.append(f"|  | **{node}: 5xx outside the Redis outage: {bad}** | | | | |")
    lines += ["", f"Total wrk requests: {total}; run time {seconds:.0f} s.", ""]
    quota_ok = soak.quota_statuses[200] == QUOTA
    ok &= quota_ok
    lines.append(f"- Quota key (`quota_max: {QUOTA}`) used from both nodes at once across every phase: "
                 f"statuses {dict(sorted(soak.quota_statuses.items()))}; accepted (200) "
                 f"{soak.quota_statuses[200]} — {'exactly N' if quota_ok else 'NOT exactly N'}; "
                 f"the counter in Redis says {QUOTA - (soak.quota_remaining or 0)} used "
                 f"(`quota_remaining` {soak.quota_remaining}): a unit used by a request that got no 200 "
                 "(its answer lost to a fault) shows as used > accepted; over-admission as accepted > N.")
    for gap in soak.quota_gaps():
        lines.append(f"  - {gap}")
    late_ok = not soak.late_200
    ok &= late_ok
    delays = sorted(soak.refusal_delays)
    worst = f"{delays[-1] * 1000:.0f} ms" if delays else "n/a"
    lines.append(f"- Key CRUD through the Gateway API on both nodes: {dict(sorted(soak.crud.items()))}; "
                 f"after each delete, requests with that key that got 200 more than 1 s later: "
                 f"{len(soak.late_200)} {soak.late_200[:5]}; slowest refusal after a delete: {worst}.")
    inflight_ok = len(soak.inflight) == 20 and all(s == 200 for s in soak.inflight)
    ok &= inflight_ok
    lines.append(f"- In-flight at SIGTERM (20 requests to a 2 s upstream on node A): answers "
                 f"{dict(Counter(soak.inflight))} — {'all completed' if inflight_ok else 'NOT all completed'}.")
    lines += ["", "Worker processes: RSS (KiB) and open descriptors.", "",
              "| when | pid: (RSS KiB, fds) |", "|---|---|"]
    for when, values in soak.memory.items():
        lines.append(f"| {when} | {values} |")
    growth_ok = True
    for node, start_key in (("A", "A after restart"), ("B", "B start")):
        start, end = soak.memory.get(start_key, {}), soak.memory.get(f"{node} end", {})
        for pid in set(start) & set(end):
            rss = end[pid][0] - start[pid][0]
            fds = end[pid][1] - start[pid][1]
            within = rss <= RSS_BOUND_KIB and fds <= FD_BOUND
            growth_ok &= within
            lines.append(f"| growth {node} pid {pid} | RSS {rss:+d} KiB, fds {fds:+d} "
                         f"({'within' if within else 'BEYOND'} +{RSS_BOUND_KIB // 1024} MiB / +{FD_BOUND}) |")
    ok &= growth_ok
    lines += ["", "Events:", "", *[f"- {e}" for e in soak.events], "",
              f"Result: {'PASS' if ok else 'FAIL'}"]
    return "\n".join(lines) + "\n", ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args()
    soak = Soak(args)
    began = time.monotonic()
    try:
        results = soak.run()
    finally:
        soak.stop.set()
        logs = {f"node{i}": gw.log[-3000:] for i, gw in enumerate(soak.bench.nodes)}
        soak.bench.close()
    text, ok = report(soak, results, args, time.monotonic() - began)
    tracebacks = [name for name, log in logs.items() if "Traceback" in log]
    if tracebacks:
        text += f"\nTracebacks in the logs of {tracebacks}:\n\n```\n" + "\n".join(logs[n] for n in tracebacks) + "\n```\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
