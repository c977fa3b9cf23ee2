"""Enforcing an API's access restrictions (``ApiSpec.access``, read by ``fastgate.apidef.access``).

Compiled once per API at load time; per request it is a few regex searches and one address
parse. In Tyk's order, before any auth:

1. IP allow and block lists → 403 "access from this IP has been disallowed" (Tyk's message for
   both). The address is the TCP peer's, or the one in ``security.client_ip_header`` when the
   gateway config names a header set by a trusted proxy (never by default: a client can write
   ``X-Forwarded-For`` itself; Tyk trusts it always).
2. Endpoint lists, first match wins in Tyk's order (ignored, black, white, internal):
   ``black_list`` and ``internal`` entries → 403 "Requested endpoint is forbidden"; with any
   ``white_list`` entry, everything not listed gets the same; ``ignored`` entries skip the auth
   stages (they still get the IP checks and the API rate limit). Entries match the canonical
   path relative to the listen path; ``{name}`` matches one segment; the gateway's
   ``enable_path_prefix_matching`` / ``enable_path_suffix_matching`` anchor them as in Tyk.
3. The API-wide rate limit → 429 "API Rate limit exceeded".

The endpoint decision is taken when the request is routed (``Selector``): it picks one of the
API's precompiled stage sets (full, without auth for ignored endpoints, or refusing), so an ignored
endpoint costs no flag checks in the auth stages and the other endpoints no checks at all.

Method override headers (``X-HTTP-Method-Override``, ``X-HTTP-Method``, ``X-Method-Override``)
make many frameworks run another method than the one the gateway checked; they are dropped
before the upstream unless the API sets ``allow_method_override``, and then the endpoint lists and
the key's ``allowed_urls`` are checked against the overriding method.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable
from typing import Any, Final
from urllib.parse import unquote

from fastgate.apidef.access import parse_networks
from fastgate.apidef.spec import AccessRules, PathRule
from fastgate.store.limits import RateParams, rate_params
from fastgate.pipeline.stage import Denial, Stage
from fastgate.http.request import Request

__all__ = [
    "API_RATE_EXCEEDED",
    "ENDPOINT_FORBIDDEN",
    "IP_DISALLOWED",
    "METHOD_OVERRIDE_HEADERS",
    "PathMatcher",
    "client_address",
    "compile_api_rate_limit",
    "compile_ip_check",
    "compile_path_matcher",
    "effective_method",
    "read_method_override",
]

IP_DISALLOWED: Final = Denial(403, "access from this IP has been disallowed")
ENDPOINT_FORBIDDEN: Final = Denial(403, "Requested endpoint is forbidden")
API_RATE_EXCEEDED: Final = "API Rate limit exceeded"
CONFLICTING_OVERRIDE: Final = Denial(400, "Conflicting method override headers")
METHOD_OVERRIDE_HEADERS: Final = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
_OVERRIDE_KEY: Final = "method_override"


def effective_method(req: Request) -> str:
    """The method the checks must use: the overriding one on APIs that allow an override."""
    ctx = req.ctx
    if ctx:
        override = ctx.get(_OVERRIDE_KEY)
        if override is not None:
            return override
    return req.method


def read_method_override(req: Request) -> bool:
    """Record the request's method override (APIs with ``allow_method_override``); ``False``
    when two override headers disagree."""
    found: str | None = None
    for name, value in req.headers:
        if name.lower() in METHOD_OVERRIDE_HEADERS:
            method = value.strip().decode("latin-1").upper()
            if found is not None and method != found:
                return False
            found = method
    if found:
        if req.ctx is None:
            req.ctx = {}
        req.ctx[_OVERRIDE_KEY] = found
    return True


# ---- IP lists ----------------------------------------------------------------------------------


def compile_ip_check(rules: AccessRules, client_ip_header: str) -> Stage | None:
    """The stage checking the client address against the API's IP lists (None without lists)."""
    if not rules.allowed_ips and not rules.blocked_ips:
        return None
    allowed = parse_networks(rules.allowed_ips)
    blocked = parse_networks(rules.blocked_ips)
    header = client_ip_header.lower().encode("latin-1")

    def check_ip(req: Request) -> Denial | None:
        address = client_address(req, header)
        if address is None:
            return IP_DISALLOWED  # an address we cannot read matches no allow entry, and may be blocked
        if allowed and not any(address in net for net in allowed):
            return IP_DISALLOWED
        if blocked and any(address in net for net in blocked):
            return IP_DISALLOWED
        return None

    return check_ip


def client_address(req: Request, header: bytes = b"") -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address: the TCP peer, or the trusted proxy's ``header`` when configured
    (for ``X-Forwarded-For`` its last entry, the one that proxy added)."""
    if not header:
        text = req.client_ip
    elif header == b"x-forwarded-for":
        chain = req.forwarded_for
        text = chain.rsplit(b",", 1)[-1].strip().decode("latin-1") if chain else ""
    else:
        value = None
        for name, v in req.headers:  # the last copy: a proxy that appends puts its own last
            if len(name) == len(header) and name.lower() == header:
                value = v
        text = value.strip().decode("latin-1") if value else ""
    return _parse_address(text)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        # "1.2.3.4:5678" or "[::1]:80" from a proxy header
        host = text[1:].split("]", 1)[0] if text.startswith("[") else text.rsplit(":", 1)[0]
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener reports IPv4 clients this way
    return address


# ---- endpoint lists ----------------------------------------------------------------------------

_PARAM: Final = re.compile(r"\{[^}/]*\}")


class PathMatcher:
    """The endpoint lists compiled: ``kind_for(req)`` is the kind of the first matching entry,
    ``"forbidden"`` (refused), or ``""`` (no entry: served normally)."""

    __slots__ = ("rules", "whitelist")

    def __init__(self, rules: tuple[PathRule, ...], prefix: bool, suffix: bool) -> None:
        self.rules = tuple(
            (_pattern(r.path, prefix, suffix, r.ignore_case), None if r.methods is None else frozenset(r.methods), r.kind)
            for r in rules
        )
        self.whitelist = any(r.kind == "white" for r in rules)

    def kind_for(self, req: Request) -> str:
        path = match_path(req)
        method = effective_method(req)
        for pattern, methods, kind in self.rules:
            if methods is not None and method not in methods:
                continue
            if pattern.search(path) is None:
                continue
            if kind == "black" or kind == "internal":
                return "forbidden"
            return kind
        return "forbidden" if self.whitelist else ""


def compile_path_matcher(rules: AccessRules, prefix: bool, suffix: bool) -> PathMatcher | None:
    """The matcher for the API's endpoint lists, or None when it has none."""
    return PathMatcher(rules.paths, prefix, suffix) if rules.paths else None


def match_path(req: Request) -> str:
    """The request path as endpoint entries see it: relative to the listen path, percent-decoded
    (encoded slashes and dots never get this far), without ``;`` parameters or repeated slashes,
    so no spelling of a listed path slips past its entry."""
    path = req.path
    base = req.listen_base
    if base:
        path = path[len(base):]
    if not path.startswith("/"):
        path = "/" + path
    if "%" in path:
        path = unquote(path)
    if ";" in path:
        path = "/".join(segment.split(";", 1)[0] for segment in path.split("/"))
    while "//" in path:
        path = path.replace("//", "/")
    return path


def _pattern(path: str, prefix: bool, suffix: bool, ignore_case: bool) -> re.Pattern[str]:
    text = _PARAM.sub("[^/]+", path)
    if prefix and not text.startswith("^"):
        text = "^" + text
    if suffix and not text.endswith("$"):
        text = text + "$"
    return re.compile(text, re.IGNORECASE if ignore_case else 0)


# ---- API-wide rate limit -----------------------------------------------------------------------


def compile_api_rate_limit(spec: Any, store: Any) -> Stage | None:
    """The stage enforcing ``global_rate_limit`` / ``upstream.rateLimit`` across nodes (the
    counter lives in the store, under Tyk's limiter name ``apilimiter-<org><api>``)."""
    rules: AccessRules = spec.access
    params: RateParams | None = rate_params(rules.rate, rules.per)
    if params is None:
        return None
    name = "apilimiter-" + spec.org_id + spec.api_id
    hit_now = getattr(store, "limits_hit_now", None)

    def check_api_rate(req: Request) -> Denial | None | Awaitable[Denial | None]:
        if hit_now is not None:
            return _decide(hit_now(name, params, None, 0, 0)[0])
        return _hit(store, name, params)

    return check_api_rate


async def _hit(store: Any, name: str, params: RateParams) -> Denial | None:
    return _decide((await store.limits_hit(name, params, None, 0, 0))[0])


def _decide(rate: Any) -> Denial | None:
    if rate is None or rate.allowed:
        return None
    return Denial(429, API_RATE_EXCEEDED, ((b"Retry-After", b"%d" % max(1, int(rate.retry_after + 0.999))),))

