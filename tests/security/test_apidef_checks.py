"""API definitions are checked wherever they come from: files in ``app_path`` (``fastgate check``
and the running gateway) and ``POST``/``PUT /tyk/apis``.

Refused: upstream schemes other than http(s), link-local / cloud metadata upstreams (unless
``security.allow_link_local_upstreams``), unsafe ``api_id`` values, a listen path another API
already serves, and any field that restricts access in a way the gateway does not enforce.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.kit.procs import ROOT, write_config
from tests.kit.apis import classic_api
from tests.kit.fixtures import shared_gateway


def _check(tmp_path: Path, apis: dict[str, dict], settings: dict | None = None, env: dict | None = None):
    apps = tmp_path / "apps"
    apps.mkdir(exist_ok=True)
    for name, api in apis.items():
        (apps / name).write_text(json.dumps(api))
    config = write_config(tmp_path, {"app_path": "apps", **(settings or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "fastgate", "check", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return proc.returncode, proc.stdout


def _versioned(**extended):
    return {"not_versioned": True, "versions": {"Default": {"name": "Default", "use_extended_paths": True,
                                                             "extended_paths": extended}}}


UP = "http://127.0.0.1:9"

REFUSED_FILES = {
    "file-scheme.json": (classic_api("f1", "/f1/", "file:///etc/passwd"), "proxy.target_url"),
    "gopher.json": (classic_api("f2", "/f2/", "gopher://127.0.0.1:70/"), "proxy.target_url"),
    "metadata.json": (classic_api("f3", "/f3/", "http://169.254.169.254/latest/"), "proxy.target_url"),
    "metadata-decimal.json": (classic_api("f4", "/f4/", "http://2852039166/"), "proxy.target_url"),
    "metadata-v6.json": (classic_api("f5", "/f5/", "http://[fd00:ec2::254]/"), "proxy.target_url"),
    "link-local-v6.json": (classic_api("f6", "/f6/", "http://[fe80::1]:8080/"), "proxy.target_url"),
    "metadata-name.json": (classic_api("f7", "/f7/", "http://metadata.google.internal/"), "proxy.target_url"),
    "dotdot-id.json": (classic_api("../escape", "/f8/", UP), "api_id"),
    "encoded-id.json": (classic_api("..%2fescape", "/f9/", UP), "api_id"),
    "slash-id.json": (classic_api("a/b", "/f10/", UP), "api_id"),
    "nul-id.json": (classic_api("a\u0000b", "/f11/", UP), "api_id"),
    "size-limits.json": (classic_api("f12", "/f12/", UP, version_data=_versioned(size_limits=[{"path": "/up", "method": "POST", "size_limit": 10}])),
                         "version_data.versions.Default.extended_paths.size_limits"),
    "validate-json.json": (classic_api("f13", "/f13/", UP, version_data=_versioned(validate_json=[{"path": "/x", "method": "POST", "schema": {}}])),
                           "version_data.versions.Default.extended_paths.validate_json"),
    "versioned.json": (classic_api("f14", "/f14/", UP, version_data={"not_versioned": False, "versions": {"v1": {"name": "v1", "expires": "2000-01-01 00:00"}}}),
                       "version_data.not_versioned"),
    "signature.json": (classic_api("f15", "/f15/", UP, use_keyless=False, auth_configs={"authToken": {"validate_signature": True}}),
                       "auth_configs.authToken.validate_signature"),
    "pinning.json": (classic_api("f16", "/f16/", UP, pinned_public_keys={"*": "abc"}), "pinned_public_keys"),
    "bad-cidr.json": (classic_api("f17", "/f17/", UP, enable_ip_whitelisting=True, allowed_ips=["10.0.0.0/33"]), "allowed_ips[0]"),
    "oas-validate.json": ({
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {"/x": {"post": {"operationId": "px"}}},
        "x-tyk-api-gateway": {"info": {"id": "f18", "name": "t", "state": {"active": True}},
                              "server": {"listenPath": {"value": "/f18/"}}, "upstream": {"url": UP},
                              "middleware": {"operations": {"px": {"validateRequest": {"enabled": True}}}}},
    }, "x-tyk-api-gateway.middleware.operations.px.validateRequest"),
    "oas-versioning.json": ({
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {"info": {"id": "f19", "name": "t", "state": {"active": True},
                                       "versioning": {"enabled": True, "location": "header", "key": "v"}},
                              "server": {"listenPath": {"value": "/f19/"}}, "upstream": {"url": UP}},
    }, "x-tyk-api-gateway.info.versioning.enabled"),
}


def test_fastgate_check_names_file_and_field_of_every_refused_definition(tmp_path):
    code, out = _check(tmp_path, {name: api for name, (api, _) in REFUSED_FILES.items()})
    assert code == 1
    lines = out.splitlines()
    for name, (_, field) in REFUSED_FILES.items():
        line = next((ln for ln in lines if f"/{name}: " in ln), None)
        assert line is not None, (name, out)
        assert f"/{name}: {field}: " in line, line


def test_empty_lists_and_disabled_switches_refuse_nothing(tmp_path):
    harmless = classic_api(
        "h1", "/h1/", UP,
        version_data=_versioned(size_limits=[], validate_json=[{"path": "/x", "disabled": True}], white_list=[], black_list=[], ignored=[]),
        enable_ip_whitelisting=False, allowed_ips=["10.0.0.1"], pinned_public_keys={"*": "k"}, certificate_pinning_disabled=True,
        custom_middleware={"pre": [], "post": [], "post_key_auth": [], "driver": ""},
        auth_configs={"authToken": {"validate_signature": False}},
        global_rate_limit={"rate": 0, "per": 0},
    )
    code, out = _check(tmp_path, {"h1.json": harmless})
    assert (code, out) == (0, "")


def test_tyk_sample_definitions_keep_loading(tmp_path):
    apps = tmp_path / "apps"
    shutil.copytree(ROOT / "tests/fixtures/tyk/apps", apps)
    _code, out = _check(tmp_path, {})
    # the only problems are the ones that were there before (tyk:// upstream, a plain OpenAPI
    # document, a template without a listen path): no sample uses an unenforced restriction
    assert "restricts access" not in out
    assert "link-local" not in out
    problems = [ln for ln in out.splitlines() if ln]
    assert len(problems) <= 3, out


def test_link_local_upstream_allowed_by_the_switch(tmp_path):
    api = classic_api("meta", "/meta/", "http://169.254.169.254/")
    code, out = _check(tmp_path, {"meta.json": api}, {"security": {"allow_link_local_upstreams": True}})
    assert (code, out) == (0, "")


def test_refused_file_is_not_served(make_gateway, upstream):
    gw = make_gateway([
        classic_api("served", "/served/", upstream.url),
        classic_api("meta", "/meta/", "http://169.254.169.254/"),
        classic_api("sizes", "/sizes/", upstream.url, version_data=_versioned(size_limits=[{"path": "/", "method": "POST", "size_limit": 1}])),
    ])
    assert requests.get(gw.url + "/served/x", timeout=5).status_code == 200
    assert requests.get(gw.url + "/meta/x", timeout=5).status_code == 404
    assert requests.get(gw.url + "/sizes/x", timeout=5).status_code == 404
    assert "proxy.target_url" in gw.log and "extended_paths.size_limits" in gw.log


def test_same_listen_path_with_and_without_slash_is_one_route(make_gateway, upstream):
    gw = make_gateway([classic_api("one", "/same/", upstream.url), classic_api("two", "/same", upstream.url)])
    assert requests.get(gw.url + "/same/x", timeout=5).status_code == 200
    assert "already served by" in gw.log


@pytest.fixture(scope="module")
def empty_gw(tmp_path_factory):
    """A gateway serving nothing, for the refusal tests: each checks that nothing was written."""
    yield from shared_gateway(tmp_path_factory, "apidef-refusals", [])


@pytest.mark.parametrize("body, field", [
    (classic_api("p1", "/p1/", "http://169.254.169.254/"), "proxy.target_url"),
    (classic_api("p2", "/p2/", "http://[::ffff:169.254.169.254]/"), "proxy.target_url"),
    (classic_api("p3", "/p3/", "file:///etc/passwd"), "proxy.target_url"),
    (classic_api("p4", "/p4/", UP, version_data=_versioned(size_limits=[{"path": "/", "method": "POST", "size_limit": 1}])),
     "version_data.versions.Default.extended_paths.size_limits"),
    (classic_api("p5", "/p5/", UP, enable_ip_blacklisting=True, blacklisted_ips=["not-an-ip"]), "blacklisted_ips[0]"),
])
def test_gateway_api_post_refuses_with_the_field(empty_gw, body, field):
    gw = empty_gw
    status, answer = gw.admin("POST", "/tyk/apis", body)
    assert status == 400, answer
    assert field in answer["message"], answer
    assert list((gw.dir / "apps").iterdir()) == []


@pytest.mark.parametrize("api_id", ["../escape", "..%2fescape", "%2e%2e", "a\\b", "a\u0000b", ".hidden"])
def test_gateway_api_refuses_unsafe_ids(empty_gw, api_id):
    gw = empty_gw
    status, answer = gw.admin("POST", "/tyk/apis", classic_api(api_id, "/u/", UP))
    assert status == 400, answer
    assert list((gw.dir / "apps").iterdir()) == []
    assert not (gw.dir / "escape.json").exists()


def test_gateway_api_refuses_listen_path_already_served_on_post_and_put(make_gateway):
    gw = make_gateway([classic_api("taken", "/taken/", UP), classic_api("mine", "/mine/", UP)])
    status, answer = gw.admin("POST", "/tyk/apis", classic_api("new", "/taken", UP))
    assert status == 400 and "proxy.listen_path" in answer["message"], answer
    status, answer = gw.admin("PUT", "/tyk/apis/mine", classic_api("mine", "/taken", UP))
    assert status == 400 and "proxy.listen_path" in answer["message"], answer
    oas = {
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {"info": {"id": "o1", "name": "t", "state": {"active": True}},
                              "server": {"listenPath": {"value": "/taken/"}}, "upstream": {"url": UP}},
    }
    status, answer = gw.admin("POST", "/tyk/apis/oas", oas)
    assert status == 400 and "listenPath" in answer["message"], answer


def test_gateway_api_put_refuses_metadata_upstream(make_gateway):
    gw = make_gateway([classic_api("mine", "/mine/", UP)])
    status, answer = gw.admin("PUT", "/tyk/apis/mine", classic_api("mine", "/mine/", "http://0xa9.0xfe.0xa9.0xfe/"))
    assert status == 400 and "proxy.target_url" in answer["message"], answer
    assert json.loads((gw.dir / "apps" / "mine.json").read_text())["proxy"]["target_url"] == UP
