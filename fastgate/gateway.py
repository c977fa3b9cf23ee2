"""One gateway process: its listeners, loaded APIs, upstream pools, clock tick and shutdown.

Everything a connection needs from "the gateway" goes through this object: routing, building
the upstream request head, local endpoints, and the bookkeeping after each response. A reload
compiles a fresh set of APIs and swaps the router in one assignment; requests in flight keep
the ``CompiledApi`` they started with, and no connection is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any, Final

from fastgate import __version__, clock
from fastgate.build import describe
from fastgate.pipeline.access import METHOD_OVERRIDE_HEADERS
from fastgate.admin.api import AdminApi
from fastgate.admin.guard import ControlHosts
from fastgate.apidef.loader import load_api_dir
from fastgate.apidef.spec import DefinitionError
from fastgate.auth import introspection
from fastgate.auth.mtls import client_auth
from fastgate.config import Config
from fastgate.observe.access_log import AccessLog
from fastgate.observe.analytics import Analytics
from fastgate.observe.counting import count_response
from fastgate.observe.metrics import count_fetches, stage_name
from fastgate.pipeline.compile import CompiledApi, compile_api
from fastgate.pipeline.stage import Denial
from fastgate.pipeline.router import Router
from fastgate.server.exchange import CHECKING, LOCAL, Exchange
from fastgate.certs.peer import forwarded_client_cert
from fastgate.http.h1 import (
    HOP_BY_HOP,
    forwarded_element,
    path_parameters_refusal,
    without_path_parameters,
)
from fastgate.http.request import Request
from fastgate.server.protocol import GatewayHost, HttpConnection
from fastgate.server.tls import TlsTerminator
from fastgate.server.upstream import PoolSet
from fastgate.services import Services, open_services

__all__ = ["Gateway"]

log = logging.getLogger("fastgate")

# Hop-by-hop headers, and the headers the gateway sets itself: a client's own copies are dropped
# (X-Forwarded-For and Forwarded are kept and extended), and the upstream framing is always ours.
# Also dropped: what only a TLS-terminating proxy may say about the client certificate, and the
# URL-override headers some frameworks obey (IIS, Symfony, Zend) that would route the upstream
# past the path the gateway checked.
_DROP_FROM_CLIENT: Final = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"x-forwarded-client-cert",
    b"x-client-cert",
    b"x-original-url",
    b"x-rewrite-url",
}
# Method override headers make many frameworks run another method than the one checked here: they
# reach the upstream only from APIs that allow them (``allow_method_override``, fastgate.pipeline.access).
_DROP_WITH_OVERRIDES: Final = _DROP_FROM_CLIENT | METHOD_OVERRIDE_HEADERS
_SSL_CLIENT_PREFIX: Final = b"x-ssl-client-"  # nginx/Apache's X-SSL-Client-Verify, -S-DN, -Cert, ...


def _dropped_from_client(lname: bytes) -> bool:
    """Whether a client header (lower-case name) never reaches the upstream. Names are also
    read with "_" as "-": CGI-style servers (nginx with underscores_in_headers, WSGI, PHP) fold
    ``Transfer_Encoding`` onto ``Transfer-Encoding``."""
    folded = lname.replace(b"_", b"-")
    return folded in _DROP_WITH_OVERRIDES or folded.startswith(_SSL_CLIENT_PREFIX)


# Each header name's verdict, decided once: a request costs one dict lookup per header, as the
# plain set lookup did. Bounded, so random names cannot grow it without limit.
_DROP_VERDICTS: Final[dict[bytes, bool]] = {name: True for name in _DROP_WITH_OVERRIDES}
_MAX_VERDICTS: Final = 4096
_KEEP_NONE: Final[frozenset[bytes]] = frozenset()

ADMIN_BODY_LIMIT: Final = 10 * 1024 * 1024


class Gateway(GatewayHost):
    """The state of one gateway process."""

    def __init__(self, config: Config, *, under_supervisor: bool = False) -> None:
        self.config = config
        self.services: Services = open_services(config)
        self.set_limits(config.http_server_options)
        self.loop = asyncio.get_event_loop()
        self.connections = set()
        opts = self.options
        self.pools = PoolSet(
            connect_timeout=opts.upstream_connect_timeout,
            idle_timeout=opts.upstream_idle_timeout,
            limit=opts.max_upstream_connections_per_host,
        )
        self.router: Router[CompiledApi] = Router(())
        self.apis: dict[str, CompiledApi] = {}
        self.load_problems: list[str] = []
        self.admin_body_limit = ADMIN_BODY_LIMIT
        self.admin_on_main = config.control_api_port == 0
        # X-Request-Id / traceparent made for requests that come without (off by default).
        self.tag_requests = config.generate_request_id or config.generate_traceparent
        self.metrics_on_main = self.admin_on_main and config.metrics_on_main and config.enable_metrics
        self.control_hosts = ControlHosts(config.control_api_hostnames)
        self.under_supervisor = under_supervisor
        self.servers: list[asyncio.AbstractServer] = []
        self.closing = False
        self.started_at = time.time()
        self.access_log = AccessLog.open(config.access_log) if config.access_log.enabled else None
        self.analytics = Analytics(config) if config.enable_analytics else None
        self.metrics = self.services.metrics
        self.counting = config.enable_metrics  # off: nothing is counted per request
        self._watch_metrics()
        self.tls: TlsTerminator | None = None  # the listeners' SSL contexts when use_ssl is on
        self.admin = AdminApi(self)
        # The TLS listener trusts what the loaded APIs allow: recomputed after every API load and
        # every change to the certificate store.
        self.services.lifecycle.apis_loaded.append(self.refresh_client_auth)
        self.services.certificates.on_change.append(self.refresh_client_auth)
        self._tick_handle: asyncio.TimerHandle | None = None
        self._ticks = 0

    # ---- loading -----------------------------------------------------------------------------

    def load_apis(self) -> None:
        """(Re)load every API definition under ``app_path`` and swap them in at once."""
        result = load_api_dir(
            self.config.resolve(self.config.app_path),
            allow_link_local=self.config.security.allow_link_local_upstreams,
        )
        problems = list(result.problems)
        compiled: dict[str, CompiledApi] = {}
        for spec in result.apis:
            try:
                compiled[spec.api_id] = compile_api(spec, self.services, self.options.max_request_body_bytes)
            except DefinitionError as exc:
                problems.append(f"{spec.source}: {exc}")
        # Internal APIs (Tyk's "internal") are never served from outside.
        self.router = Router(
            (api.spec.domain, api.spec.listen_path, api) for api in compiled.values() if not api.spec.access.internal
        )
        self.apis = compiled
        self.load_problems = problems
        for hook in self.services.lifecycle.apis_loaded:  # e.g. which client certificates TLS asks for
            hook()
        for api in compiled.values():
            log.info(
                "loaded API %r (%s) on %s%s -> %s%s",
                api.spec.api_id,
                api.spec.format,
                api.spec.domain,
                api.spec.listen_path,
                api.spec.target_url,
                "" if api.spec.use_keyless else " (protected)",
            )
        for spec in result.inactive:
            log.info("skipped inactive API %r from %s", spec.api_id, spec.source)
        for problem in problems:
            log.warning("rejected API definition: %s", problem)

    def reload(self) -> None:
        """Reload API definitions (and policies) in this process (SIGHUP, ``/tyk/reload``)."""
        for reloader in self.services.lifecycle.reloaders:
            reloader()
        self.load_apis()
        log.info("reloaded: %d APIs, %d rejected", len(self.apis), len(self.load_problems))

    def refresh_client_auth(self) -> None:
        """Tell the TLS listener which client certificates to ask for and trust."""
        if self.tls is not None:
            mode, trusted = client_auth(
                [api.spec for api in self.apis.values()], self.services.certificates, self.config, self.admin_on_main
            )
            self.tls.set_client_auth(mode, trusted)

    def reload_everywhere(self) -> None:
        """Reload here and, under the worker supervisor, in every sibling worker."""
        self.reload()
        if self.under_supervisor:
            os.kill(os.getppid(), signal.SIGHUP)

    # ---- per request -------------------------------------------------------------------------

    def route(self, req: Request) -> bool:
        """Find the API for ``req`` (or mark it local); ``False`` when nothing serves it."""
        path = req.path
        if path == "/hello" or (self.metrics_on_main and path == "/metrics") or (
            self.admin_on_main
            and (path.startswith("/tyk/") or path == "/tyk")
            # Any other Host sees /tyk/ as an ordinary path: a web page cannot reach the API.
            and self.control_hosts.allows(req.host)
        ):
            req.api = None
            return True
        # Routing matches the path an upstream that drops ";" parameters would read; the API
        # found decides whether the parameters may reach it at all.
        with_parameters = ";" in path
        match = self.router.route(req.host, without_path_parameters(path) if with_parameters else path)
        if match is None:
            return False
        api, req.listen_base = match
        if with_parameters:
            refusal = path_parameters_refusal(path, req.listen_base, api.spec.allow_path_parameters)
            if refusal is not None:
                req.api = api
                req.error = (400, refusal)
                return True
        # Endpoint lists and method overrides pick the stage set (fastgate.pipeline.access).
        req.api = api if api.select is None else api.select(req)
        return True

    def upstream_head(self, exchange: Exchange) -> bytes:
        """The request line and headers the upstream receives for ``exchange``."""
        req = exchange.req
        api = exchange.api
        assert api is not None
        listed = req.conn_tokens
        keep = METHOD_OVERRIDE_HEADERS if api.method_override else _KEEP_NONE
        out = [api.request_line(req)]
        verdicts = _DROP_VERDICTS
        for name, value in req.headers:
            # Verdicts are kept by the name as sent: the common case costs no lower().
            dropped = verdicts.get(name)
            if dropped is None:
                dropped = _dropped_from_client(name.lower())
                if len(verdicts) < _MAX_VERDICTS:
                    verdicts[name] = dropped
            if dropped:
                if not keep or name.lower() not in keep:
                    continue
            if listed is not None and name.lower() in listed:
                continue
            out.append(b"%b: %b\r\n" % (name, value))
        if self.tag_requests:
            _tag_request(req, out, self.config.generate_request_id, self.config.generate_traceparent)
        host = req.host.encode() if api.preserve_host and req.host else api.upstream.host_header
        if req.forwarded_for or req.forwarded:
            out.append(_forwarded_block(host, req))
        else:
            # The common case: the block depends only on the connection (client address, scheme)
            # and the two hosts, so a keep-alive connection builds it once.
            client = exchange.client
            if client.forwarded_host != host or client.forwarded_request_host != req.host:
                client.forwarded_block = _forwarded_block(host, req)
                client.forwarded_host = host
                client.forwarded_request_host = req.host
            out.append(client.forwarded_block)
        peer = req.peer_cert
        if self.forward_client_cert and peer is not None and not peer.expired():
            out.append(b"X-Forwarded-Client-Cert: %b\r\n" % forwarded_client_cert(peer))
        if req.chunked:
            out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        elif req.content_length is not None:
            out.append(b"Content-Length: %d\r\n\r\n" % req.content_length)
        else:
            out.append(b"\r\n")
        return b"".join(out)

    def handle_local(self, exchange: Exchange) -> None:
        """Answer a request meant for the gateway itself, once its whole body has arrived."""
        exchange.local = True
        req = exchange.req
        if req.complete or not req.has_body:
            self.run_local(exchange)

    def run_local(self, exchange: Exchange) -> None:
        """Start the local handler once (the body may complete after ``handle_local``)."""
        if exchange.state != CHECKING:
            return
        exchange.state = LOCAL
        body = b"".join(exchange.body_chunks)
        exchange.body_chunks = []
        ctx = exchange.req.ctx
        local = ctx.get("local") if ctx is not None else None  # an API's own endpoints (fastgate.oauth)
        self.loop.create_task(self.admin.respond(exchange, body) if local is None else local(exchange, body))

    def stage_failed(self, exchange: Exchange, exc: BaseException) -> Denial:
        """A stage raised: the store is down (503) or a bug (500); never an open door."""
        if isinstance(exc, self.services.unavailable_errors):
            return Denial(503, "The gateway's store is unavailable; try again shortly")
        log.exception("stage failed for %s %s", exchange.req.method, exchange.req.path, exc_info=exc)
        return Denial(500, "There was a problem authorising the request")

    def record(self, exchange: Exchange) -> None:
        """After a response: its counts (plain list increments: fastgate.observe.metrics), the
        access log line and the analytics record, when switched on."""
        api = exchange.api
        if api is not None and self.counting:
            if exchange.sent_at > 0.0 or exchange.decided_by < 0:
                count_response(api.counters, exchange.req.method, exchange.status, exchange.started,
                               exchange.sent_at, exchange.head_at, api.counts_allowed)
            else:
                count_response(api.counters, exchange.req.method, exchange.status, 0.0, 0.0, 0.0, False)
                self.refused(exchange)
        if self.access_log is not None:
            self.access_log.write(exchange)
        if self.analytics is not None:
            self.analytics.record(exchange)

    def refused(self, exchange: Exchange) -> None:
        """Count a refusal by the stage that made it (``fastgate_auth_decisions_total``)."""
        api = exchange.api
        assert api is not None
        stages = api.stages
        index = exchange.decided_by
        name = stage_name(stages[index]) if index < len(stages) else "stage"
        denial = exchange.denial
        message = denial.message if denial is not None else ""
        self.metrics.refused(api.spec.api_id, name, exchange.status, message)

    def _watch_metrics(self) -> None:
        """What a scrape reads besides the counters: gauges of this worker, monotonic totals."""
        metrics = self.metrics
        metrics.build = (__version__, describe())
        metrics.gauges["open_connections"] = lambda: float(len(self.connections))
        metrics.gauges["loaded_apis"] = lambda: float(len(self.apis))
        passwords = self.services.passwords
        metrics.gauges["bcrypt_checks_in_flight"] = lambda: float(len(getattr(passwords, "_inflight", ())))
        count_fetches(self.services.jwks, "_fetcher", metrics, "jwks_fetches")
        count_fetches(self.services.oidc_issuers, "_fetch", metrics, "oidc_discovery_fetches")
        metrics.counters["introspection_calls"] = lambda: introspection.CALLS[0]
        metrics.counters["introspection_calls_failures"] = lambda: introspection.CALLS[1]
        store_stats = getattr(self.services.store, "stats", None)  # the Redis store's round trips
        if isinstance(store_stats, list):
            metrics.store = store_stats
        analytics = self.analytics
        if analytics is not None:
            metrics.gauges["analytics_queue_length"] = lambda: float(len(analytics.queue))
            metrics.counters["analytics_records_written"] = lambda: analytics.written
            metrics.counters["analytics_records_dropped"] = lambda: analytics.dropped
            metrics.counters["analytics_records_failed"] = lambda: analytics.failed

    # ---- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load APIs and open the listeners."""
        if self.options.use_ssl:
            self.tls = TlsTerminator(self.config)  # the files were checked when the config loaded
        self.load_apis()
        reuse_port = self.config.workers > 1
        cfg = self.config
        tls = self.tls
        scheme = "https" if tls is not None else "http"
        self.servers.append(
            await self.loop.create_server(
                lambda: HttpConnection(self),
                sock=_listen_socket(cfg.listen_address, cfg.listen_port, reuse_port),
                **_tls_options(tls.context if tls is not None else None, self.options.read_header_timeout),
            )
        )
        log.info("listening on %s://%s:%d", scheme, cfg.listen_address, cfg.listen_port)
        if not self.admin_on_main:
            self.servers.append(
                await self.loop.create_server(
                    lambda: HttpConnection(self, admin=True),
                    sock=_listen_socket(cfg.control_api_address, cfg.control_api_port, reuse_port),
                    **_tls_options(tls.control_context if tls is not None else None, self.options.read_header_timeout),
                )
            )
            log.info("Gateway API on %s://%s:%d", scheme, cfg.control_api_address, cfg.control_api_port)
        if not cfg.secret:
            log.warning("no secret is set: every Gateway API (/tyk/) request will be refused")
        if self.analytics is not None:
            self.analytics.start(self.loop)
            self.services.lifecycle.closers.insert(0, self.analytics.close)
        self._schedule_tick()

    def _schedule_tick(self) -> None:
        self._tick_handle = self.loop.call_later(clock.TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        clock.tick()
        now = clock.CLOCK.now
        for conn in list(self.connections):
            conn.check_timeouts(now)
        self._ticks += 1
        if self._ticks % 4 == 0:
            self.pools.sweep()
            if self.under_supervisor:
                self.metrics.publish(now)
        self._schedule_tick()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish within the grace period, then close."""
        if self.closing:
            return
        self.closing = True
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.shut_down()
        deadline = time.monotonic() + self.options.shutdown_grace_period
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        self.pools.close_all()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for closer in self.services.lifecycle.closers:
            await closer()
        log.info("stopped")


def _tag_request(req: Request, out: list[bytes], request_id: bool, traceparent: bool) -> None:
    """Add ``X-Request-Id`` and a W3C ``traceparent`` (version 00, sampled) when the client sent
    none; they are also added to the request's headers, so the access log shows the id. A client's
    own values (and ``tracestate``) pass unchanged."""
    if request_id and req.header(b"x-request-id") is None:
        value = os.urandom(16).hex().encode()
        req.headers.append((b"X-Request-Id", value))
        out.append(b"X-Request-Id: %b\r\n" % value)
    if traceparent and req.header(b"traceparent") is None:
        value = b"00-%b-%b-01" % (os.urandom(16).hex().encode(), os.urandom(8).hex().encode())
        req.headers.append((b"traceparent", value))
        out.append(b"traceparent: %b\r\n" % value)


def _forwarded_block(host: bytes, req: Request) -> bytes:
    """``Host`` and the ``X-Forwarded-*`` / ``Forwarded`` lines the upstream receives."""
    client_ip = req.client_ip.encode()
    forwarded_for = req.forwarded_for + b", " + client_ip if req.forwarded_for else client_ip
    scheme = req.scheme.encode()
    request_host = req.host.encode()
    forwarded = forwarded_element(client_ip, scheme, request_host)
    if req.forwarded:
        forwarded = req.forwarded + b", " + forwarded
    return (
        b"Host: %b\r\nX-Forwarded-For: %b\r\nX-Forwarded-Proto: %b\r\nX-Forwarded-Host: %b\r\nForwarded: %b\r\n"
        % (host, forwarded_for, scheme, request_host, forwarded)
    )


def _tls_options(context: Any, handshake_timeout: float) -> dict[str, Any]:
    # A client that never finishes its handshake holds the connection no longer than a request
    # head may take (uvloop's default is 60 s).
    return {"ssl": context, "ssl_handshake_timeout": handshake_timeout} if context is not None else {}


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock
