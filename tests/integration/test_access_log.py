"""The optional access log: one JSON line per response, never a credential or a query string."""

from __future__ import annotations

import json
import time

import requests

from tests.kit.apis import classic_api


def test_access_log_lines_without_credentials(make_gateway, upstream, tmp_path):
    log_path = tmp_path / "access.log"
    gw = make_gateway(
        [classic_api("k", "/k/", upstream.url), classic_api("p", "/p/", upstream.url, use_keyless=False,
                                                             use_standard_auth=True)],
        {"access_log": {"enabled": True, "path": str(log_path)}},
    )
    assert requests.get(gw.url + "/k/echo?api_key=secret-in-query", timeout=5).status_code == 200
    assert requests.get(gw.url + "/p/x", headers={"Authorization": "secret-in-header"}, timeout=5).status_code == 403
    gw.stop()  # flushes the buffered log
    text = log_path.read_text()
    assert "secret-in-query" not in text and "secret-in-header" not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [(r["method"], r["path"], r["status"], r["api_id"]) for r in records] == [
        ("GET", "/k/echo", 200, "k"),
        ("GET", "/p/x", 403, "p"),
    ]
    assert all(r["client"] == "127.0.0.1" and r["duration_ms"] >= 0 and r["time"] <= time.time() for r in records)
    assert records[0]["decision"] == "proxied" and records[0]["upstream_ms"] >= 0 and records[0]["overhead_ms"] >= 0
    assert records[1]["decision"] == "refused" and records[1]["reason"] == "Access to this API has been disallowed"
    assert "identity" not in records[1]


def test_no_access_log_by_default(make_gateway, upstream):
    gw = make_gateway([classic_api("k", "/k/", upstream.url)])
    for _ in range(5):
        assert requests.get(gw.url + "/k/echo", timeout=5).status_code == 200
    assert '"method"' not in gw.log  # nothing per request unless switched on


def test_request_id_and_traceparent_made_when_absent(make_gateway, up, tmp_path):
    log_path = tmp_path / "access.log"
    gw = make_gateway([classic_api("k", "/k/", up.url)],
                      {"generate_request_id": True, "generate_traceparent": True,
                       "access_log": {"enabled": True, "path": str(log_path)}})
    made = requests.get(gw.url + "/k/echo", timeout=5).json()
    sent = {k.lower(): v for k, v in made["headers"]}
    assert len(sent["x-request-id"]) == 32
    version, trace_id, span, flags = sent["traceparent"].split("-")
    assert (version, len(trace_id), len(span), flags) == ("00", 32, 16, "01")
    theirs = {"X-Request-Id": "abc-123", "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-00",
              "tracestate": "vendor=x"}
    kept = {k.lower(): v for k, v in requests.get(gw.url + "/k/echo", headers=theirs, timeout=5).json()["headers"]}
    assert kept["x-request-id"] == "abc-123" and kept["traceparent"] == theirs["traceparent"]
    assert kept["tracestate"] == "vendor=x"
    gw.stop()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [r["request_id"] for r in lines] == [sent["x-request-id"], "abc-123"]
