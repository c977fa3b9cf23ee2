"""An API definition compiled once into the stages its requests go through.

A ``CompiledApi`` holds only the stages its definition enables (a keyless API has no auth stage
at all, not a disabled one), each already holding its parsed config, plus the upstream target
with its host header and base path prepared. A stage is called with the ``Request`` and returns
``None`` to continue, a ``Denial`` to answer the client, or an awaitable of either when it needs
I/O (a store lookup): the connection runs stages synchronously until one needs to wait, so a
request whose stages are all cache hits never creates a task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from fastgate.apidef.spec import ApiSpec
from fastgate.auth import compile_auth, compile_body_tap, compile_strip_auth
from fastgate.auth.mtls import compile_static_mtls
from fastgate.http.request import Request
from fastgate.pipeline.post_auth import compile_post_auth
from fastgate.pipeline.stage import Stage, deny

__all__ = ["CompiledApi", "UpstreamTarget", "compile_api"]


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where an API's requests go, parsed once."""

    scheme: str
    host: str
    port: int
    host_header: bytes
    base_path: str  # the target URL's path without a trailing slash

    @classmethod
    def from_url(cls, url: str) -> "UpstreamTarget":
        parts = urlsplit(url)
        scheme = parts.scheme
        port = parts.port or (443 if scheme == "https" else 80)
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        netloc_host = parts.hostname or ""
        if ":" in netloc_host:  # IPv6 literal
            netloc_host = f"[{netloc_host}]"
        host_header = netloc_host if default_port else f"{netloc_host}:{port}"
        return cls(
            scheme=scheme,
            host=parts.hostname or "",
            port=port,
            host_header=host_header.encode(),
            base_path=parts.path.rstrip("/"),
        )


@dataclass(frozen=True, slots=True)
class CompiledApi:
    """Everything a request to one API needs, prepared at load time."""

    spec: ApiSpec
    stages: tuple[Stage, ...]
    upstream: UpstreamTarget
    max_body_bytes: int  # 0 = unlimited
    extra: dict[str, Any] = field(default_factory=dict)
    # Made per request when its head is complete, for auth that needs the body (HMAC digests,
    # basic-auth credentials in the body): see fastgate.auth.body. None on most APIs.
    body_tap: Callable[[Request], Any] | None = None

    def upstream_path(self, req: Request) -> str:
        """The path (and query) the upstream receives for ``req``."""
        path = req.path
        if self.spec.strip_listen_path and req.listen_base:
            path = path[len(req.listen_base) :]
        if not path.startswith("/"):
            path = "/" + path
        path = self.upstream.base_path + path
        return path + "?" + req.query if req.query else path


def compile_api(spec: ApiSpec, gateway: Any, default_max_body: int) -> CompiledApi:
    """Build the stage tuple for ``spec``; raises ``DefinitionError`` for config that cannot work.

    Stages in Tyk's order: the static mTLS check (keyless APIs too), auth methods, post-auth
    checks (expiry, access rights, granular access, rate limit, quota), then stripping
    credentials before the proxy.
    """
    stages: list[Stage] = list(compile_static_mtls(spec, gateway))
    if not spec.use_keyless:
        auth_stages = compile_auth(spec, gateway)
        if auth_stages:
            stages.extend(auth_stages)
            stages.extend(compile_post_auth(spec, gateway))
            stages.extend(compile_strip_auth(spec))
        else:
            # A method this gateway does not implement yet: refuse everyone, as Tyk does for a
            # request that carries no credential, rather than let anyone through.
            logging.getLogger("fastgate").warning(
                "API %r (%s) enables an auth method this gateway does not implement (OAuth 2.0,"
                " external OAuth, OpenID Connect or a custom plugin): every request is refused",
                spec.api_id,
                spec.source,
            )
            stages.append(deny(401, "Authorization field missing"))
    return CompiledApi(
        spec=spec,
        stages=tuple(stages),
        upstream=UpstreamTarget.from_url(spec.target_url),
        max_body_bytes=spec.max_request_body_bytes or default_max_body,
        body_tap=None if spec.use_keyless else compile_body_tap(spec),
    )
