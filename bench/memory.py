"""Memory per connection: RSS of one fastgate worker with 10 000 idle keep-alive client connections,
then with 1 000 requests in flight to a slow upstream.

    .venv/bin/python bench/memory.py --idle 10000 --active 1000 --out bench/results/<date>-memory.md

Idle: each connection made one request (keyless API, nginx upstream) and stays open (keep-alive,
well inside `idle_timeout`). Active: each connection has a request waiting on an upstream that
answers only when told, so the gateway holds the client connection, the exchange and an upstream
connection for each. RSS per connection = (RSS with them - RSS before) / count, read from
/proc/<pid>/status after a short settle. The open-files limit is raised to its hard limit first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from pathlib import Path

from nodes import Bench, open_fds, rss_kib, wait_ready, worker_pids

from tests.kit.apis import classic_api


class HeldUpstream:
    """Accepts requests and answers them only once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waiting = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.waiting += 1
            await self.release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def open_idle(port: int, count: int, concurrency: int = 200) -> list[asyncio.StreamWriter]:
    """``count`` connections, each after one answered request, left open."""
    writers: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /fast/ HTTP/1.1\r\nHost: gw\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


async def open_active(port: int, count: int, upstream: HeldUpstream) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow/ HTTP/1.1\r\nHost: gw\r\n\r\n")
        writers.append(writer)
    deadline = time.monotonic() + 60
    while upstream.waiting < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return writers


async def settle_rss(pid: int) -> int:
    await asyncio.sleep(2)
    return rss_kib(pid)


async def run(args: argparse.Namespace, bench: Bench) -> dict[str, float]:
    held = HeldUpstream()
    server = await asyncio.start_server(held.handle, "127.0.0.1", 0, backlog=4096)
    slow_port = server.sockets[0].getsockname()[1]
    upstream = bench.upstream()
    apis = [classic_api("fast", "/fast/", upstream), classic_api("slow", "/slow/", f"http://127.0.0.1:{slow_port}")]
    settings = {"workers": 1, "http_server_options": {"upstream_timeout": 300, "idle_timeout": 600}}
    out: dict[str, float] = {}
    # Idle connections on one gateway, active ones on a second, fresh one: memory freed by the
    # first set stays in the process (the allocator keeps it) and would hide the second's cost.
    for phase in ("idle", "active"):
        gw = bench.node(apis, settings)
        await asyncio.get_running_loop().run_in_executor(None, wait_ready, gw)
        (pid,) = worker_pids(gw)
        warm = await open_idle(gw.port, 500)  # allocator pools and caches warmed first
        for w in warm:
            w.close()
        out[f"rss_start_{phase}_kib"] = await settle_rss(pid)
        began = time.monotonic()
        if phase == "idle":
            conns = await open_idle(gw.port, args.idle)
            out["idle_open_seconds"] = time.monotonic() - began
            out["rss_idle_kib"] = await settle_rss(pid)
            out["fds_idle"] = open_fds(pid)
            out["idle_per_conn_kib"] = (out["rss_idle_kib"] - out["rss_start_idle_kib"]) / args.idle
            for w in conns:
                w.close()
        else:
            active = await open_active(gw.port, args.active, held)
            out["active_at_upstream"] = held.waiting
            out["rss_active_kib"] = await settle_rss(pid)
            out["active_per_conn_kib"] = (out["rss_active_kib"] - out["rss_start_active_kib"]) / args.active
    held.release.set()
    await asyncio.sleep(2)
    for w in active:
        w.close()
    server.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--out")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it
    bench = Bench()
    try:
        out = asyncio.run(run(args, bench))
    finally:
        bench.close()
    text = "\n".join([
        f"# Memory per connection: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC", "",
        f"Command: `.venv/bin/python bench/memory.py --idle {args.idle} --active {args.active}`",
        f"Machine: {os.cpu_count()} cores shared with other engineers (RSS is not affected by the load of others). "
        f"One fastgate worker (`workers = 1`, memory store), open-files limit {hard}.", "",
        "| measure | value |", "|---|---|",
        f"| RSS before (warmed) | {out['rss_start_idle_kib']:.0f} KiB |",
        f"| RSS with {args.idle} idle keep-alive connections | {out['rss_idle_kib']:.0f} KiB "
        f"(opened in {out['idle_open_seconds']:.1f} s; worker fds {out['fds_idle']:.0f}) |",
        f"| **per idle connection** | **{out['idle_per_conn_kib']:.2f} KiB** (target ≤ 10 KiB) |",
        f"| RSS of a second, fresh worker before (warmed) | {out['rss_start_active_kib']:.0f} KiB |",
        f"| RSS with {args.active} requests in flight to a held upstream ({out['active_at_upstream']:.0f} reached it) | "
        f"{out['rss_active_kib']:.0f} KiB |",
        f"| **per active connection** (client connection, exchange, upstream connection) | "
        f"**{out['active_per_conn_kib']:.2f} KiB** |",
        "",
    ]) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
