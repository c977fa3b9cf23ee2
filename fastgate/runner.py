"""Process management: one gateway in this process, or a supervisor over N worker processes.

With ``workers = 1`` the gateway runs here. With more, this process forks the workers, each a
complete gateway with its own listening socket on the same port (``SO_REUSEPORT``: the kernel
spreads connections), and stays to relay signals: SIGTERM/SIGINT stop every worker gracefully,
SIGHUP reloads them all, and a worker that dies unexpectedly is started again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import time

import uvloop

from fastgate import clock
from fastgate.config import Config
from fastgate.gateway import Gateway
from fastgate.observe.metrics import make_shared_dir
from fastgate.services import start_services

__all__ = ["run"]

log = logging.getLogger("fastgate")


def run(config: Config) -> int:
    """Run the gateway until it is told to stop; returns the process exit code."""
    if config.workers == 1:
        return _run_worker(config, under_supervisor=False)
    return _supervise(config)


def _run_worker(config: Config, *, under_supervisor: bool) -> int:
    uvloop.install()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(config, under_supervisor))
    finally:
        loop.close()


async def _serve(config: Config, under_supervisor: bool) -> int:
    loop = asyncio.get_running_loop()
    gateway = Gateway(config, under_supervisor=under_supervisor)
    await start_services(gateway.services, gateway.reload)
    clock.reset()
    try:
        await gateway.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.listen_address, config.listen_port, exc.strerror)
        return 1
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    await stopped.wait()
    log.info("stopping: finishing in-flight requests (grace %.0fs)", config.http_server_options.shutdown_grace_period)
    await gateway.shutdown()
    return 0


def _supervise(config: Config) -> int:
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 1
            try:
                code = _run_worker(config, under_supervisor=True)
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    # Each worker publishes its metric counters here; a scrape answered by any one adds them up.
    metrics_dir = make_shared_dir()
    for index in range(config.workers):
        spawn(index)
    log.info("supervising %d workers", config.workers)
    restarts: list[float] = []
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            continue
        log.warning("worker %d (pid %d) exited with %d; starting it again", index, pid, code)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 10] + [now]
        if len(restarts) > 5 * config.workers:
            log.error("workers keep dying; giving up")
            stopping = True
            exit_code = 1
            forward(signal.SIGTERM, None)
            continue
        spawn(index)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.stdout.flush()
    return exit_code
