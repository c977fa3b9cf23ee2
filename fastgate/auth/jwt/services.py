"""The JWT services of a gateway process: the JWKS manager and the revocation list.

``start_jwt`` runs before the listener opens (``fastgate.services.start_services``): it fetches the
JWKS of every API that uses one, so the first request finds its keys, starts the background
refresher, loads the revocation list and subscribes to the cluster events that change either
(``InvalidateJWKSCacheForAPI`` as Tyk names it, and ``JWTRevocationsChanged``). Both services
are made by ``fastgate.services.open_services``; the JWT stage finds them on ``Services``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from fastgate.apidef.loader import load_api_dir
from fastgate.apidef.spec import DefinitionError
from fastgate.auth.jwt.config import jwt_config
from fastgate.auth.jwt.jwks import JwksManager
from fastgate.auth.jwt.revocation import NOTICE_JWT_REVOKED, Revocations
from fastgate.config import Config
from fastgate.store.base import CLUSTER_CHANNEL, Store, StoreUnavailable, decode_event, encode_event

__all__ = ["NOTICE_JWKS_FLUSHED", "announce_jwks_flush", "start_jwt"]

log = logging.getLogger("fastgate.jwt")

NOTICE_JWKS_FLUSHED: Final = "InvalidateJWKSCacheForAPI"  # Tyk's command name; payload: API id, "" = all


async def announce_jwks_flush(store: Store, source: str, api_id: str) -> None:
    """Tell the other nodes to flush their JWKS for ``api_id`` ("" = every API); ``source`` is
    this process's name on the cluster channel."""
    await store.publish(CLUSTER_CHANNEL, encode_event(NOTICE_JWKS_FLUSHED, api_id, source))


async def start_jwt(manager: JwksManager, revocations: Revocations, store: Store, config: Config, source: str) -> None:
    """Fetch the JWKS the APIs use, start refreshing, load revocations, follow cluster events
    (the flushes ``source``, this process, announced itself are ignored)."""
    manager.start()
    urls = _jwks_urls(config)
    if urls:
        await manager.prefetch(urls)
        ready = sum(1 for url in urls if manager.current(url) is not None)
        log.info("JWKS: %d of %d key sets fetched before listening", ready, len(urls))
    loop = asyncio.get_running_loop()

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


def _jwks_urls(config: Config) -> set[str]:
    """Every JWKS URL of the API definitions about to be loaded."""
    urls: set[str] = set()
    for spec in load_api_dir(config.resolve(config.app_path)).apis:
        try:
            cfg = jwt_config(spec)
        except DefinitionError:
            continue  # reported when the API is compiled
        if cfg is not None:
            urls.update(url for url, _ in cfg.key_source.jwks)
        ext_jwt = spec.external_oauth.jwt if spec.external_oauth is not None else None
        if ext_jwt is not None:  # external OAuth's JWT path verifies with a JWKS URL too
            urls.update(url for url, _ in ext_jwt.keys.jwks)
    return urls
