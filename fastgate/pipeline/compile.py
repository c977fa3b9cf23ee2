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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Final
from urllib.parse import urlsplit

from fastgate.apidef.spec import ApiSpec
from fastgate.auth import compile_auth, compile_body_tap, compile_strip_auth
from fastgate.auth.mtls import compile_static_mtls
from fastgate.http.request import Request
from fastgate.pipeline.access import (
    CONFLICTING_OVERRIDE,
    ENDPOINT_FORBIDDEN,
    compile_api_rate_limit,
    compile_ip_check,
    compile_path_matcher,
    read_method_override,
)
from fastgate.pipeline.post_auth import compile_post_auth
from fastgate.pipeline.report_only import report_only
from fastgate.pipeline.stage import Stage, deny
from fastgate.oauth.endpoints import with_oauth_endpoints
from fastgate.plugins.hooks import compile_body_stage, compile_hook_stages, compile_response_hooks

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["CompiledApi", "UpstreamTarget", "compile_api"]

MAX_REQUEST_LINES: Final = 4096


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """Where an API's requests go, parsed once."""

    scheme: str
    host: str
    port: int
    host_header: bytes
    base_path: str  # the target URL's path without a trailing slash
    # ``scheme host port`` (no host has a space): the key of its connection pool
    # (fastgate.server.upstream.PoolSet), one str object whose hash is computed once.
    pool_key: str

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
            pool_key=f"{scheme} {parts.hostname or ''} {port}",
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
    # The API's response hooks (fastgate.plugins.hooks.ResponseHooks): the exchange then holds
    # each upstream response whole for them. None on most APIs (responses stream).
    response_hooks: Any = None
    # Picks the stage set for a request when it is routed (fastgate.pipeline.access): endpoint lists,
    # method overrides. None on APIs without either. It answers None for a request the gateway
    # answers itself (an OAuth API's endpoints, fastgate.oauth.endpoints).
    select: Callable[[Request], "CompiledApi | None"] | None = None
    # The upstream request line per (method, canonical path, query): built once, bounded. The
    # stage-set variants made by ``select`` share it (same spec, same target).
    request_lines: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    # This API's metric counters (fastgate.observe.metrics), one list per API id across reloads.
    counters: list[int] = field(default_factory=list)
    counts_allowed: bool = False  # proxied means auth allowed it (an API with auth, not report-only)
    # Read from ``spec`` per request by the upstream head: copied here as native fields.
    preserve_host: bool = False  # preserve_host_header
    method_override: bool = False  # access.allow_method_override

    def request_line(self, req: Request) -> bytes:
        """``METHOD <upstream path> HTTP/1.1\r\n`` for ``req``, remembered per method, path and
        query (the listen base is a function of the path on one API)."""
        key = (req.method, req.path, req.query)
        lines = self.request_lines
        line = lines.get(key)
        if line is None:
            line = b"%b %b HTTP/1.1\r\n" % (req.method.encode(), self.upstream_path(req).encode())
            if len(lines) >= MAX_REQUEST_LINES:
                lines.clear()
            lines[key] = line
        return line

    def upstream_path(self, req: Request) -> str:
        """The path (and query) the upstream receives for ``req``."""
        path = req.path
        if self.spec.strip_listen_path and req.listen_base:
            path = path[len(req.listen_base) :]
        if not path.startswith("/"):
            path = "/" + path
        path = self.upstream.base_path + path
        return path + "?" + req.query if req.query else path


def compile_api(spec: ApiSpec, services: "Services", default_max_body: int) -> CompiledApi:
    """``_compile_api``, with an OAuth API's own endpoints under its listen path."""
    return with_oauth_endpoints(_compile_api(spec, services, default_max_body), services)


def _compile_api(spec: ApiSpec, services: "Services", default_max_body: int) -> CompiledApi:
    """Build the stage tuple for ``spec``; raises ``DefinitionError`` for config that cannot work.

    Stages in Tyk's order: IP allow/block lists and endpoint lists (``fastgate.pipeline.access``), the
    static mTLS check (keyless APIs too), the API-wide rate limit, auth methods, post-auth checks
    (expiry, access rights, granular access, rate limit, quota), then stripping credentials
    before the proxy. An API with endpoint lists gets three stage sets, chosen when a request is
    routed: all of them, none of the auth stages (``ignored`` endpoints), or a refusal.
    """
    ip_check = compile_ip_check(spec.access, services.config.security.client_ip_header)
    before: list[Stage] = [ip_check] if ip_check is not None else []
    open_stages: list[Stage] = before + list(compile_static_mtls(spec, services))
    api_rate = compile_api_rate_limit(spec, services.store) if spec.access.rate > 0 else None
    if api_rate is not None:
        open_stages.append(api_rate)
    # Custom plugin hooks (fastgate.plugins): pre before auth, post_key_auth right after it,
    # post last before the proxy, as in Tyk.
    # An API with hooks keeps the request body for them (object.body): the body stage waits for
    # it (bounded) before the first hook; on other APIs bodies stream untouched.
    max_body = spec.max_request_body_bytes or default_max_body
    body_stage, hook_body = compile_body_stage(spec, services, max_body)
    body_stages: tuple[Stage, ...] = (body_stage,) if body_stage is not None else ()
    pre_hooks = (*body_stages, *compile_hook_stages(spec, services, "pre"))
    post_hooks = compile_hook_stages(spec, services, "post")
    stages = list(open_stages) + list(pre_hooks)
    counters = services.metrics.counters_for(spec.api_id)
    if not spec.use_keyless:
        auth_stages = compile_auth(spec, services)
        if auth_stages:
            # In report-only mode the post_key_auth hooks are among the reported checks: skipped,
            # like the post-auth checks, once a refusal is reported (they need the caller's session).
            checks = (*auth_stages, *compile_hook_stages(spec, services, "post_key_auth"), *compile_post_auth(spec, services))
            stages.extend(report_only(spec, checks, counters, services.metrics) if spec.observe.auth_report_only else checks)
            stages.extend(compile_strip_auth(spec))
        else:
            # A protected API none of whose auth settings yields a stage: refuse everyone, as Tyk
            # does for a request that carries no credential, rather than let anyone through.
            logging.getLogger("fastgate").warning(
                "API %r (%s) is protected but none of its auth settings gives a method to run:"
                " every request is refused",
                spec.api_id,
                spec.source,
            )
            stages.append(deny(401, "Authorization field missing"))
    stages.extend(post_hooks)
    upstream = UpstreamTarget.from_url(spec.target_url)
    api = CompiledApi(
        spec=spec,
        stages=tuple(stages),
        upstream=upstream,
        max_body_bytes=max_body,
        body_tap=compile_body_tap(spec, auth=not spec.use_keyless, hook_body=hook_body),
        response_hooks=compile_response_hooks(spec, services),
        counters=counters,
        counts_allowed=not spec.use_keyless and not spec.observe.auth_report_only,
        preserve_host=bool(spec.preserve_host_header),
        method_override=bool(spec.access.allow_method_override),
    )
    if not spec.access.paths and not spec.access.allow_method_override:
        return api
    options = services.config.http_server_options
    matcher = compile_path_matcher(spec.access, options.enable_path_prefix_matching, options.enable_path_suffix_matching)
    # Ignored endpoints skip auth, but credentials a client sends are still stripped as asked.
    ignored = replace(api, stages=(*open_stages, *pre_hooks, *compile_strip_auth(spec), *post_hooks),
                      body_tap=compile_body_tap(spec, auth=False, hook_body=hook_body))
    forbidden = replace(api, stages=tuple(before) + (lambda req: ENDPOINT_FORBIDDEN,), body_tap=None)
    bad_override = replace(forbidden, stages=tuple(before) + (lambda req: CONFLICTING_OVERRIDE,))
    override = spec.access.allow_method_override

    def select(req: Request) -> CompiledApi | None:
        if override and not read_method_override(req):
            return bad_override
        if matcher is None:
            return api
        kind = matcher.kind_for(req)
        if kind == "forbidden":
            return forbidden
        if kind == "ignored":
            return ignored
        return api

    return replace(api, select=select)
