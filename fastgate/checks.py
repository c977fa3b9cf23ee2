"""Checks ``fastgate check`` runs beyond decoding API definitions (policies, auth config).

Each later feature appends a function here; each returns problems as ``file: field: what``.
"""

from __future__ import annotations

from typing import Callable

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.mtls import check_mtls_definitions
from fastgate.config import Config
from fastgate.sessions.policies import load_policy_dir
from fastgate.store import open_store

__all__ = ["extra_checks", "CHECKS"]

def check_policies(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Every policy file under ``policy_path`` decodes into valid policies."""
    if not config.policies.policy_path:
        return []
    _policies, problems = load_policy_dir(config.resolve(config.policies.policy_path))
    return problems


def check_storage(config: Config, apis: list[ApiSpec]) -> list[str]:
    """The storage URL can be opened (no connection is made)."""
    try:
        open_store(config.storage.url)
    except ValueError as exc:
        return [f"storage.url: {exc}"]
    return []


def check_client_certificates(config: Config, apis: list[ApiSpec]) -> list[str]:
    """mTLS settings of the APIs: identity kinds, CRL files (``fastgate.auth.mtls``)."""
    return check_mtls_definitions(config, apis)


CHECKS: list[Callable[[Config, list[ApiSpec]], list[str]]] = [check_policies, check_storage, check_client_certificates]


def extra_checks(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Run every registered check."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(config, apis))
    return problems
