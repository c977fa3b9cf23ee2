"""Checks ``fastgate check`` runs beyond decoding API definitions (policies, auth config).

Each later feature appends a function here; each returns problems as ``file: field: what``.
``check_tls_files`` is apart: both ``run`` and ``check`` stop on it right after the config is
read, because it reads the certificate files the config names (config.py validates values only
and sits below server/, whose TLS code knows what a usable certificate is).
"""

from __future__ import annotations

from collections.abc import Callable

from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth import auth_warnings
from fastgate.auth import check_auth_settings as check_api_auth
from fastgate.auth.chain import security_problem
from fastgate.auth.mtls import check_mtls_definitions
from fastgate.config import Config
from fastgate.plugins.loader import PluginLoadError, load_function, resolve_path
from fastgate.server.tls import tls_problems
from fastgate.sessions.policies import load_policy_dir
from fastgate.store import open_store

__all__ = ["CHECKS", "WARNINGS", "check_tls_files", "extra_checks", "extra_warnings"]


def check_tls_files(config: Config) -> list[str]:
    """What is wrong with the listener's TLS settings and the files they name (certificates,
    keys, CRL); empty when TLS and the global CRL are off."""
    opts = config.http_server_options
    if not (opts.use_ssl or opts.crl_file):
        return []
    return tls_problems(config)


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


def check_auth_settings(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Auth settings that loading refuses (e.g. a JWT HMAC secret under 32 bytes)."""
    problems = []
    for spec in apis:
        try:
            check_api_auth(spec)
        except DefinitionError as exc:
            problems.append(f"{spec.source}: {exc}")
    return problems


def check_plugins(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Every plugin file an API names imports and defines its function (``fastgate.plugins``)."""
    problems = []
    for spec in apis:
        for ref in spec.plugins.hooks if spec.plugins is not None else ():
            try:
                load_function(resolve_path(ref.path, config.base_dir), ref.name)
            except PluginLoadError as exc:
                problems.append(f"{spec.source}: {ref.field}: {exc}")
    return problems


def check_security_requirements(config: Config, apis: list[ApiSpec]) -> list[str]:
    """OR requirements that name a method the API lacks (``fastgate.auth.chain``)."""
    found = [(spec, security_problem(spec)) for spec in apis]
    return [f"{spec.source}: {problem}" for spec, problem in found if problem is not None]


def warn_weak_auth(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Auth settings that work but are weak (an HMAC signature over the date alone)."""
    found = []
    for spec in apis:
        try:
            found.extend(f"{spec.source}: {warning}" for warning in auth_warnings(spec))
        except DefinitionError:
            continue  # reported by check_auth_settings
    return found


def warn_report_only(config: Config, apis: list[ApiSpec]) -> list[str]:
    """APIs that proxy requests failing authentication (``auth_report_only``)."""
    field = {"classic": "auth_report_only", "oas": "x-tyk-api-gateway.server.authentication.reportOnly"}
    return [f"{spec.source}: {field[spec.format]}: true: requests that fail authentication are proxied anyway "
            "(logged and counted only)" for spec in apis if spec.observe.auth_report_only and not spec.use_keyless]


CHECKS: list[Callable[[Config, list[ApiSpec]], list[str]]] = [
    check_policies, check_storage, check_client_certificates, check_auth_settings,
    check_plugins, check_security_requirements,
]
# Warnings are printed but leave the exit code alone.
WARNINGS: list[Callable[[Config, list[ApiSpec]], list[str]]] = [warn_weak_auth, warn_report_only]


def extra_checks(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Run every registered check."""
    problems: list[str] = []
    for check in CHECKS:
        problems.extend(check(config, apis))
    return problems


def extra_warnings(config: Config, apis: list[ApiSpec]) -> list[str]:
    """Run every registered warning."""
    found: list[str] = []
    for warn in WARNINGS:
        found.extend(warn(config, apis))
    return found
