"""What an identified caller may do: Tyk's post-auth checks, for every auth method alike.

After an auth stage has put a session (policies already applied) on the request, these stages
run in Tyk's order, each answering with Tyk's status and message:

1. key expiry: ``is_inactive`` → 403 "Key is inactive, please renew"; ``expires`` passed → 401
   "Key has expired, please renew";
2. access rights: the API must be listed when ``access_rights`` is not empty → 403 "Access to
   this API has been disallowed";
3. granular access: ``allowed_urls`` of this API, regex + methods → 403 "Access to this resource
   has been disallowed";
4. rate limit (GCRA in the store, atomic across nodes) → 429 "Rate Limit Exceeded";
5. quota → 403 "Quota exceeded".

1–3 are one synchronous stage (no I/O); 4–5 are one stage that talks to the store only when the
key has a rate or a quota for this API. Successful responses carry Tyk's ``X-RateLimit-Limit``,
``-Remaining`` and ``-Reset`` for the quota (Tyk reports the quota in these), or for the rate
limit when the key has no quota; a 429 carries the rate limit's values and ``Retry-After``.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Awaitable, Final

from fastgate.pipeline.access import effective_method
from fastgate.apidef.spec import ApiSpec
from fastgate.store.limits import (
    US,
    QuotaDecision,
    RateDecision,
    RateParams,
    quota_key,
    rate_decision,
    rate_limit_key,
    rate_params,
)
from fastgate.pipeline.stage import Denial, Stage
from fastgate.store.memory import MemoryStore
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["compile_post_auth", "INACTIVE", "EXPIRED", "API_DISALLOWED", "RESOURCE_DISALLOWED"]

INACTIVE: Final = Denial(403, "Key is inactive, please renew")
EXPIRED: Final = Denial(401, "Key has expired, please renew")
API_DISALLOWED: Final = Denial(403, "Access to this API has been disallowed")
RESOURCE_DISALLOWED: Final = Denial(403, "Access to this resource has been disallowed")
NO_SESSION: Final = Denial(400, "Session state is missing or unset! Please make sure that auth headers are properly applied")
RATE_EXCEEDED: Final = "Rate Limit Exceeded"
QUOTA_EXCEEDED: Final = "Quota exceeded"


def compile_post_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The stages that check a session against ``spec`` (none for a keyless API)."""
    if spec.use_keyless:
        return ()
    prefix_matching = services.config.http_server_options.enable_path_prefix_matching

    def check_access(req: Request) -> Denial | None:
        session: SessionState | None = req.session
        if session is None:
            return NO_SESSION
        if session.is_inactive:
            return INACTIVE
        if session.expires >= 1 and time.time() > session.expires:
            return EXPIRED
        rights = session.access_rights
        if rights:
            right = rights.get(spec.api_id)
            if right is None:
                return API_DISALLOWED
            if right.allowed_urls and not _url_allowed(right.allowed_urls, req, prefix_matching):
                return RESOURCE_DISALLOWED
        return None

    store = services.store
    # The memory store answers without waiting: then the stage stays synchronous (no task), and
    # its limits are direct (compiled) calls returning plain numbers. Other stores are awaited.
    memory: MemoryStore | None = store if isinstance(store, MemoryStore) else None

    def check_limits(req: Request) -> Denial | None | Awaitable[Denial | None]:
        session: SessionState = req.session
        key_id = req.session_key
        memo_key = (id(session), key_id)
        hit = memo.get(memo_key)
        if hit is not None and hit[0] is session:  # identity: an id can be reused once freed
            limits = hit[1]
        else:
            limits = _limits_for(session, spec.api_id, key_id)
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[memo_key] = (session, limits)
        if limits is None:
            return None
        if limits is False:
            return API_DISALLOWED
        if memory is not None:
            return _memory_limits(req, memory, limits)
        return _hit_limits(req, store, limits)

    # Applied sessions are shared, read-only objects (PolicyApplier hands out the same one until
    # the key or the policies change), so what they mean for this API is worked out once
    # (None/False: no limit/no access).
    memo: dict[tuple[int, str], tuple[SessionState, Any]] = {}

    return (check_access, check_limits)


class _Limits:
    """A key's limits on an API (``_limits_for``) as native fields, with the fixed part of
    the success header lines (``X-RateLimit-Limit`` and the name of ``-Remaining``: the quota's
    when there is one, as Tyk reports it, else the rate limit's), so a request reads no Struct
    field and formats two numbers."""

    __slots__ = ("rate_name", "params", "limit", "interval_us", "tolerance_us", "quota_name", "quota_max",
                 "renewal_rate", "head")

    def __init__(self, rate_name: str | None, params: RateParams | None, quota_name: str | None,
                 quota_max: int, renewal_rate: int) -> None:
        self.rate_name = rate_name  # None when params is (``_limits_for``)
        self.params = params
        self.limit = int(params.limit) if params is not None else 0
        self.interval_us = int(params.interval_us) if params is not None else 0
        self.tolerance_us = int(params.tolerance_us) if params is not None else 0
        self.quota_name = quota_name
        self.quota_max = int(quota_max)
        self.renewal_rate = int(renewal_rate)
        shown = self.quota_max if quota_name is not None else self.limit
        self.head = f"X-RateLimit-Limit: {shown}\r\nX-RateLimit-Remaining: "


def _memory_limits(req: Request, memory: MemoryStore, limits: _Limits) -> Denial | None:
    """The rate step, then the quota step, on the memory store (Tyk's order; a refused rate
    leaves the quota untouched), each one compiled call."""
    rate_name = limits.rate_name
    tat = now_us = 0
    if rate_name is not None:
        allowed, tat, now_us = memory.gcra_now(rate_name, limits.interval_us, limits.tolerance_us)
        if not allowed or limits.quota_name is None:
            return _rate_only(req, limits, allowed, tat, now_us)
    quota_name = limits.quota_name
    if quota_name is None:
        return None
    allowed, remaining, renews_at = memory.quota_now(quota_name, limits.quota_max, limits.renewal_rate)
    if not allowed:
        return Denial(403, QUOTA_EXCEEDED, _quota_headers(QuotaDecision(False, limits.quota_max, remaining, renews_at)))
    req.response_lines = f"{limits.head}{remaining}\r\nX-RateLimit-Reset: {renews_at}\r\n".encode()
    return None


def _rate_only(req: Request, limits: _Limits, allowed: bool, tat: int, now_us: int) -> Denial | None:
    """The answer to a rate step (a refusal, or the rate limit's header lines when no quota follows)."""
    if not allowed:
        params = limits.params
        assert params is not None
        return _decide(req, rate_decision(False, tat, now_us, params), None)
    ahead = tat - now_us  # > 0: an allowed hit moved the TAT past now
    remaining = min(max((limits.tolerance_us - ahead) // limits.interval_us + 1, 0), limits.limit)
    reset = int(_wall() + ahead / US + 0.999)
    req.response_lines = f"{limits.head}{remaining}\r\nX-RateLimit-Reset: {reset}\r\n".encode()
    return None


_wall: Final = time.time  # a static, not a module attribute read per request


MEMO_SIZE: Final = 10_000


def _limits_for(session: SessionState, api_id: str, key_id: str) -> Any:
    """This key's limits on this API (``_Limits``); None: no limits; False: no access."""
    found = session.limit_for_api(api_id)
    if found is None:
        return False
    limit, scope, _endpoints = found
    params = _rate_params(limit.rate, limit.per)
    quota_max = limit.quota_max
    if params is None and quota_max <= 0:
        return None
    return _Limits(
        rate_limit_key(key_id, scope) if params is not None else None,
        params,
        quota_key(key_id, scope) if quota_max > 0 else None,
        quota_max,
        limit.quota_renewal_rate,
    )


async def _hit_limits(req: Request, store: Any, limits: _Limits) -> Denial | None:
    # One round trip for both counters (one Lua script on Redis).
    rate, quota = await store.limits_hit(limits.rate_name, limits.params, limits.quota_name, limits.quota_max,
                                         limits.renewal_rate)
    return _decide(req, rate, quota)


def _decide(req: Request, rate: RateDecision | None, quota: QuotaDecision | None) -> Denial | None:
    if rate is not None and not rate.allowed:
        return Denial(429, RATE_EXCEEDED, _rate_headers(rate, retry=True))
    if quota is not None:
        if not quota.allowed:
            return Denial(403, QUOTA_EXCEEDED, _quota_headers(quota))
        req.response_lines = _header_lines(_quota_headers(quota))
    elif rate is not None:
        req.response_lines = _header_lines(_rate_headers(rate, retry=False))
    return None


def _header_lines(headers: tuple[tuple[bytes, bytes], ...]) -> bytes:
    return b"".join(b"%b: %b\r\n" % header for header in headers)


def _quota_headers(quota: QuotaDecision) -> tuple[tuple[bytes, bytes], ...]:
    return (
        (b"X-RateLimit-Limit", b"%d" % quota.limit),
        (b"X-RateLimit-Remaining", b"%d" % quota.remaining),
        (b"X-RateLimit-Reset", b"%d" % quota.renews_at),
    )


def _rate_headers(rate: RateDecision, *, retry: bool) -> tuple[tuple[bytes, bytes], ...]:
    headers: tuple[tuple[bytes, bytes], ...] = (
        (b"X-RateLimit-Limit", b"%d" % rate.limit),
        (b"X-RateLimit-Remaining", b"%d" % rate.remaining),
        (b"X-RateLimit-Reset", b"%d" % int(time.time() + rate.reset + 0.999)),
    )
    if retry:
        headers += ((b"Retry-After", b"%d" % max(1, int(rate.retry_after + 0.999))),)
    return headers


@lru_cache(maxsize=1024)
def _rate_params(rate: float, per: float) -> RateParams | None:
    return rate_params(rate, per)


@lru_cache(maxsize=4096)
def _pattern(url: str, anchored: bool) -> re.Pattern[str] | None:
    try:
        return re.compile(url if not anchored or url.startswith("^") else "^" + url)
    except re.error:
        return None  # a broken rule matches nothing (never everything)


def _url_allowed(rules: list[Any], req: Request, prefix_matching: bool) -> bool:
    full = req.path
    stripped = full[len(req.listen_base) :] or "/" if req.listen_base else full
    method = effective_method(req)  # the overriding method on APIs that allow an override
    for rule in rules:
        if method not in rule.methods:  # as Tyk: a rule without methods allows none
            continue
        pattern = _pattern(rule.url, prefix_matching)
        if pattern is None:
            continue
        if prefix_matching:
            if pattern.match(stripped) or pattern.match(full):
                return True
        elif pattern.search(full):
            return True
    return False
