"""A bounded pool of daemon threads for synchronous plugin hooks, with a per-call timeout.

A Tyk-style hook is a plain function: run on the event loop, one that blocks (a database call,
``time.sleep``) would stall every connection. So synchronous hooks run here: at most ``size``
at once, each answered within ``timeout`` seconds or given up (the thread cannot be killed; it
finishes in the background and its result is dropped). The threads are daemons, so a hook that
never returns cannot hold up the gateway's exit, and a queued call whose caller already gave up
is skipped rather than run late. Results come back to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Final

__all__ = ["HookPool", "HookTimeout", "PoolFull"]

MAX_QUEUED: Final = 10_000


class HookTimeout(Exception):
    """The hook did not return within the pool's timeout."""


class PoolFull(Exception):
    """Too many hook calls are waiting for a thread."""


class HookPool:
    """Runs synchronous callables off the event loop, bounded in threads, queue and time."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = max(1, size)
        self.timeout = timeout
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """``fn(*args)`` in a pool thread: a future on the running loop that fails with
        ``HookTimeout`` after ``timeout`` seconds (or ``PoolFull`` at once)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._queue.qsize() >= MAX_QUEUED:
            future.set_exception(PoolFull(f"{MAX_QUEUED} plugin calls are already waiting"))
            return future
        self._start_thread()
        timer = loop.call_later(self.timeout, _expire, future, self.timeout)
        future.add_done_callback(lambda _f: timer.cancel())
        self._queue.put((fn, args, loop, future))
        return future

    def _start_thread(self) -> None:
        if len(self._threads) >= self.size:
            return
        with self._lock:
            if len(self._threads) < self.size:
                thread = threading.Thread(target=self._work, name=f"fastgate-plugin-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            fn, args, loop, future = self._queue.get()
            if future.done():  # its caller gave up while it waited
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - a plugin's failure is reported, never raised here
                _deliver(loop, future, None, exc)
            else:
                _deliver(loop, future, result, None)


def _deliver(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]", result: Any, exc: BaseException | None) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, result, exc)
    except RuntimeError:
        pass  # the loop is closed: the gateway is gone


def _settle(future: "asyncio.Future[Any]", result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _expire(future: "asyncio.Future[Any]", timeout: float) -> None:
    if not future.done():
        future.set_exception(HookTimeout(f"the hook did not return within {timeout:g} s"))
