"""What plugins reach of the running gateway: its log, its store, the hook thread pool.

One per process, bound when an API with plugins is compiled (``bind``). The store calls have two
forms: ``store_data`` / ``get_data`` for native ``async`` hooks on the event loop, and blocking
ones for synchronous hooks in pool threads (they hand the call to the loop and wait, bounded by
the store's own timeout plus a margin). A blocking call made on the loop's own thread would
deadlock, so it is refused with an error that says to use the async form.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Final

from fastgate.plugins.pool import HookPool
from fastgate.store.base import Store

__all__ = ["DATA_PREFIX", "bind", "get_data", "get_data_blocking", "hook_pool", "log", "store_data", "store_data_blocking"]

DATA_PREFIX: Final = "coprocess-data:"  # Tyk's prefix for plugin data
MAX_DATA_BYTES: Final = 1024 * 1024
BLOCKING_WAIT: Final = 5.0

logger = logging.getLogger("fastgate.plugins")
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
                  "error": logging.ERROR, "fatal": logging.CRITICAL, "critical": logging.CRITICAL}


class _Runtime:
    def __init__(self) -> None:
        self.store: Store | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pool: HookPool | None = None


_RT = _Runtime()
_LOCK = threading.Lock()


def bind(store: Store, pool_size: int, timeout: float) -> HookPool:
    """Attach the store (and the running loop, when there is one); return the process's pool,
    made on first use and resized when the config changed."""
    _RT.store = store
    try:
        _RT.loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            _RT.loop = asyncio.get_event_loop()
        except RuntimeError:
            _RT.loop = None
    with _LOCK:
        pool = _RT.pool
        if pool is None or pool.size != max(1, pool_size):
            pool = _RT.pool = HookPool(pool_size, timeout)
        pool.timeout = timeout
        return pool


def hook_pool() -> HookPool | None:
    return _RT.pool


def log(message: str, level: str) -> None:
    """``tyk.log``: a gateway log line at ``level`` (Tyk's names; unknown: info)."""
    logger.log(_LEVELS.get(level.lower(), logging.INFO), "%s", message)


async def store_data(key: str, value: Any, ttl: float = 0) -> None:
    """Store ``value`` (str or bytes, at most 1 MiB) under ``key`` for ``ttl`` seconds (0: no expiry)."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"plugin data over {MAX_DATA_BYTES} bytes")
    await _store().kv_set(DATA_PREFIX + key, data, float(ttl) if ttl and ttl > 0 else None)


async def get_data(key: str) -> bytes | None:
    """What ``store_data`` stored under ``key``, or None."""
    return await _store().kv_get(DATA_PREFIX + key)


def store_data_blocking(key: str, value: Any, ttl: float = 0) -> None:
    _blocking(store_data(key, value, ttl))


def get_data_blocking(key: str) -> bytes | None:
    result: bytes | None = _blocking(get_data(key))
    return result


def _blocking(coro: Any) -> Any:
    loop = _RT.loop
    if loop is None or loop.is_closed():
        coro.close()
        raise RuntimeError("the gateway's store is not available to plugins yet")
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("tyk.store_data/get_data block: call them from a synchronous hook, or await "
                           "fastgate.plugins.store_data/get_data from an async one")
    return asyncio.run_coroutine_threadsafe(coro, loop).result(BLOCKING_WAIT)


def _store() -> Store:
    if _RT.store is None:
        raise RuntimeError("the gateway's store is not available to plugins yet")
    return _RT.store
