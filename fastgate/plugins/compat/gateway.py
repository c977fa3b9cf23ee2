"""Tyk's ``gateway`` module as plugin files import it: ``from gateway import TykGateway as tyk``.

``tyk.log(message, level)`` writes to the gateway log (logger ``fastgate.plugins``);
``tyk.store_data(key, value, ttl)`` / ``tyk.get_data(key)`` use the gateway's store (memory or
Redis, shared across nodes on Redis) under Tyk's ``coprocess-data:`` prefix. The data calls wait
for the store, so they belong in synchronous hooks (which run in the plugin thread pool); a
native ``async`` hook uses ``fastgate.plugins.store_data`` / ``get_data`` instead.
"""

from __future__ import annotations

from typing import Any

from fastgate.plugins import runtime

__all__ = ["TykGateway"]


class TykGateway:
    """The functions Tyk's Python plugins call on the gateway."""

    @staticmethod
    def log(message: Any, level: str = "info") -> None:
        runtime.log(str(message), str(level))

    @staticmethod
    def log_error(message: Any) -> None:
        runtime.log(str(message), "error")

    @staticmethod
    def store_data(key: str, value: Any, ttl: int = 0) -> None:
        runtime.store_data_blocking(str(key), value, ttl)

    @staticmethod
    def get_data(key: str) -> bytes:
        return runtime.get_data_blocking(str(key)) or b""

    @staticmethod
    def trigger_event(name: str, payload: Any) -> None:
        runtime.log(f"plugin event {name}: {payload}", "info")
