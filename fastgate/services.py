"""The long-lived services of one gateway process, in one typed object handed down at load time.

``open_services(config)`` builds every service (no I/O: the store connects on first use) into a
frozen ``Services``; the gateway builds it once and hands it to every compiler
(``compile(settings, services) -> Stage``) and to the Gateway API. ``start_services`` then does
the I/O before the listener opens: it pings the store, starts the session cache, subscribes to
the cluster channel (key invalidations, group reloads, policy changes), opens the certificate
mirror and fetches the JWKS the APIs use. What runs at shutdown, on reload and after every API
load is listed in ``Services.lifecycle``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from fastgate.auth.jwt.jwks import JwksManager
from fastgate.auth.jwt.revocation import Revocations
from fastgate.auth.jwt.services import start_jwt
from fastgate.auth.oidc_issuers import OidcIssuers, start_oidc
from fastgate.auth.passwords import PasswordChecker
from fastgate.auth.throttle import FailureCounter
from fastgate.certs.store import CertificateStore
from fastgate.config import Config
from fastgate.oauth.server import OAuthServer
from fastgate.oauth.storage import OAuthStorage
from fastgate.observe.metrics import Metrics
from fastgate.sessions.manager import SessionManager
from fastgate.sessions.policies import Policy, load_policy_dir
from fastgate.store import (
    CLUSTER_CHANNEL,
    NOTICE_GROUP_RELOAD,
    NOTICE_POLICY_CHANGED,
    Store,
    StoreUnavailable,
    decode_event,
    encode_event,
    open_store,
)

__all__ = ["BasicFailures", "Lifecycle", "Services", "open_services", "reload_policies", "start_services"]

log = logging.getLogger("fastgate")

Closer = Callable[[], Awaitable[None]]
Hook = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """What runs when: the lists are filled while the process starts, then only read."""

    closers: list[Closer] = field(default_factory=list)  # at shutdown, in order
    reloaders: list[Hook] = field(default_factory=list)  # before every reload of the APIs
    apis_loaded: list[Hook] = field(default_factory=list)  # after every (re)load of the APIs


@dataclass(frozen=True, slots=True)
class BasicFailures:
    """Basic auth's failed-login counters, shared by every API of the process."""

    per_user: FailureCounter
    per_client: FailureCounter


@dataclass(frozen=True, slots=True)
class Services:
    """Every long-lived service a compiler or the Gateway API may need (see the module doc)."""

    config: Config
    store: Store
    sessions: SessionManager  # key lookups, the session cache, the one key write path, policies
    certificates: CertificateStore
    jwks: JwksManager
    jwt_revocations: Revocations
    passwords: PasswordChecker
    basic_failures: BasicFailures
    event_source: str  # this process's name on the cluster channel (it ignores its own events)
    lifecycle: Lifecycle
    oauth: OAuthServer  # the OAuth 2.0 authorization server (fastgate.oauth)
    oidc_issuers: OidcIssuers  # OpenID Connect issuers: discovery documents, their jwks_uri
    # A stage that raises one of these answers 503 (the store is down), anything else 500.
    unavailable_errors: tuple[type[BaseException], ...] = (StoreUnavailable,)
    metrics: Metrics = field(default_factory=Metrics)  # per-worker counters (fastgate.observe.metrics)

    @property
    def policies(self) -> Mapping[str, Policy]:
        """The loaded policies, by id."""
        return self.sessions.policies

    async def reload_group(self) -> None:
        """Ask every node of the cluster to reload (``/tyk/reload/group``)."""
        await self.store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_GROUP_RELOAD))


def open_services(config: Config) -> Services:
    """Build every service for ``config``; nothing connects yet (``start_services`` does)."""
    storage = config.storage
    options: dict[str, object] = {}
    if storage.url.startswith(("redis:", "rediss:", "redis+sentinel:", "redis+cluster:")):
        options = {"socket_timeout": storage.timeout, "socket_connect_timeout": storage.timeout}
        if storage.key_prefix:
            options["prefix"] = storage.key_prefix
    store = open_store(storage.url, **options)
    jwks = config.jwks
    sessions = SessionManager(store, config)
    passwords = PasswordChecker()
    window = config.basic_auth_failure_window
    jwks_manager = JwksManager(
        cache_timeout=jwks.cache_timeout, refetch_cooldown=jwks.refetch_cooldown, fetch_timeout=jwks.fetch_timeout
    )
    services = Services(
        config=config,
        store=store,
        sessions=sessions,
        certificates=CertificateStore(store, config.security.private_certificate_encoding_secret or config.secret),
        jwks=jwks_manager,
        jwt_revocations=Revocations(),
        passwords=passwords,
        basic_failures=BasicFailures(
            FailureCounter(config.basic_auth_failures_per_user, window),
            FailureCounter(config.basic_auth_failures_per_client, window),
        ),
        event_source=uuid.uuid4().hex,
        lifecycle=Lifecycle(),
        oauth=OAuthServer(OAuthStorage(store), sessions, config, passwords),
        oidc_issuers=OidcIssuers(jwks_manager, refresh=jwks.cache_timeout, cooldown=jwks.refetch_cooldown,
                                 timeout=jwks.fetch_timeout),
    )
    reload_policies(services)
    return services


def reload_policies(services: Services) -> None:
    """(Re)load ``[policies] policy_path`` into the session manager."""
    config = services.config
    if not config.policies.policy_path:
        services.sessions.set_policies({})
        return
    policies, problems = load_policy_dir(config.resolve(config.policies.policy_path))
    services.sessions.set_policies(policies)
    for problem in problems:
        log.warning("rejected policy: %s", problem)
    log.info("loaded %d policies", len(policies))


async def start_store(services: Services, reload: Hook) -> None:
    """Ping the store, start the session cache and follow the cluster's reload events."""
    store = services.store
    try:
        await store.ping()
    except StoreUnavailable:
        # Fail closed, keep running: requests that need the store get 503 until it is back.
        log.warning(
            "the store (%s) is not reachable yet; requests that need it get 503", _where(services.config.storage.url)
        )
    await services.sessions.start()

    def on_event(message: bytes) -> None:
        event = decode_event(message)
        if event is None:
            return
        if event.command == NOTICE_GROUP_RELOAD:
            reload()
            reload_policies(services)
        elif event.command == NOTICE_POLICY_CHANGED:
            reload_policies(services)

    try:
        await store.subscribe(CLUSTER_CHANNEL, on_event)
    except StoreUnavailable:
        log.warning("cluster events are not subscribed: the store is unreachable")
    services.lifecycle.reloaders.append(lambda: reload_policies(services))


async def start_certificates(services: Services) -> None:
    """Open the certificate mirror (the TLS trust follows it: ``Gateway`` wires that)."""
    await services.certificates.start()


async def start_services(services: Services, reload: Hook) -> None:
    """Start every service before the listener opens; ``reload`` reloads this process's APIs
    (a cluster-wide reload event calls it). Registers what shutdown closes, in order."""
    await start_store(services, reload)
    await start_certificates(services)
    await start_jwt(services.jwks, services.jwt_revocations, services.store, services.config, services.event_source)
    services.lifecycle.reloaders.append(services.jwks.forget_apis)  # removed APIs stop refreshing
    await start_oidc(services.oidc_issuers, services.config)
    services.lifecycle.reloaders.append(services.oidc_issuers.forget)  # removed issuers are not contacted

    async def close_passwords() -> None:
        services.passwords.close()

    services.lifecycle.closers.extend(
        [services.oauth.notifier.close, services.certificates.close, services.sessions.close, services.jwks.close,
         services.oidc_issuers.close, close_passwords, services.store.close]
    )


def _where(url: str) -> str:
    return url.split("@")[-1]
