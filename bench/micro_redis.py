"""CPU cost of the per-request Redis work of an auth-token request, per client path (µs/request).

    .venv/bin/python bench/micro_redis.py [--url redis://127.0.0.1:6379/11] [--tasks 50]
                                          [--requests 20000] [--repeat 3] [--only NAME]

What an auth-token request asks Redis for, as the gateway does it: the limits step (rate then
quota, one EVALSHA of the store's Lua script) on every request, and a session read (MGET of the
lookup candidates) when the session is not in the node-local cache. `--tasks` concurrent tasks
(as wrk's connections) each loop over the step on one uvloop; the figure is this process's CPU
time (user + system, `time.process_time`) divided by the requests done, so Redis' own CPU is not
in it and a busy machine moves it much less than wall time. Best of `--repeat` runs. The p50 and
p99 of one step's wall time are printed too: in this closed loop they are mostly queueing (tasks /
throughput), so read the p99/p50 ratio for tail behaviour, and only on a quiet machine.

Paths:

* `store-*`: `RedisStore` as the gateway calls it (`limits_hit`, `get_sessions`), with the fast
  path off (`fast_path=False`: redis-py Pipeline batches for the limits step, a pooled redis-py
  call for the session read), and on (the store's own pipelined client, `fastgate.store.resp`).
* `resp-*`: `RespClient.execute` alone, the raw command (no decision objects).
* `redispy-conn-*`: redis-py's lower-level connection API on one connection: commands of one
  loop iteration packed with `pack_commands`, sent with `send_packed_command`, read back with
  `read_response`, one batch in flight at a time (a connection is not safe for concurrent reads).
* `redispy-pipeline-evalsha`: the same batches through redis-py's `Pipeline` object.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
import uvloop  # noqa: E402

from fastgate.store import open_store  # noqa: E402
from fastgate.store.limits import rate_params  # noqa: E402
from fastgate.store.redis import _LIMITS_LUA  # noqa: E402
from fastgate.store.resp import RespClient, encode_command  # noqa: E402

DEFAULT_URL = "redis://127.0.0.1:6379/11"
PARAMS = rate_params(1_000_000_000, 1)  # never limits: every step does the full work
QUOTA_MAX = 10**15
KEY_IDS = [f"bench-key-{i}" for i in range(3)]  # three candidates, as an org-prefixed lookup


Step = Callable[[int], Awaitable[Any]]


async def run_tasks(step: Step, tasks: int, requests: int) -> tuple[float, float, float]:
    """CPU µs per request, and p50 / p99 latency in µs of one step (wall clock), for
    `requests` steps spread over `tasks` concurrent tasks."""
    per_task = requests // tasks
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker(n: int) -> None:
        for i in range(per_task):
            started = clock()
            await step(n * per_task + i)
            latencies.append(clock() - started)

    await asyncio.gather(*[worker(n) for n in range(tasks)])  # warm-up (connections, scripts)
    latencies.clear()
    cpu = time.process_time()
    await asyncio.gather(*[worker(n) for n in range(tasks)])
    cpu_us = (time.process_time() - cpu) / (per_task * tasks) * 1e6
    latencies.sort()
    return (cpu_us, latencies[len(latencies) // 2] * 1e6,
            latencies[int(len(latencies) * 0.99)] * 1e6)


async def store_limits(url: str, fast: bool) -> tuple[Step, Callable[[], Awaitable[None]]]:
    store = open_store(url, fast_path=fast)

    async def step(i: int) -> Any:
        return await store.limits_hit(f"bench-{i % 50}", PARAMS, f"bench-{i % 50}", QUOTA_MAX, 3600)
    return step, store.close


async def store_sessions(url: str, fast: bool) -> tuple[Step, Callable[[], Awaitable[None]]]:
    store = open_store(url, fast_path=fast)
    await store.set_session(KEY_IDS[1], b'{"org_id":"o","rate":1000}')

    async def step(i: int) -> Any:
        return await store.get_sessions(KEY_IDS)
    return step, store.close


def _limits_args(i: int) -> list[Any]:
    return [f"rate-limit-bench-{i % 50}", f"quota-bench-{i % 50}", 1, PARAMS.interval_us,
            PARAMS.tolerance_us, 1, QUOTA_MAX, 3_600_000]


async def resp_evalsha(url: str) -> tuple[Step, Callable[[], Awaitable[None]]]:
    plain = aioredis.Redis.from_url(url)
    sha = await plain.script_load(_LIMITS_LUA)
    await plain.aclose()
    db = int(url.rsplit("/", 1)[1] or 0)
    client = RespClient("127.0.0.1", 6379, db=db)

    async def step(i: int) -> Any:
        return await client.execute(encode_command(["EVALSHA", sha, 2, *_limits_args(i)]))
    return step, client.close


async def resp_mget(url: str) -> tuple[Step, Callable[[], Awaitable[None]]]:
    db = int(url.rsplit("/", 1)[1] or 0)
    client = RespClient("127.0.0.1", 6379, db=db)
    command = encode_command(["MGET", *[f"apikey-{k}" for k in KEY_IDS]])

    async def step(i: int) -> Any:
        return await client.execute(command)
    return step, client.close


class ConnBatcher:
    """redis-py's lower-level API: one Connection, per-iteration batches, one batch in flight."""

    def __init__(self, url: str) -> None:
        self.conn = aioredis.Connection(**aioredis.connection.parse_url(url))
        self.queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.busy = False

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append((args, future))
        if len(self.queue) == 1 and not self.busy:
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        if self.queue and not self.busy:
            self.busy = True
            batch, self.queue = self.queue, []
            asyncio.ensure_future(self.send(batch))

    async def send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            await self.conn.send_packed_command(self.conn.pack_commands([a for a, _ in batch]))
            for _, future in batch:
                future.set_result(await self.conn.read_response(disable_decoding=True))
        finally:
            self.busy = False
            self.flush()


async def redispy_conn_evalsha(url: str) -> tuple[Step, Callable[[], Awaitable[None]]]:
    batcher = ConnBatcher(url)
    await batcher.conn.connect()
    sha = await batcher.call("SCRIPT", "LOAD", _LIMITS_LUA)

    async def step(i: int) -> Any:
        return await batcher.call("EVALSHA", sha, 2, *_limits_args(i))
    return step, batcher.conn.disconnect


async def redispy_pipeline_evalsha(url: str) -> tuple[Step, Callable[[], Awaitable[None]]]:
    client = aioredis.Redis.from_url(url)
    script = client.register_script(_LIMITS_LUA)
    queue: list[tuple[int, asyncio.Future[Any]]] = []

    async def send(batch: list[tuple[int, asyncio.Future[Any]]]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for i, _ in batch:
                args = _limits_args(i)
                await script(keys=args[:2], args=args[2:], client=pipe)
            results = await pipe.execute()
        for (_, future), result in zip(batch, results):
            future.set_result(result)

    def flush() -> None:
        batch = queue[:]
        queue.clear()
        asyncio.ensure_future(send(batch))

    def step(i: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        queue.append((i, future))
        if len(queue) == 1:
            loop.call_soon(flush)
        return future
    return step, client.aclose


PATHS: dict[str, Callable[[str], Awaitable[tuple[Step, Callable[[], Awaitable[None]]]]]] = {
    "store-limits redis-py (today)": lambda url: store_limits(url, False),
    "store-limits fast path": lambda url: store_limits(url, True),
    "store-sessions redis-py (today)": lambda url: store_sessions(url, False),
    "store-sessions fast path": lambda url: store_sessions(url, True),
    "resp-evalsha": resp_evalsha,
    "resp-mget": resp_mget,
    "redispy-conn-evalsha": redispy_conn_evalsha,
    "redispy-pipeline-evalsha": redispy_pipeline_evalsha,
}


async def measure(name: str, url: str, tasks: int, requests: int) -> tuple[float, float, float]:
    step, close = await PATHS[name](url)
    try:
        return await run_tasks(step, tasks, requests)
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", help="substring of a path name (repeatable)")
    opts = parser.parse_args()
    names = [n for n in PATHS if not opts.only or any(o in n for o in opts.only)]
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(opts.repeat):  # the paths take turns, so a busy minute hits them all
        for name in names:
            result = uvloop.run(measure(name, opts.url, opts.tasks, opts.requests))
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    print(f"{opts.tasks} concurrent tasks, the run with the least CPU of {opts.repeat}:")
    print(f"  {'path':34} {'CPU µs/req':>10} {'p50 µs':>8} {'p99 µs':>8}")
    for name in names:
        cpu, p50, p99 = best[name]
        print(f"  {name:34} {cpu:10.1f} {p50:8.0f} {p99:8.0f}")


if __name__ == "__main__":
    main()
