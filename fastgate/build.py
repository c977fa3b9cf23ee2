"""Which modules the build compiles with mypyc, and which build this process runs.

The modules on every request (server, http, pipeline) and the stages and stores they call are
compiled to C with mypyc when the install finds a C compiler; their ``.py`` sources stay the
fallback (no compiler, a failed compile, ``FASTGATE_PURE=1``). ``setup.py`` reads
``COMPILED_MODULES`` from this file's text (the build environment cannot import fastgate: its
dependencies are not installed there), so this module imports nothing from fastgate.
"""

from __future__ import annotations

import importlib
from typing import Final

# Each is a module mypyc compiles. Left out on purpose: sessions/session.py (msgspec Structs
# only, which mypyc cannot subclass; nothing to speed up) and everything off the request path.
COMPILED_MODULES: Final = (
    "fastgate.server.protocol",
    "fastgate.server.exchange",
    "fastgate.server.upstream",
    "fastgate.http.h1",
    "fastgate.http.request",
    "fastgate.pipeline.compile",
    "fastgate.pipeline.router",
    "fastgate.pipeline.post_auth",
    "fastgate.pipeline.stage",
    "fastgate.pipeline.access",
    "fastgate.store.limits",
    "fastgate.store.memory",
    "fastgate.sessions.cache",
    "fastgate.sessions.manager",
    "fastgate.sessions.key_ids",
    "fastgate.auth.token",
    "fastgate.auth.sources",
    "fastgate.auth.identity",
    "fastgate.auth.basic",
    "fastgate.auth.passwords",
    "fastgate.auth.jwt.stage",
    "fastgate.auth.jwt.claims",
    "fastgate.clock",
    # The wire layer calls back into the gateway for every request (route, upstream_head,
    # record): interpreted, those calls were half of a keyless request's Python (22 -> 10 us).
    "fastgate.gateway",
    # Request signatures, verified on every request (issue 5's HMAC scenario).
    "fastgate.auth.hmac",
    "fastgate.auth.signature",
    # The pipelined Redis client every Redis store request goes through (store/redis.py itself
    # hits a mypyc bug: a float keyword-only default beside **options in __init__).
    "fastgate.store.resp",
    # What a response bumps in its API's metric counters (fastgate.observe.metrics): counting
    # costs ~0.7 us per request compiled, 1.0-1.5 us with the layout read from an interpreted module.
    "fastgate.observe.counting",
)


def compiled_modules() -> list[str]:
    """The modules of ``COMPILED_MODULES`` this process imported from a compiled extension."""
    found = []
    for name in COMPILED_MODULES:
        path = getattr(importlib.import_module(name), "__file__", None) or ""
        if not path.endswith(".py"):
            found.append(name)
    return found


def describe() -> str:
    """``compiled: mypyc, N modules`` or ``pure Python``: what ``fastgate version`` prints."""
    found = compiled_modules()
    return f"compiled: mypyc, {len(found)} modules" if found else "pure Python"
