"""Policy application, ported from Tyk's internal/policy/apply_test.go on Tyk's own fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import msgspec
import orjson
import pytest

from fastgate.sessions.policies import (
    Policy, PolicyPartitions, decode_policy, decode_policy_file, encode_policy, load_policy_dir,
)
from fastgate.sessions.policy_apply import (
    MIXED_PER_API, PolicyApplier, PolicyError, apply_policies, expiry_for_new_key, merge_allowed_urls,
    merge_endpoint_limits,
)
from fastgate.sessions.session import (
    AccessDefinition, AccessSpec, APILimit, Endpoint, EndpointMethod, FieldAccessDefinition,
    FieldLimits, GraphqlType, RateLimit, SessionState, encode_session,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "tyk" / "policies"  # Tyk's own, see its README
# Decoded the way Tyk's test decodes it: map keys are lookup ids, `id` fields stay as written.
POLICIES = msgspec.json.decode((SAMPLES / "internal_policy_testdata_policies.json").read_bytes(),
                               type=dict[str, Policy])


def apply(names: list[str], session: SessionState | None = None) -> SessionState | PolicyError:
    s = session if session is not None else SessionState()
    s.apply_policies = list(names)
    return apply_policies(s, POLICIES, org_id="")


def applied(names: list[str], session: SessionState | None = None) -> SessionState:
    result = apply(names, session)
    assert isinstance(result, SessionState), result
    return result


def both_orders(names: list[str]) -> list[list[str]]:
    return [names, names[::-1]]


def lim(**kw: float) -> AccessDefinition:
    return AccessDefinition(limit=APILimit(**kw))  # type: ignore[arg-type]


def ep(path: str, method: str, rate: float, per: float = 0) -> Endpoint:
    return Endpoint(path=path, methods=[EndpointMethod(name=method, limit=RateLimit(rate=rate,
                                                                                  per=per))])


# -- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("names", "reason", "text"), [
    (["nonexistent"], "not_found", 'policy not found: "nonexistent"'),
    (["difforg"], "different_org", "attempting to apply policy from different organisation"),
    (["per_api_and_partitions"], "per_api_with_partitions",
     "cannot apply policy per_api_and_partitions which has per_api and any of partitions set"),
    (["per_api_and_some_partitions"], "per_api_with_partitions",
     "cannot apply policy per_api_and_some_partitions which has per_api and any of partitions"),
    (["per_api_with_api_d", "quota1"], "mixed_per_api", MIXED_PER_API),
    (["rate1", "per_api_with_api_d"], "mixed_per_api", MIXED_PER_API),
    (["nonexistent", "also-missing"], "no_valid_policies",
     "key has no valid policies to be applied"),
])
def test_errors_carry_tyks_messages(names: list[str], reason: str, text: str) -> None:
    result = apply(names)
    assert isinstance(result, PolicyError)
    assert result.reason == reason and text in str(result)


def test_org_is_only_checked_when_given() -> None:
    s = SessionState(apply_policies=["difforg", "nonpart1"])
    assert isinstance(apply_policies(s, POLICIES, org_id=None), SessionState)
    assert isinstance(apply_policies(s, POLICIES, org_id="default"), PolicyError)


def test_no_policies_and_one_policy() -> None:
    assert applied([]) == SessionState()
    assert applied(["nonpart1"]).access_rights == {"a": AccessDefinition()}


def test_stored_session_and_policies_are_never_mutated() -> None:
    stored = SessionState(apply_policies=["per-path2", "per-path1"], rate=20, tags=["k"])
    before, policy_before = encode_session(stored), encode_policy(POLICIES["per-path2"])
    result = apply_policies(stored, POLICIES, org_id="")
    assert isinstance(result, SessionState) and result is not stored
    assert encode_session(stored) == before
    assert encode_policy(POLICIES["per-path2"]) == policy_before
    assert POLICIES["per-path2"].access_rights["a"].allowed_urls[0] == AccessSpec(
        url="/user", methods=["GET"])


# -- non-partitioned and quota partitions -------------------------------------------------------

def test_unknown_policy_among_several_is_skipped_and_scopes_split() -> None:
    s = applied(["nonpart1", "nonpart2", "nonexistent"])
    assert s.access_rights == {"a": AccessDefinition(allowance_scope="p1"),
                               "b": AccessDefinition(allowance_scope="p2")}


def test_one_policy_for_two_apis_has_no_scopes() -> None:
    assert applied(["nonpart3"]).access_rights == {"a": AccessDefinition(),
                                                   "b": AccessDefinition()}


@pytest.mark.parametrize(("names", "quota"), [
    (["unlimited-quota"], -1), (["quota1"], 2), (["quota1", "quota2"], 3),
    (["quota5", "quota4"], 4), (["quota3"], 3),
])
def test_larger_quota_wins(names: list[str], quota: int) -> None:
    assert applied(names).quota_max == quota


def test_unlimited_quota_beats_any_value() -> None:
    for names in both_orders(["quota2", "unlimited-quota"]):
        s = applied(names)
        assert s.quota_max == -1 and s.access_rights["a"].limit.quota_max == -1


def test_quota_partition_alone_grants_no_access() -> None:
    s = applied(["quota4", "nonpart1"])
    assert s.quota_max == 3
    assert s.access_rights == {"a": AccessDefinition()}  # 'b' came only from a quota partition


# -- rate limit, complexity, throttle partitions -----------------------------------------------

@pytest.mark.parametrize(("names", "session", "rate"), [
    (["rate1"], None, 3),
    (["rate1", "rate2"], None, 4),
    (["rate5", "rate4"], None, 10),
    (["rate4", "rate5"], SessionState(rate=20), 10),  # the key's own rate is cleared first
    (["rate-no-partition"], SessionState(rate=20), 12),
])
def test_more_permissive_rate_wins(names: list[str], session: SessionState | None,
                                   rate: float) -> None:
    assert applied(names, session).rate == rate


def test_unlimited_rate() -> None:
    assert applied(["unlimited-rate"]).rate <= 0


@pytest.mark.parametrize(("names", "depth"), [
    (["unlimitedComplexity"], -1), (["complexity1"], 2), (["complexity1", "complexity2"], 3),
])
def test_larger_query_depth_wins(names: list[str], depth: int) -> None:
    assert applied(names).max_query_depth == depth


def test_throttle_from_policy() -> None:
    s = applied(["throttle1"])
    assert (s.throttle_interval, s.throttle_retry_limit) == (9, 99)


# -- ACL partitions -----------------------------------------------------------------------------

def test_acl_partitions_union_apis() -> None:
    assert applied(["acl1"]).access_rights == {"a": AccessDefinition()}
    assert applied(["acl1", "acl2"]).access_rights == {"a": AccessDefinition(),
                                                       "b": AccessDefinition()}


def test_acl_for_a_and_rate_for_a_b_grants_only_a() -> None:
    for names in both_orders(["acl1", "rate-for-a-b"]):
        assert applied(names).access_rights == {"a": lim(rate=4, per=1)}


def test_acl_for_a_b_with_individual_rates() -> None:
    s = applied(["acl-for-a-b", "rate-for-a", "rate-for-b"])
    assert s.access_rights == {"a": lim(rate=4, per=1), "b": lim(rate=2, per=1)}


def test_policy_acl_replaces_the_keys_own_rights() -> None:
    own = SessionState(access_rights={"c": AccessDefinition()})
    assert applied(["acl-for-a-b"], own).access_rights == {"a": AccessDefinition(),
                                                           "b": AccessDefinition()}


def test_partitions_combine_into_one_api() -> None:
    for names in both_orders(["quota1", "rate3"]):  # rate3 has no rights: a "master" policy
        s = applied(names)
        assert (s.quota_max, s.rate, s.per) == (2, 4, 4)
        assert s.access_rights == {"a": lim(rate=4, per=4, quota_max=2)}


def test_plain_and_partitioned_policies_mix() -> None:
    assert isinstance(apply(["nonpart1", "quota1"]), SessionState)


# -- is_inactive, tags, meta data, flags --------------------------------------------------------

def test_key_without_policies_keeps_its_inactive_flag() -> None:
    assert applied([], SessionState(is_inactive=True)).is_inactive


@pytest.mark.parametrize(("names", "session", "inactive"), [
    (["tags1", "inactive1"], None, True),
    (["inactive1", "inactive2"], None, True),
    (["tags1", "tags2"], SessionState(is_inactive=True), False),  # policies decide
])
def test_inactive_is_or_of_policies(names: list[str], session: SessionState | None,
                                    inactive: bool) -> None:
    assert applied(names, session).is_inactive is inactive


def test_tags_are_unioned_with_the_keys() -> None:
    s = applied(["tags1", "tags2"], SessionState(tags=["key-tag"]))
    assert sorted(s.tags) == ["key-tag", "tagA", "tagX", "tagY"]


def test_meta_data_flags_and_post_expiry_are_copied() -> None:
    pols = {
        "m1": Policy(id="m1", access_rights={"api": AccessDefinition()}, hmac_enabled=True,
                     meta_data={"tier": "gold", "n": 1}, post_expiry_action="delete",
                     post_expiry_grace_period=3600, last_updated="1700000005"),
        "m2": Policy(id="m2", access_rights={"api": AccessDefinition()},
                     enable_http_signature_validation=True, meta_data={"tier": "silver"},
                     post_expiry_action=""),
    }
    key = SessionState(apply_policies=["m1", "m2"], meta_data={"own": True},
                       last_updated="1700000000")
    s = apply_policies(key, pols)
    assert isinstance(s, SessionState)
    assert s.meta_data == {"own": True, "tier": "silver", "n": 1}
    assert s.hmac_enabled and s.enable_http_signature_validation
    assert (s.post_expiry_action, s.post_expiry_grace_period) == ("delete", 3600)
    assert s.last_updated == "1700000005"


def test_custom_policies_in_meta_data_replace_lookups() -> None:
    # Tyk's TestApplyRateLimits_FromCustomPolicies / TestApplyACL_FromCustomPolicies.
    rate_pol = {"id": "pol1", "partitions": {"rate_limit": True}, "rate": 8, "per": 1,
                "access_rights": {"a": {}}}
    acl_pol = {"id": "pol2", "partitions": {"acl": True}, "rate": 10, "per": 1,
               "access_rights": {"a": {"allowed_urls": [
                   {"url": "/user", "methods": ["GET", "POST"]},
                   {"url": "/companies", "methods": ["GET", "POST"]}]}}}
    for order in ([rate_pol, acl_pol], [acl_pol, rate_pol]):
        s = apply_policies(SessionState(meta_data={"policies": order}), {})
        assert isinstance(s, SessionState)
        assert s.rate == 8
        assert [u.url for u in s.access_rights["a"].allowed_urls] == ["/user", "/companies"]
    both_rate = [dict(rate_pol, partitions={"rate_limit": True, "acl": True}),
                 {"id": "pol2", "partitions": {"rate_limit": True}, "rate": 10, "per": 1,
                  "access_rights": {"a": {}}}]
    s = apply_policies(SessionState(meta_data={"policies": both_rate}), {})
    assert isinstance(s, SessionState) and s.rate == 10


# -- per_api ------------------------------------------------------------------------------------

def test_per_api_keeps_each_apis_limit_and_scope() -> None:
    s = applied(["per_api_and_no_other_partitions"])
    assert s.access_rights == {
        "c": AccessDefinition(limit=APILimit(rate=2000, per=60, quota_max=-1),
                              allowance_scope="c"),
        "d": AccessDefinition(limit=APILimit(rate=20, per=1, quota_max=1000,
                                             quota_renewal_rate=3600), allowance_scope="d"),
    }


def test_per_api_policies_for_same_api_take_best_values() -> None:
    s = applied(["per_api_and_no_other_partitions", "per_api_with_api_d", "per_api_with_api_c"])
    assert s.access_rights["c"] == AccessDefinition(
        limit=APILimit(rate=3000, per=10, quota_max=-1), allowance_scope="c")
    assert s.access_rights["d"] == AccessDefinition(
        limit=APILimit(rate=200, per=10, quota_max=5000, quota_renewal_rate=3600),
        allowance_scope="d")


def test_per_api_empty_limit_uses_policy_limit_scoped_to_policy() -> None:
    s = applied(["per_api_with_limit_set_from_policy"])
    assert s.access_rights["e"] == AccessDefinition(
        limit=APILimit(rate=300, per=1, quota_max=-1),
        allowance_scope="per_api_with_limit_set_from_policy")
    assert s.access_rights["d"].allowance_scope == "d"


def test_per_api_limits_override_keeps_more_permissive_rate() -> None:
    s = applied(["per_api_with_limit_set_from_policy", "per_api_with_api_d",
                 "per_api_with_higher_rate_on_api_d"])
    assert s.access_rights["d"] == AccessDefinition(
        limit=APILimit(rate=200, per=10, quota_max=5000, quota_renewal_rate=3600),
        allowance_scope="d")


# -- GraphQL and allowed URLs -------------------------------------------------------------------

def test_allowed_urls_merge_methods_per_url() -> None:
    s = applied(["per-path2", "per-path1"])
    assert s.access_rights == {
        "a": AccessDefinition(allowed_urls=[AccessSpec(url="/user", methods=["GET", "POST"]),
                                            AccessSpec(url="/companies",
                                                       methods=["GET", "POST"])]),
        "b": AccessDefinition(allowed_urls=[AccessSpec(url="/", methods=["PUT"])]),
    }


def test_graphql_types_merge_by_name() -> None:
    want = [GraphqlType(name="Country", fields=["code", "name", "phone"]),
            GraphqlType(name="Person", fields=["name", "height", "mass"])]
    assert applied(["restricted-types1", "restricted-types2"]).access_rights == {
        "a": AccessDefinition(restricted_types=want)}
    assert applied(["allowed-types1", "allowed-types2"]).access_rights == {
        "a": AccessDefinition(allowed_types=want, restricted_types=[
            GraphqlType(name="Dog", fields=["name", "breed", "country"]),
            GraphqlType(name="Cat", fields=["name", "country"])])}


def test_disabled_introspection_stays_disabled() -> None:
    s = applied(["introspection-disabled", "introspection-enabled"])
    assert s.access_rights == {"a": AccessDefinition(disable_introspection=True)}


def test_field_depth_limits_merge_larger_wins() -> None:
    s = applied(["field-level-depth-limit1", "field-level-depth-limit2"])
    got = [(f.type_name, f.field_name, f.limits.max_query_depth)
           for f in s.access_rights["graphql-api"].field_access_rights]
    assert got == [("Query", "people", 4), ("Mutation", "putPerson", -1),
                   ("Query", "countries", 3), ("Query", "continents", 4)]
    assert s.access_rights["graphql-api"].field_access_rights[0] == FieldAccessDefinition(
        type_name="Query", field_name="people", limits=FieldLimits(max_query_depth=4))


# -- endpoint rate limits -----------------------------------------------------------------------

RL_VECTORS = orjson.loads(
    (SAMPLES / "internal_policy_testdata_apply_endpoint_rl.json").read_bytes())


@pytest.mark.parametrize("case", RL_VECTORS, ids=[c["name"] for c in RL_VECTORS])
def test_endpoint_limit_merge_vectors(case: dict[str, list[object]]) -> None:
    def decode(key: str) -> list[Endpoint]:
        return msgspec.convert(case.get(key, []), list[Endpoint])
    got = merge_endpoint_limits(decode("policyEP"), decode("currEP"))
    assert sorted(msgspec.to_builtins(got), key=repr) == \
        sorted(msgspec.to_builtins(decode("expected")), key=repr)


GET_POST = [ep("/get", "GET", -1), ep("/post", "POST", 300, 10)]


def test_per_api_and_per_endpoint_policies() -> None:
    for names in both_orders(["per_api_with_limit_set_from_policy",
                              "per_api_with_endpoint_limits_on_d_and_e"]):
        s = applied(names)
        assert s.access_rights == {
            "e": AccessDefinition(limit=APILimit(rate=500, per=1, quota_max=-1),
                                  allowance_scope="per_api_with_endpoint_limits_on_d_and_e",
                                  endpoints=GET_POST),
            "d": AccessDefinition(limit=APILimit(rate=200, per=10, quota_max=5000,
                                                 quota_renewal_rate=3600),
                                  allowance_scope="d", endpoints=GET_POST),
        }


def test_overlapping_endpoint_limits_take_higher_rate() -> None:
    for names in both_orders(["per_api_with_limit_set_from_policy",
                              "per_api_with_endpoint_limits_on_d_and_e",
                              "per_endpoint_limits_different_on_api_d"]):
        s = applied(names)
        assert sorted(s.access_rights["d"].endpoints, key=lambda e: e.path) == [
            ep("/anything", "PUT", 500, 10), ep("/get", "GET", -1), ep("/post", "POST", 400, 11)]
        assert sorted(s.access_rights["e"].endpoints, key=lambda e: e.path) == GET_POST
        assert s.access_rights["e"].limit == APILimit(rate=500, per=1, quota_max=-1)
        assert s.access_rights["d"].limit == APILimit(rate=200, per=10, quota_max=5000,
                                                      quota_renewal_rate=3600)


def test_endpoint_limits_need_the_rate_partition() -> None:
    assert applied(["endpoint_rate_limits_on_acl_partition_only"]).access_rights["d"] \
        .endpoints == []
    for names in both_orders(["endpoint_rate_limits_on_acl_partition_only",
                              "endpoint_rate_limits_on_quota_partition_only"]):
        s = applied(names)
        assert "d" in s.access_rights and s.access_rights["d"].endpoints == []


@pytest.mark.parametrize(("names", "want_d", "want_e"), [
    (["api_d_get_endpoint_rl_1_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_2_configure_on_non_partitioned_policy"],
     [ep("/get", "GET", 20, 60)], None),
    (["api_d_get_endpoint_rl_1_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_2_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_3_configure_on_non_partitioned_policy"],
     [ep("/get", "GET", -1)], None),
    (["api_d_get_endpoint_rl_1_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_2_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_3_configure_on_non_partitioned_policy",
      "api_d_post_endpoint_rl_1_configure_on_non_partitioned_policy"],
     [ep("/get", "GET", -1), ep("/post", "POST", 20, 60)], None),
    (["api_d_get_endpoint_rl_1_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_2_configure_on_non_partitioned_policy",
      "api_d_get_endpoint_rl_3_configure_on_non_partitioned_policy",
      "api_d_post_endpoint_rl_1_configure_on_non_partitioned_policy",
      "api_e_get_endpoint_rl_1_configure_on_non_partitioned_policy"],
     [ep("/get", "GET", -1), ep("/post", "POST", 20, 60)], [ep("/get", "GET", 100, 60)]),
])
def test_combined_endpoint_limits(names: list[str], want_d: list[Endpoint],
                                  want_e: list[Endpoint] | None) -> None:
    for order in both_orders(names):
        s = applied(order)
        assert sorted(s.access_rights["d"].endpoints, key=lambda e: e.path) == want_d
        if want_e is not None:
            assert s.access_rights["e"].endpoints == want_e


def test_merge_allowed_urls_keeps_first_seen_order() -> None:
    got = merge_allowed_urls([AccessSpec(url="/b", methods=["GET"])],
                             [AccessSpec(url="/a", methods=["PUT"]),
                              AccessSpec(url="/b", methods=["GET", "POST"])])
    assert got == [AccessSpec(url="/b", methods=["GET", "POST"]),
                   AccessSpec(url="/a", methods=["PUT"])]
    assert merge_allowed_urls([], []) == []


# -- reference §4.3 / §17 scenario 15: allowance scopes of a multi-policy key ---------------------

def test_multi_policy_key_gets_one_counter_per_policy() -> None:
    pols = {
        "p1": Policy(id="p1", org_id="default", rate=1000, per=1, quota_max=50,
                     quota_renewal_rate=3600, access_rights={"api1": AccessDefinition()}),
        "p2": Policy(id="p2", org_id="default", rate=100, per=1, quota_max=100,
                     quota_renewal_rate=3600,
                     access_rights={"api2": AccessDefinition(), "api3": AccessDefinition()}),
    }
    s = apply_policies(SessionState(org_id="default", apply_policies=["p1", "p2"]), pols,
                       org_id="default")
    assert isinstance(s, SessionState)
    r = s.access_rights
    assert (r["api1"].allowance_scope, r["api1"].limit.quota_max, r["api1"].limit.rate) == \
        ("p1", 50, 1000)
    assert r["api2"].allowance_scope == r["api3"].allowance_scope == "p2"
    assert (r["api2"].limit.quota_max, r["api2"].limit.rate) == (100, 100)


def test_key_without_policies_scopes_its_own_limits_per_api() -> None:
    key = SessionState(access_rights={"x": lim(rate=5, per=1), "y": AccessDefinition()})
    s = applied([], key)
    assert s.access_rights["x"].allowance_scope == "x"
    assert s.access_rights["y"].allowance_scope == ""


def test_quota_renews_of_the_key_is_kept() -> None:
    key = SessionState(access_rights={"a": lim(quota_max=2, quota_renews=1_700_000_000)})
    assert applied(["quota1"], key).access_rights["a"].limit.quota_renews == 1_700_000_000


def test_key_expires_in_sets_expiry_of_new_keys() -> None:
    pols = {"short": Policy(id="short", key_expires_in=60), "none": Policy(id="none")}
    assert expiry_for_new_key(SessionState(apply_policies=["none", "short"]), pols, 1000) == 1060
    assert expiry_for_new_key(SessionState(apply_policies=["none"], expires=5), pols, 1000) == 5


# -- decoding and loading -----------------------------------------------------------------------

def test_decode_single_policy_file_with_unknown_fields() -> None:
    pols, problems = decode_policy_file(
        (SAMPLES / "ci_tests_tracing_policies_jwt-test-policy.json").read_bytes(), "ignored")
    assert problems == []
    p = pols["jwt-test-policy"]
    assert (p.org_id, p.rate, p.per, p.quota_max, p.active) == ("default", 1000, 60, -1, True)
    assert p.access_rights["jwt-test-api"].versions == ["Default"]


def test_decode_map_file_map_keys_win() -> None:
    pols, problems = decode_policy_file((SAMPLES / "policies_policies.json").read_bytes())
    assert problems == [] and list(pols) == ["default"]
    assert pols["default"].quota_renewal_rate == 60
    renamed, _ = decode_policy_file(b'{"key-id": {"id": "field-id", "rate": 1}}')
    assert list(renamed) == ["key-id"] and renamed["key-id"].id == "key-id"


def test_decode_tolerates_go_nulls_and_keeps_mongo_id() -> None:
    p = decode_policy(b'{"_id": "5e9d", "id": "x", "tags": null, "access_rights": '
                      b'{"a": {"limit": null, "versions": null}}, "smoothing": null}')
    assert p.mid == "5e9d" and p.tags == [] and p.access_rights["a"] == AccessDefinition()
    assert orjson.loads(encode_policy(p))["_id"] == "5e9d"


@pytest.mark.parametrize(("data", "problem"), [
    (b"not json", "(json):"),
    (b"[1, 2]", "(top level): expected an object"),
    (b'{"p": {"rate": "fast"}}', "p.rate: Expected `int | float`, got `str`"),
    (b'{"p": {"access_rights": {"a": {"limit": {"quota_max": 1.5}}}}}',
     "p.access_rights[...].limit.quota_max: Expected `int`, got `float`"),
    (b'{"bad id!": {"rate": 1}}', "bad id!.id: invalid policy id"),
    (b'{"p": 5}', "p: expected a policy object"),
    (b'{"rate": 1}', "id: missing"),
])
def test_decode_problems_name_the_field(data: bytes, problem: str) -> None:
    pols, problems = decode_policy_file(data)
    assert pols == {} and len(problems) == 1 and problem in problems[0]


def test_unsafe_ids_allowed_on_request() -> None:
    pols, problems = decode_policy_file(b'{"a b": {}}', allow_unsafe_ids=True)
    assert problems == [] and list(pols) == ["a b"]


def test_load_policy_dir(tmp_path: Path) -> None:
    (tmp_path / "gold.json").write_bytes(b'{"name": "Gold", "rate": 10, "per": 1}')
    (tmp_path / "many.json").write_bytes(b'{"silver": {"rate": 5}, "gold": {"rate": 1}}')
    (tmp_path / "broken.json").write_bytes(b'{"x": {"partitions": {"acl": "yes"}}}')
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    pols, problems = load_policy_dir(tmp_path)
    assert set(pols) == {"gold", "silver"}
    assert pols["gold"].name == "Gold"  # gold.json comes before many.json
    assert problems == [
        f"{tmp_path / 'broken.json'}: x.partitions.acl: Expected `bool`, got `str`",
        f"{tmp_path / 'many.json'}: gold.id: duplicate policy id, first one kept",
    ]
    assert load_policy_dir(tmp_path / "absent")[1][0].endswith("(policy_path): not a directory")


def test_samples_dir_loads_every_policy_file() -> None:
    pols, problems = load_policy_dir(SAMPLES)
    assert {"default", "jwt-test-policy", "multiauth-test-policy", "nonpart1"} <= set(pols)
    # the endpoint-limit vectors are a JSON array: reported, not loaded
    assert problems == [f"{SAMPLES / 'internal_policy_testdata_apply_endpoint_rl.json'}: "
                        "(top level): expected an object, a policy or a map of id to policy"]


def test_partitions_enabled_ignores_per_api() -> None:
    assert not PolicyPartitions(per_api=True).enabled()
    assert PolicyPartitions(complexity=True).enabled()


def _timing(fn: Callable[[], object], n: int = 2000) -> float:
    import time
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def test_applier_remembers_results_per_session_object() -> None:
    applier = PolicyApplier(POLICIES, max_entries=2)
    key = SessionState(apply_policies=["quota1"])
    first = applier.apply(key, "")
    assert isinstance(first, SessionState) and first.quota_max == 2
    assert applier.apply(key, "") is first  # same stored object: same result object
    assert applier.apply(key, "other-org") is not first  # org is part of the memo key
    assert isinstance(applier.apply(key, "other-org"), PolicyError)
    changed = SessionState(apply_policies=["quota2"])  # a new stored version of the key
    assert applier.apply(changed, "").quota_max == 3  # type: ignore[union-attr]
    assert len(applier._memo) == 2  # bounded
    assert applier.apply(key, "") is not first  # evicted, recomputed (and equal)
    assert applier.apply(key, "") == first


def test_apply_is_cheap_enough_for_every_request() -> None:
    key = SessionState(apply_policies=["per-path2", "per-path1"])
    per_call = _timing(lambda: apply_policies(key, POLICIES, org_id=""))
    assert per_call < 500e-6, f"apply_policies took {per_call * 1e6:.0f} µs"
    applier = PolicyApplier(POLICIES)
    memo_call = _timing(lambda: applier.apply(key, ""))
    assert memo_call < per_call / 10, (memo_call, per_call)
