"""Tyk policies as records: the ``Policy`` struct, its JSON form and loading policy files.

A policy file is either one policy or a map of id to policy (Tyk's ``policies.json``); ids are
checked so they can be used in file names and store keys. What applying policies to a session
does is in ``policy_apply.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final, Mapping

import msgspec
import orjson

from fastgate.sessions.key_ids import unsafe_id
from fastgate.sessions.session import AccessDefinition, Number, RateLimitSmoothing, _drop_nulls, to_wire
from fastgate.store.limits import limit_problems
from fastgate.validation import split_error

__all__ = [
    "Policy", "PolicyPartitions", "decode_policy", "decode_policy_file", "encode_policy",
    "load_policy_dir", "policy_problems",
]

_SAFE_ID: Final = re.compile(r"[a-zA-Z0-9.\-_~]+")


class PolicyPartitions(msgspec.Struct, kw_only=True):
    quota: bool = False
    rate_limit: bool = False
    complexity: bool = False
    acl: bool = False
    per_api: bool = False

    def enabled(self) -> bool:
        """True when the policy only sets some parts (per_api is not a partition)."""
        return self.quota or self.rate_limit or self.acl or self.complexity


class Policy(msgspec.Struct, kw_only=True):
    """A policy as Tyk stores it (`user.Policy`); unknown fields such as `state` are ignored."""

    mid: str = msgspec.field(name="_id", default="")
    id: str = ""
    name: str = ""
    org_id: str = ""
    rate: Number = 0
    per: Number = 0
    quota_max: int = 0
    quota_renewal_rate: int = 0
    throttle_interval: Number = 0
    throttle_retry_limit: int = 0
    max_query_depth: int = 0
    access_rights: dict[str, AccessDefinition] = msgspec.field(default_factory=dict)
    hmac_enabled: bool = False
    enable_http_signature_validation: bool = False
    active: bool = False
    is_inactive: bool = False
    tags: list[str] = msgspec.field(default_factory=list)
    key_expires_in: int = 0
    post_expiry_action: str = ""
    post_expiry_grace_period: int = 0
    partitions: PolicyPartitions = msgspec.field(default_factory=PolicyPartitions)
    last_updated: str = ""
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    graphql_access_rights: dict[str, Any] = msgspec.field(default_factory=dict)
    smoothing: RateLimitSmoothing | None = None



def policy_problems(policy: Policy) -> list[str]:
    """What the stores could not run in a decoded policy ("field: problem"); empty when fine."""
    problems = ["org_id: may not contain '\"', '\\' or control characters"] if unsafe_id(policy.org_id) else []
    return problems + limit_problems(policy)


def decode_policy(data: bytes | str | Mapping[str, Any]) -> Policy:
    """One policy from JSON (or an already parsed object). Raises msgspec errors when invalid."""
    obj = orjson.loads(data) if isinstance(data, bytes | str) else data
    return msgspec.convert(_drop_nulls(obj), Policy)


def encode_policy(policy: Policy) -> bytes:
    """JSON as Tyk writes a policy file: every top-level field, access rights as in sessions."""
    out = {("_id" if name == "mid" else name): to_wire(getattr(policy, name))
           for name in policy.__struct_fields__}
    if not policy.post_expiry_action:
        del out["post_expiry_action"]
    return orjson.dumps(out, option=orjson.OPT_INDENT_2)


# Field names of a policy whose value is an object: a file whose top level has one of these is a
# single policy, otherwise it is a map of id -> policy (Tyk's `policies.json` layout).
_POLICY_FIELDS: Final = frozenset(f.encode_name for f in msgspec.structs.fields(Policy))


def decode_policy_file(data: bytes | str, default_id: str = "", *,
                       allow_unsafe_ids: bool = False) -> tuple[dict[str, Policy], list[str]]:
    """Policies in one file, keyed by id, and problems as "field: what is wrong".

    A map file's keys are the ids (they win over an `id` field, as in Tyk); a single-policy file
    uses its `id`, else `default_id` (the file name's stem).
    """
    try:
        top = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return {}, [f"(json): {exc}"]
    if not isinstance(top, dict):
        return {}, ["(top level): expected an object, a policy or a map of id to policy"]
    single = any(k in _POLICY_FIELDS for k in top)
    entries = {default_id: top} if single else top
    policies: dict[str, Policy] = {}
    problems: list[str] = []
    for key, raw in entries.items():
        where = "" if single else f"{key}."
        if not isinstance(raw, dict):
            problems.append(f"{key}: expected a policy object")
            continue
        try:
            policy = decode_policy(raw)
        except msgspec.ValidationError as exc:
            at, what = split_error(exc)
            problems.append(f"{where}{at or '(policy)'}: {what}")
            continue
        bad = policy_problems(policy)
        if bad:
            problems.extend(where + p for p in bad)
            continue
        pid = (policy.id or key) if single else (key or policy.id)
        if not pid:
            problems.append(f"{where}id: missing")
            continue
        if not allow_unsafe_ids and not _SAFE_ID.fullmatch(pid):
            problems.append(f"{where}id: invalid policy id {pid!r}: allowed characters are "
                            "a-z, A-Z, 0-9, '.', '_', '-', '~'")
            continue
        policy.id = pid
        policies[pid] = policy
    return policies, problems


def load_policy_dir(path: str | Path, *, allow_unsafe_ids: bool = False
                    ) -> tuple[dict[str, Policy], list[str]]:
    """Every `*.json` under `path` (sorted): policies by id and "file: field: what is wrong"."""
    policies: dict[str, Policy] = {}
    problems: list[str] = []
    directory = Path(path)
    if not directory.is_dir():
        return {}, [f"{directory}: (policy_path): not a directory"]
    for file in sorted(directory.glob("*.json")):
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(f"{file}: (file): {exc.strerror}")
            continue
        found, bad = decode_policy_file(data, file.stem, allow_unsafe_ids=allow_unsafe_ids)
        problems.extend(f"{file}: {p}" for p in bad)
        for pid, policy in found.items():
            if pid in policies:
                problems.append(f"{file}: {pid}.id: duplicate policy id, first one kept")
                continue
            policies[pid] = policy
    return policies, problems
