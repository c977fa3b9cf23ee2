"""`make bench`: wrk on loopback against the upstream, nginx and fastgate, side by side, in one run.

One run starts three servers of its own, each with one worker:

- the upstream: an nginx answering a small fixed JSON body (``bench/nginx-upstream.conf``);
- the proxy nginx: ``proxy_pass`` with upstream keep-alive (``bench/nginx.conf``);
- fastgate, once per scenario, on a config generated from ``bench/configs/``;

then, for every scenario in ``bench/scenarios.py``, drives each target with wrk (a short warm-up,
then the measured run), and writes ``bench/results/<date>-<HHMM>.md`` and ``latest.md`` with
rps, p50 and p99 per target and the fastgate/nginx ratios. Every process it starts is stopped
when it ends, also on an error or Ctrl-C. Scratch files and server logs go to ``bench/tmp/run/``
(kept after the run for a look, wiped at the next one). Finally it runs ``bench/micro.py``.

    .venv/bin/python bench/run.py [--duration 10] [--connections 50] [--only keyless] ...
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from scenarios import API_KEY, SCENARIOS, Context, Prepared, Scenario  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
# ~100 bytes of JSON, the answer of every upstream request.
UPSTREAM_BODY = '{"status":"ok","service":"bench-upstream","message":"a small fixed JSON body","request_id":123456}'
TOOLS = {"wrk": "wrk", "nginx": "nginx"}  # binary -> Debian package


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = select(args.only)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:20} {s.title}")
        return 0
    tools = ensure_tools()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    procs = Processes()
    try:
        bench = Bench(args, tools, procs)
        report = bench.run(scenarios)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        procs.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    print(report.table)
    for path in bench.profiles:
        print(summarize_profile(path))
    if not args.no_save:
        path = report.save(BENCH / "results")
        print(f"wrote {path.relative_to(ROOT)} and bench/results/latest.md")
    if not args.no_micro:
        code, micro = run_micro()
        if not args.no_save and micro:
            report.append_micro(micro)
        return code
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (10)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of the warm-up run before each target's first round (3)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1: the machine has 2 cores)")
    p.add_argument("--rounds", type=int, default=3, help="measure the targets N times in turn, report the median (3)")
    p.add_argument("--only", action="append", default=[], metavar="SCENARIO", help="run only these (repeatable, or comma-separated)")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                   help="pin the proxy under test (nginx, fastgate) to the first CPU, wrk and the upstream to the others (default: on)")
    p.add_argument("--profile", action="store_true", help="record a py-spy flame graph of fastgate during each measured run (py-spy on PATH or bench/tmp/tools/bin)")
    p.add_argument("--ref", metavar="REV", help="run fastgate as committed at REV (git archive into bench/tmp/), "
                   "not the work tree: for before/after comparisons, and a stable build while others edit; "
                   "or a directory holding a fastgate/ package")
    p.add_argument("--compare", metavar="REV", help="also measure fastgate at REV (or a directory) in the same "
                   "rounds, as the target fastgate@REV: an interleaved before/after, fair on a noisy machine")
    p.add_argument("--no-micro", action="store_true", help="skip bench/micro.py at the end")
    p.add_argument("--no-save", action="store_true", help="print the table only, write no results file")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


def select(only: list[str]) -> list[Scenario]:
    names = [n for item in only for n in item.split(",") if n]
    known = {s.name for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [s for s in SCENARIOS if not names or s.name in names]


class BenchError(Exception):
    """A server would not start, a probe failed, wrk failed: the run cannot be trusted."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# ---- tools -------------------------------------------------------------------------------------


def ensure_tools() -> dict[str, str]:
    """Paths of wrk and nginx, installed with apt-get when missing."""
    found = {name: _which(name) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = [TOOLS[name] for name in missing]
        print(f"installing {' '.join(packages)} with apt-get", file=sys.stderr)
        # RUNLEVEL=1 keeps the package's own nginx service from starting.
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", RUNLEVEL="1")
        install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        if subprocess.run(install, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=True)
        found = {name: _which(name) for name in TOOLS}
        still = [name for name, path in found.items() if path is None]
        if still:
            raise SystemExit(f"bench: {', '.join(still)} still missing after apt-get install")
    return {name: path for name, path in found.items() if path is not None}


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


# ---- processes ---------------------------------------------------------------------------------


class Processes:
    """Every process this run started, stopped in reverse order whatever happens."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], log: Path, cpus: set[int] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        out = open(log, "ab")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
                **kw,
            )
        finally:
            out.close()
        self.running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the process (and its group: nginx workers, fastgate workers), then SIGKILL."""
        self.running = [(n, p) for n, p in self.running if p is not proc]
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the leader left behind in its group goes too.
        _signal_group(proc, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20.0) -> None:
    """Wait until ``url`` answers (any status), or fail with the end of the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{url}: the server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1, context=_NO_VERIFY):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise BenchError(f"{url}: no answer after {timeout:.0f}s:\n{_tail(log)}")


# The bench's own self-signed certificates are not worth verifying in probes.
_NO_VERIFY = ssl.create_default_context()
_NO_VERIFY.check_hostname = False
_NO_VERIFY.verify_mode = ssl.CERT_NONE


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---- templates and config ----------------------------------------------------------------------


def render(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{name}}``; an unknown name is an error, not a silent hole."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise BenchError(f"unknown placeholder {{{{{name}}}}}")
        return values[name]

    return re.sub(r"\{\{(\w+)\}\}", sub, text)


def render_data(data: Any, values: Mapping[str, str]) -> Any:
    if isinstance(data, str):
        return render(data, values)
    if isinstance(data, Mapping):
        return {k: render_data(v, values) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [render_data(v, values) for v in data]
    return data


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def to_toml(data: Mapping[str, Any]) -> str:
    """Enough TOML for fastgate's config: scalars, lists of scalars, tables, arrays of tables."""
    lines: list[str] = []
    _toml_table(data, [], lines)
    return "\n".join(lines) + "\n"


def _toml_table(data: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    def is_table_array(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(i, Mapping) for i in v)

    for key, value in data.items():
        if not isinstance(value, Mapping) and not is_table_array(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, Mapping):
            lines.append(f"\n[{'.'.join(_toml_key(k) for k in [*path, key])}]")
            _toml_table(value, [*path, key], lines)
        elif is_table_array(value):
            for item in value:
                lines.append(f"\n[[{'.'.join(_toml_key(k) for k in [*path, key])}]]")
                _toml_table(item, [*path, key], lines)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise BenchError(f"cannot write {value!r} as TOML")


# ---- wrk ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    command: str
    server_cpu_us: float = 0.0  # CPU time of the server under test per request (µs)
    other_cores: float = 0.0  # CPUs kept busy by processes outside this benchmark meanwhile
    load_busy: float = 0.0  # how busy the CPU(s) of wrk and the upstream were, 0..1 (with --pin)

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_wrk(output: str, command: str) -> WrkResult:
    """Read rps, p50 and p99 (in ms) and the error counts from ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    pct = {m.group(1): float(m.group(2)) * _UNIT_MS[m.group(3)]
           for m in re.finditer(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)}
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or "50" not in pct or "99" not in pct or total is None:
        raise BenchError(f"cannot read wrk's output of `{command}`:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=pct["50"],
        p99_ms=pct["99"],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
        command=command,
    )


def median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        command=results[0].command,
        server_cpu_us=statistics.median(r.server_cpu_us for r in results),
        other_cores=max(r.other_cores for r in results),
        load_busy=statistics.median(r.load_busy for r in results),
    )


# ---- CPU accounting ----------------------------------------------------------------------------
# The machine may be shared (other people's tests): throughput then says little on its own. So
# each measured run also records the CPU time the server under test spent per request (robust to
# interference) and how much CPU processes outside the benchmark took meanwhile (how much to trust
# the run).

_CLK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class CpuSnapshot:
    busy: float  # user + nice + system + steal seconds over all CPUs
    groups: dict[int, float]  # CPU seconds of the live processes of each of our process groups
    children: float  # CPU seconds of our reaped children (wrk runs)
    at: float
    per_cpu: dict[int, tuple[int, int]]  # cpu -> (non-idle ticks incl. irq/softirq, all ticks)


def cpu_snapshot(pgids: set[int]) -> CpuSnapshot:
    import resource

    lines = Path("/proc/stat").read_text().splitlines()
    fields = lines[0].split()
    # user + nice + system, and steal: time the hypervisor gave our CPUs to someone else.
    busy = (int(fields[1]) + int(fields[2]) + int(fields[3]) + int(fields[8])) / _CLK
    per_cpu = {}
    for line in lines[1:]:
        if not line.startswith("cpu"):
            break
        name, *ticks = line.split()
        values = [int(t) for t in ticks[:8]]
        total = sum(values)
        per_cpu[int(name[3:])] = (total - values[3] - values[4], total)  # minus idle and iowait
    groups = dict.fromkeys(pgids, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rindex(")") + 2 :].split()
        pgrp = int(rest[2])
        if pgrp in groups:
            groups[pgrp] += (int(rest[11]) + int(rest[12])) / _CLK
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(busy, groups, usage.ru_utime + usage.ru_stime, time.monotonic(), per_cpu)


def cpus_busy(before: CpuSnapshot, after: CpuSnapshot, cpus: set[int] | None) -> float:
    """How busy ``cpus`` were between the snapshots, 0..1 (everything but idle and iowait)."""
    if not cpus:
        return 0.0
    busy = sum(after.per_cpu[c][0] - before.per_cpu[c][0] for c in cpus)
    total = sum(after.per_cpu[c][1] - before.per_cpu[c][1] for c in cpus)
    return busy / total if total else 0.0


def cpu_delta(before: CpuSnapshot, after: CpuSnapshot, server: int) -> tuple[float, float]:
    """(CPU seconds of process group ``server``, CPUs used by processes not ours on average)."""
    ours = sum(after.groups[g] - before.groups.get(g, 0.0) for g in after.groups)
    ours += after.children - before.children
    wall = max(after.at - before.at, 1e-9)
    other = max(0.0, (after.busy - before.busy) - ours) / wall
    return after.groups.get(server, 0.0) - before.groups.get(server, 0.0), other


# ---- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    label: str  # "upstream direct", "nginx", "fastgate", "fastgate@REV"
    url: str
    headers: dict[str, str]
    lua_args: tuple[str, ...]
    server: int  # process group of the server under test
    gateway: subprocess.Popen[bytes] | None = None  # a fastgate target's process (for --profile)


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    runs: dict[str, list[WrkResult]]  # by target label, in run order; one per round

    @property
    def results(self) -> dict[str, WrkResult]:
        return {label: median_result(rs) for label, rs in self.runs.items()}


class Bench:
    def __init__(self, args: argparse.Namespace, tools: dict[str, str], procs: Processes) -> None:
        self.args = args
        self.tools = tools
        self.procs = procs
        self.prefix = BENCH / "tmp" / "run"
        two_cpus = len(os.sched_getaffinity(0)) >= 2
        cpus = sorted(os.sched_getaffinity(0))
        self.proxy_cpus = {cpus[0]} if args.pin and two_cpus else None
        self.load_cpus = set(cpus[1:]) if args.pin and two_cpus else None
        self.started = dt.datetime.now()
        self.loadavg_before = _loadavg()
        self.servers: dict[str, int] = {}  # "upstream", "proxy" -> process group
        self.profiles: list[Path] = []
        self.gateway_pgids: set[int] = set()  # fastgate processes running now
        # Each fastgate measured: (label, where its `fastgate` package is imported from).
        self.gateways = [("fastgate", export_ref(args.ref) if args.ref else ROOT)]
        if args.compare:
            self.gateways.append((f"fastgate@{args.compare}", export_ref(args.compare)))

    def run(self, scenarios: list[Scenario]) -> "Report":
        shutil.rmtree(self.prefix, ignore_errors=True)
        self.prefix.mkdir(parents=True)
        # proxy_tls_port: for a scenario whose `nginx_server` listens with TLS; proxy_mtls_port: one
        # that also requires client certificates (a scenario names it in `nginx_port`).
        ports = {"upstream_port": free_port(), "proxy_port": free_port(), "proxy_tls_port": free_port(),
                 "proxy_mtls_port": free_port()}
        self.values = {
            **{k: str(v) for k, v in ports.items()},
            "upstream_url": f"http://127.0.0.1:{ports['upstream_port']}",
            "prefix": str(self.prefix),
            "bench": str(BENCH),
            "secret": SECRET,
            "api_key": API_KEY,
            "body": UPSTREAM_BODY,
            "fastgate_port": "0",  # per scenario
        }
        ctx0 = self._context(fastgate_port=0)
        for s in scenarios:
            if s.prepare is not None:
                s.prepare(ctx0)
        self._start_nginx("upstream", BENCH / "nginx-upstream.conf", self.load_cpus, self.values["upstream_url"] + "/")
        # Scenarios sharing a server block (TLS ones) list it once.
        extra = "\n".join(dict.fromkeys(render(s.nginx_server, self.values) for s in scenarios if s.nginx_server))
        self._start_nginx("proxy", BENCH / "nginx.conf", self.proxy_cpus,
                          f"http://127.0.0.1:{ports['proxy_port']}/", extra_servers=extra)
        done = [self._run_scenario(s) for s in scenarios]
        return Report(self, done)

    def _context(self, fastgate_port: int) -> Context:
        return Context(
            prefix=self.prefix,
            upstream_url=self.values["upstream_url"],
            proxy_url=f"http://127.0.0.1:{self.values['proxy_port']}",
            fastgate_url=f"http://127.0.0.1:{fastgate_port}",
            secret=SECRET,
            values=dict(self.values, fastgate_port=str(fastgate_port)),
        )

    def _start_nginx(self, name: str, template: Path, cpus: set[int] | None, probe_url: str, **more: str) -> None:
        conf = self.prefix / f"{name}.conf"
        conf.write_text(render(template.read_text(), {**self.values, **more}))
        log = self.prefix / f"{name}.log"
        argv = [self.tools["nginx"], "-p", str(self.prefix), "-c", str(conf), "-e", str(self.prefix / f"{name}-error.log")]
        proc = self.procs.start(f"nginx {name}", argv, log, cpus)
        self.servers[name] = proc.pid
        wait_http(probe_url, proc, self.prefix / f"{name}-error.log")

    def _run_scenario(self, s: Scenario) -> ScenarioResult:
        print(f"== {s.name}: {s.title}", file=sys.stderr)
        gateways: list[tuple[subprocess.Popen[bytes], Path]] = []
        try:
            targets = []
            if s.upstream_path is not None:
                targets.append(Target("upstream direct", self.values["upstream_url"] + s.upstream_path,
                                      dict(s.headers), s.lua_args, self.servers["upstream"]))
            if s.nginx_path is not None:
                # An https scenario's nginx side is its own `nginx_server` on {{proxy_tls_port}}.
                port = self.values[s.nginx_port or ("proxy_port" if s.scheme == "http" else "proxy_tls_port")]
                targets.append(Target("nginx", f"{s.scheme}://127.0.0.1:{port}{s.nginx_path}",
                                      {**s.headers, **s.nginx_headers}, s.lua_args, self.servers["proxy"]))
            for label, code in self.gateways:
                ctx = self._context(free_port())
                proc, log = self._start_fastgate(s, ctx, code, len(gateways))
                gateways.append((proc, log))
                self.gateway_pgids.add(proc.pid)
                prepared = (s.setup(ctx) if s.setup else None) or Prepared()
                targets.append(Target(label, f"{s.scheme}://127.0.0.1:{ctx.values['fastgate_port']}{s.fastgate_path}",
                                      {**s.headers, **s.fastgate_headers, **prepared.headers},
                                      prepared.lua_args or s.lua_args, proc.pid, proc))
            if s.probe:
                for t in targets:
                    self._probe(s, t)
            runs: dict[str, list[WrkResult]] = {t.label: [] for t in targets}
            for round_ in range(self.args.rounds):
                for t in targets:
                    for proc, log in gateways:
                        if proc.poll() is not None:
                            raise BenchError(f"fastgate exited with {proc.returncode}:\n{_tail(log)}")
                    runs[t.label].append(self._measure(s, t, round_))
            return ScenarioResult(s, runs)
        finally:
            for proc, _ in gateways:
                self.procs.stop(proc)
                self.gateway_pgids.discard(proc.pid)

    def _start_fastgate(self, s: Scenario, ctx: Context, code: Path, index: int) -> tuple[subprocess.Popen[bytes], Path]:
        name = f"fastgate-{s.name}" + (f"-{index}" if index else "")
        home = self.prefix / name
        apps = home / "apps"
        apps.mkdir(parents=True)
        for api in s.apis:
            (apps / api).write_text(render((BENCH / "configs" / "apps" / api).read_text(), ctx.values))
        base = tomllib.loads(render((BENCH / "configs" / "fastgate.toml").read_text(), ctx.values))
        config = deep_merge(base, render_data(s.config, ctx.values))
        (home / "fastgate.toml").write_text(to_toml(config))
        log = self.prefix / f"{name}.log"
        argv = [sys.executable, "-m", "fastgate", "run", "--config", str(home / "fastgate.toml")]
        # FASTGATE_* in our environment would override the generated config: keep runs reproducible.
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTGATE_")}
        if code != ROOT:  # `python -m` puts the working directory first on sys.path
            env["PYTHONPATH"] = str(code)
        proc = self.procs.start(name, argv, log, self.proxy_cpus, cwd=code, env=env)
        scheme_url = ctx.fastgate_url.replace("http://", f"{s.scheme}://", 1)
        wait_http(scheme_url + "/hello", proc, log)
        return proc, log

    def _probe(self, s: Scenario, t: Target) -> None:
        req = urllib.request.Request(t.url, headers=t.headers)
        context = _NO_VERIFY
        if s.client_cert:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            context.load_cert_chain(*(render(p, self.values) for p in s.client_cert))
        try:
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise BenchError(f"{s.name}: {t.label} answered {exc.code} to {t.url}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BenchError(f"{s.name}: {t.label} did not answer {t.url}: {exc}") from None
        if body != UPSTREAM_BODY.encode():
            raise BenchError(f"{s.name}: {t.label} answered {t.url} with an unexpected body {body[:200]!r}")

    def wrk_argv(self, s: Scenario, t: Target, duration: int) -> list[str]:
        a = self.args
        argv = [self.tools["wrk"], f"-t{a.threads}", f"-c{a.connections}", f"-d{duration}s", "--latency"]
        for name, value in t.headers.items():
            argv += ["-H", f"{name}: {value}"]
        if s.lua:
            argv += ["-s", str(BENCH / "lua" / s.lua)]
        argv.append(t.url)
        if t.lua_args:
            argv += ["--", *t.lua_args]
        return argv

    def _measure(self, s: Scenario, t: Target, round_: int) -> WrkResult:
        if self.args.warmup > 0 and round_ == 0:
            self._wrk(self.wrk_argv(s, t, self.args.warmup), self._wrk_env(s))
        argv = self.wrk_argv(s, t, self.args.duration)
        profiler = self._start_profiler(s, t, round_) if t.gateway is not None and self.args.profile else None
        pgids = set(self.servers.values()) | self.gateway_pgids
        before = cpu_snapshot(pgids)
        try:
            output = self._wrk(argv, self._wrk_env(s))
            after = cpu_snapshot(pgids)
        finally:
            if profiler is not None:
                profiler.wait(self.args.duration + 30)
        command = shlex.join(["wrk", *argv[1:]]).replace(str(BENCH), "bench")
        result = parse_wrk(output, command)
        server_cpu, result.other_cores = cpu_delta(before, after, t.server)
        result.server_cpu_us = server_cpu / max(result.requests, 1) * 1e6
        result.load_busy = cpus_busy(before, after, self.load_cpus)
        note = f"  ({result.errors} errors)" if result.errors else ""
        print(f"   {t.label:16} {result.rps:10.0f} rps  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
              f"  {result.server_cpu_us:5.1f} CPU µs/req  other load {result.other_cores:.2f} CPUs"
              + (f"  load CPU {100 * result.load_busy:.0f}% busy" if self.load_cpus else "") + note, file=sys.stderr)
        return result

    def _wrk_env(self, s: Scenario) -> dict[str, str] | None:
        """wrk's environment: with a client certificate for an mTLS scenario (wrk has no option
        for one; ``bench/wrk_client_cert.c``, preloaded, loads it into wrk's SSL_CTX)."""
        if not s.client_cert:
            return None
        shim = self.prefix / "wrk-client-cert.so"
        if not shim.exists():
            out = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(BENCH / "wrk_client_cert.c"), "-ldl"],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise BenchError(f"cannot build the wrk client-certificate shim (gcc): {out.stderr}")
        cert, key = (render(p, self.values) for p in s.client_cert)
        return {**os.environ, "LD_PRELOAD": str(shim), "WRK_CLIENT_CERT": cert, "WRK_CLIENT_KEY": key}

    def _wrk(self, argv: list[str], env: dict[str, str] | None = None) -> str:
        log = self.prefix / "wrk.log"
        with open(log, "a") as f:
            f.write("$ " + shlex.join(argv) + "\n")
        proc = self.procs.start("wrk", argv, self.prefix / "wrk.out", self.load_cpus, env=env)
        try:
            proc.wait()
        finally:
            self.procs.stop(proc)
        output = (self.prefix / "wrk.out").read_text()
        (self.prefix / "wrk.out").unlink()
        with open(log, "a") as f:
            f.write(output + "\n")
        if proc.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` failed ({proc.returncode}):\n{output}")
        return output

    def _start_profiler(self, s: Scenario, t: Target, round_: int) -> subprocess.Popen[bytes] | None:
        pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(BENCH / "tmp" / "tools" / "bin"))
        if pyspy is None:
            print("   --profile: py-spy not found (pip install --target bench/tmp/tools py-spy)", file=sys.stderr)
            return None
        tag = "" if t.label == "fastgate" else "-" + re.sub(r"[^\w.-]+", "_", t.label.split("@", 1)[-1])
        out = self.prefix / f"profile-{s.name}{tag}-{round_}.txt"
        # Collapsed stacks ("frame;frame;... count"): flamegraph.pl and speedscope read them, and
        # summarize_profile() prints the hot spots. --nonblocking: do not pause fastgate to sample.
        assert t.gateway is not None
        argv = [pyspy, "record", "--pid", str(t.gateway.pid), "--duration", str(self.args.duration),
                "--rate", "200", "--nonblocking", "--format", "raw", "--output", str(out)]
        self.profiles.append(out)
        print(f"   profiling fastgate into {out.relative_to(ROOT)}", file=sys.stderr)
        return self.procs.start("py-spy", argv, self.prefix / "py-spy.log")


def summarize_profile(path: Path, top: int = 25) -> str:
    """The functions with the most samples on top of the stack (self) and anywhere in it (total)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return f"{path}: no profile"
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].split("/")[-1] if " (" in f else f
                  for f in stack.split(";")]
        frames = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") and ":" in f else f for f in frames]  # drop line
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            total[f] = total.get(f, 0) + n
    if not samples:
        return f"{path}: no samples"
    out = [f"profile {path.relative_to(ROOT)}: {samples} samples", f"{'self %':>7} {'total %':>8}  function (file)"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{100 * n / samples:7.1f} {100 * total[name] / samples:8.1f}  {name}")
    out.append(f"{'':7} {'total %':>8}  (inclusive, top {top})")
    for name, n in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"{'':7} {100 * n / samples:8.1f}  {name}")
    return "\n".join(out)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---- the report --------------------------------------------------------------------------------


class Report:
    def __init__(self, bench: Bench, done: list[ScenarioResult]) -> None:
        self.bench = bench
        self.done = done
        self.loadavg_after = _loadavg()
        self.table = self._table()
        self.path: Path | None = None

    def _table(self) -> str:
        rows = ["| scenario | target | rps | p50 ms | p99 ms | CPU µs/req | errors | other load |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for sr in self.done:
            for label, r in sr.results.items():
                rows.append(f"| {sr.scenario.name} | {label} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                            f"| {r.server_cpu_us:.1f} | {r.errors} | {r.other_cores:.2f} |")
        lines = ["\n".join(rows), ""]
        for sr in self.done:
            lines.append(f"- {sr.scenario.name}: {self._ratio_line(sr)}")
        noisy = max((r.other_cores for sr in self.done for rs in sr.runs.values() for r in rs), default=0.0)
        if noisy > NOISY_CORES:
            lines.append(f"- WARNING: other processes kept up to {noisy:.2f} CPUs busy during a run: "
                         "rps and latency are unreliable; compare CPU µs/req, or rerun on a quiet machine")
        return "\n".join(lines)

    @staticmethod
    def _ratio_line(sr: ScenarioResult) -> str:
        results = sr.results
        line = Report._nginx_ratios(sr)
        fg = results.get("fastgate")
        for label, other in results.items():
            if label.startswith("fastgate@") and fg is not None and other.rps and other.server_cpu_us:
                line += (f"; fastgate/{label}: rps {fg.rps / other.rps:.2f}, p99 {fg.p99_ms / other.p99_ms:.2f}, "
                         f"CPU per request {fg.server_cpu_us / other.server_cpu_us:.2f}×")
        return line

    @staticmethod
    def _nginx_ratios(sr: ScenarioResult) -> str:
        fg, ng = sr.results.get("fastgate"), sr.results.get("nginx")
        if fg is None or ng is None or not ng.rps or not ng.p99_ms:
            return "no nginx comparison"
        s = sr.scenario
        rps, p99 = fg.rps / ng.rps, fg.p99_ms / ng.p99_ms
        parts = [f"fastgate/nginx rps **{rps:.2f}**"]
        if s.target_rps_ratio is not None:
            parts[-1] += f" (target ≥ {s.target_rps_ratio:.2f}: {'met' if rps >= s.target_rps_ratio else 'NOT met'})"
        parts.append(f"p99 **{p99:.2f}**")
        if s.target_p99_ratio is not None:
            parts[-1] += f" (target ≤ {s.target_p99_ratio:.2f}: {'met' if p99 <= s.target_p99_ratio else 'NOT met'})"
        if ng.server_cpu_us:
            parts.append(f"CPU per request {fg.server_cpu_us / ng.server_cpu_us:.2f}×")
        return ", ".join(parts)

    def markdown(self) -> str:
        b = self.bench
        a = b.args
        facts = machine_facts(b.tools, a.ref)
        pin = (f"the proxy under test (nginx, fastgate) on CPU {_cpus(b.proxy_cpus)}, wrk and the upstream on CPU {_cpus(b.load_cpus)}"
               if b.proxy_cpus else "none (the kernel schedules wrk, the upstream and the proxy on all CPUs)")
        out = [
            f"# Benchmark {b.started:%Y-%m-%d %H:%M}",
            "",
            f"- date: {b.started:%Y-%m-%d %H:%M:%S} (local time)",
            f"- machine: {facts['nproc']} CPUs (nproc), {facts['cpu']}, {facts['mem']} RAM, Linux {platform.release()}",
            f"- software: {facts['nginx']}, {facts['wrk']}, Python {platform.python_version()}, fastgate {facts['commit']}",
            f"- load average before / after: {b.loadavg_before} / {self.loadavg_after}",
            "- servers: upstream nginx (1 worker) answering a fixed "
            f"{len(UPSTREAM_BODY)}-byte JSON body; proxy nginx (1 worker, `bench/nginx.conf`, upstream keep-alive); "
            "fastgate (`workers = 1`, access log off); all on loopback",
            f"- CPU pinning: {pin}",
            f"- wrk: {a.threads} thread(s), {a.connections} connections, {a.warmup}s warm-up before each target's "
            f"first round, then {a.rounds} round(s) of {a.duration}s per target, the targets taking turns; "
            "figures are the median over rounds",
            "- CPU µs/req: CPU time (user + system) of the server under test over the measured run, per request; "
            "other load: CPUs kept busy meanwhile by processes outside the benchmark, and steal (worst round); "
            "load CPU busy: how busy the CPU of wrk and the upstream was (near 100 %: that side, not the proxy, "
            "limited the rps, which is then a lower bound)",
            f"- command: `{shlex.join(['.venv/bin/python', 'bench/run.py', *sys.argv[1:]])}`",
            "",
            "## Summary",
            "",
            self.table,
            "",
        ]
        for sr in self.done:
            out += [f"## {sr.scenario.name}: {sr.scenario.title}", "",
                    "| target | rps | p50 ms | p99 ms | CPU µs/req | non-2xx | socket errors | load CPU busy | rps per round | p99 ms per round |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
            for label, r in sr.results.items():
                rounds = sr.runs[label]
                busy = f"{100 * r.load_busy:.0f} %" if b.load_cpus else "-"
                out.append(f"| {label} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.server_cpu_us:.1f} "
                           f"| {r.non_2xx} | {r.socket_errors} | {busy} | {' / '.join(f'{x.rps:,.0f}' for x in rounds)} "
                           f"| {' / '.join(f'{x.p99_ms:.2f}' for x in rounds)} |")
            out += ["", self._ratio_line(sr), "", "```"]
            out += [rs[0].command for rs in sr.runs.values()]
            out += ["```", ""]
        return "\n".join(out)

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{self.bench.started:%Y-%m-%d-%H%M}.md"
        text = self.markdown()
        self.path.write_text(text)
        (directory / "latest.md").write_text(text)
        return self.path

    def append_micro(self, micro: str) -> None:
        if self.path is None:
            return
        section = f"\n## Micro benchmarks (`bench/micro.py`)\n\n```\n{micro.rstrip()}\n```\n"
        for path in (self.path, self.path.parent / "latest.md"):
            with open(path, "a") as f:
                f.write(section)


NOISY_CORES = 0.25  # other processes' CPU use (in CPUs) above which a run is flagged


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or ()))


def machine_facts(tools: dict[str, str], ref: str | None = None) -> dict[str, str]:
    cpu = "unknown CPU"
    mem = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": _out(["nproc"]) or str(os.cpu_count()),
        "cpu": cpu,
        "mem": mem,
        "nginx": _out([tools["nginx"], "-v"]).replace("nginx version: ", "") or "nginx",
        "wrk": (_out([tools["wrk"], "-v"]).splitlines() or ["wrk"])[0].split(" [")[0].replace("debian/", ""),
        "commit": _commit(ref),
    }


def export_ref(ref: str) -> Path:
    """The fastgate package as committed at ``ref``, unpacked under bench/tmp/ (nothing else touched).

    ``ref`` may also be a directory holding a ``fastgate/`` package (an experiment's patched copy).
    """
    if (Path(ref) / "fastgate" / "__init__.py").exists():
        return Path(ref).resolve()
    sha = _out(["git", "-C", str(ROOT), "rev-parse", "--short", "--verify", ref + "^{commit}"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", sha):
        raise SystemExit(f"bench: --ref {ref}: not a commit: {sha}")
    target = BENCH / "tmp" / f"ref-{sha}"
    if not (target / "fastgate" / "__init__.py").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", sha, "fastgate"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _commit(ref: str | None = None) -> str:
    if ref and (Path(ref) / "fastgate" / "__init__.py").exists():
        return f"from the directory {ref} (`--ref`)"
    if ref:
        sha = _out(["git", "-C", str(ROOT), "rev-parse", "--short", ref])
        return f"{sha} (`--ref {ref}`: as committed, not the work tree)"
    head = _out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _out(["git", "-C", str(ROOT), "status", "--porcelain", "--", "fastgate"])
    return f"{head} (fastgate/ has uncommitted changes)" if dirty else head


def _out(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def run_micro() -> tuple[int, str]:
    """Run bench/micro.py in this interpreter; returns its exit code and what it printed."""
    print("\n== micro benchmarks (bench/micro.py)", file=sys.stderr)
    done = subprocess.run([sys.executable, str(BENCH / "micro.py")], cwd=ROOT, capture_output=True, text=True)
    print(done.stdout, end="")
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        print(f"bench/micro.py failed with {done.returncode}", file=sys.stderr)
    return done.returncode, done.stdout


if __name__ == "__main__":
    sys.exit(main())
