"""The session object: Tyk's JSON in, Tyk's JSON out, and the helpers the pipeline uses."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from fastgate.sessions.session import (
    AccessDefinition, AccessSpec, APILimit, BasicAuthData, Endpoint, EndpointMethod, RateLimit,
    RateLimitSmoothing, SessionState, clone_session, decode_session, encode_session,
)

# Verbatim from Tyk's repository (ci/tests/tracing/keys/keys.json): note `"limit": null`.
TYK_CI_KEY = b"""{
    "last_check": 0, "allowance": 1, "rate": 1, "per": 6000,
    "throttle_interval": -1, "throttle_retry_limit": -1, "expires": 0,
    "quota_max": -1, "quota_renews": 1587524070, "quota_remaining": -1,
    "quota_renewal_rate": -1,
    "access_rights": {"4": {"api_name": "RatelimitAPI", "api_id": "4", "versions": ["Default"],
                            "allowed_urls": [], "limit": null, "allowance_scope": ""}},
    "org_id": "default"
}"""

# The shape Tyk 5.x (before omitzero) writes: every field, nulls for empty slices and maps.
TYK5_SESSION = b"""{
    "last_check": 0, "allowance": 0, "rate": 1000, "per": 60, "throttle_interval": 0,
    "throttle_retry_limit": 0, "max_query_depth": 0, "date_created": "2024-05-01T10:00:00.5Z",
    "expires": 0, "quota_max": 100, "quota_renews": 1714560000, "quota_remaining": 100,
    "quota_renewal_rate": 3600,
    "access_rights": {"api1": {"api_name": "API 1", "api_id": "api1", "versions": ["Default"],
        "allowed_urls": [{"url": "^/users", "methods": ["GET"]}], "restricted_types": null,
        "allowed_types": null, "limit": {"rate": 10, "per": 1, "throttle_interval": 0,
        "throttle_retry_limit": 0, "max_query_depth": 0, "quota_max": 5, "quota_renews": 0,
        "quota_remaining": 5, "quota_renewal_rate": 60, "set_by": ""},
        "field_access_rights": null, "disable_introspection": false, "allowance_scope": "api1",
        "endpoints": null}},
    "org_id": "default", "oauth_client_id": "", "oauth_keys": null, "certificate": "",
    "basic_auth_data": {"password": "", "hash_type": ""}, "jwt_data": {"secret": ""},
    "hmac_enabled": false, "enable_http_signature_validation": false, "hmac_string": "",
    "rsa_certificate_id": "", "is_inactive": false, "apply_policy_id": "",
    "apply_policies": null, "data_expires": 0, "monitor": {"trigger_limits": null},
    "enable_detailed_recording": false, "meta_data": {"team": "blue", "note": null},
    "tags": null, "alias": "alice", "last_updated": "1714550000", "id_extractor_deadline": 0,
    "session_lifetime": 0, "smoothing": null, "some_future_field": {"x": 1}
}"""


def test_decodes_tyk_ci_key_with_null_limit() -> None:
    s = decode_session(TYK_CI_KEY)
    assert (s.rate, s.per, s.quota_max, s.quota_renews) == (1, 6000, -1, 1587524070)
    right = s.access_rights["4"]
    assert right.api_name == "RatelimitAPI" and right.versions == ["Default"]
    assert right.limit == APILimit() and right.limit.is_empty()


def test_decodes_tyk5_session_with_nulls_and_unknown_fields() -> None:
    s = decode_session(TYK5_SESSION)
    right = s.access_rights["api1"]
    assert right.allowed_urls == [AccessSpec(url="^/users", methods=["GET"])]
    assert right.restricted_types == [] and right.endpoints == []
    assert right.limit.quota_max == 5 and right.allowance_scope == "api1"
    assert s.apply_policies == [] and s.tags == [] and s.oauth_keys == {}
    assert s.monitor.trigger_limits == []
    assert s.meta_data == {"team": "blue", "note": None}  # free-form: nulls kept
    assert s.date_created == "2024-05-01T10:00:00.5Z" and s.alias == "alice"


def test_encoding_omits_zero_fields_like_tyk_omitzero() -> None:
    s = decode_session(TYK5_SESSION)
    wire = orjson.loads(encode_session(s))
    for gone in ("last_check", "allowance", "throttle_interval", "basic_auth_data", "jwt_data",
                 "monitor", "oauth_keys", "tags", "smoothing", "hmac_enabled", "some_future_field"):
        assert gone not in wire
    assert wire["rate"] == 1000 and isinstance(wire["rate"], int)
    assert wire["access_rights"]["api1"]["limit"] == {
        "rate": 10, "per": 1, "quota_max": 5, "quota_remaining": 5, "quota_renewal_rate": 60}
    assert "set_by" not in wire["access_rights"]["api1"]["limit"]  # Go's json:"-"
    assert encode_session(SessionState()) == b"{}"


def test_encoding_keeps_fields_go_always_writes() -> None:
    s = SessionState(access_rights={
        "a": AccessDefinition(),  # an empty access right is still a grant: the entry stays
        "b": AccessDefinition(allowed_urls=[AccessSpec(url="/x")],
                              endpoints=[Endpoint(path="/p",
                                                  methods=[EndpointMethod(name="GET")])]),
    }, smoothing=RateLimitSmoothing(enabled=True))
    wire = orjson.loads(encode_session(s))
    assert wire["access_rights"]["a"] == {}
    assert wire["access_rights"]["b"]["allowed_urls"] == [{"url": "/x", "methods": []}]
    assert wire["access_rights"]["b"]["endpoints"] == [
        {"path": "/p", "methods": [{"name": "GET", "limit": {}}]}]
    assert wire["smoothing"] == {"enabled": True, "threshold": 0, "trigger": 0, "step": 0,
                                 "delay": 0}


def test_round_trip_is_lossless() -> None:
    s = decode_session(TYK5_SESSION)
    assert decode_session(encode_session(s)) == s
    fractional = SessionState(rate=2.5, per=0.5, basic_auth_data=BasicAuthData(
        password="$2a$10$x", hash_type="bcrypt"))
    again = decode_session(encode_session(fractional))
    assert (again.rate, again.per, again.basic_auth_data.hash_type) == (2.5, 0.5, "bcrypt")


def test_malformed_json_raises_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_session(b'{"rate": ')
    with pytest.raises(msgspec.DecodeError):
        decode_session(b'{"access_rights": []}')


def test_clone_shares_nothing() -> None:
    s = decode_session(TYK5_SESSION)
    c = clone_session(s)
    c.access_rights["api1"].limit.quota_max = 999
    c.access_rights["api1"].allowed_urls[0].methods.append("POST")
    c.meta_data["team"] = "red"
    assert s.access_rights["api1"].limit.quota_max == 5
    assert s.access_rights["api1"].allowed_urls[0].methods == ["GET"]
    assert s.meta_data["team"] == "blue"


def test_policy_ids_fall_back_to_deprecated_single_policy() -> None:
    assert SessionState(apply_policies=["p1", "p2"], apply_policy_id="old").policy_ids() == \
        ["p1", "p2"]
    assert SessionState(apply_policy_id="old").policy_ids() == ["old"]
    assert SessionState().policy_ids() == []


def test_limit_for_api_follows_tyk_access_rules() -> None:
    root = SessionState(rate=5, per=1, quota_max=10)
    limit, scope, endpoints = root.limit_for_api("anything")  # type: ignore[misc]
    assert (limit.rate, limit.quota_max, scope, endpoints) == (5, 10, "", [])
    eps = [Endpoint(path="/x", methods=[EndpointMethod(name="GET", limit=RateLimit(rate=1,
                                                                                 per=1))])]
    s = SessionState(rate=5, per=1, access_rights={
        "own": AccessDefinition(limit=APILimit(rate=50, per=1), allowance_scope="pol",
                                endpoints=eps),
        "inherit": AccessDefinition(),
    })
    assert s.limit_for_api("other") is None  # listed rights: an unlisted API is refused
    limit, scope, endpoints = s.limit_for_api("own")  # type: ignore[misc]
    assert (limit.rate, scope, endpoints) == (50, "pol", eps)
    limit, scope, _ = s.limit_for_api("inherit")  # type: ignore[misc]
    assert (limit.rate, scope) == (5, "")


def test_expiry() -> None:
    assert not SessionState(expires=0).is_expired(2e9)
    assert not SessionState(expires=-1).is_expired(2e9)
    assert SessionState(expires=100).is_expired(101)
    assert not SessionState(expires=100).is_expired(100)


@pytest.mark.parametrize(("session", "kwargs", "want"), [
    (SessionState(session_lifetime=60), {}, 60),
    (SessionState(), {"fallback": 30}, 30),
    (SessionState(session_lifetime=60), {"force_global": True, "global_lifetime": 5}, 5),
    (SessionState(session_lifetime=60, expires=1300), {"respect_key_expiration": True,
                                                       "now": 1000}, 300),
    (SessionState(session_lifetime=600, expires=1300), {"respect_key_expiration": True,
                                                        "now": 1000}, 600),
    (SessionState(expires=1300, post_expiry_action="delete"), {"now": 1000}, 300),
    (SessionState(expires=900, post_expiry_action="delete"), {"now": 1000}, 1),
    (SessionState(expires=1300, post_expiry_action="retain", post_expiry_grace_period=50),
     {"now": 1000}, 350),
    (SessionState(expires=1300, post_expiry_action="retain", post_expiry_grace_period=-1),
     {"now": 1000}, -1),
    (SessionState(), {}, 0),
])
def test_lifetime_follows_tyk_precedence(session: SessionState, kwargs: dict[str, object],
                                         want: int) -> None:
    assert session.lifetime(**kwargs) == want  # type: ignore[arg-type]
