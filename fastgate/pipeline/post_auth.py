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
    # The memory store answers without waiting: then the stage stays synchronous (no task).
    hit_now = getattr(store, "limits_hit_now", None)
    # ... and a rate limit without a quota is one plain call that returns the numbers only.
    rate_step_now = getattr(store, "rate_step_now", None)

    def check_limits(req: Request) -> Denial | None | Awaitable[Denial | None]:
        session: SessionState = req.session
        key_id = req.session_key
        memo_key = (id(session), key_id)
        hit = memo.get(memo_key)
        if hit is not None and hit[0] is session:  # identity: an id can be reused once freed
            names = hit[1]
            lines = hit[2]
        else:
            names = _limit_names(session, spec.api_id, key_id)
            lines = _rate_lines(names[1].limit) if names and names[1] is not None and names[2] is None else b""
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            memo[memo_key] = (session, names, lines)
        if names is None:
            return None
        if names is False:
            return API_DISALLOWED
        if lines and rate_step_now is not None:
            params: RateParams = names[1]
            allowed, tat, now_us = rate_step_now(names[0], params)
            if not allowed:
                return _decide(req, rate_decision(False, tat, now_us, params), None)
            ahead = tat - now_us  # > 0: an allowed hit moved the TAT past now
            remaining = min(max((params.tolerance_us - ahead) // params.interval_us + 1, 0), params.limit)
            req.response_lines = lines % (remaining, int(time.time() + ahead / US + 0.999))
            return None
        if hit_now is not None:
            return _decide(req, *hit_now(*names))
        return _hit_limits(req, store, names)

    # Applied sessions are shared, read-only objects (PolicyApplier hands out the same one until
    # the key or the policies change), so what they mean for this API is worked out once, with
    # the rate-limit header lines prebuilt for the key's limit (None/False: no limit/no access).
    memo: dict[tuple[int, str], tuple[SessionState, Any, bytes]] = {}

    return (check_access, check_limits)


MEMO_SIZE: Final = 10_000


def _limit_names(session: SessionState, api_id: str, key_id: str) -> Any:
    """The ``limits_hit`` arguments for this key on this API; None: no limits; False: no access."""
    found = session.limit_for_api(api_id)
    if found is None:
        return False
    limit, scope, _endpoints = found
    params = _rate_params(limit.rate, limit.per)
    quota_max = limit.quota_max
    if params is None and quota_max <= 0:
        return None
    return (
        rate_limit_key(key_id, scope) if params is not None else None,
        params,
        quota_key(key_id, scope) if quota_max > 0 else None,
        quota_max,
        limit.quota_renewal_rate,
    )


async def _hit_limits(req: Request, store: Any, names: tuple[Any, ...]) -> Denial | None:
    # One round trip for both counters (one Lua script on Redis).
    return _decide(req, *await store.limits_hit(*names))


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


@lru_cache(maxsize=1024)
def _rate_lines(limit: int) -> bytes:
    """The rate-limit header lines for ``limit``, to be %-formatted with (remaining, reset)."""
    return b"X-RateLimit-Limit: %d\r\nX-RateLimit-Remaining: %%d\r\nX-RateLimit-Reset: %%d\r\n" % limit


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
