"""Checks ``fastgate check`` runs beyond decoding API definitions (policies, auth config).

Each later feature appends a function here; each returns problems as ``file: field: what``.
"""

from __future__ import annotations

from typing import Callable

from fastgate.apidef.spec import ApiSpec
from fastgate.config import Config

__all__ = ["extra_checks", "CHECKS"]

CHECKS: list[Callable[[Config, list[ApiSpec]], list[str]]] = []


def extra_checks(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Run every registered check."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(config, apis))
    return problems
