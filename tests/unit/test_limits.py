"""Rate-limit (GCRA) and quota arithmetic, with a fixed clock."""

from __future__ import annotations

import pytest

from fastgate.sessions.key_ids import endpoint_key_suffix, hash_bytes, limit_names
from fastgate.sessions.session import (
    AccessDefinition, Endpoint, EndpointMethod, RateLimit, SessionState,
)
from fastgate.store.limits import (
    QuotaDecision, RateParams, gcra_step, quota_decision,
    quota_key, quota_step, rate_decision, rate_limit_key, rate_params, rate_state_ttl_ms,
)

S = 1_000_000  # one second in µs
T0 = 1_700_000_000 * S


def hits(p: RateParams, times_us: list[int], tat: int = 0) -> list[bool]:
    out = []
    for now in times_us:
        allowed, tat = gcra_step(tat, now, p)
        out.append(allowed)
    return out


@pytest.mark.parametrize(("rate", "per"), [(0, 1), (-1, 1), (5, 0), (5, -1)])
def test_unlimited_has_no_params(rate: float, per: float) -> None:
    assert rate_params(rate, per) is None


@pytest.mark.parametrize(("rate", "per"), [(1, 1), (3, 1), (10, 60), (1000, 1), (7, 3)])
def test_burst_of_exactly_rate_then_blocked(rate: int, per: int) -> None:
    p = rate_params(rate, per)
    assert p is not None and p.limit == rate
    assert hits(p, [T0] * (rate + 1)) == [True] * rate + [False]


def test_rejections_do_not_consume_allowance() -> None:
    p = rate_params(2, 1)
    assert p is not None
    tat = 0
    for _ in range(2):
        _, tat = gcra_step(tat, T0, p)
    for _ in range(50):  # a client hammering while blocked
        allowed, tat = gcra_step(tat, T0 + S // 4, p)
        assert not allowed
    allowed, _ = gcra_step(tat, T0 + S // 2, p)  # one interval after the burst started
    assert allowed


def test_long_run_rate_is_exact() -> None:
    p = rate_params(10, 1)  # one every 100 ms after the burst
    assert p is not None
    times = [T0 + i * 10_000 for i in range(300)]  # 3 s of requests every 10 ms
    assert sum(hits(p, times)) == 10 + 29  # the burst, then one per 100 ms for 2.99 s


def test_decision_headers_after_each_hit() -> None:
    p = rate_params(3, 1)
    assert p is not None
    tat, seen = 0, []
    for _ in range(4):
        allowed, tat = gcra_step(tat, T0, p)
        d = rate_decision(allowed, tat, T0, p)
        seen.append((d.allowed, d.limit, d.remaining, round(d.reset, 3),
                     round(d.retry_after, 3)))
    assert seen == [(True, 3, 2, 0.333, 0.0), (True, 3, 1, 0.667, 0.0),
                    (True, 3, 0, 1.0, 0.0), (False, 3, 0, 1.0, 0.333)]


def test_idle_key_recovers_full_burst() -> None:
    p = rate_params(5, 2)
    assert p is not None
    tat = 0
    for _ in range(5):
        _, tat = gcra_step(tat, T0, p)
    assert not gcra_step(tat, T0, p)[0]
    assert hits(p, [T0 + 2 * S] * 6, tat) == [True] * 5 + [False]
    assert rate_state_ttl_ms(tat, T0) == 2001  # state can be dropped once the TAT is past
    assert rate_state_ttl_ms(tat, T0 + 5 * S) == 1


def test_fractional_rate_allows_one_then_one_per_interval() -> None:
    p = rate_params(0.5, 1)  # one request every two seconds
    assert p is not None and p.interval_us == 2 * S and p.tolerance_us == 0
    assert hits(p, [T0, T0 + S, T0 + 2 * S]) == [True, False, True]


def test_quota_counts_up_to_max_then_refuses_without_counting() -> None:
    used, ttl, seen = None, -2, []
    for _ in range(4):
        allowed, used, ttl, _ = quota_step(used, ttl, 3, 60)
        seen.append((allowed, used, ttl))
    assert seen == [(True, 1, 60_000), (True, 2, 60_000), (True, 3, 60_000),
                    (False, 3, 60_000)]


def test_quota_new_period_rules() -> None:
    assert quota_step(None, -2, 5, 60) == (True, 1, 60_000, True)  # absent: new period
    assert quota_step(5, -1, 5, 60) == (True, 1, 60_000, True)  # no TTL but renewal: renew
    assert quota_step(5, -1, 5, 0) == (False, 5, -1, False)  # never renews: stays spent
    assert quota_step(None, -2, 5, 0) == (True, 1, -1, True)
    assert quota_step(2, 1500, 5, 60) == (True, 3, 1500, False)  # same period keeps its TTL


def test_quota_decision_values() -> None:
    assert quota_decision(True, 1, 60_000, 50, 1000.0) == QuotaDecision(True, 50, 49, 1060)
    assert quota_decision(False, 50, 500, 50, 1000.0) == QuotaDecision(False, 50, 0, 1000)
    assert quota_decision(True, 1, -1, 50, 1000.0).renews_at == 0


def test_key_names_follow_tyk() -> None:
    assert quota_key("abc") == "abc" and quota_key("abc", "p2") == "p2-abc"
    assert rate_limit_key("abc") == "abc"
    assert rate_limit_key("abc", "p2") == "p2-abc"
    assert rate_limit_key("abc", "-p2-", "sfx") == "p2-abc-sfx"  # rate.Prefix trims dashes
    assert endpoint_key_suffix("GET", "/get") == hash_bytes(b"GET:/get", "murmur32")


def test_limit_names_cover_every_scope_and_endpoint() -> None:
    session = SessionState(access_rights={
        "api1": AccessDefinition(allowance_scope="p1"),
        "api2": AccessDefinition(allowance_scope="p2", endpoints=[Endpoint(
            path="/get", methods=[EndpointMethod(name="GET", limit=RateLimit(rate=1, per=1))])]),
        "api3": AccessDefinition(allowance_scope="p2"),
        "api4": AccessDefinition(),
    })
    quotas, rates = limit_names("h4sh", session)
    assert quotas == ["h4sh", "p1-h4sh", "p2-h4sh"]
    assert rates == ["h4sh", "p1-h4sh", "p2-h4sh",
                     "p2-h4sh-" + endpoint_key_suffix("GET", "/get")]


def test_memory_rate_step_updates_a_live_limiter_in_place_and_forgets_an_expired_one() -> None:
    from fastgate.store.limits import rate_decision, rate_params
    from fastgate.store.memory import MemoryStore

    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    params = rate_params(2, 1)
    assert params is not None
    allowed, tat, now_us = store.rate_step_now("k", params)
    assert allowed and now_us == 1_000_000_000
    state = store._rates["k"]
    allowed, tat, now_us = store.rate_step_now("k", params)
    assert allowed and store._rates["k"] is state and state[0] == tat  # updated in place
    # The third hit in the same instant is refused and leaves the state as it was.
    allowed, refused_tat, _ = store.rate_step_now("k", params)
    assert not allowed and refused_tat == tat and state[0] == tat
    assert rate_decision(False, refused_tat, now_us, params) == store.rate_hit_now("k", params)
    now[0] += 5  # past the state's expiry: a fresh limiter
    allowed, tat, now_us = store.rate_step_now("k", params)
    assert allowed and store._rates["k"] is not state and tat == now_us + params.interval_us
