"""Tyk's session object (a "key"): the record stored under `apikey-…` for every credential.

The Structs mirror `user.SessionState` field for field, with the JSON names Tyk uses, so a session
written by Tyk decodes here and one written here decodes in Tyk. Three decoding rules come from
Go's `encoding/json` and are kept on purpose:

* unknown fields are ignored (newer Tyk versions add fields; old ones carry retired ones);
* `null` means "zero value" (older Tyk writes `"versions": null`, `"meta_data": null`, ...);
* a missing field is its zero value.

Encoding follows Tyk's current tags (`omitzero` / `omitempty` on every session field): a zero
scalar, an empty list or map and an all-zero nested object are left out, integral floats are
written as integers (`"rate": 1000`, as Go prints float64), and the few fields Go always writes
(`url`/`methods` of an allowed URL, every smoothing field, an endpoint method's `limit`) are kept.

Sessions are plain mutable Structs. Code that hands a session to someone else must not mutate
one it did not create: `clone_session` gives a private deep copy (policy application uses it).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import orjson

__all__ = [
    "APILimit", "AccessControlRules", "AccessDefinition", "AccessSpec", "BasicAuthData",
    "Endpoint", "EndpointMethod", "FieldAccessDefinition", "FieldLimits", "GraphqlType",
    "JSONRPCMethodLimit", "JWTData", "MCPAccessRights", "MCPPrimitiveLimit", "Monitor",
    "RateLimit", "RateLimitSmoothing", "SessionState", "clone_session", "decode_session",
    "encode_session", "to_wire",
]

# `int | float` keeps integral JSON numbers as ints, so they re-encode as Tyk writes them.
Number = int | float


class _Base(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class RateLimitSmoothing(_Base):
    """Rate-limit smoothing settings (`apidef.RateLimitSmoothing`); Go writes every field."""

    enabled: bool = False
    threshold: int = 0
    trigger: Number = 0
    step: int = 0
    delay: int = 0


class RateLimit(_Base):
    """`rate` requests per `per` seconds; `rate` <= 0 or `per` <= 0 means no limit."""

    rate: Number = 0
    per: Number = 0
    smoothing: RateLimitSmoothing | None = None

    def duration(self) -> float:
        """Seconds between two allowed requests (0 when unlimited); smaller is more permissive."""
        return self.per / self.rate if self.rate > 0 and self.per > 0 else 0.0


class APILimit(_Base):
    """Per-API limits inside an access right (`user.APILimit`, RateLimit embedded flat)."""

    rate: Number = 0
    per: Number = 0
    smoothing: RateLimitSmoothing | None = None
    throttle_interval: Number = 0
    throttle_retry_limit: int = 0
    max_query_depth: int = 0
    quota_max: int = 0
    quota_renews: int = 0
    quota_remaining: int = 0
    quota_renewal_rate: int = 0

    def duration(self) -> float:
        """Seconds between two allowed requests (0 when unlimited)."""
        return self.per / self.rate if self.rate > 0 and self.per > 0 else 0.0

    def is_empty(self) -> bool:
        """True when no limit is set at all (Tyk then falls back to the session's root limits)."""
        return not (self.rate or self.per or self.throttle_interval or self.throttle_retry_limit
                    or self.max_query_depth or self.quota_max or self.quota_renews
                    or self.quota_remaining or self.quota_renewal_rate)


class AccessSpec(_Base):
    """One granular-access rule: `url` is a regex, `methods` the allowed HTTP methods."""

    url: str = ""
    methods: list[str] = msgspec.field(default_factory=list)


class GraphqlType(_Base):
    """A GraphQL type and field names (allowed_types / restricted_types)."""

    name: str = ""
    fields: list[str] = msgspec.field(default_factory=list)


class FieldLimits(_Base):
    max_query_depth: int = 0


class FieldAccessDefinition(_Base):
    type_name: str = ""
    field_name: str = ""
    limits: FieldLimits = msgspec.field(default_factory=FieldLimits)


class EndpointMethod(_Base):
    name: str = ""
    limit: RateLimit = msgspec.field(default_factory=RateLimit)


class Endpoint(_Base):
    """Endpoint-level rate limits: `path` (pattern) with one limit per method."""

    path: str = ""
    methods: list[EndpointMethod] = msgspec.field(default_factory=list)


class AccessControlRules(_Base):
    allowed: list[str] = msgspec.field(default_factory=list)
    blocked: list[str] = msgspec.field(default_factory=list)


class JSONRPCMethodLimit(_Base):
    name: str = ""
    limit: RateLimit = msgspec.field(default_factory=RateLimit)


class MCPPrimitiveLimit(_Base):
    type: str = ""
    name: str = ""
    limit: RateLimit = msgspec.field(default_factory=RateLimit)


class MCPAccessRights(_Base):
    tools: AccessControlRules = msgspec.field(default_factory=AccessControlRules)
    resources: AccessControlRules = msgspec.field(default_factory=AccessControlRules)
    prompts: AccessControlRules = msgspec.field(default_factory=AccessControlRules)


class AccessDefinition(_Base):
    """What a key may do on one API (`user.AccessDefinition`)."""

    api_name: str = ""
    api_id: str = ""
    versions: list[str] = msgspec.field(default_factory=list)
    allowed_urls: list[AccessSpec] = msgspec.field(default_factory=list)
    restricted_types: list[GraphqlType] = msgspec.field(default_factory=list)
    allowed_types: list[GraphqlType] = msgspec.field(default_factory=list)
    limit: APILimit = msgspec.field(default_factory=APILimit)
    field_access_rights: list[FieldAccessDefinition] = msgspec.field(default_factory=list)
    disable_introspection: bool = False
    allowance_scope: str = ""
    endpoints: list[Endpoint] = msgspec.field(default_factory=list)
    json_rpc_methods: list[JSONRPCMethodLimit] = msgspec.field(default_factory=list)
    json_rpc_methods_access_rights: AccessControlRules = msgspec.field(
        default_factory=AccessControlRules)
    mcp_primitives: list[MCPPrimitiveLimit] = msgspec.field(default_factory=list)
    mcp_access_rights: MCPAccessRights = msgspec.field(default_factory=MCPAccessRights)


class BasicAuthData(_Base):
    """Basic-auth password; `hash_type` is "" (plain), bcrypt, sha256, murmur32/64/128."""

    password: str = ""
    hash_type: str = ""


class JWTData(_Base):
    secret: str = ""


class Monitor(_Base):
    trigger_limits: list[Number] = msgspec.field(default_factory=list)


class SessionState(_Base):
    """A key: limits, access rights and credentials data, exactly as Tyk stores it."""

    last_check: int = 0
    allowance: Number = 0
    rate: Number = 0
    per: Number = 0
    throttle_interval: Number = 0
    throttle_retry_limit: int = 0
    max_query_depth: int = 0
    date_created: str = ""  # RFC 3339, kept as text: only the Gateway API reads it
    expires: int = 0
    quota_max: int = 0
    quota_renews: int = 0
    quota_remaining: int = 0
    quota_renewal_rate: int = 0
    access_rights: dict[str, AccessDefinition] = msgspec.field(default_factory=dict)
    org_id: str = ""
    oauth_client_id: str = ""
    oauth_keys: dict[str, str] = msgspec.field(default_factory=dict)
    certificate: str = ""
    mtls_static_certificate_bindings: list[str] = msgspec.field(default_factory=list)
    basic_auth_data: BasicAuthData = msgspec.field(default_factory=BasicAuthData)
    jwt_data: JWTData = msgspec.field(default_factory=JWTData)
    hmac_enabled: bool = False
    enable_http_signature_validation: bool = False
    hmac_string: str = ""
    rsa_certificate_id: str = ""
    is_inactive: bool = False
    apply_policy_id: str = ""
    apply_policies: list[str] = msgspec.field(default_factory=list)
    data_expires: int = 0
    monitor: Monitor = msgspec.field(default_factory=Monitor)
    enable_detail_recording: bool = False
    enable_detailed_recording: bool = False
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    tags: list[str] = msgspec.field(default_factory=list)
    alias: str = ""
    last_updated: str = ""
    id_extractor_deadline: int = 0
    session_lifetime: int = 0
    post_expiry_action: str = ""
    post_expiry_grace_period: int = 0
    smoothing: RateLimitSmoothing | None = None

    def policy_ids(self) -> list[str]:
        """Policies applied to this key: `apply_policies`, else the deprecated `apply_policy_id`."""
        if self.apply_policies:
            return self.apply_policies
        return [self.apply_policy_id] if self.apply_policy_id else []

    def api_limit(self) -> APILimit:
        """The session's root limits as an APILimit (what an API without its own limit uses)."""
        return APILimit(rate=self.rate, per=self.per, smoothing=self.smoothing,
                        throttle_interval=self.throttle_interval,
                        throttle_retry_limit=self.throttle_retry_limit,
                        max_query_depth=self.max_query_depth, quota_max=self.quota_max,
                        quota_renews=self.quota_renews, quota_renewal_rate=self.quota_renewal_rate)

    def limit_for_api(self, api_id: str) -> tuple[APILimit, str, list[Endpoint]] | None:
        """(limit, allowance scope, endpoint limits) enforced for `api_id`; None if not allowed.

        Tyk's rule: with non-empty access_rights the API must be listed; an access right with an
        empty limit falls back to the session's root limits.
        """
        scope = ""
        endpoints: list[Endpoint] = []
        limit = None
        if self.access_rights:
            right = self.access_rights.get(api_id)
            if right is None:
                return None
            limit, scope, endpoints = right.limit, right.allowance_scope, right.endpoints
        if limit is None or limit.is_empty():
            limit = self.api_limit()
        return limit, scope, endpoints

    def is_expired(self, now: float) -> bool:
        """True when `expires` is set (>= 1) and lies in the past (401 "Key has expired")."""
        return self.expires >= 1 and now > self.expires

    def lifetime(self, fallback: int = 0, *, respect_key_expiration: bool = False,
                 force_global: bool = False, global_lifetime: int = 0, now: float = 0.0) -> int:
        """Store TTL in seconds for this session (0 = keep forever, -1 = never delete).

        Order as in Tyk: forced global lifetime; post-expiry settings; the key's own
        `session_lifetime`; the API's `fallback`; optionally stretched to `expires`.
        """
        if force_global:
            return global_lifetime
        action, grace = self.post_expiry_action, self.post_expiry_grace_period
        if action == "delete" or (action == "retain" and grace != 0):
            if self.expires <= 0:
                return 0
            if action == "retain" and grace == -1:
                return -1
            ttl = int(self.expires - now) + (grace if action == "retain" else 0)
            return ttl if ttl > 0 else 1
        base = self.session_lifetime if self.session_lifetime > 0 else fallback
        if base <= 0:
            return 0
        if not respect_key_expiration:
            return base
        if self.expires <= 0:
            return self.expires
        return int(self.expires - now) if self.expires > now + base else base


_DECODER: Final = msgspec.json.Decoder(SessionState)
_MSGPACK_ENC: Final = msgspec.msgpack.Encoder()
_MSGPACK_DEC: Final = msgspec.msgpack.Decoder(SessionState)


def decode_session(data: bytes | str) -> SessionState:
    """Decode a stored session (Tyk's or ours). Raises msgspec.DecodeError on malformed JSON."""
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError:
        # Rare path: JSON from older Tyk versions, with nulls or numbers written as strings.
        return msgspec.convert(_drop_nulls(orjson.loads(data)), SessionState, strict=False)


def encode_session(session: SessionState) -> bytes:
    """Encode a session as Tyk writes it (zero fields omitted, same names and nesting)."""
    return orjson.dumps(to_wire(session))


def clone_session(session: SessionState) -> SessionState:
    """A deep copy that shares nothing with `session` (a msgpack round trip: a few µs)."""
    return _MSGPACK_DEC.decode(_MSGPACK_ENC.encode(session))


# Fields Go writes even when zero (no omitempty/omitzero on their tags).
_ALWAYS: Final[dict[type, frozenset[str]]] = {
    RateLimitSmoothing: frozenset({"enabled", "threshold", "trigger", "step", "delay"}),
    AccessSpec: frozenset({"url", "methods"}),
    GraphqlType: frozenset({"name", "fields"}),
    EndpointMethod: frozenset({"limit"}),
    JSONRPCMethodLimit: frozenset({"name"}),
    MCPPrimitiveLimit: frozenset({"type", "name"}),
}


def to_wire(value: Any) -> Any:
    """Builtins for `value` with Go's omitzero rules applied to every Struct in it."""
    if isinstance(value, msgspec.Struct):
        keep = _ALWAYS.get(type(value), frozenset())
        out: dict[str, Any] = {}
        for name in value.__struct_fields__:
            wire = to_wire(getattr(value, name))
            if name in keep or not _is_zero(wire):
                out[name] = wire
        return out
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, dict):  # maps keep every entry, even an all-zero access right
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    return value


def _is_zero(value: Any) -> bool:
    return value is None or value is False or value == "" or value == 0 or value == [] \
        or value == {}


def _drop_nulls(value: Any, *, free_form: bool = False) -> Any:
    """Remove `null` members (Go's zero) except inside free-form maps such as meta_data."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v, free_form=free_form or k == "meta_data")
                for k, v in value.items() if free_form or v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v, free_form=free_form) for v in value if v is not None]
    return value
