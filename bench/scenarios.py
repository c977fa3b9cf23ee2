"""The benchmark scenarios: what `make bench` measures, one entry per comparison.

A scenario is one API shape measured through nginx and through fastgate on the same upstream
(and, when ``upstream_path`` is set, against the upstream directly as the ceiling). To add one:

1. add a location to ``bench/nginx.conf`` doing nginx's side of the work (or a whole server block
   through ``nginx_server`` for TLS), and name it in ``nginx_path``;
2. add the fastgate API definition(s) to ``bench/configs/apps/`` and name them in ``apis``;
3. add a ``Scenario`` to ``SCENARIOS`` below, with a ``setup`` hook when fastgate needs state
   first (a key created through the Gateway API, a certificate uploaded, ...).

Strings in API definitions, ``config`` overrides and ``nginx_server`` may use the placeholders
``{{upstream_url}}``, ``{{upstream_port}}``, ``{{proxy_port}}``, ``{{proxy_tls_port}}`` (where an
https scenario's ``nginx_server`` must listen), ``{{fastgate_port}}``, ``{{secret}}``,
``{{api_key}}``, ``{{prefix}}`` (this run's scratch directory, e.g. for certificates made by
``prepare``) and ``{{bench}}`` (the bench/ directory).
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["API_KEY", "Context", "Prepared", "Scenario", "SCENARIOS", "gateway_api"]

# The key nginx's fixed check accepts; auth scenarios create the same key in fastgate so both
# targets are driven with identical requests.
API_KEY = "bench-key-0123456789abcdef"


@dataclass(frozen=True, slots=True)
class Context:
    """What a hook can know about this run."""

    prefix: Path  # scratch directory of this run (logs, generated configs, certificates)
    upstream_url: str  # http://127.0.0.1:PORT
    proxy_url: str  # nginx
    fastgate_url: str  # fastgate's main listener (the Gateway API answers there under /tyk/)
    secret: str  # fastgate's X-Tyk-Authorization secret
    values: Mapping[str, str]  # every placeholder value, for hooks that render templates


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a ``setup`` hook hands back for the fastgate runs of its scenario."""

    headers: Mapping[str, str] = field(default_factory=dict)  # sent by wrk to fastgate
    lua_args: tuple[str, ...] = ()  # passed to the wrk script's init(args) for fastgate


@dataclass(frozen=True, slots=True)
class Scenario:
    """One comparison. Paths are request paths (with query) on each target."""

    name: str
    title: str
    fastgate_path: str
    apis: tuple[str, ...]  # files in bench/configs/apps/
    nginx_path: str | None = None  # on the proxy nginx; None: fastgate only
    upstream_path: str | None = None  # also measure the upstream directly (the ceiling)
    headers: Mapping[str, str] = field(default_factory=dict)  # sent to every target
    nginx_headers: Mapping[str, str] = field(default_factory=dict)
    fastgate_headers: Mapping[str, str] = field(default_factory=dict)
    lua: str | None = None  # a wrk script in bench/lua/, given to every target
    lua_args: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)  # deep-merged into fastgate's TOML
    nginx_server: str | None = None  # extra nginx server block (placeholders allowed)
    scheme: str = "http"  # "https" for TLS scenarios
    prepare: Callable[[Context], None] | None = None  # before nginx and fastgate start
    setup: Callable[[Context], Prepared | None] | None = None  # after fastgate is up
    probe: bool = True  # check one request answers 2xx on each target before measuring
    # Targets from the issue that asked for this scenario (fastgate/nginx); None: none set.
    target_rps_ratio: float | None = None  # rps at least this × nginx's
    target_p99_ratio: float | None = None  # p99 at most this × nginx's


# Redis database the Redis scenarios use (flushed before each of them); tests use 13-15.
BENCH_REDIS_URL = "redis://127.0.0.1:6379/11"


def flush_bench_redis() -> None:
    """Empty the bench's Redis database so a run starts from nothing."""
    import redis

    client = redis.Redis.from_url(BENCH_REDIS_URL, socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def create_bench_key(ctx: Context) -> Prepared:
    """The key nginx accepts, created in fastgate with limits that the run never reaches, so the
    rate and quota stages do their full work on every request."""
    session = {
        "org_id": "default",
        "rate": 1_000_000,
        "per": 1,
        "quota_max": 1_000_000_000,
        "quota_renewal_rate": 3600,
        "access_rights": {
            "bench-auth-token": {"api_id": "bench-auth-token", "api_name": "bench", "versions": ["Default"]}
        },
    }
    gateway_api(ctx, "POST", "/tyk/keys/" + API_KEY, session)
    return Prepared()


def gateway_api(ctx: Context, method: str, path: str, body: Any = None) -> Any:
    """Call fastgate's Gateway API (``/tyk/...``) with the secret; returns the decoded JSON.

    For ``setup`` hooks, e.g. ``gateway_api(ctx, "POST", "/tyk/keys/" + API_KEY, session)``.
    Raises ``urllib.error.HTTPError`` on a non-2xx answer.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        ctx.fastgate_url + path,
        data=data,
        method=method,
        headers={"X-Tyk-Authorization": ctx.secret, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


SCENARIOS: list[Scenario] = [
    Scenario(
        name="keyless",
        title="Keyless API: proxy a ~100-byte JSON answer (issue 2)",
        upstream_path="/get",
        nginx_path="/keyless/get",
        fastgate_path="/keyless/get",
        apis=("keyless.json",),
        target_rps_ratio=0.8,
        target_p99_ratio=1.5,
    ),
    Scenario(
        name="auth-token",
        title="Auth token with a rate limit and a quota, memory store (issue 3)",
        nginx_path="/auth-key/get",
        fastgate_path="/auth-token/get",
        apis=("auth-token.json",),
        headers={"Authorization": API_KEY},
        setup=lambda ctx: create_bench_key(ctx),
        target_rps_ratio=0.75,
        target_p99_ratio=1.5,
    ),
    Scenario(
        name="auth-token-redis",
        title="Auth token with a rate limit and a quota, Redis store (issue 3)",
        nginx_path="/auth-key/get",
        fastgate_path="/auth-token/get",
        apis=("auth-token.json",),
        headers={"Authorization": API_KEY},
        config={"storage": {"url": BENCH_REDIS_URL}},
        prepare=lambda ctx: flush_bench_redis(),
        setup=lambda ctx: create_bench_key(ctx),
        target_rps_ratio=0.5,
    ),
]
