"""Who may reach an API and which of its endpoints: Tyk's access restrictions, read from either
format into one typed ``AccessRules``, and the rule that refuses what the gateway cannot enforce.

Read here (and enforced by ``fastgate.pipeline.access``):

- IP lists: Classic ``enable_ip_whitelisting`` + ``allowed_ips``, ``enable_ip_blacklisting`` +
  ``blacklisted_ips`` (``ip_access_control_disabled`` switches both off, as in Tyk); OAS
  ``server.ipAccessControl`` {enabled, allow, block}. Entries are addresses or CIDR blocks, IPv4
  or IPv6, parsed here so a typo refuses the API instead of never matching.
- Endpoint lists: Classic ``version_data.versions.<v>.extended_paths`` ``ignored`` /
  ``black_list`` / ``white_list`` / ``internal`` (or the old ``paths`` lists of strings when
  ``use_extended_paths`` is false); OAS ``middleware.operations.<operationId>`` ``allow`` /
  ``block`` / ``ignoreAuthentication`` / ``internal``, located through the OpenAPI ``paths``.
- The API-wide rate limit: Classic ``global_rate_limit`` {rate, per} (off with
  ``disable_rate_limit``), OAS ``upstream.rateLimit`` {enabled, rate, per: "1m30s"}.
- Internal APIs (Classic ``internal``, OAS ``info.state.internal``): never served from outside.
- ``allow_method_override`` (fastgate's own, Classic top level or OAS ``server``): keep the
  ``X-HTTP-Method-Override`` family of headers and check the overriding method.

The rule: a field that restricts access and that this gateway does not implement refuses the
whole API (``unenforced_restrictions``), because serving it would serve it more openly than its
author wrote. Empty lists and disabled switches restrict nothing and refuse nothing.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from fastgate.apidef.spec import AccessRules, DefinitionError, PathRule, RuleKind

__all__ = [
    "EXTENSION",
    "AccessRules",
    "PathRule",
    "classic_access",
    "oas_access",
    "parse_networks",
    "unenforced_classic",
    "unenforced_oas",
]

EXTENSION = "x-tyk-api-gateway"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---- Classic -----------------------------------------------------------------------------------


def classic_access(raw: dict[str, Any]) -> AccessRules:
    """The access rules of a Classic definition, or ``DefinitionError`` naming the bad field."""
    ip_off = _bool(raw, "ip_access_control_disabled")
    allowed = _ips(raw, "allowed_ips") if _bool(raw, "enable_ip_whitelisting") and not ip_off else ()
    blocked = _ips(raw, "blacklisted_ips") if _bool(raw, "enable_ip_blacklisting") and not ip_off else ()
    rate, per = 0.0, 0.0
    limit = raw.get("global_rate_limit")
    if limit is not None and not _bool(raw, "disable_rate_limit"):
        limit = _obj(limit, "global_rate_limit")
        rate = _number(limit.get("rate", 0), "global_rate_limit.rate")
        per = _number(limit.get("per", 0), "global_rate_limit.per")
        if rate > 0 and per <= 0:
            raise DefinitionError("global_rate_limit.per", f"{per!r}: must be more than 0 seconds when rate is set")
    return AccessRules(
        allowed_ips=allowed,
        blocked_ips=blocked,
        paths=_classic_paths(raw),
        rate=max(rate, 0.0),
        per=per,
        internal=_bool(raw, "internal"),
        allow_method_override=_bool(raw, "allow_method_override"),
    )


def _classic_paths(raw: dict[str, Any]) -> tuple[PathRule, ...]:
    version_data = raw.get("version_data")
    if version_data is None:
        return ()
    version_data = _obj(version_data, "version_data")
    versions = _obj(version_data.get("versions") or {}, "version_data.versions")
    if not versions:
        return ()
    # Not versioned (anything else is refused by the rule below): Tyk serves one version.
    name = version_data.get("default_version")
    if not isinstance(name, str) or name not in versions:
        name = next(iter(versions))
    where = f"version_data.versions.{name}"
    version = _obj(versions[name], where)
    rules: list[PathRule] = []
    if version.get("use_extended_paths") is False or "extended_paths" not in version:
        paths = _obj(version.get("paths") or {}, f"{where}.paths")
        for key, kind in (("ignored", "ignored"), ("black_list", "black"), ("white_list", "white")):
            for i, entry in enumerate(_list(paths.get(key), f"{where}.paths.{key}")):
                if not isinstance(entry, str):
                    raise DefinitionError(f"{where}.paths.{key}[{i}]", "expected a path string")
                rules.append(_rule(kind, entry, None, False, f"{where}.paths.{key}[{i}]"))  # type: ignore[arg-type]
        if version.get("use_extended_paths") is False:
            return tuple(rules)
    extended = _obj(version.get("extended_paths") or {}, f"{where}.extended_paths")
    for key, kind in (("ignored", "ignored"), ("black_list", "black"), ("white_list", "white"), ("internal", "internal")):
        for i, entry in enumerate(_list(extended.get(key), f"{where}.extended_paths.{key}")):
            field = f"{where}.extended_paths.{key}[{i}]"
            entry = _obj(entry, field)
            if entry.get("disabled") is True:
                continue
            rules.append(_rule(kind, entry.get("path"), _classic_methods(entry, field), _bool(entry, "ignore_case"), field))  # type: ignore[arg-type]
    order = {"ignored": 0, "black": 1, "white": 2, "internal": 3}
    return tuple(sorted(rules, key=lambda r: order[r.kind]))


def _classic_methods(entry: dict[str, Any], field: str) -> tuple[str, ...] | None:
    method = entry.get("method")
    actions = entry.get("method_actions")
    if method in (None, "") and actions is None:
        return None
    methods: list[str] = []
    if method not in (None, ""):
        if not isinstance(method, str):
            raise DefinitionError(f"{field}.method", "expected a string")
        methods.append(method.upper())
    for name, meta in _obj(actions or {}, f"{field}.method_actions").items():
        action = meta.get("action", "no_action") if isinstance(meta, dict) else None
        if action not in ("no_action", ""):
            raise DefinitionError(f"{field}.method_actions.{name}.action",
                                  f"{action!r} is not supported (only no_action): the endpoint would not be answered as written")
        methods.append(name.upper())
    return tuple(methods)


# ---- OAS ---------------------------------------------------------------------------------------


def oas_access(raw: dict[str, Any]) -> AccessRules:
    """The access rules of a Tyk OAS document, or ``DefinitionError`` naming the bad field."""
    ext = _obj(raw.get(EXTENSION) or {}, EXTENSION)
    server = _obj(ext.get("server") or {}, f"{EXTENSION}.server")
    allowed: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    ipac = server.get("ipAccessControl")
    if ipac is not None:
        where = f"{EXTENSION}.server.ipAccessControl"
        ipac = _obj(ipac, where)
        if ipac.get("enabled") is not False:
            allowed = _ips(ipac, "allow", where)
            blocked = _ips(ipac, "block", where)
    rate, per = 0.0, 0.0
    upstream = _obj(ext.get("upstream") or {}, f"{EXTENSION}.upstream")
    limit = upstream.get("rateLimit")
    if limit is not None:
        where = f"{EXTENSION}.upstream.rateLimit"
        limit = _obj(limit, where)
        if limit.get("enabled") is True:
            rate = _number(limit.get("rate", 0), f"{where}.rate")
            per = _duration(limit.get("per"), f"{where}.per")
    state = _obj(_obj(ext.get("info") or {}, f"{EXTENSION}.info").get("state") or {}, f"{EXTENSION}.info.state")
    return AccessRules(
        allowed_ips=allowed,
        blocked_ips=blocked,
        paths=_oas_paths(raw, ext),
        rate=max(rate, 0.0),
        per=per,
        internal=state.get("internal") is True,
        allow_method_override=server.get("allowMethodOverride") is True or server.get("allow_method_override") is True,
    )


_OAS_KINDS: tuple[tuple[str, RuleKind], ...] = (
    ("ignoreAuthentication", "ignored"), ("block", "black"), ("allow", "white"), ("internal", "internal"),
)
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _oas_paths(raw: dict[str, Any], ext: dict[str, Any]) -> tuple[PathRule, ...]:
    middleware = _obj(ext.get("middleware") or {}, f"{EXTENSION}.middleware")
    operations = _obj(middleware.get("operations") or {}, f"{EXTENSION}.middleware.operations")
    if not operations:
        return ()
    located = _operations(raw)
    rules: list[PathRule] = []
    for key, kind in _OAS_KINDS:
        for op_id, op in operations.items():
            where = f"{EXTENSION}.middleware.operations.{op_id}.{key}"
            setting = _obj(op, f"{EXTENSION}.middleware.operations.{op_id}").get(key)
            if setting is None or _obj(setting, where).get("enabled") is not True:
                continue
            if op_id not in located:
                raise DefinitionError(where, f"no operation {op_id!r} in the OpenAPI paths: the endpoint it restricts is unknown")
            path, method = located[op_id]
            rules.append(_rule(kind, path, (method,), setting.get("ignoreCase") is True, where))
    return tuple(rules)


def _operations(raw: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """operationId -> (path, METHOD) from the OpenAPI ``paths``."""
    found: dict[str, tuple[str, str]] = {}
    paths = raw.get("paths")
    for path, item in (paths.items() if isinstance(paths, dict) else ()):
        for method in _HTTP_METHODS:
            op = item.get(method) if isinstance(item, dict) else None
            if isinstance(op, dict) and isinstance(op.get("operationId"), str):
                found.setdefault(op["operationId"], (path, method.upper()))
    return found


# ---- fields restricting access that are not implemented ----------------------------------------


def unenforced_classic(raw: dict[str, Any]) -> None:
    """Raise ``DefinitionError`` for the first Classic field that restricts access in a way this
    gateway does not enforce (serving the API would open it wider than its author wrote)."""
    version_data = raw.get("version_data")
    if isinstance(version_data, dict) and version_data.get("not_versioned") is False and version_data.get("versions"):
        _refuse("version_data.not_versioned", "false: API versioning (version checks, expiry, per-version access) is not implemented; set it to true")
    versions = version_data.get("versions") if isinstance(version_data, dict) else None
    for name, version in (versions.items() if isinstance(versions, dict) else ()):
        extended = version.get("extended_paths") if isinstance(version, dict) else None
        if not isinstance(extended, dict):
            continue
        base = f"version_data.versions.{name}.extended_paths"
        for key, what in (
            ("size_limits", "per-endpoint request size limits are"),
            ("validate_json", "JSON schema validation is"),
            ("validate_request", "request validation is"),
            ("go_plugin", "per-endpoint Go plugins are"),
            ("persist_graphql", "persisted GraphQL queries are"),
            ("rate_limit", "per-endpoint API rate limits are"),
        ):
            if _active_entries(extended.get(key)):
                _refuse(f"{base}.{key}", f"{what} not implemented")
    auth_configs = raw.get("auth_configs")
    for name, conf in (auth_configs.items() if isinstance(auth_configs, dict) else ()):
        if isinstance(conf, dict) and conf.get("validate_signature") is True:
            _refuse(f"auth_configs.{name}.validate_signature", "true: request signature validation of auth tokens is not implemented")
    if raw.get("pinned_public_keys") and raw.get("certificate_pinning_disabled") is not True:
        _refuse("pinned_public_keys", "upstream certificate pinning is not implemented")
    # custom_middleware hooks: fastgate.apidef.plugin_decode (Python driver only).
    if raw.get("custom_middleware_bundle") and raw.get("custom_middleware_bundle_disabled") is not True:
        _refuse("custom_middleware_bundle", "plugin bundles are not implemented")
    graphql = raw.get("graphql")
    if isinstance(graphql, dict) and graphql.get("enabled") is True:
        _refuse("graphql.enabled", "true: GraphQL APIs (and their field-level permissions) are not implemented")
    if raw.get("expiration"):
        _refuse("expiration", "API expiry is not implemented")
    transport = (raw.get("proxy") or {}).get("transport") if isinstance(raw.get("proxy"), dict) else None
    if isinstance(transport, dict):
        if transport.get("ssl_min_version"):
            _refuse("proxy.transport.ssl_min_version", "upstream TLS version limits are not implemented")
        if transport.get("ssl_ciphers"):
            _refuse("proxy.transport.ssl_ciphers", "upstream TLS cipher limits are not implemented")
        if transport.get("ssl_force_common_name_check") is True:
            _refuse("proxy.transport.ssl_force_common_name_check", "true: is not implemented")


def unenforced_oas(raw: dict[str, Any]) -> None:
    """As ``unenforced_classic``, for a Tyk OAS document."""
    ext = raw.get(EXTENSION) if isinstance(raw.get(EXTENSION), dict) else {}
    info = ext.get("info") if isinstance(ext.get("info"), dict) else {}
    versioning = info.get("versioning")
    if isinstance(versioning, dict) and versioning.get("enabled") is True:
        _refuse(f"{EXTENSION}.info.versioning.enabled", "true: API versioning is not implemented")
    if info.get("expiration"):
        _refuse(f"{EXTENSION}.info.expiration", "API expiry is not implemented")
    upstream = ext.get("upstream") if isinstance(ext.get("upstream"), dict) else {}
    if _enabled(upstream.get("certificatePinning")):
        _refuse(f"{EXTENSION}.upstream.certificatePinning", "upstream certificate pinning is not implemented")
    tls = upstream.get("tlsTransport") if isinstance(upstream.get("tlsTransport"), dict) else {}
    for key in ("minVersion", "ciphers", "forceCommonNameCheck"):
        if tls.get(key):
            _refuse(f"{EXTENSION}.upstream.tlsTransport.{key}", "upstream TLS limits are not implemented")
    server = ext.get("server") if isinstance(ext.get("server"), dict) else {}
    auth = server.get("authentication") if isinstance(server.get("authentication"), dict) else {}
    schemes = auth.get("securitySchemes") if isinstance(auth.get("securitySchemes"), dict) else {}
    for name, scheme in schemes.items():
        if isinstance(scheme, dict) and _enabled(scheme.get("signatureValidation")):
            _refuse(f"{EXTENSION}.server.authentication.securitySchemes.{name}.signatureValidation",
                    "request signature validation of auth tokens is not implemented")
    middleware = ext.get("middleware") if isinstance(ext.get("middleware"), dict) else {}
    glob = middleware.get("global") if isinstance(middleware.get("global"), dict) else {}
    # Global plugin hooks: fastgate.apidef.plugin_decode (Python driver only).
    bundle = (glob.get("pluginConfig") or {}).get("bundle") if isinstance(glob.get("pluginConfig"), dict) else None
    if _enabled(bundle):
        _refuse(f"{EXTENSION}.middleware.global.pluginConfig.bundle", "plugin bundles are not implemented")
    operations = middleware.get("operations") if isinstance(middleware.get("operations"), dict) else {}
    for op_id, op in operations.items():
        if not isinstance(op, dict):
            continue
        for key, what in (
            ("validateRequest", "request validation is"),
            ("requestSizeLimit", "per-endpoint request size limits are"),
            ("rateLimit", "per-endpoint API rate limits are"),
        ):
            if _enabled(op.get(key)):
                _refuse(f"{EXTENSION}.middleware.operations.{op_id}.{key}", f"{what} not implemented")
        if _active_entries(op.get("postPlugins")):
            _refuse(f"{EXTENSION}.middleware.operations.{op_id}.postPlugins", "per-endpoint plugins are not implemented")


def _refuse(field: str, what: str) -> None:
    raise DefinitionError(field, what + " (it restricts access, so the API is refused rather than served more openly)")


def _enabled(setting: Any) -> bool:
    return isinstance(setting, dict) and setting.get("enabled") is True


def _active_entries(value: Any) -> bool:
    """A non-empty list with at least one entry not switched off."""
    if not isinstance(value, list):
        return bool(value) and isinstance(value, dict)
    return any(not (isinstance(e, dict) and (e.get("disabled") is True or e.get("enabled") is False)) for e in value)


# ---- shared helpers ----------------------------------------------------------------------------


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Addresses and CIDR blocks as networks (an address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _ips(raw: dict[str, Any], key: str, where: str = "") -> tuple[str, ...]:
    field = f"{where}.{key}" if where else key
    out: list[str] = []
    for i, entry in enumerate(_list(raw.get(key), field)):
        if not isinstance(entry, str):
            raise DefinitionError(f"{field}[{i}]", "expected an IP address or CIDR block string")
        text = entry.strip()
        if not text:
            continue
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise DefinitionError(f"{field}[{i}]", f"{entry!r} is not an IP address or CIDR block") from None
        out.append(text)
    return tuple(out)


_PARAM = re.compile(r"\{[^}/]*\}")


def _rule(kind: RuleKind, path: Any, methods: tuple[str, ...] | None, ignore_case: bool, field: str) -> PathRule:
    if not isinstance(path, str) or not path:
        raise DefinitionError(f"{field}.path", "missing: an endpoint entry needs a path")
    try:
        re.compile(_PARAM.sub("x", path))
    except re.error as exc:
        raise DefinitionError(f"{field}.path", f"{path!r} is not a valid pattern: {exc}") from None
    return PathRule(kind, path, methods, ignore_case)


def _obj(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DefinitionError(field, "expected an object")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DefinitionError(field, "expected an array")
    return value


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DefinitionError(key, "expected true or false")
    return value


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(field, "expected a number")
    return float(value)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _duration(value: Any, field: str) -> float:
    match = _DURATION.match(value) if isinstance(value, str) and value else None
    if match is None:
        raise DefinitionError(field, f"{value!r} is not a duration such as \"1s\", \"1m\" or \"1h30m\"")
    h, m, s = (int(g or 0) for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise DefinitionError(field, "must be more than 0 seconds")
    return float(seconds)
