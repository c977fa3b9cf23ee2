"""The JWT services of a gateway process: the JWKS manager and the revocation list.

``start_jwt`` runs before the listener opens (``fastgate.services.STARTERS``): it fetches the
JWKS of every API that uses one, so the first request finds its keys, starts the background
refresher, loads the revocation list and subscribes to the cluster events that change either
(``InvalidateJWKSCacheForAPI`` as Tyk names it, and ``JWTRevocationsChanged``). The JWT stage
reaches both through ``jwks_of`` / ``revocations_of``, which also work without ``start_jwt``
(unit tests compile APIs on a bare gateway object).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Final

from fastgate.apidef.loader import load_api_dir
from fastgate.apidef.spec import DefinitionError
from fastgate.auth.jwt.config import jwt_config
from fastgate.auth.jwt.jwks import JwksManager
from fastgate.auth.jwt.revocation import NOTICE_JWT_REVOKED, Revocations
from fastgate.store.base import CLUSTER_CHANNEL, StoreUnavailable, decode_event, encode_event

__all__ = ["NOTICE_JWKS_FLUSHED", "announce_jwks_flush", "jwks_of", "revocations_of", "start_jwt"]

log = logging.getLogger("fastgate.jwt")

NOTICE_JWKS_FLUSHED: Final = "InvalidateJWKSCacheForAPI"  # Tyk's command name; payload: API id, "" = all


def jwks_of(gateway: Any) -> JwksManager:
    """The process's JWKS manager, made from ``[jwks]`` on first use."""
    manager: JwksManager | None = gateway.state.get("jwks")
    if manager is None:
        cfg = getattr(gateway.config, "jwks", None)
        manager = JwksManager(
            cache_timeout=getattr(cfg, "cache_timeout", 240.0),
            refetch_cooldown=getattr(cfg, "refetch_cooldown", 10.0),
            fetch_timeout=getattr(cfg, "fetch_timeout", 5.0),
        )
        gateway.state["jwks"] = manager
    return manager


def revocations_of(gateway: Any) -> Revocations:
    """The process's JWT revocation list."""
    revocations: Revocations | None = gateway.state.get("jwt_revocations")
    if revocations is None:
        revocations = gateway.state["jwt_revocations"] = Revocations()
    return revocations


async def announce_jwks_flush(gateway: Any, api_id: str) -> None:
    """Tell the other nodes to flush their JWKS for ``api_id`` ("" = every API)."""
    store = gateway.state.get("store")
    if store is not None:
        await store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_JWKS_FLUSHED, api_id, _source_id(gateway)))


async def start_jwt(gateway: Any) -> None:
    """Fetch the JWKS the APIs use, start refreshing, load revocations, follow cluster events."""
    manager = jwks_of(gateway)
    revocations = revocations_of(gateway)
    store = gateway.state.get("store")
    manager.start()
    gateway.state.setdefault("closers", []).append(manager.close)
    gateway.state.setdefault("reloaders", []).append(manager.forget_apis)  # removed APIs stop refreshing
    urls = _jwks_urls(gateway)
    if urls:
        await manager.prefetch(urls)
        ready = sum(1 for url in urls if manager.current(url) is not None)
        log.info("JWKS: %d of %d key sets fetched before listening", ready, len(urls))
    if store is None:
        return
    loop = asyncio.get_running_loop()
    source = _source_id(gateway)

    async def reload_revocations() -> None:
        try:
            await revocations.load(store)
        except StoreUnavailable:
            log.warning("the JWT revocation list could not be read: the store is unreachable")

    def on_event(message: bytes) -> None:
        event = decode_event(message)
        if event is None:
            return
        if event.command == NOTICE_JWT_REVOKED:
            loop.create_task(reload_revocations())
        elif event.command == NOTICE_JWKS_FLUSHED and event.source != source:
            manager.flush(event.payload or None)

    await reload_revocations()
    try:
        await store.subscribe(CLUSTER_CHANNEL, on_event, lambda: loop.create_task(reload_revocations()))
    except StoreUnavailable:
        log.warning("JWT revocations and JWKS flushes from other nodes are not followed: the store is unreachable")


def _source_id(gateway: Any) -> str:
    """This process's name on the cluster channel (so it ignores its own flush events)."""
    return str(gateway.state.setdefault("jwt_event_source", uuid.uuid4().hex))


def _jwks_urls(gateway: Any) -> set[str]:
    """Every JWKS URL of the API definitions about to be loaded."""
    config = gateway.config
    urls: set[str] = set()
    for spec in load_api_dir(config.resolve(config.app_path)).apis:
        try:
            cfg = jwt_config(spec)
        except DefinitionError:
            continue  # reported when the API is compiled
        if cfg is not None:
            urls.update(url for url, _ in cfg.key_source.jwks)
    return urls
