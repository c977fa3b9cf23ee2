"""Sans-IO pieces of fastgate.observe: the counters' exposition (parsed back with prometheus-
client's parser), per-worker snapshot merging, stage names, the analytics record encoding (decoded
with msgpack into Tyk Pump's names and Go times), and the definition fields that drive them."""

from __future__ import annotations

import json
import os

import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgate.apidef.observe_decode import classic_observe, oas_observe
from fastgate.apidef.spec import DefinitionError
from fastgate.observe import metrics as m
from fastgate.observe.analytics import encode_record


def families(text: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def test_exposition_counts_buckets_and_refusals():
    metrics = m.Metrics()
    c = metrics.counters_for("a")
    assert metrics.counters_for("a") is c  # one list per API id, across reloads
    c[m.METHOD_SLOTS["GET"] * 6 + 2] += 3
    c[m.OTHER_METHOD * 6 + 4] += 1
    c[m.UPSTREAM_BASE + 0] += 2  # <= 0.5 ms
    c[m.UPSTREAM_BASE + m.BUCKETS - 1] += 1  # > 10 s
    c[m.UPSTREAM_SUM_US] += 20_000_000
    c[m.AUTH_ALLOWED] += 3
    metrics.refused("a", "token", 403, "Access to this API has been disallowed")
    metrics.refused("a", "post_auth", 429, "Rate limit exceeded")
    metrics.refused("a", "post_auth", 403, "Quota exceeded")
    metrics.refused("a", "token", 401, "Authorization field missing", outcome="report_only")
    found = families(metrics.exposition())
    requests = {(s.labels["method"], s.labels["status_class"]): s.value
                for s in found["fastgate_requests"].samples if s.name == "fastgate_requests_total"}
    assert requests == {("GET", "2xx"): 3, ("other", "4xx"): 1}
    hist = {s.labels.get("le"): s.value for s in found["fastgate_upstream_latency_seconds"].samples
            if s.name.endswith("_bucket")}
    assert hist["0.0005"] == 2 and hist["10.0"] == 2 and hist["+Inf"] == 3
    count = [s.value for s in found["fastgate_upstream_latency_seconds"].samples if s.name.endswith("_count")]
    total = [s.value for s in found["fastgate_upstream_latency_seconds"].samples if s.name.endswith("_sum")]
    assert count == [3] and total == [20.0]
    decisions = {(s.labels["stage"], s.labels["outcome"], s.labels["reason"]): s.value
                 for s in found["fastgate_auth_decisions"].samples}
    assert decisions[("auth", "allowed", "")] == 3
    assert decisions[("token", "report_only", "Authorization field missing")] == 1
    limits = {s.labels["kind"]: s.value for s in found["fastgate_limit_refusals"].samples}
    assert limits == {"rate": 1, "quota": 1}  # report-only refusals are not limit refusals
    assert found["fastgate_build_info"].samples[0].value == 1


def test_reasons_are_bounded_per_api():
    metrics = m.Metrics()
    for i in range(m.MAX_REASONS + 10):
        metrics.refused("a", "token", 400, f"reason {i}")
    reasons = {k[3] for k in metrics.refusals}
    assert len(reasons) == m.MAX_REASONS + 1 and "other" in reasons


def test_sibling_snapshots_are_added(tmp_path, monkeypatch):
    monkeypatch.setattr(m, "_shared_dir", str(tmp_path))
    sibling = m.Metrics()
    sibling.counters_for("a")[2] += 5
    sibling.refused("a", "token", 401, "x")
    # A living sibling (the test's parent process) and a dead one (pid 2**22 + 1 is never used).
    (tmp_path / f"{os.getppid()}.json").write_text(json.dumps(sibling.snapshot()))
    (tmp_path / f"{2**22 + 1}.json").write_text(json.dumps(sibling.snapshot()))
    mine = m.Metrics()
    mine.counters_for("a")[2] += 1
    found = families(mine.exposition())
    assert [s.value for s in found["fastgate_requests"].samples] == [6]
    assert [s.value for s in found["fastgate_auth_decisions"].samples] == [1]
    mine.publish(10.0)
    assert json.loads((tmp_path / f"{os.getpid()}.json").read_text())["apis"]["a"][2] == 1


def test_stage_names_follow_the_module():
    def stage(req):
        return None

    stage.__module__ = "fastgate.auth.jwt.stage"
    assert m.stage_name(stage) == "jwt"
    stage.__module__ = "fastgate.pipeline.post_auth"
    assert m.stage_name(stage) == "post_auth"
    stage.__module__ = "fastgate.auth.oauth2"
    assert m.stage_name(stage) == "oauth2"


class _Spec:
    api_id = "an"
    name = "An API"
    org_id = "default"
    listen_path = "/an/"
    raw = {"version_data": {"versions": {"Default": {}}}}

    class observe:
        track_paths = (("GET", "/widgets"),)


class _Session:
    tags = ["gold"]
    alias = "alice"
    oauth_client_id = ""


def test_record_encoding_uses_go_names_and_go_times():
    now = 1_764_561_600.25  # 2025-12-01 04:00:00.25 UTC
    raw = encode_record((now, 0.012, 0.01, _Spec, "GET", "gw.example", "/an/widgets", 0, b"ua/1", 200,
                         "hashed", _Session, "127.0.0.1", ("x-team-blue",)))
    rec = msgpack.unpackb(raw, raw=False)
    assert rec["TimeStamp"] == [1_764_561_600, 250_000_000]
    assert (rec["Year"], rec["Month"], rec["Day"], rec["Hour"]) == (2025, 12, 1, 4)
    assert rec["ExpireAt"][0] > rec["TimeStamp"][0] and rec["ExpireAt"][1] == 0
    assert rec["Latency"] == {"Total": 12, "Upstream": 10} and rec["RequestTime"] == 12
    assert rec["APIKey"] == "hashed" and rec["Alias"] == "alice" and rec["Tags"] == ["x-team-blue", "gold"]
    assert rec["TrackPath"] is True and rec["APIVersion"] == "Default" and rec["UserAgent"] == "ua/1"
    assert raw[:1] != b"\xd6"  # a map, and no msgpack timestamp extension anywhere
    assert b"\xd6\xff" not in raw and b"\xd7\xff" not in raw


def test_observe_fields_from_classic_and_oas():
    classic = classic_observe({"do_not_track": True, "tag_headers": ["X-Team"], "auth_report_only": True,
                               "version_data": {"versions": {"v1": {"extended_paths": {
                                   "track_endpoints": [{"path": "/w", "method": "post"}]}}}}})
    assert classic.do_not_track and classic.auth_report_only and classic.tag_headers == ("x-team",)
    assert classic.track_paths == (("POST", "/w"),)
    oas = oas_observe({"paths": {"/w": {"get": {"operationId": "getW"}}},
                       "x-tyk-api-gateway": {"server": {"authentication": {"reportOnly": True}},
                                             "middleware": {"global": {"trafficLogs": {"enabled": False,
                                                                                       "tagHeaders": ["X-A"]}},
                                                            "operations": {"getW": {"trackEndpoint": {"enabled": True}}}}}})
    assert oas.auth_report_only and oas.do_not_track and oas.tag_headers == ("x-a",)
    assert oas.track_paths == (("GET", "/w"),)
    with pytest.raises(DefinitionError, match="auth_report_only"):
        classic_observe({"auth_report_only": "yes"})
    with pytest.raises(DefinitionError, match="tag_headers"):
        classic_observe({"tag_headers": "X-Team"})


def test_latency_bucket_is_the_first_bound_not_below_the_value():
    """``counting._bucket`` is a written-out search (cheap when compiled): it must agree with
    the bounds the exposition prints, at each bound, just above it, and beyond the last."""
    import bisect

    from fastgate.observe.counting import BUCKETS, LATENCY_BOUNDS, _bucket

    values = [0.0, -1.0, 1e-9, 20.0, 1e9]
    for bound in LATENCY_BOUNDS:
        values += [bound, bound * 0.999, bound * 1.001]
    for value in values:
        assert _bucket(value) == bisect.bisect_left(LATENCY_BOUNDS, value), value
    assert _bucket(1e9) == BUCKETS - 1


def test_store_round_trip_lands_in_the_first_bucket_not_below_it():
    from fastgate.store import stats

    for seconds, bucket in [(0.0, 0), (0.0001, 0), (0.00011, 1), (0.001, 3), (2.5, 13), (2.6, 14), (60.0, 14)]:
        counters = stats.new_stats()
        stats.count_trip(counters, stats.LIMITS, seconds)
        base = stats.LIMITS * stats.STRIDE
        assert counters[base + bucket] == 1, seconds
        assert sum(counters[base:base + stats.BUCKETS]) == 1
        assert counters[base + stats.SUM_US] == int(seconds * 1e6)
