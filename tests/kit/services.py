"""A real ``Services`` on a memory store, for unit tests that compile stages without a gateway.

``make_services(**config)`` is what ``fastgate.gateway.Gateway`` builds, minus the listeners:
the same session manager, certificate store, JWKS manager and counters, over ``memory://``.
``put_keys`` writes keys through the session manager's one write path, and with ``warm`` also
starts the session cache and reads each key once, so a stage finds them without awaiting.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastgate.apidef.spec import ApiSpec
from fastgate.config import config_from_mapping
from fastgate.services import Services, open_services
from fastgate.sessions.key_ids import storage_key_id
from fastgate.sessions.session import SessionState

__all__ = ["make_services", "put_keys"]


def make_services(**config: Any) -> Services:
    """The services of a gateway with ``config`` (top-level config keys), on a memory store."""
    return open_services(config_from_mapping({**config, "storage": {"url": "memory://"}}, environ={}))


def put_keys(services: Services, keys: dict[str, SessionState], *, warm: bool = False, org_id: str = "") -> None:
    """Store ``keys`` (credential -> session); ``warm``: cached on this node for APIs of ``org_id``."""
    spec = ApiSpec(api_id="warm", name="warm", listen_path="/", target_url="http://x", org_id=org_id)

    async def write() -> None:
        for credential, session in keys.items():
            await services.sessions.put(storage_key_id(credential, services.config.hash_keys), session)
        if warm:
            await services.sessions.start()
            for credential in keys:
                await services.sessions.lookup(credential, spec)

    asyncio.run(write())
