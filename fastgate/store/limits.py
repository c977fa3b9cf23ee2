"""Rate-limit and quota arithmetic, shared by the memory store and the Redis Lua scripts.

Rate limits use GCRA (the generic cell rate algorithm, a token bucket stored as one timestamp):
`rate` requests per `per` seconds means one request every `interval = per / rate`, with a burst
of up to `rate` requests when the key has been idle. The state is a single number, the
"theoretical arrival time" (TAT), so a hit is O(1) in time and memory whatever the rate, and one
small Lua script makes it atomic across gateway nodes. Why not Tyk's choices: its Redis rolling
limiter keeps one sorted-set entry per request (O(rate) memory per key and it counts rejected
requests, so a client that keeps retrying never gets through); its default in-memory limiter is a
fixed window that lets `2 x rate` through around a window edge. GCRA never allows more than
`rate` requests in a burst and keeps the long-run rate exact; a client that stops sending
recovers one request per interval. Rejected requests do not consume allowance.

Times are integer microseconds: exact in Lua's doubles (epoch µs < 2**53) and free of the drift
that float accumulation would give (a burst of `rate` must fit exactly). The interval is rounded
down so that `rate` back-to-back requests always pass.

Quotas are counters per renewal period, as in Tyk: the first hit of a period creates the counter
with a TTL of `quota_renewal_rate` seconds; a request is allowed while the counter is below
`quota_max` (<= 0 means unlimited); a rejected request does not count. A counter found without a
TTL while renewal is configured (Tyk's "expired" state) starts a new period.
"""

from __future__ import annotations

import math
from typing import Any, Final

from fastgate.store.decisions import QuotaDecision, RateDecision, RateParams


__all__ = [
    "QuotaDecision", "RateDecision", "RateParams", "gcra_step", "gcra_step_us",
    "limit_problems", "quota_decision", "quota_key", "quota_step", "rate_decision",
    "rate_limit_key", "rate_params", "rate_state_ttl_ms",
]

US: Final = 1_000_000

# What the Redis Lua limiter can run (Lua numbers are doubles, exact up to 2**53, and Redis turns
# a number argument into a string with %.17g, so a PX of 1e17 ms or more is no integer):
# - the TAT is now + `per` in µs and must stay below 2**53 µs to stay exact: with `per` at most
#   2**32 s (136 years) that holds until the year 2119;
# - the quota TTL is `quota_renewal_rate` * 1000 ms, an exact integer while <= 2**53;
# - `quota_max` and the counter are compared as doubles: exact up to 2**53 - 1;
# - `rate` is the X-RateLimit-Limit (an int) and divides `per`: finite, at most 2**53 (-1, as in
#   Tyk, and 0 mean no limit).
# The memory store runs the same arithmetic, so both stores get the same bounds.
MAX_EXACT: Final = 2**53 - 1
MAX_PER_SECONDS: Final = 2**32
MAX_RATE: Final = 2**53
MAX_RENEWAL_SECONDS: Final = 2**53 // 1000


def rate_params(rate: float, per: float) -> RateParams | None:
    """GCRA parameters for `rate` per `per` seconds; None when unlimited (rate or per <= 0)."""
    if rate <= 0 or per <= 0:
        return None
    per_us = int(per * US)
    interval = max(int(per_us / rate), 1)
    # A fractional rate (0.5 per second) still allows one request, then one per interval.
    return RateParams(int(rate), interval, max(per_us - interval, 0))


def gcra_step(tat_us: int, now_us: int, p: RateParams) -> tuple[bool, int]:
    """One hit: (allowed, TAT to store). `tat_us` 0 means no state; a rejection keeps the TAT."""
    return gcra_step_us(tat_us, now_us, p.interval_us, p.tolerance_us)


def gcra_step_us(tat_us: int, now_us: int, interval_us: int, tolerance_us: int) -> tuple[bool, int]:
    """`gcra_step` on the limit's two numbers (compiled callers pass native ints: no Struct reads)."""
    tat = tat_us if tat_us > now_us else now_us
    if tat - now_us > tolerance_us:
        return False, tat
    return True, tat + interval_us


def rate_decision(allowed: bool, tat_us: int, now_us: int, p: RateParams) -> RateDecision:
    """Header values after a hit that left `tat_us` (as returned by `gcra_step`)."""
    ahead = max(tat_us - now_us, 0)
    if not allowed:
        retry = max(ahead - p.tolerance_us, 0)
        return RateDecision(False, p.limit, 0, ahead / US, retry / US)
    remaining = (p.tolerance_us - ahead) // p.interval_us + 1
    return RateDecision(True, p.limit, min(max(remaining, 0), p.limit), ahead / US, 0.0)


def rate_state_ttl_ms(tat_us: int, now_us: int) -> int:
    """How long the TAT must be kept: once it has passed, "no state" means the same thing."""
    return max((tat_us - now_us) // 1000 + 1, 1)


def quota_step(used: int | None, ttl_ms: int, quota_max: int,
               renewal_rate: int) -> tuple[bool, int, int, bool]:
    """One quota hit on a counter (`used`, None when absent; `ttl_ms` -1 when it has no TTL).

    Returns (allowed, counter after the hit, TTL in ms after the hit (-1: none), whether a new
    period started). A new period starts when the counter is absent, or has no TTL while
    renewal is configured.
    """
    if used is None or (ttl_ms < 0 and renewal_rate > 0):
        count, ttl_ms, new_period = 0, (renewal_rate * 1000 if renewal_rate > 0 else -1), True
    else:
        count, new_period = used, False
    if count >= quota_max:
        return False, count, ttl_ms, new_period
    return True, count + 1, ttl_ms, new_period


def quota_decision(allowed: bool, used: int, ttl_ms: int, quota_max: int,
                   now: float) -> QuotaDecision:
    """Header / API values for a counter at `used` with `ttl_ms` left (-1: none)."""
    renews_at = int(now + ttl_ms / 1000) if ttl_ms > 0 else 0
    return QuotaDecision(allowed, quota_max, max(quota_max - used, 0), renews_at)


def quota_key(key_id: str, scope: str = "") -> str:
    """Counter name after `quota-`: `<scope>-<key>` (Tyk's allowance scope) or `<key>`."""
    return f"{scope}-{key_id}" if scope else key_id


def rate_limit_key(key_id: str, scope: str = "", endpoint_suffix: str = "") -> str:
    """Limiter name after `rate-limit-`, joined as Tyk's `rate.Prefix` (dashes trimmed)."""
    return "-".join(p for p in (s.strip("-") for s in (scope, key_id, endpoint_suffix)) if p)


def limit_problems(holder: Any) -> list[str]:
    """What is wrong with the limits of a session or a policy, as "field: problem" strings.

    Checks the top-level `rate`, `per`, `quota_max`, `quota_renewal_rate`, the same in every
    access right's `limit`, and every endpoint / JSON-RPC / MCP rate limit, against the bounds
    above; empty when both stores can run every limit.
    """
    problems: list[str] = []
    _check_rate(holder, "", problems)
    _check_quota(holder, "", problems)
    for api_id, right in holder.access_rights.items():
        where = f"access_rights.{api_id}."
        _check_rate(right.limit, where + "limit.", problems)
        _check_quota(right.limit, where + "limit.", problems)
        for i, endpoint in enumerate(right.endpoints):
            for j, method in enumerate(endpoint.methods):
                _check_rate(method.limit, f"{where}endpoints[{i}].methods[{j}].limit.", problems)
        for i, rpc in enumerate(right.json_rpc_methods):
            _check_rate(rpc.limit, f"{where}json_rpc_methods[{i}].limit.", problems)
        for i, prim in enumerate(right.mcp_primitives):
            _check_rate(prim.limit, f"{where}mcp_primitives[{i}].limit.", problems)
    return problems


def _check_rate(limit: Any, where: str, problems: list[str]) -> None:
    rate, per = limit.rate, limit.per
    # -1 is Tyk's "unlimited" (its own policy samples use it); other negatives are mistakes.
    if not (math.isfinite(rate) and (0 <= rate <= MAX_RATE or rate == -1)):
        problems.append(f"{where}rate: must be a number from 0 to {MAX_RATE} (0 or -1: no limit), got {rate!r}")
    if not (math.isfinite(per) and 0 <= per <= MAX_PER_SECONDS):
        problems.append(f"{where}per: must be a number of seconds from 0 (no limit) to {MAX_PER_SECONDS}, got {per!r}")


def _check_quota(limit: Any, where: str, problems: list[str]) -> None:
    if not -MAX_EXACT <= limit.quota_max <= MAX_EXACT:
        problems.append(f"{where}quota_max: must be at most {MAX_EXACT} (-1: unlimited), got {limit.quota_max}")
    if not -MAX_EXACT <= limit.quota_renewal_rate <= MAX_RENEWAL_SECONDS:
        problems.append(f"{where}quota_renewal_rate: must be at most {MAX_RENEWAL_SECONDS} seconds,"
                        f" got {limit.quota_renewal_rate}")
