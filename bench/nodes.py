"""What the multi-node benches share (soak.py, scaling.py, memory.py): an nginx upstream, a
private redis-server to stop and start, fastgate nodes with N workers, wrk with per-status counts,
and the RSS / open descriptors of a node's worker processes (read from /proc).

Everything is started under one temporary prefix and stopped by `Bench.close()`; the shared Redis
on 6379 is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.procs import SECRET, Gateway, free_port, wait_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
ADMIN = {"X-Tyk-Authorization": SECRET}
BODY = '{"ok":true,"service":"bench-upstream","items":[1,2,3],"note":"a small fixed JSON answer"}'

# wrk counts statuses per thread; done() adds them up and prints one JSON line.
WRK_STATUS_LUA = """
counts = {}  -- a global: done() reads each thread's copy with t:get
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%d": %d', k, v)) end
  local e = summary.errors
  io.write(string.format('WRKJSON {"statuses": {%s}, "requests": %d, "seconds": %.3f, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\\n', table.concat(parts, ", "), summary.requests,
    summary.duration / 1e6, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class WrkResult:
    statuses: dict[int, int]
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Bench:
    prefix: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fastgate-nodes-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    nodes: list[Gateway] = field(default_factory=list)
    redis_port: int = 0
    redis_proc: subprocess.Popen[bytes] | None = None

    # -- upstream ---------------------------------------------------------------------------
    def nginx(self, name: str, conf_text: str, port: int) -> subprocess.Popen[bytes]:
        conf = self.prefix / f"{name}.conf"
        conf.write_text(conf_text)
        proc = subprocess.Popen([_tool("nginx"), "-p", str(self.prefix), "-c", str(conf),
                                 "-e", str(self.prefix / f"{name}-error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc=proc)
        return proc

    def upstream(self) -> str:
        """The nginx upstream of bench/run.py (1 worker, keep-alive, fixed JSON body)."""
        port = free_port()
        text = (BENCH / "nginx-upstream.conf").read_text()
        text = text.replace("{{prefix}}", str(self.prefix)).replace("{{upstream_port}}", str(port))
        text = text.replace("{{body}}", BODY)
        self.nginx("upstream", text, port)
        return f"http://127.0.0.1:{port}"

    # -- redis ------------------------------------------------------------------------------
    def start_redis(self) -> str:
        """A private redis-server (AOF on, so a stop/start keeps keys and counters)."""
        if not self.redis_port:
            self.redis_port = free_port()
        work = self.prefix / "redis"
        work.mkdir(exist_ok=True)
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(work),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.redis_port, proc=self.redis_proc)
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def stop_redis(self) -> None:
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.terminate()  # a clean shutdown: the AOF is flushed
            self.redis_proc.wait(10)
        self.redis_proc = None

    # -- nodes ------------------------------------------------------------------------------
    def node(self, apis: list[dict[str, Any]], settings: dict[str, Any], policies: dict[str, Any] | None = None,
             port: int | None = None) -> Gateway:
        directory = self.prefix / f"node{len(self.nodes)}"
        directory.mkdir()
        gw = Gateway(directory, apis, settings, policies=policies, port=port, wait=False)
        self.nodes.append(gw)
        return gw

    def close(self) -> None:
        for gw in self.nodes:
            try:
                gw.stop(timeout=20)
            except Exception:  # keep stopping the rest
                pass
        self.stop_redis()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        shutil.rmtree(self.prefix, ignore_errors=True)


def wait_ready(gw: Gateway, timeout: float = 30) -> None:
    gw.ready()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http("GET", gw.url + "/hello")[0] == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"node on {gw.port} not ready:\n{gw.log[-2000:]}")


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 5) -> tuple[int, Any]:
    """One request: (status, decoded JSON or raw bytes); status 0 when no answer came."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={**ADMIN, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw


def wrk(url: str, seconds: float, connections: int, threads: int = 1, headers: dict[str, str] | None = None,
        cpus: str | None = None) -> WrkResult:
    """wrk for ``seconds`` with status counts (`WRK_STATUS_LUA`)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_STATUS_LUA)
    argv = [_tool("wrk"), f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s", "-s", str(script)]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    out = subprocess.run(argv + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    script.unlink()
    m = re.search(r"WRKJSON (\{.*\})", out)
    if m is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    data = json.loads(m.group(1))
    return WrkResult({int(k): v for k, v in data["statuses"].items()}, data["requests"], data["seconds"],
                     data["errors"], data["p50_ms"], data["p99_ms"])


def worker_pids(gw: Gateway) -> list[int]:
    """The node's worker processes (its main process's children), or the main one alone."""
    assert gw.proc is not None
    children = _children(gw.proc.pid)
    return children or [gw.proc.pid]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise SystemExit(f"{name} is not installed (apt-get install -y {name})")
    return path
