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
import os
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
    nginx_port: str | None = None  # placeholder of nginx's port; default: proxy_port, proxy_tls_port for https
    client_cert: tuple[str, str] | None = None  # (cert, key) files every target's client presents (mTLS)
    prepare: Callable[[Context], None] | None = None  # before nginx and fastgate start
    setup: Callable[[Context], Prepared | None] | None = None  # after fastgate is up
    probe: bool = True  # check one request answers 2xx on each target before measuring
    # Targets from the issue that asked for this scenario (fastgate/nginx); None: none set.
    target_rps_ratio: float | None = None  # rps at least this × nginx's
    target_p99_ratio: float | None = None  # p99 at most this × nginx's


# Redis database the Redis scenarios use (flushed before each of them); tests use 13-15.
# FGBENCH_REDIS_URL moves it, when two runs share one Redis server (each flushes its own).
BENCH_REDIS_URL = os.environ.get("FGBENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


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


def make_bench_certificates(ctx: Context) -> None:
    """ECDSA P-256 certificates in ``{{prefix}}/tls/`` for the TLS scenarios (made once per run):
    a CA and the server certificate nginx and fastgate both serve, a client CA and a client
    certificate it issued."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = ctx.prefix / "tls"
    if (out / "client.key").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(name: str, issuer: tuple[Any, x509.Name] | None, *, ca: bool = False,
              sans: list[x509.GeneralName] | None = None, usage: Any = None) -> tuple[Any, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        signer, issuer_name = issuer if issuer else (key, subject)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return key, builder.sign(signer, hashes.SHA256())

    def write(name: str, key: Any, cert: x509.Certificate) -> None:
        (out / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (out / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))

    import ipaddress

    ca_key, ca = issue("bench server CA", None, ca=True)
    write("server", *issue("localhost", (ca_key, ca.subject), usage=ExtendedKeyUsageOID.SERVER_AUTH,
                           sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    client_ca_key, client_ca = issue("bench client CA", None, ca=True)
    (out / "client-ca.pem").write_bytes(client_ca.public_bytes(serialization.Encoding.PEM))
    write("client", *issue("bench client", (client_ca_key, client_ca.subject), usage=ExtendedKeyUsageOID.CLIENT_AUTH))


# nginx's side of the TLS scenarios (issue 6): the same certificate as fastgate; the mTLS server
# requires a client certificate issued by the bench client CA (fastgate: static mTLS on that CA).
TLS_NGINX_SERVERS = """
    server {
        listen 127.0.0.1:{{proxy_tls_port}} ssl backlog=4096;
        ssl_certificate {{prefix}}/tls/server.crt;
        ssl_certificate_key {{prefix}}/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location /keyless/ {
            proxy_pass http://bench_upstream/;
        }
    }
    server {
        listen 127.0.0.1:{{proxy_mtls_port}} ssl backlog=4096;
        ssl_certificate {{prefix}}/tls/server.crt;
        ssl_certificate_key {{prefix}}/tls/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {{prefix}}/tls/client-ca.pem;
        ssl_verify_client on;
        location /mtls/ {
            proxy_pass http://bench_upstream/;
        }
    }
"""

TLS_CONFIG = {"http_server_options": {"use_ssl": True, "certificates": [
    {"cert_file": "{{prefix}}/tls/server.crt", "key_file": "{{prefix}}/tls/server.key"}]}}
CLIENT_CERT = ("{{prefix}}/tls/client.crt", "{{prefix}}/tls/client.key")


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


def _jwt_hook(name: str, ctx: Context) -> Prepared:
    """A hook of the JWT scenarios (``jwt_scenarios.py``, imported late: it imports this module)."""
    import jwt_scenarios

    hook: Callable[[Context], Prepared] = getattr(jwt_scenarios, name)
    return hook(ctx)


def _idp_hook(name: str, ctx: Context) -> Prepared:
    """A hook of the external OAuth and OIDC scenarios (``idp_scenarios.py``, imported late)."""
    import idp_scenarios

    hook: Callable[[Context], Prepared] = getattr(idp_scenarios, name)
    return hook(ctx)


def _signature_hook(name: str, ctx: Context) -> Prepared:
    """A hook of the basic-auth and HMAC scenarios (``signature_scenarios.py``, imported late)."""
    import signature_scenarios

    hook: Callable[[Context], Prepared] = getattr(signature_scenarios, name)
    return hook(ctx)


def _oauth_hook(name: str, ctx: Context) -> Prepared:
    """A hook of the OAuth scenarios (``oauth_scenarios.py``, imported late: it imports this module)."""
    import oauth_scenarios

    hook: Callable[[Context], Prepared] = getattr(oauth_scenarios, name)
    return hook(ctx)


SCENARIOS: list[Scenario] = [
    Scenario(
        name="keyless",
        title="Keyless API: proxy a ~100-byte JSON answer (issue 2)",
        upstream_path="/get",
        nginx_path="/keyless/get",
        fastgate_path="/keyless/get",
        apis=("keyless.json",),
        target_rps_ratio=0.85,
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
        target_rps_ratio=0.6,
    ),
    Scenario(
        name="https",
        title="Keyless API over HTTPS, keep-alive (issue 6)",
        nginx_path="/keyless/get",
        fastgate_path="/keyless/get",
        apis=("keyless.json",),
        scheme="https",
        config=TLS_CONFIG,
        nginx_server=TLS_NGINX_SERVERS,
        prepare=make_bench_certificates,
        target_rps_ratio=0.7,
    ),
    Scenario(
        name="https-handshake",
        title="Keyless API over HTTPS, a new TLS handshake per request (Connection: close; issue 6)",
        nginx_path="/keyless/get",
        fastgate_path="/keyless/get",
        apis=("keyless.json",),
        headers={"Connection": "close"},
        scheme="https",
        config=TLS_CONFIG,
        nginx_server=TLS_NGINX_SERVERS,
        prepare=make_bench_certificates,
    ),
    Scenario(
        name="mtls",
        title="Static mTLS (client certificate issued by an allowlisted CA), keep-alive (issue 6)",
        nginx_path="/mtls/get",
        nginx_port="proxy_mtls_port",
        fastgate_path="/mtls/get",
        apis=("mtls.json",),
        scheme="https",
        client_cert=CLIENT_CERT,
        config=TLS_CONFIG,
        nginx_server=TLS_NGINX_SERVERS,
        prepare=make_bench_certificates,
        target_rps_ratio=0.7,
    ),
    Scenario(
        name="mtls-handshake",
        title="Static mTLS, a new TLS handshake with a client certificate per request (issue 6)",
        nginx_path="/mtls/get",
        nginx_port="proxy_mtls_port",
        fastgate_path="/mtls/get",
        apis=("mtls.json",),
        headers={"Connection": "close"},
        scheme="https",
        client_cert=CLIENT_CERT,
        config=TLS_CONFIG,
        nginx_server=TLS_NGINX_SERVERS,
        prepare=make_bench_certificates,
    ),
    Scenario(
        name="jwt-hs256",
        title="JWT HS256, centralised, repeated token (verified once, then cached), rate + quota (issue 4)",
        nginx_path="/auth-key/get",
        fastgate_path="/jwt-hs256/get",
        apis=("jwt-hs256.json",),
        nginx_headers={"Authorization": API_KEY},
        config={"policies": {"policy_path": "{{bench}}/configs/policies"}},
        setup=lambda ctx: _jwt_hook("setup_hs256", ctx),
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="jwt-rs256",
        title="JWT RS256, centralised, repeated token (verified once, then cached), rate + quota (issue 4)",
        nginx_path="/auth-key/get",
        fastgate_path="/jwt-rs256/get",
        apis=(),
        nginx_headers={"Authorization": API_KEY},
        config={"policies": {"policy_path": "{{bench}}/configs/policies"}},
        setup=lambda ctx: _jwt_hook("setup_rs256", ctx),
        target_rps_ratio=0.7,
    ),
    Scenario(
        name="jwt-rs256-uncached",
        title="JWT RS256, a different token on every request (no cache hit: full verification) (issue 4)",
        fastgate_path="/jwt-rs256/get",
        apis=(),
        config={"policies": {"policy_path": "{{bench}}/configs/policies"}},
        lua="tokens.lua",
        setup=lambda ctx: _jwt_hook("setup_rs256_uncached", ctx),
    ),
    Scenario(
        name="basic-auth",
        title="Basic auth, bcrypt cost 10, repeated credentials (cached bcrypt result), rate + quota (issue 5)",
        nginx_path="/auth-key/get",
        fastgate_path="/basic-auth/get",
        apis=("basic-auth.json",),
        nginx_headers={"Authorization": API_KEY},
        setup=lambda ctx: _signature_hook("setup_basic", ctx),
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="basic-auth-bcrypt-load",
        title="basic-auth while 5 uncached bcrypt checks per second run (compare p99 with basic-auth; issue 5)",
        fastgate_path="/basic-auth/get",
        apis=("basic-auth.json",),
        setup=lambda ctx: _signature_hook("setup_basic_bcrypt_load", ctx),
    ),
    Scenario(
        name="hmac-sha256",
        title="HMAC-SHA256 request signature over (request-target) date, verified on every request (issue 5)",
        nginx_path="/auth-key/get",
        fastgate_path="/hmac/get",
        apis=("hmac-sha256.json",),
        nginx_headers={"Authorization": API_KEY},
        setup=lambda ctx: _signature_hook("setup_hmac", ctx),
        target_rps_ratio=0.6,
    ),
    Scenario(
        name="oauth-token",
        title="OAuth 2.0 access token (client_credentials), repeated (cached session and client) (issue 12)",
        nginx_path="/auth-key/get",
        fastgate_path="/oauth/get",
        apis=("oauth.json",),
        nginx_headers={"Authorization": API_KEY},
        setup=lambda ctx: _oauth_hook("setup_oauth_token", ctx),
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="oauth-token-endpoint",
        title="OAuth 2.0 token endpoint: client_credentials, a new token per request, memory store (issue 12)",
        fastgate_path="/oauth/oauth/token",
        apis=("oauth.json",),
        lua="post_form.lua",
        lua_args=("grant_type=client_credentials",),
        setup=lambda ctx: _oauth_hook("setup_oauth_endpoint", ctx),
        probe=False,
    ),
    Scenario(
        name="ext-oauth-introspection",
        title="External OAuth, RFC 7662 introspection, repeated token (cached answer), virtual session (issue 13)",
        nginx_path="/auth-key/get",
        fastgate_path="/ext-oauth/get",
        apis=(),
        nginx_headers={"Authorization": API_KEY},
        setup=lambda ctx: _idp_hook("setup_ext_introspection", ctx),
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="oidc",
        title="OpenID Connect, repeated RS256 ID token (verified once), persisted session, rate + quota (issue 13)",
        nginx_path="/auth-key/get",
        fastgate_path="/oidc/get",
        apis=(),
        nginx_headers={"Authorization": API_KEY},
        config={"policies": {"policy_path": "{{bench}}/configs/policies"}},
        setup=lambda ctx: _idp_hook("setup_oidc", ctx),
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="plugin-tyk",
        title="Custom auth plugin, Tyk-style Python file (thread pool hop per request), header token (issue 14)",
        nginx_path="/auth-key/get",
        fastgate_path="/plugin-tyk/get",
        apis=("plugin-tyk.json",),
        headers={"Authorization": API_KEY},
        target_rps_ratio=0.6,
    ),
    Scenario(
        name="plugin-native",
        title="Custom auth plugin, native async API on the event loop, header token (issue 14)",
        nginx_path="/auth-key/get",
        fastgate_path="/plugin-native/get",
        apis=("plugin-native.json",),
        headers={"Authorization": API_KEY},
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="plugin-native-inline",
        title="Custom auth plugin, native @inline async (answers before the request needs a task), header token (issue 14)",
        nginx_path="/auth-key/get",
        fastgate_path="/plugin-native-inline/get",
        apis=("plugin-native-inline.json",),
        headers={"Authorization": API_KEY},
        target_rps_ratio=0.75,
    ),
    Scenario(
        name="or-second",
        title="OAS compliant mode, JWT OR API key: the second requirement (the key) matches (issue 14)",
        nginx_path="/auth-key/get",
        fastgate_path="/or/get",
        apis=("or-second.json",),
        nginx_headers={"Authorization": API_KEY},
        fastgate_headers={"X-Api-Key": API_KEY},
        setup=lambda ctx: _or_key(ctx),
        target_rps_ratio=0.7,
    ),
]


def _or_key(ctx: Context) -> Prepared:
    """The bench key for the OR API, with limits the run never reaches."""
    session = {"org_id": "default", "rate": 1_000_000, "per": 1, "quota_max": -1,
               "access_rights": {"bench-or": {"api_id": "bench-or", "api_name": "bench", "versions": ["Default"]}}}
    gateway_api(ctx, "POST", "/tyk/keys/" + API_KEY, session)
    return Prepared()
