"""Centralised JWT mode: the virtual session a verified token stands for (Tyk §9.5). Pure.

With ``jwt_source`` or a JWKS the token itself is the credential; the gateway keeps a "virtual"
session per identity, stored like a key under ``generate_token(api_org, md5hex(identity))`` so the
Gateway API finds it. ``decide`` takes that stored session (or None) and what the token claims and
returns the session the request uses, whether it must be written back, or Tyk's 403 message:

* new session: from the base policy (policy claim, or the first policy of the key named by
  ``jwt_client_base_field``, or the default policies, all of them), else an empty one for the org;
  ``expires`` raised to the token's ``exp``; ``meta_data = {"TykJWTSessionID": id}``, ``alias``;
* existing session: switched when the policy claim (or the default list) changed; ``expires``
  raised to ``exp``;
* scope mapping: base policy (unless it came from the defaults) plus every mapped policy;
* privilege-escalation guards: a token with no scope and no policy cannot keep using a session
  built from scopes, and without defaults a session is never used by a token naming no policy.

Differences from Tyk, deliberate: ``expires`` is raised to ``exp`` plus the expiry skew (Tyk uses
``exp``, so a token the skew accepts meets "Key has expired, please renew" on a new session); a policy set that cannot be applied when a session is created
is a 403 "key not authorized: no matching policy" (Tyk answers 500), and the mapped scope
policies keep the order the scopes came in (Tyk's order is random).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final, Mapping

from fastgate.auth.jwt.config import JwtConfig
from fastgate.sessions.key_ids import generate_token
from fastgate.sessions.policies import Policy
from fastgate.sessions.policy_apply import PolicyError, apply_policies
from fastgate.sessions.session import SessionState, clone_session

__all__ = [
    "Decision", "NO_MATCHING_POLICY", "NO_POLICY_FOUND", "NO_SCOPE_OR_POLICY", "NO_SCOPE_POLICY",
    "decide", "oauth_client_id", "virtual_session_token",
]

NO_MATCHING_POLICY: Final = "key not authorized: no matching policy"
NO_POLICY_FOUND: Final = "key not authorized: no matching policy found"
NO_SCOPE_POLICY: Final = "key not authorized: no matching policy found in scope claim"
NO_SCOPE_OR_POLICY: Final = "key not authorized: no scope or policy in token"
COULD_NOT_APPLY_NEW: Final = "key not authorized: could not apply new policy"
COULD_NOT_APPLY_SEVERAL: Final = "key not authorized: could not apply several policies"
_CLIENT_ID_CLAIMS: Final = ("clientId", "cid", "client_id")  # Keycloak, Okta, Gluu


@dataclass(frozen=True, slots=True)
class Decision:
    """The session (policies applied) a request uses, and whether to store it."""

    session: SessionState
    store: bool


def virtual_session_token(org_id: str, identity: str, hash_algo: str) -> str:
    """Tyk's virtual session id: a key id of the API's org made from md5(identity)."""
    return generate_token(org_id, hashlib.md5(identity.encode()).hexdigest(), hash_algo)


def oauth_client_id(claims: dict[str, Any], cfg: JwtConfig) -> str:
    """The IdP client id claim (``clientId``, ``cid``, ``client_id``) unless mapping is off."""
    if cfg.idp_client_id_mapping_disabled:
        return ""
    for name in _CLIENT_ID_CLAIMS:
        if name in claims:
            value = claims[name]
            return value if isinstance(value, str) else ""
    return ""


def decide(
    existing: SessionState | None,
    *,
    cfg: JwtConfig,
    policies: Mapping[str, Policy],
    org_id: str,
    session_token: str,
    identity: str,
    base_policy: str,
    scopes: list[str] | None,
    exp: Any,
    client_id: str,
    now: int,
) -> Decision | str:
    """The session for this token, or the 403 message. ``scopes`` is None without a mapping."""
    defaults = cfg.default_policies
    from_defaults = False
    if not base_policy and defaults:
        from_defaults, base_policy = True, defaults[0]
    update = False
    if existing is None:
        if base_policy:
            policy = policies.get(base_policy)
            if policy is None or (org_id and policy.org_id != org_id):
                return NO_MATCHING_POLICY
            ids = [base_policy] + ([p for p in defaults if p != base_policy] if from_defaults else [])
            built = apply_policies(_from_policy(policy, ids, org_id, now), policies, org_id or None)
            if isinstance(built, PolicyError):
                return NO_MATCHING_POLICY
            session = built
        else:
            session = SessionState(org_id=org_id)
        _raise_expiry(session, exp, cfg.exp_skew)
        session.meta_data = {"TykJWTSessionID": session_token}
        session.alias = identity
        update = True
    else:
        session = clone_session(existing)
        policy = policies.get(base_policy) if base_policy else None
        if base_policy and policy is None:
            return NO_MATCHING_POLICY
        current = session.policy_ids()
        if not current:
            return NO_POLICY_FOUND
        defaults_changed = from_defaults and (
            any(p not in defaults and p != base_policy for p in current) or any(d not in current for d in defaults)
        )
        if policy is not None and (base_policy not in current or defaults_changed):
            if org_id and policy.org_id != org_id:
                return NO_MATCHING_POLICY
            update = True
            ids = [base_policy] + ([p for p in defaults if p != base_policy] if from_defaults else [])
            switched = _with_policies(session, ids, policies, org_id)
            if switched is None:
                return COULD_NOT_APPLY_NEW
            session = switched
        update = _raise_expiry(session, exp, cfg.exp_skew) or update
    if scopes is not None:
        if scopes:
            ids = [] if from_defaults or not base_policy else [base_policy]
            for scope in scopes:
                mapped = cfg.scope_to_policy.get(scope)
                if mapped and mapped not in ids:
                    ids.append(mapped)
            if not ids:
                return NO_SCOPE_POLICY
            update = update or not _same_policies(session, ids)
            scoped = _with_policies(session, ids, policies, org_id)
            if scoped is None:
                return COULD_NOT_APPLY_SEVERAL
            session = scoped
        elif not base_policy and existing is not None:
            return NO_SCOPE_OR_POLICY
    if not base_policy and not defaults:
        if not session.policy_ids() or (existing is not None and scopes is None):
            return NO_POLICY_FOUND
    if session.oauth_client_id != client_id:
        session.oauth_client_id = client_id
        update = True
    if not update and existing is not None:
        return Decision(existing, False)  # unchanged: keep the shared, already-applied object
    return Decision(session, update)


def _from_policy(policy: Policy, ids: list[str], org_id: str, now: int) -> SessionState:
    """Tyk's generateSessionFromPolicy: the policy's limits and rights as a new session."""
    return SessionState(
        org_id=org_id,
        apply_policies=ids,
        allowance=policy.rate,
        rate=policy.rate,
        per=policy.per,
        throttle_interval=policy.throttle_interval,
        throttle_retry_limit=policy.throttle_retry_limit,
        max_query_depth=policy.max_query_depth,
        quota_max=policy.quota_max,
        quota_renewal_rate=policy.quota_renewal_rate,
        access_rights={k: v for k, v in policy.access_rights.items()},
        hmac_enabled=policy.hmac_enabled,
        enable_http_signature_validation=policy.enable_http_signature_validation,
        is_inactive=policy.is_inactive,
        tags=list(policy.tags),
        expires=now + policy.key_expires_in if policy.key_expires_in > 0 else 0,
        post_expiry_action=policy.post_expiry_action,
        post_expiry_grace_period=policy.post_expiry_grace_period,
    )


def _with_policies(
    session: SessionState, ids: list[str], policies: Mapping[str, Policy], org_id: str
) -> SessionState | None:
    session.apply_policies = list(ids)
    session.apply_policy_id = ""
    applied = apply_policies(session, policies, org_id or None)
    return None if isinstance(applied, PolicyError) else applied


def _same_policies(session: SessionState, ids: list[str]) -> bool:
    current = session.apply_policies
    return len(current) == len(ids) and all(p in ids for p in current)


def _raise_expiry(session: SessionState, exp: Any, skew: int) -> bool:
    # exp + the API's expiry skew: a token the skew still accepts must not meet an expired session.
    if type(exp) in (int, float) and int(exp) + skew > session.expires:
        session.expires = int(exp) + skew
        return True
    return False
