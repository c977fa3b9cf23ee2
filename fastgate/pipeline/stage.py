"""What a stage is: a call on the ``Request`` that continues, denies, or awaits.

A stage is called with the ``Request`` and returns ``None`` to continue, a ``Denial`` to answer the
client, or an awaitable of either when it needs I/O (a store lookup). Every auth method and
post-auth check builds stages of this shape; ``fastgate.pipeline.compile`` puts them in order.
This module sits below ``fastgate.auth`` so the methods can name the contract without importing
the compiler that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Union

from fastgate.http.request import Request

__all__ = ["Denial", "Stage", "StageResult", "deny"]


@dataclass(frozen=True, slots=True)
class Denial:
    """A decision to answer the client instead of proxying: status, message, extra headers."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


StageResult = Union[None, Denial, Awaitable[Union[None, Denial]]]
Stage = Callable[[Request], StageResult]


def deny(status: int, message: str) -> Stage:
    """A stage that always answers ``status`` with ``message``."""
    denial = Denial(status, message)

    def stage(req: Request) -> Denial:
        return denial

    return stage
