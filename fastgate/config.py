"""Gateway configuration: a TOML file mirroring Tyk's ``tyk.conf`` names, overridable from the env.

The file is decoded into frozen msgspec Structs that reject unknown keys and wrong types, so a
typo stops start-up with the file, the key and what is wrong instead of being silently ignored.
Every key can be overridden by ``FASTGATE_<KEY>`` (top level) or ``FASTGATE_<SECTION>_<KEY>``;
environment values are strings and are converted to the key's type.

Relative paths (``app_path``, ``policy_path``, certificate files) are resolved against the
directory of the config file, so ``fastgate run --config conf/fastgate.toml`` works from anywhere.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

import msgspec

from fastgate.validation import split_error

__all__ = [
    "Config", "ConfigError", "HttpServerOptions", "SecurityConfig", "ServerCertificate", "load_config",
    "config_from_mapping", "secret_problem",
]


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file, the key and the problem."""


class ServerCertificate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[http_server_options.certificates]]`` table: a PEM chain and key served by SNI."""

    domain_name: str = ""  # the SNI host it is served for; the first table is also the default
    cert_file: str
    key_file: str


class HttpServerOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Listener limits and timeouts (seconds, bytes), and TLS (see ``fastgate.server.tls``)."""

    read_header_timeout: float = 10.0
    read_timeout: float = 60.0  # longest pause while a request body is being received
    write_timeout: float = 60.0  # longest pause while the client is not reading our response
    upstream_timeout: float = 30.0  # for the response head once the request is sent, between its chunks, and while the upstream takes no body bytes
    upstream_connect_timeout: float = 5.0
    idle_timeout: float = 120.0  # keep-alive connection with no request in progress
    upstream_idle_timeout: float = 30.0  # pooled upstream connection unused for this long is closed
    shutdown_grace_period: float = 15.0
    max_header_bytes: int = 65536
    max_header_count: int = 100  # request header fields (trailers apart); beyond it 431, like Envoy and HAProxy
    # A request body must arrive at this average rate (bytes/s) once the grace period from its
    # first byte is over (Apache's mod_reqtimeout MinRate): a trickle cannot hold a connection,
    # however often each byte re-arms read_timeout. 0 turns the check off.
    min_request_body_rate: int = 1024
    request_body_rate_grace: float = 10.0
    # Set X-Forwarded-Client-Cert (Envoy's Hash=...;Subject="...") from the verified client
    # certificate; a client's own X-Forwarded-Client-Cert is always dropped.
    set_forwarded_client_cert: bool = False
    max_request_body_bytes: int = 0  # 0 = unlimited
    max_pipelined_requests: int = 32
    max_upstream_connections_per_host: int = 0  # 0 = unlimited; beyond it requests wait for a free one
    enable_path_prefix_matching: bool = False
    # Tyk's: endpoint entries (white/black/ignored lists, allowed_urls) must match at the path's end.
    enable_path_suffix_matching: bool = False
    use_ssl: bool = False
    certificates: list[ServerCertificate] = []
    min_version: int | str = "1.2"  # "1.2", "1.3", or Tyk's numbers 771 / 772
    max_version: int | str = ""  # empty: the newest OpenSSL offers
    ssl_ciphers: list[str] = []  # TLS 1.2 suites, IANA (Tyk) or OpenSSL names; empty: OpenSSL's
    crl_file: str = ""  # PEM/DER CRL(s) checked for every API that reads client certificates
    # A CRL past its nextUpdate fails closed (handshakes needing it are refused); true: use it anyway.
    allow_expired_crl: bool = False


class PoliciesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    policy_source: str = "file"
    policy_path: str = ""


class StorageConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: str = "memory://"
    key_prefix: str = ""  # prepended to every Redis key and channel
    timeout: float = 1.0  # Redis connect and per-call timeout, seconds


class JwksConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """JSON Web Key Sets of identity providers (``fastgate.auth.jwt.jwks``), seconds."""

    cache_timeout: float = 240.0  # Tyk's jwks.cache.timeout; refreshed in the background at 80 %
    refetch_cooldown: float = 10.0  # least time between two fetches of one URL (unknown kid, retries)
    fetch_timeout: float = 5.0


class SecurityConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tyk's ``security`` section: the certificate store and certificate-derived keys."""

    # Encrypts private keys uploaded to /tyk/certs; empty: the gateway ``secret`` is used.
    private_certificate_encoding_secret: str = ""
    # Tyk's legacy dynamic mTLS: also accept the key as a header token, certificate optional.
    allow_unsafe_dynamic_mtls_token: bool = False
    # fastgate's own. A header set by a trusted proxy in front of the gateway that carries the
    # client address IP allow/block lists check (X-Forwarded-For: its last entry). Empty: the TCP
    # peer's address; a client's own X-Forwarded-For / X-Real-IP are never trusted (Tyk does).
    client_ip_header: str = ""
    # fastgate's own. Allow upstreams in link-local networks (169.254.0.0/16, fe80::/10, the cloud
    # metadata services such as 169.254.169.254 and fd00:ec2::254); refused by default.
    allow_link_local_upstreams: bool = False


class PluginsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Custom Python plugins (fastgate.plugins): synchronous hooks run in a bounded thread pool."""

    hook_timeout: float = 5.0  # seconds a hook may take; then auth → 403, pre/post → 500
    thread_pool_size: int = 8  # threads for synchronous (Tyk-style) hooks
    # An API with response hooks holds each upstream response whole for them: a larger one is
    # answered 502 (never sent past the hooks, which may remove data from it).
    response_body_limit: int = 4 * 1024 * 1024
    # Request bodies handed to pre/auth/post hooks (``object.body``): at most this many bytes (and
    # at most the API's max request body); a larger body on an API with such hooks → 413.
    request_body_limit: int = 4 * 1024 * 1024


class AccessLogConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = False
    path: str = ""  # empty: standard error


class AnalyticsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tyk's ``analytics_config`` (the parts fastgate uses; fastgate.observe.analytics)."""

    # Records waiting for Redis; when full, new records are dropped and counted (never a wait).
    records_buffer_size: int = 10000
    flush_interval: int = 200  # milliseconds between batches (a full batch goes at once)
    batch_size: int = 500  # fastgate's own: records per RPUSH
    storage_expiration_time: int = 60  # seconds: the list's TTL, refreshed on every push (Tyk's)
    ignored_ips: list[str] = []  # clients whose requests make no record


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole gateway config, with Tyk's key names in snake_case."""

    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    secret: str = ""
    app_path: str = "apps"
    control_api_port: int = 0  # 0: the Gateway API answers under /tyk/ on the main listener
    control_api_address: str = "127.0.0.1"
    # Host names (besides loopback ones) for which /tyk/ answers on the main listener.
    control_api_hostnames: list[str] = []
    workers: int = 1
    hash_keys: bool = True
    hash_key_function: str = "sha256"
    min_token_length: int = 3
    allow_master_keys: bool = False
    enable_hashed_keys_listing: bool = False
    # How basic-auth passwords are stored on key writes: bcrypt (cost 10; "" means bcrypt, as in
    # Tyk), sha256, murmur32/64/128, or plain (stored as sent, for compatibility only).
    basic_auth_hash_key_function: str = "bcrypt"
    # Failed basic-auth logins allowed per user name, and per client address, within
    # basic_auth_failure_window seconds before further attempts get 429 (0: no limit). Counted per
    # gateway process, in bounded memory (fastgate.auth.throttle).
    basic_auth_failures_per_user: int = 10
    basic_auth_failures_per_client: int = 50
    basic_auth_failure_window: float = 60.0
    hide_generator_header: bool = False
    # The OAuth 2.0 server (fastgate.oauth): access and refresh token lifetimes (s), how long an
    # expired token stays listed, the status of token-endpoint errors, and the separator that lets
    # a client's redirect_uri hold several URIs ("": one URI per client).
    oauth_token_expire: int = 3600
    oauth_refresh_token_expire: int = 1209600
    oauth_token_expired_retain_period: int = 0
    oauth_error_status_code: int = 403
    oauth_redirect_uri_separator: str = ""
    log_level: str = "info"
    policies: PoliciesConfig = PoliciesConfig()
    storage: StorageConfig = StorageConfig()
    http_server_options: HttpServerOptions = HttpServerOptions()
    access_log: AccessLogConfig = AccessLogConfig()
    jwks: JwksConfig = JwksConfig()
    security: SecurityConfig = SecurityConfig()
    plugins: PluginsConfig = PluginsConfig()
    # Prometheus /metrics (fastgate.observe.metrics): served without the secret on the control
    # listener (control_api_port); with no control listener, on the main one only when
    # metrics_on_main is on (never on the public port by default).
    enable_metrics: bool = True
    metrics_on_main: bool = False
    # Tyk's analytics records in Redis for Tyk Pump (fastgate.observe.analytics); needs redis://.
    enable_analytics: bool = False
    analytics_config: AnalyticsConfig = AnalyticsConfig()
    # fastgate's own: make an X-Request-Id / a W3C traceparent for upstream requests without one.
    generate_request_id: bool = False
    generate_traceparent: bool = False
    # Where the file was read from; relative paths are resolved against its directory.
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        """Return ``path`` resolved against the config file's directory."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


_SECTIONS = {
    name: struct
    for name, struct in (
        ("policies", PoliciesConfig),
        ("storage", StorageConfig),
        ("http_server_options", HttpServerOptions),
        ("access_log", AccessLogConfig),
        ("jwks", JwksConfig),
        ("security", SecurityConfig),
        ("plugins", PluginsConfig),
        ("analytics_config", AnalyticsConfig),
    )
}


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment and validate the TOML config at ``path``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    raw["base_dir"] = str(path.resolve().parent)
    return config_from_mapping(raw, source=str(path), environ=environ)


def config_from_mapping(
    raw: dict[str, Any], *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate a config mapping (as read from TOML) after applying ``FASTGATE_*`` overrides."""
    raw = _apply_env(dict(raw), os.environ if environ is None else environ, source)
    try:
        # Strict: TOML has real types, so ``listen_port = "80"`` is a mistake to report, not
        # to guess at. Environment strings were converted to each key's type on the way in.
        config = msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    _check(config, source)
    return config


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str], source: str) -> dict[str, Any]:
    top_level = set(Config.__struct_fields__) - set(_SECTIONS) - {"base_dir"}
    for name, value in environ.items():
        if not name.startswith("FASTGATE_"):
            continue
        key = name[len("FASTGATE_") :].lower()
        if key in top_level:
            raw[key] = _env_value(Config, key, key, name, value, source)
            continue
        for section, struct in _SECTIONS.items():
            prefix = section + "_"
            if key.startswith(prefix) and key[len(prefix) :] in struct.__struct_fields__:
                field = key[len(prefix) :]
                table = dict(raw.get(section) or {})
                table[field] = _env_value(struct, field, f"{section}.{field}", name, value, source)
                raw[section] = table
                break
        else:
            # An unknown override is as much a mistake as an unknown key in the file.
            if key not in ("config",):
                raise ConfigError(f"{source}: environment {name}: no such config key")
    return raw


def _env_value(struct: type, field: str, key: str, name: str, value: str, source: str) -> Any:
    """``value`` (a string from the environment) converted to the type of ``struct.field``."""
    ftype = next(f.type for f in msgspec.structs.fields(struct) if f.name == field)
    try:
        return msgspec.convert(value, ftype, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: environment {name}: {key}: {exc}") from None


def _describe(exc: msgspec.ValidationError) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.http_server_options.idle_timeout`";
    # users think in keys, so lead with the key.
    where, what = split_error(exc)
    if what.startswith("Object contains unknown field"):
        field = what.split("`")[1]
        return f"{where + '.' if where else ''}{field}: unknown key"
    return f"{where}: {what}" if where else what


_BASIC_AUTH_HASHES = ("", "bcrypt", "sha256", "murmur32", "murmur64", "murmur128", "plain")


# Secrets published in Tyk's docs and samples (tyk.conf examples) and the usual placeholders:
# a gateway started with one of them has a Gateway API anyone can drive.
PUBLISHED_SECRETS = frozenset({
    "352d20ee67be67f6340b4c0605b044b7", "foo", "secret", "changeme", "change-me", "change_me",
    "topsecret", "password", "admin", "test", "tyk", "tyk-secret", "your-secret", "yoursecret",
    "mysecret", "my-secret", "12345678901234567890", "1234567890123456", "0123456789abcdef",
    "foo-secret", "your-secret-key", "your-secret-key-change-me", "change-me-in-production",
    "changeme-changeme", "{your-secret}",
})
MIN_SECRET_LENGTH = 16


def oauth_problems(config: Config) -> list[str]:
    """What is wrong with the OAuth 2.0 server knobs (``oauth_*``)."""
    problems = []
    if config.oauth_token_expire < 1 or config.oauth_refresh_token_expire < 1:
        problems.append("oauth_token_expire, oauth_refresh_token_expire: must be at least 1 second")
    if config.oauth_token_expired_retain_period < 0:
        problems.append("oauth_token_expired_retain_period: must be 0 or more")
    if not 400 <= config.oauth_error_status_code <= 499:
        problems.append("oauth_error_status_code: must be a 4xx status")
    return problems


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot guard the Gateway API, or None; "" (API off) is fine."""
    if not secret:
        return None
    if secret.lower() in PUBLISHED_SECRETS:
        return ("secret: this value is published (Tyk's docs and samples use it); generate one,"
                " e.g. `python -c 'import secrets; print(secrets.token_hex(16))'`")
    if len(secret) < MIN_SECRET_LENGTH:
        return (f"secret: must be at least {MIN_SECRET_LENGTH} characters (or empty to switch"
                " the Gateway API off)")
    return None


def _check(config: Config, source: str) -> None:
    problems = []
    secret = secret_problem(config.secret)
    if secret:
        problems.append(secret)
    if not 0 <= config.listen_port <= 65535:
        problems.append(f"listen_port: {config.listen_port} is not a TCP port")
    if not 0 <= config.control_api_port <= 65535:
        problems.append(f"control_api_port: {config.control_api_port} is not a TCP port")
    if config.basic_auth_hash_key_function not in _BASIC_AUTH_HASHES:
        problems.append(f"basic_auth_hash_key_function: {config.basic_auth_hash_key_function!r} is not one of "
                        + ", ".join(h for h in _BASIC_AUTH_HASHES if h))
    if config.basic_auth_failures_per_user < 0 or config.basic_auth_failures_per_client < 0:
        problems.append("basic_auth_failures_per_user, basic_auth_failures_per_client: must be 0 (no limit) or more")
    if config.basic_auth_failure_window <= 0:
        problems.append("basic_auth_failure_window: must be greater than 0")
    if config.workers < 1:
        problems.append("workers: must be at least 1")
    problems.extend(oauth_problems(config))
    if config.enable_analytics and not config.storage.url.startswith("redis"):
        problems.append("enable_analytics: analytics records go to Redis for Tyk Pump; set [storage] url to a Redis URL"
                        " (redis://, rediss://, redis+sentinel://, redis+cluster://)")
    analytics = config.analytics_config
    if analytics.records_buffer_size < 1 or analytics.batch_size < 1 or analytics.flush_interval < 1:
        problems.append("analytics_config: records_buffer_size, batch_size and flush_interval must be at least 1")
    if config.workers > 1 and config.storage.url.startswith("memory:"):
        problems.append(
            "storage.url: memory:// is a single-process store; with workers > 1 use redis://"
            " (a key created in one worker would be unknown to the others)"
        )
    if not config.storage.url.startswith(("memory:", "redis:", "rediss:", "redis+sentinel:", "redis+cluster:")):
        problems.append(f"storage.url: {config.storage.url!r} is neither memory:// nor redis://")
    opts = config.http_server_options
    for name in (
        "read_header_timeout",
        "read_timeout",
        "write_timeout",
        "upstream_timeout",
        "upstream_connect_timeout",
        "idle_timeout",
        "upstream_idle_timeout",
    ):
        if getattr(opts, name) <= 0:
            problems.append(f"http_server_options.{name}: must be greater than 0")
    if opts.max_header_bytes < 1024:
        problems.append("http_server_options.max_header_bytes: must be at least 1024")
    if opts.max_header_count < 1:
        problems.append("http_server_options.max_header_count: must be at least 1")
    if opts.min_request_body_rate < 0 or opts.request_body_rate_grace < 0:
        problems.append(
            "http_server_options.min_request_body_rate and request_body_rate_grace: must be 0 (off) or more"
        )
    if opts.max_request_body_bytes < 0:
        problems.append("http_server_options.max_request_body_bytes: must be 0 (unlimited) or more")
    if opts.max_pipelined_requests < 1:
        problems.append("http_server_options.max_pipelined_requests: must be at least 1")
    if config.jwks.cache_timeout <= 0 or config.jwks.fetch_timeout <= 0 or config.jwks.refetch_cooldown < 0:
        problems.append("jwks: cache_timeout and fetch_timeout must be greater than 0, refetch_cooldown 0 or more")
    if config.plugins.hook_timeout <= 0 or not 1 <= config.plugins.thread_pool_size <= 256:
        problems.append("plugins: hook_timeout must be greater than 0, thread_pool_size 1 to 256")
    if not 1 <= config.plugins.response_body_limit <= 1024 * 1024 * 1024:
        problems.append("plugins: response_body_limit must be 1 byte to 1 GiB")
    if not 1 <= config.plugins.request_body_limit <= 1024 * 1024 * 1024:
        problems.append("plugins: request_body_limit must be 1 byte to 1 GiB")
    header = config.security.client_ip_header
    if header and (not header.isascii() or any(c in header for c in " \t:()<>@,;\\\"/[]?={}") or not header.isprintable()):
        problems.append(f"security.client_ip_header: {header!r} is not an HTTP header name")
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
