"""Long-lived services a gateway process starts before it listens (store, caches, auth state).

Later stages (the store, JWKS fetchers, ...) add their start-up here, so ``runner`` and the
tests start a complete gateway the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from fastgate.gateway import Gateway

__all__ = ["start_services", "STARTERS"]

STARTERS: list[Callable[["Gateway"], Awaitable[None]]] = []


async def start_services(gateway: "Gateway") -> None:
    """Run every registered starter, in registration order."""
    for starter in STARTERS:
        await starter(gateway)
