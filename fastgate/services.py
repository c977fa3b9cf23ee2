"""Long-lived services a gateway process starts before it listens: store, policies, sessions.

``start_services`` opens the configured store, loads the policies, creates the session manager
and subscribes to the cluster channel (key invalidations, group reloads, policy changes), and
registers their shutdown. Later features (JWKS fetchers, certificate store, ...) add starters to
``STARTERS``; ``fastgate.runner`` and the tests start a complete gateway the same way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Awaitable, Callable

from fastgate.auth.jwt.services import start_jwt as start_jwt_services
from fastgate.certs.store import start_certificates
from fastgate.sessions.policies import load_policy_dir
from fastgate.sessions.manager import SessionManager
from fastgate.store import (
    CLUSTER_CHANNEL,
    NOTICE_GROUP_RELOAD,
    NOTICE_POLICY_CHANGED,
    StoreUnavailable,
    decode_event,
    encode_event,
    open_store,
)

if TYPE_CHECKING:
    from fastgate.gateway import Gateway

__all__ = ["start_services", "STARTERS", "reload_policies"]

log = logging.getLogger("fastgate")


async def start_store(gateway: "Gateway") -> None:
    """Open the store, load policies, start the session manager and cluster events."""
    config = gateway.config
    options: dict[str, object] = {}
    if config.storage.url.startswith(("redis:", "rediss:")):
        options = {"socket_timeout": config.storage.timeout, "socket_connect_timeout": config.storage.timeout}
        if config.storage.key_prefix:
            options["prefix"] = config.storage.key_prefix
    store = open_store(config.storage.url, **options)
    gateway.state["store"] = store
    gateway.state["unavailable_errors"] = (StoreUnavailable,)
    sessions = SessionManager(store, config)
    gateway.state["sessions"] = sessions
    reload_policies(gateway)
    try:
        await store.ping()
    except StoreUnavailable:
        # Fail closed, keep running: requests that need the store get 503 until it is back.
        log.warning("the store (%s) is not reachable yet; requests that need it get 503", _where(config.storage.url))

    await sessions.start()

    def on_event(message: bytes) -> None:
        event = decode_event(message)
        if event is None:
            return
        if event.command == NOTICE_GROUP_RELOAD:
            gateway.reload()
            reload_policies(gateway)
        elif event.command == NOTICE_POLICY_CHANGED:
            reload_policies(gateway)

    try:
        await store.subscribe(CLUSTER_CHANNEL, on_event)
    except StoreUnavailable:
        log.warning("cluster events are not subscribed: the store is unreachable")

    async def reload_group() -> None:
        await store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_GROUP_RELOAD))

    gateway.state["reload_group"] = reload_group
    gateway.state.setdefault("closers", []).extend([sessions.close, store.close])
    gateway.state.setdefault("reloaders", []).append(lambda: reload_policies(gateway))


def reload_policies(gateway: "Gateway") -> None:
    """(Re)load ``[policies] policy_path`` into the session manager."""
    config = gateway.config
    if not config.policies.policy_path:
        gateway.state["sessions"].set_policies({})
        return
    policies, problems = load_policy_dir(config.resolve(config.policies.policy_path))
    gateway.state["policies"] = policies
    gateway.state["sessions"].set_policies(policies)
    for problem in problems:
        log.warning("rejected policy: %s", problem)
    log.info("loaded %d policies", len(policies))


def _where(url: str) -> str:
    return url.split("@")[-1]


async def start_jwt(gateway: "Gateway") -> None:
    """JWKS fetched before the listener opens, JWT revocations loaded (``fastgate.auth.jwt.services``)."""
    await start_jwt_services(gateway)


STARTERS: list[Callable[["Gateway"], Awaitable[None]]] = [start_store, start_certificates, start_jwt]


async def start_services(gateway: "Gateway") -> None:
    """Run every registered starter, in registration order."""
    for starter in STARTERS:
        await starter(gateway)
