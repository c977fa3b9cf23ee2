"""Applying Tyk policies to a session (the records and policy files are in ``policies.py``).

`apply_policies` follows Tyk's `internal/policy/apply.go` rule for rule (reference §4.3), so a key
carrying the same policies gets the same access rights, limits and allowance scopes as on Tyk:

1. the quota / rate / complexity fields of every partition an applied policy sets are cleared;
2. each policy is merged in order: a `per_api` policy keeps each API's own limit (or the policy's
   top-level one, scoped to the policy id); a plain or partitioned policy unions the ACL (versions,
   allowed URLs, GraphQL and MCP rules) and lets the larger quota, the more permissive rate and the
   larger throttle / query depth win; a policy without access rights is a "master" policy that
   sets the session root; is_inactive is OR-ed, tags unioned, meta_data copied;
3. APIs that only got a non-ACL partition are dropped, the rest inherit what no policy set;
4. with several policies setting limits, each API's allowance scope is the policy that set it.

It is pure: the stored session is never touched, a new one (or a `PolicyError`) comes back.
Deliberate differences from Tyk, all in corner cases: a missing policy does not stop the clearing
of step 1 for the policies after it; tags keep a stable order; an endpoint path containing `:` is
kept (Tyk drops it when merging); an empty `meta_data.policies` list means "no custom policies".
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal, Mapping, Sequence

import msgspec

from fastgate.sessions.policies import Policy
from fastgate.sessions.session import (
    AccessControlRules, AccessDefinition, AccessSpec, APILimit, Endpoint, EndpointMethod,
    GraphqlType, JSONRPCMethodLimit, MCPPrimitiveLimit, RateLimit, SessionState, _drop_nulls,
    clone_session,
)

__all__ = [
    "MIXED_PER_API", "PolicyApplier", "PolicyError", "apply_policies", "expiry_for_new_key",
    "merge_allowed_urls", "merge_endpoint_limits",
]

MIXED_PER_API: Final = ("cannot apply multiple policies when some have per_api set and some are "
                        "partitioned")


@dataclass(frozen=True, slots=True)
class PolicyError:
    """Why policies could not be applied; the key is then treated as not found / invalid."""

    reason: Literal["not_found", "different_org", "per_api_with_partitions", "mixed_per_api",
                    "no_valid_policies"]
    message: str

    def __str__(self) -> str:
        return self.message



@dataclass(slots=True)
class _State:
    rights: dict[str, AccessDefinition]
    set_by: dict[str, str]  # Tyk's APILimit.SetBy: which policy last set an API's ACL
    did_quota: set[str]
    did_rate: set[str]
    did_acl: set[str]
    did_complexity: set[str]
    did_per_api: bool = False
    did_partition: bool = False


def apply_policies(session: SessionState, policies_by_id: Mapping[str, Policy],
                   org_id: str | None = None) -> SessionState | PolicyError:
    """Apply the session's policies (reference §4.3) and return the resulting new session.

    `org_id` is the API's organisation: when given, every policy must belong to it. Policies
    embedded in `meta_data["policies"]` (set by custom-auth plugins) replace the looked-up ones.
    """
    s = clone_session(session)
    ids = s.policy_ids()
    custom = _custom_policies(s)
    if custom is not None:
        chosen: list[tuple[str, Policy | None]] = [(p.id, p) for p in custom]
    else:
        chosen = [(pid, policies_by_id.get(pid)) for pid in ids]
    _clear_session(s, [p for _, p in chosen if p is not None])
    st = _State({}, {}, set(), set(), set(), set())
    inactive = False if chosen else s.is_inactive
    tags: dict[str, None] = dict.fromkeys(s.tags)
    for pid, policy in chosen:
        if policy is None:
            if len(chosen) > 1:
                continue  # Tyk logs and skips an unknown policy among several
            return PolicyError("not_found", f'policy not found: "{pid}"')
        if org_id is not None and policy.org_id != org_id:
            return PolicyError("different_org", "attempting to apply policy from different "
                                                "organisation to key, skipping")
        if policy.partitions.per_api and policy.partitions.enabled():
            return PolicyError("per_api_with_partitions", f"cannot apply policy {policy.id} which "
                                                          "has per_api and any of partitions set")
        error = _apply_per_api(policy, s, st) if policy.partitions.per_api \
            else _apply_partitions(policy, s, st)
        if error is not None:
            return error
        inactive = inactive or policy.is_inactive
        tags.update(dict.fromkeys(policy.tags))
        s.meta_data.update(policy.meta_data)
        if policy.last_updated > s.last_updated:
            s.last_updated = policy.last_updated
        if policy.post_expiry_action:
            s.post_expiry_action = policy.post_expiry_action
        if policy.post_expiry_grace_period:
            s.post_expiry_grace_period = policy.post_expiry_grace_period
    s.is_inactive = inactive
    s.tags = list(tags)
    if not chosen:
        for api_id, right in s.access_rights.items():
            if not right.limit.is_empty():
                right.allowance_scope = api_id
    _finish_rights(s, st)
    if st.did_acl:
        s.access_rights = st.rights
    if not st.rights and chosen:
        return PolicyError("no_valid_policies", "key has no valid policies to be applied")
    return s


class PolicyApplier:
    """`apply_policies` for one loaded policy set, remembered per stored session object.

    Policies are applied on every request (so a policy change takes effect at once) and that
    costs 20-60 µs; the result depends only on the stored session, the policy set and the
    API's org. The session cache hands out the same session object until the key changes, so
    the result is kept for that exact object (bounded LRU; a new object is a miss). Build a new
    applier when policies are reloaded. Results are shared between requests: read-only.
    """

    def __init__(self, policies_by_id: Mapping[str, Policy], *, max_entries: int = 10_000
                 ) -> None:
        self.policies = policies_by_id
        self._max = max_entries
        self._memo: OrderedDict[tuple[int, str | None],
                                tuple[SessionState, SessionState | PolicyError]] = OrderedDict()

    def apply(self, session: SessionState, org_id: str | None = None
              ) -> SessionState | PolicyError:
        """Same contract as `apply_policies`; 0.3 µs when this session object was seen."""
        key = (id(session), org_id)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is session:  # identity: an id may be reused once freed
            self._memo.move_to_end(key)
            return hit[1]
        result = apply_policies(session, self.policies, org_id)
        self._memo[key] = (session, result)  # holding `session` keeps its id from being reused
        if len(self._memo) > self._max:
            self._memo.popitem(last=False)
        return result


def expiry_for_new_key(session: SessionState, policies_by_id: Mapping[str, Policy],
                       now: int) -> int:
    """`expires` for a key being created: the last policy with `key_expires_in` > 0 sets it."""
    expires = session.expires
    for pid in session.policy_ids():
        policy = policies_by_id.get(pid)
        if policy is not None and policy.key_expires_in > 0:
            expires = now + policy.key_expires_in
    return expires


def _custom_policies(s: SessionState) -> list[Policy] | None:
    raw = s.meta_data.get("policies")
    if not isinstance(raw, list) or not raw:
        return None
    try:
        return msgspec.convert(_drop_nulls(raw), list[Policy], strict=False)
    except msgspec.ValidationError:
        return None


def _clear_session(s: SessionState, policies: Sequence[Policy]) -> None:
    # Without this a key's own higher limits would beat the policy's in "larger wins" below.
    for p in policies:
        every = not p.partitions.enabled()
        if every or p.partitions.quota:
            s.quota_max = s.quota_remaining = 0
        if every or p.partitions.rate_limit:
            s.rate = s.per = s.throttle_interval = s.throttle_retry_limit = 0
            s.smoothing = None
        if every or p.partitions.complexity:
            s.max_query_depth = 0


def _apply_per_api(policy: Policy, s: SessionState, st: _State) -> PolicyError | None:
    if st.did_partition:
        return PolicyError("mixed_per_api", MIXED_PER_API)
    for api_id, source in policy.access_rights.items():
        right = _copy(source)
        scope = api_id
        if right.limit.is_empty():
            scope, right.limit = policy.id, _policy_limit(policy)
        right.allowance_scope = scope
        set_by = scope
        own = s.access_rights.get(api_id)
        if own is not None:
            if not own.limit.is_empty():
                right.limit.quota_renews = own.limit.quota_renews
            right.disable_introspection = right.disable_introspection or own.disable_introspection
        current = st.rights.get(api_id)
        if current is not None:
            set_by = _merge_api_level_limits(right, set_by, current, st.set_by.get(api_id, ""))
        st.rights[api_id] = right
        st.set_by[api_id] = set_by
        for done in (st.did_acl, st.did_quota, st.did_rate, st.did_complexity):
            done.add(api_id)
    if policy.access_rights:
        st.did_per_api = True
    return None


def _merge_api_level_limits(new: AccessDefinition, new_set_by: str, cur: AccessDefinition,
                            cur_set_by: str) -> str:
    """Two per_api policies limit one API: the more permissive rate, the larger quota win."""
    lim, old = new.limit, cur.limit
    updated = False
    if _duration_ns(lim.rate, lim.per) > _duration_ns(old.rate, old.per):
        lim.rate, lim.per, lim.smoothing = old.rate, old.per, old.smoothing
        updated = True
    if old.quota_max != lim.quota_max and _greater(old.quota_max, lim.quota_max):
        lim.quota_max = old.quota_max
        updated = True
    if _greater(old.quota_renewal_rate, lim.quota_renewal_rate):
        lim.quota_renewal_rate = old.quota_renewal_rate
    if lim.quota_max == -1:
        lim.quota_renewal_rate = 0
    new.endpoints = merge_endpoint_limits(new.endpoints, cur.endpoints)
    new.json_rpc_methods = _merge_named_limits(new.json_rpc_methods, cur.json_rpc_methods)
    new.mcp_primitives = _merge_named_limits(new.mcp_primitives, cur.mcp_primitives)
    if updated:
        new.allowance_scope = cur.allowance_scope
        return cur_set_by
    return new_set_by


def _apply_partitions(policy: Policy, s: SessionState, st: _State) -> PolicyError | None:
    parts = policy.partitions
    partial = parts.enabled()
    if partial and st.did_per_api:
        return PolicyError("mixed_per_api", MIXED_PER_API)
    for api_id in policy.access_rights:
        if api_id not in st.rights:
            st.rights[api_id] = AccessDefinition()
    for api_id, source in policy.access_rights.items():
        ar, v = st.rights[api_id], _copy(source)  # a copy: nothing here may alias the policy
        if not partial or parts.acl:
            st.did_acl.add(api_id)
            _merge_acl(ar, v)
            st.set_by[api_id] = policy.id
        if not partial or parts.quota:
            st.did_quota.add(api_id)
            if _greater(policy.quota_max, ar.limit.quota_max):
                ar.limit.quota_max = policy.quota_max
                if _greater(policy.quota_max, s.quota_max):
                    s.quota_max = policy.quota_max
            if policy.quota_renewal_rate > ar.limit.quota_renewal_rate:
                ar.limit.quota_renewal_rate = policy.quota_renewal_rate
                s.quota_renewal_rate = max(s.quota_renewal_rate, policy.quota_renewal_rate)
        if not partial or parts.rate_limit:
            st.did_rate.add(api_id)
            _apply_rate(s, policy, ar.limit)
            ar.endpoints = merge_endpoint_limits(v.endpoints, ar.endpoints)
            ar.json_rpc_methods = _merge_named_limits(v.json_rpc_methods, ar.json_rpc_methods)
            ar.mcp_primitives = _merge_named_limits(v.mcp_primitives, ar.mcp_primitives)
            if policy.throttle_retry_limit > ar.limit.throttle_retry_limit:
                ar.limit.throttle_retry_limit = policy.throttle_retry_limit
                s.throttle_retry_limit = max(s.throttle_retry_limit, policy.throttle_retry_limit)
            if policy.throttle_interval > ar.limit.throttle_interval:
                ar.limit.throttle_interval = policy.throttle_interval
                s.throttle_interval = max(s.throttle_interval, policy.throttle_interval)
        if not partial or parts.complexity:
            st.did_complexity.add(api_id)
            if _greater(policy.max_query_depth, ar.limit.max_query_depth):
                ar.limit.max_query_depth = policy.max_query_depth
                if _greater(policy.max_query_depth, s.max_query_depth):
                    s.max_query_depth = policy.max_query_depth
        own = s.access_rights.get(api_id)
        if own is not None and not own.limit.is_empty():
            ar.limit.quota_renews = own.limit.quota_renews  # keep the running quota period
    if not policy.access_rights:  # master policy: sets the session root only
        if not partial or parts.rate_limit:
            s.rate, s.per, s.smoothing = policy.rate, policy.per, _copy(policy.smoothing)
            s.throttle_interval = policy.throttle_interval
            s.throttle_retry_limit = policy.throttle_retry_limit
        if not partial or parts.complexity:
            s.max_query_depth = policy.max_query_depth
        if not partial or parts.quota:
            s.quota_max, s.quota_renewal_rate = policy.quota_max, policy.quota_renewal_rate
    s.hmac_enabled = s.hmac_enabled or policy.hmac_enabled
    s.enable_http_signature_validation = (s.enable_http_signature_validation
                                          or policy.enable_http_signature_validation)
    st.did_partition = partial
    return None


def _merge_acl(ar: AccessDefinition, v: AccessDefinition) -> None:
    ar.disable_introspection = ar.disable_introspection or v.disable_introspection
    ar.versions = _append_missing(ar.versions, v.versions)
    ar.allowed_urls = merge_allowed_urls(ar.allowed_urls, v.allowed_urls)
    # Both lists are unioned per type name, as Tyk does (its comment about intersecting
    # restricted types describes an older behaviour).
    ar.restricted_types = _merge_types(ar.restricted_types, v.restricted_types)
    ar.allowed_types = _merge_types(ar.allowed_types, v.allowed_types)
    if not ar.field_access_rights:
        ar.field_access_rights = v.field_access_rights
    else:
        for far in v.field_access_rights:
            same = [r for r in ar.field_access_rights
                    if (r.type_name, r.field_name) == (far.type_name, far.field_name)]
            for r in same:
                if _greater(far.limits.max_query_depth, r.limits.max_query_depth):
                    r.limits.max_query_depth = far.limits.max_query_depth
            if not same:
                ar.field_access_rights.append(far)
    ar.json_rpc_methods_access_rights = _merge_rules(ar.json_rpc_methods_access_rights,
                                                     v.json_rpc_methods_access_rights)
    mine, theirs = ar.mcp_access_rights, v.mcp_access_rights
    mine.tools = _merge_rules(mine.tools, theirs.tools)
    mine.resources = _merge_rules(mine.resources, theirs.resources)
    mine.prompts = _merge_rules(mine.prompts, theirs.prompts)


def _apply_rate(s: SessionState, policy: Policy, limit: APILimit) -> None:
    """The policy's rate replaces an empty or stricter one, on the API and on the session."""
    if policy.rate == 0 or policy.per == 0:
        return
    mine = _duration_ns(policy.rate, policy.per)
    if limit.rate == 0 or limit.per == 0 or _duration_ns(limit.rate, limit.per) > mine:
        limit.rate, limit.per, limit.smoothing = policy.rate, policy.per, _copy(policy.smoothing)
    if s.rate == 0 or s.per == 0 or _duration_ns(s.rate, s.per) > mine:
        s.rate, s.per, s.smoothing = policy.rate, policy.per, _copy(policy.smoothing)


def _finish_rights(s: SessionState, st: _State) -> None:
    distinct = {by for api_id, by in st.set_by.items() if by and api_id in st.rights}
    for api_id in list(st.rights):
        v = st.rights[api_id]
        if api_id not in st.did_acl:
            del st.rights[api_id]  # only a quota/rate partition named it: no access granted
            continue
        lim = v.limit
        if api_id not in st.did_rate:
            lim.rate, lim.per, lim.smoothing = s.rate, s.per, _copy(s.smoothing)
            lim.throttle_interval = s.throttle_interval
            lim.throttle_retry_limit = s.throttle_retry_limit
            v.endpoints = []
        if api_id not in st.did_complexity:
            lim.max_query_depth = s.max_query_depth
        if api_id not in st.did_quota:
            lim.quota_max, lim.quota_renewal_rate = s.quota_max, s.quota_renewal_rate
            lim.quota_renews = s.quota_renews
        set_by = st.set_by.get(api_id, "")
        if len(distinct) > 1 and not v.allowance_scope and set_by:
            v.allowance_scope = set_by  # policies with their own counters stay independent
    # Legacy: when exactly one API got limits, the session root mirrors them.
    if len(st.did_quota) == len(st.did_rate) == len(st.did_complexity) == 1:
        for v in st.rights.values():
            s.rate, s.per, s.smoothing = v.limit.rate, v.limit.per, _copy(v.limit.smoothing)
            s.quota_max, s.quota_renews = v.limit.quota_max, v.limit.quota_renews
            s.quota_renewal_rate = v.limit.quota_renewal_rate
            s.max_query_depth = v.limit.max_query_depth


# ---------------------------------------------------------------------------------------------
# Merge helpers (public ones are tested against Tyk's own vectors)


def merge_allowed_urls(first: Sequence[AccessSpec],
                       second: Sequence[AccessSpec]) -> list[AccessSpec]:
    """Union of two allowed_urls lists: one entry per url, in first-seen order, methods unioned."""
    merged: dict[str, list[str]] = {}
    for spec in (*first, *second):
        merged[spec.url] = _append_missing(merged.get(spec.url, []), spec.methods)
    return [AccessSpec(url=url, methods=methods) for url, methods in merged.items()]


def merge_endpoint_limits(policy_eps: Sequence[Endpoint],
                          current_eps: Sequence[Endpoint]) -> list[Endpoint]:
    """Endpoint rate limits of two sources combined; per method+path the higher rate wins."""
    current = _endpoint_map(current_eps)
    if not current:
        return list(policy_eps)
    result = _endpoint_map(policy_eps)
    if not result:
        return _endpoint_list(current)
    for key, cur in current.items():
        pol = result.get(key)
        if pol is None:
            result[key] = cur
            continue
        pol_d, cur_d = _duration_ns(pol.rate, pol.per), _duration_ns(cur.rate, cur.per)
        if pol_d > cur_d or (pol_d == cur_d and cur.rate > pol.rate):
            result[key] = cur  # equal interval: 10 per 60 beats 5 per 30
    return _endpoint_list(result)


def _endpoint_map(eps: Sequence[Endpoint]) -> dict[tuple[str, str], RateLimit]:
    return {(m.name, e.path): m.limit for e in eps for m in e.methods}


def _endpoint_list(em: Mapping[tuple[str, str], RateLimit]) -> list[Endpoint]:
    by_path: dict[str, list[EndpointMethod]] = {}
    for (method, path), limit in em.items():
        by_path.setdefault(path, []).append(EndpointMethod(name=method, limit=limit))
    return [Endpoint(path=path, methods=sorted(ms, key=lambda m: m.name.upper()))
            for path, ms in sorted(by_path.items())]


def _merge_named_limits(policy: list[Any], current: list[Any]) -> list[Any]:
    """JSON-RPC method / MCP primitive limits: lower interval wins, an unlimited current loses."""
    if not current:
        return policy
    if not policy:
        return current
    result = {_limit_key(m): m for m in current}
    for m in policy:
        cur = result.get(_limit_key(m))
        cur_d = 0 if cur is None else _duration_ns(cur.limit.rate, cur.limit.per)
        if cur is None or _duration_ns(m.limit.rate, m.limit.per) < cur_d or cur_d == 0:
            result[_limit_key(m)] = m
    return list(result.values())


def _limit_key(m: JSONRPCMethodLimit | MCPPrimitiveLimit) -> tuple[str, str]:
    return (m.type, m.name) if isinstance(m, MCPPrimitiveLimit) else ("", m.name)


def _merge_rules(dst: AccessControlRules, src: AccessControlRules) -> AccessControlRules:
    if not (src.allowed or src.blocked):
        return dst
    if not (dst.allowed or dst.blocked):
        return src
    return AccessControlRules(allowed=_append_missing(dst.allowed, src.allowed),
                              blocked=_append_missing(dst.blocked, src.blocked))


def _merge_types(dst: list[GraphqlType], src: list[GraphqlType]) -> list[GraphqlType]:
    if not dst:
        return src
    for t in src:
        same = next((d for d in dst if d.name == t.name), None)
        if same is None:
            dst.append(t)
        else:
            same.fields = _append_missing(same.fields, t.fields)
    return dst


def _append_missing(dest: list[str], items: Sequence[str]) -> list[str]:
    out = list(dest)
    out.extend(i for i in dict.fromkeys(items) if i not in dest)
    return out


def _greater(first: int, second: int) -> bool:
    """Tyk's "larger" where -1 means unlimited and beats everything."""
    if first == -1:
        return True
    return False if second == -1 else first > second


def _duration_ns(rate: float, per: float) -> int:
    # Computed as Go does (int nanoseconds), so equal-interval ties break the same way.
    return int(1e9 * per / rate) if rate > 0 and per > 0 else 0


def _policy_limit(p: Policy) -> APILimit:
    return APILimit(rate=p.rate, per=p.per, smoothing=_copy(p.smoothing),
                    quota_max=p.quota_max, quota_renewal_rate=p.quota_renewal_rate,
                    throttle_interval=p.throttle_interval,
                    throttle_retry_limit=p.throttle_retry_limit, max_query_depth=p.max_query_depth)


def _copy(value: Any) -> Any:
    if value is None:
        return None
    return msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=type(value))
