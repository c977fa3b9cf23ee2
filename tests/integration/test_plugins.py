"""Custom auth plugins in Python, end to end (contract auth-wave2 §C; tyk-reference §11.3).

Tyk-style plugin files (``tests/fixtures/plugins``: the contract's example and more) are copied
into the test's directory and named by absolute path, as a Tyk user writes them; a real gateway
process runs them against the recording upstream, on the memory store and on Redis.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.kit.apis import classic_api, oas_api, rights
from tests.kit.gateway_api import create_key
from tests.kit.fixtures import STORE_IDS, STORES, module_gateway
from tests.kit.procs import headers_of, run_cli, write_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def plugin_dir(tmp: Path) -> Path:
    target = tmp / "plugins"
    shutil.copytree(FIXTURES, target)
    return target


def plugin_api(api_id: str, upstream_url: str, middleware: dict, *, flag: str = "custom_plugin_auth_enabled",
               keyless: bool = False, **fields) -> dict:
    api = classic_api(api_id, f"/{api_id}/", upstream_url, use_keyless=keyless,
                      custom_middleware={"driver": "python", **middleware}, **fields)
    if not keyless:
        api[flag] = True
    return api


def hook(name: str, path: Path) -> dict:
    return {"name": name, "path": str(path)}


def the_apis(plugins: Path, upstream_url: str) -> list[dict]:
    auth = plugins / "auth_plugin.py"
    more = plugins / "more_hooks.py"
    native = plugins / "native_plugin.py"
    contract = {"auth_check": hook("MyAuthCheck", auth), "pre": [hook("AddPreHeaders", auth)],
                "post": [hook("AddPostHeader", auth)]}
    return [
        plugin_api("plug", upstream_url, contract),
        plugin_api("coproc", upstream_url, contract, flag="enable_coprocess_auth"),
        classic_api("open", "/open/", upstream_url),
        plugin_api("prefail", upstream_url, {"pre": [hook("RaisingPre", more)]}, keyless=True),
        plugin_api("authfail", upstream_url, {"auth_check": hook("RaisingAuth", more)}),
        plugin_api("slow", upstream_url, {"auth_check": hook("SlowAuth", more)}),
        plugin_api("notoken", upstream_url, {"auth_check": hook("NoTokenAuth", more)}),
        plugin_api("polplug", upstream_url, {"auth_check": hook("PolicyAuth", more),
                                            "post_key_auth": [hook("ShowSession", more)]}),
        plugin_api("teapot", upstream_url, {"pre": [hook("TeapotPre", more)]}, keyless=True),
        plugin_api("inject", upstream_url, {"pre": [hook("InjectingPre", more)]}, keyless=True),
        plugin_api("native", upstream_url, {"auth_check": hook("check", native), "pre": [hook("tag", native)]}),
        plugin_api("eager", upstream_url, {"auth_check": hook("eager_check", native)}),
        plugin_api("nativeslow", upstream_url, {"auth_check": hook("slow_check", native)}),
        plugin_api("broken", upstream_url, {"auth_check": hook("Broken", plugins / "broken_auth_plugin.py")}),
        oas_plugin_api("oasplug", upstream_url, auth, compliant=False),
        oas_plugin_api("oasor", upstream_url, auth, compliant=True),
    ]


def oas_plugin_api(api_id: str, upstream_url: str, plugin: Path, *, compliant: bool) -> dict:
    """Tyk OAS: server.authentication.custom and middleware.global plugins; ``compliant``: the
    plugin OR an API key (vendor ``security: [["custom"]]``)."""
    authentication = {"enabled": True, "custom": {"enabled": True, "config": {
        "enabled": True, "functionName": "MyAuthCheck", "path": str(plugin)}}}
    document = {}
    if compliant:
        authentication.update(securityProcessingMode="compliant", security=[["custom"]],
                              securitySchemes={"apiKey": {"enabled": True, "header": {"enabled": True, "name": "X-API-Key"}}})
        document = {"components": {"securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
                    "security": [{"apiKey": []}]}
    middleware = {"global": {"pluginConfig": {"driver": "python"},
                             "prePlugins": [{"enabled": True, "functionName": "AddPreHeaders", "path": str(plugin)}]}}
    return oas_api(api_id, f"/{api_id}/", upstream_url, server={"authentication": authentication},
                   middleware=middleware, document=document)


POLICIES = {"plugpol": {"id": "plugpol", "org_id": "default", "rate": 1000, "per": 60, "quota_max": -1,
                        "access_rights": rights("polplug")}}


@pytest.fixture(scope="module", params=STORES, ids=STORE_IDS)
def gw(request, tmp_path_factory, upstream):
    directory = tmp_path_factory.mktemp("plugins")
    plugins = plugin_dir(directory)
    (directory / "policies").mkdir()
    for pol_id, pol in POLICIES.items():
        (directory / "policies" / f"{pol_id}.json").write_text(json.dumps(pol))
    settings = {"plugins": {"hook_timeout": 1.0, "thread_pool_size": 4}}
    yield from module_gateway(request.param, directory, the_apis(plugins, upstream.url), settings)


def get(gw, path: str, **headers: str) -> requests.Response:
    return requests.get(gw.url + path, headers=headers, timeout=10)


def test_accepted_token_runs_every_hook_and_becomes_a_key(gw, up):
    status, _ = gw.admin("GET", "/tyk/keys/plugin-token-0001")
    assert status == 404  # before any request
    answers = [get(gw, "/plug/echo", Authorization="plugin-token-0001", **{"X-Drop-Me": "x", "X-Other": "kept"})
               for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[3].json() == {"error": "Rate Limit Exceeded"}
    seen = headers_of(answers[0].json())
    assert seen["x-pre-hook"] == "ran" and seen["x-auth-user"] == "alice" and seen["x-post-hook"] == "ran"
    assert "x-drop-me" not in seen and seen["x-other"] == "kept" and seen["authorization"] == "plugin-token-0001"
    status, key = gw.admin("GET", "/tyk/keys/plugin-token-0001")
    assert status == 200 and key["rate"] == 2 and key["per"] == 60 and key["org_id"] == "default"
    status, answer = gw.admin("DELETE", "/tyk/keys/plugin-token-0001")
    assert status == 200 and answer["status"] == "ok" and answer["action"] == "deleted"
    assert gw.admin("GET", "/tyk/keys/plugin-token-0001")[0] == 404
    # The next accepted request writes the key again (the write-skipping memo saw the delete).
    get(gw, "/plug/echo", Authorization="plugin-token-0001")
    deadline = time.monotonic() + 3
    while gw.admin("GET", "/tyk/keys/plugin-token-0001")[0] != 200:
        assert time.monotonic() < deadline, "the plugin's key was not written again"
        time.sleep(0.05)


def test_overrides_and_missing_token(gw, up):
    missing = get(gw, "/plug/echo")
    assert (missing.status_code, missing.json()) == (403, {"error": "Key not authorised"})
    refused = get(gw, "/plug/echo", Authorization="refuse-with-401")
    assert (refused.status_code, refused.json()) == (401, {"error": "Plugin says: token refused"})
    unknown = get(gw, "/plug/echo", Authorization="someone-else")  # no metadata["token"], no override
    assert (unknown.status_code, unknown.json()) == (403, {"error": "Forbidden"})
    no_token = get(gw, "/notoken/echo", Authorization="anything")
    assert (no_token.status_code, no_token.json()) == (403, {"error": "Forbidden"})
    assert up.seen() == []


def test_older_enable_coprocess_auth_flag(gw, up):
    ok = get(gw, "/coproc/echo", Authorization="plugin-token-0001")
    assert ok.status_code in (200, 429)  # the key is shared with /plug/ (same token, same limit)
    assert get(gw, "/coproc/echo").status_code == 403


def test_failing_hooks_answer_without_detail(gw, up):
    for _ in range(2):
        pre = get(gw, "/prefail/echo")
        assert (pre.status_code, pre.json()) == (500, {"error": "Middleware error"})
        auth = get(gw, "/authfail/echo", Authorization="some-credential-value")
        assert (auth.status_code, auth.json()) == (403, {"error": "Key not authorised"})
    assert "secret-internal-detail" not in pre.text + auth.text
    assert up.seen() == []
    assert get(gw, "/open/echo").status_code == 200
    assert get(gw, "/polplug/echo", **{"X-User": "dave"}).status_code == 200
    log = gw.log
    assert "secret-internal-detail from the pre hook" in log
    assert "some-credential-value" not in log  # the credential is blanked in the logged message


def test_a_hook_that_takes_too_long_times_out(gw, up):
    started = time.monotonic()
    slow = get(gw, "/slow/echo")
    assert (slow.status_code, slow.json()) == (403, {"error": "Key not authorised"})
    assert time.monotonic() - started < 4  # hook_timeout is 1 s; the hook sleeps 5 s
    assert get(gw, "/open/echo").status_code == 200  # the loop was never blocked
    assert up.seen()[-1]["path"] == "/echo" and len(up.seen()) == 1


def test_policies_post_key_auth_and_plugin_data(gw, up):
    first = get(gw, "/polplug/echo", **{"X-User": "carol"})
    second = get(gw, "/polplug/echo", **{"X-User": "carol"})
    assert first.status_code == 200 and second.status_code == 200
    a, b = headers_of(first.json()), headers_of(second.json())
    assert (a["x-seen"], b["x-seen"]) == ("1", "2")  # tyk.store_data / get_data on the gateway's store
    assert a["x-api"] == "polplug/default"
    assert a["x-session-rate"] == "1000" and a["x-session-user"] == "carol"  # policy applied before post_key_auth
    status, key = gw.admin("GET", "/tyk/keys/policy-user-carol")
    assert status == 200 and key["apply_policies"] == ["plugpol"]
    assert get(gw, "/polplug/echo").status_code == 403  # no user: no token


def test_pre_hook_overrides_and_header_injection(gw, up):
    tea = get(gw, "/teapot/echo", **{"X-Teapot": "1"})
    assert (tea.status_code, tea.json()) == (418, {"error": "I am a teapot"})
    assert tea.headers["X-Teapot-Reason"] == "asked"
    assert get(gw, "/teapot/echo").status_code == 200
    evil = get(gw, "/inject/echo")
    assert (evil.status_code, evil.json()) == (500, {"error": "Middleware error"})
    assert all(r["path"] == "/echo" for r in up.seen()) and len(up.seen()) == 1


def test_native_plugin(gw, up):
    assert get(gw, "/native/echo").json() == {"error": "native: who are you?"}
    answers = [get(gw, "/native/echo/x", **{"X-Native-Token": "native-token-0001"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    seen = headers_of(answers[0].json())
    assert seen["x-native-user"] == "bob" and seen["x-native-pre"] == "/echo/x"
    assert gw.admin("GET", "/tyk/keys/native-token-0001")[0] == 200


def test_a_native_hook_that_takes_too_long_times_out(gw, up):
    started = time.monotonic()
    slow = get(gw, "/nativeslow/echo")
    assert (slow.status_code, slow.json()) == (403, {"error": "Key not authorised"})
    assert time.monotonic() - started < 4 and up.seen() == []


def test_inline_async_native_hook(gw, up):
    assert get(gw, "/eager/echo", **{"X-Native-Token": "eager-token-0001"}).status_code == 200  # no suspension
    assert get(gw, "/eager/echo", **{"X-Native-Token": "wait-then-accept"}).status_code == 200  # suspends, resumes
    assert get(gw, "/eager/echo").json() == {"error": "native: who are you?"}
    started = time.monotonic()
    forever = get(gw, "/eager/echo", **{"X-Native-Token": "wait-forever"})
    assert (forever.status_code, forever.json()) == (403, {"error": "Key not authorised"})
    assert time.monotonic() - started < 4


def test_a_plugin_that_does_not_import_refuses_its_api_only(gw, up):
    assert get(gw, "/broken/echo").status_code == 404
    assert "broken_auth_plugin.py" in gw.log
    assert get(gw, "/open/echo").status_code == 200


def test_fastgate_check_names_the_broken_plugin(tmp_path, upstream):
    plugins = plugin_dir(tmp_path)
    apps = tmp_path / "apps"
    apps.mkdir()
    (tmp_path / "policies").mkdir()
    for api in the_apis(plugins, upstream.url):
        name = api.get("api_id") or api["x-tyk-api-gateway"]["info"]["id"]
        (apps / f"{name}.json").write_text(json.dumps(api))
    config = write_config(tmp_path, {"secret": "x" * 24, "app_path": "apps", "policies": {"policy_path": "policies"}})
    bad = run_cli("check", "--config", str(config))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "broken_auth_plugin.py" in bad.stdout + bad.stderr
    (apps / "broken.json").unlink()
    good = run_cli("check", "--config", str(config))
    assert good.returncode == 0, good.stdout + good.stderr


EXTRACTOR_PLUGIN = '''
import time
from tyk.decorators import *
from gateway import TykGateway as tyk

@Hook
def CountingAuth(request, session, metadata, spec):
    calls = int(tyk.get_data("calls") or b"0") + 1
    tyk.store_data("calls", str(calls), 60)
    if request.get_header("X-Id", ) in ("abc", "user=abc"):
        session.rate = 100; session.per = 1
        session.id_extractor_deadline = int(time.time()) + 60
        metadata["token"] = "ignored-with-an-extractor"
    return request, session, metadata

@Hook
def Calls(request, session, spec):
    request.add_header("X-Calls", tyk.get_data("calls").decode())
    return request, session
'''


def test_id_extractor_skips_the_plugin_until_the_deadline(make_gateway, upstream, tmp_path, store_url):
    plugin = tmp_path / "extractor.py"
    plugin.write_text(EXTRACTOR_PLUGIN)
    middleware = {"auth_check": hook("CountingAuth", plugin), "post": [hook("Calls", plugin)],
                  "id_extractor": {"extract_from": "header", "extract_with": "value",
                                   "extractor_config": {"header_name": "X-Id"}}}
    regex = {**middleware, "id_extractor": {"extract_from": "header", "extract_with": "regex",
                                            "extractor_config": {"header_name": "X-Id", "regex_expression": "user=\\w+",
                                                                 "regex_match_index": 0}}}
    gw = make_gateway([plugin_api("ext", upstream.url, middleware), plugin_api("extre", upstream.url, regex)],
                      {"storage": {"url": store_url}, "hash_key_function": "murmur64"})
    calls = [headers_of(get(gw, "/ext/echo", **{"X-Id": "abc"}).json())["x-calls"] for _ in range(3)]
    assert calls == ["1", "1", "1"]  # the plugin ran once; the stored key served the others
    assert (get(gw, "/ext/echo").status_code, get(gw, "/ext/echo").json()) == (400, {"error": "Authorization field missing"})
    import base64
    import hashlib

    token = base64.b64encode(('{"org":"default","id":"%s","h":"murmur64"}' % hashlib.md5(b"abc").hexdigest()).encode()).decode()
    status, key = gw.admin("GET", f"/tyk/keys/{token}")
    assert status == 200 and key["rate"] == 100
    assert gw.admin("GET", "/tyk/keys/ignored-with-an-extractor")[0] == 404
    # regex: the whole match ("user=abc", as Tyk) is the id: one more plugin call, then the stored key.
    assert [headers_of(get(gw, "/extre/echo", **{"X-Id": "user=abc"}).json())["x-calls"] for _ in range(2)] == ["2", "2"]
    assert get(gw, "/extre/echo", **{"X-Id": "nothing"}).status_code == 400


RELOAD_V1 = '''
from tyk.decorators import *

@Hook
def Auth(request, session, metadata, spec):
    if request.get_header("Authorization") == "version-one":
        metadata["token"] = "version-one"
    return request, session, metadata
'''


def test_plugins_reload_with_the_apis(make_gateway, upstream, tmp_path):
    import os
    import signal

    plugin = tmp_path / "reloading.py"
    plugin.write_text(RELOAD_V1)
    gw = make_gateway([plugin_api("rl", upstream.url, {"auth_check": hook("Auth", plugin)})])
    assert get(gw, "/rl/echo", Authorization="version-one").status_code == 200
    for version, reload in (("version-two", lambda: gw.admin("GET", "/tyk/reload")),
                            ("version-three", lambda: gw.signal(signal.SIGHUP))):
        plugin.write_text(RELOAD_V1.replace("version-one", version))
        stat = plugin.stat()
        os.utime(plugin, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        reload()
        deadline = time.monotonic() + 5
        while get(gw, "/rl/echo", Authorization=version).status_code != 200:
            assert time.monotonic() < deadline, f"{version} was not loaded"
            time.sleep(0.1)
        assert get(gw, "/rl/echo", Authorization="version-one").status_code == 403
    # A reload with a broken file refuses the API (404), and a fixed file brings it back.
    plugin.write_text("def Auth(:\n")
    gw.admin("GET", "/tyk/reload")
    deadline = time.monotonic() + 5
    while get(gw, "/rl/echo", Authorization="version-three").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "reloading.py" in gw.log


def test_oas_custom_auth_and_compliant_or(gw, up):
    token = "plugin-token-0001"
    ok = get(gw, "/oasplug/echo", Authorization=token)
    assert ok.status_code in (200, 429)  # the key's 2-per-minute limit is shared with /plug/
    if ok.status_code == 200:
        assert headers_of(ok.json())["x-pre-hook"] == "ran"
    assert get(gw, "/oasplug/echo").json() == {"error": "Key not authorised"}
    key = create_key(gw, {"org_id": "default", "access_rights": rights("oasor")})["key"]
    by_key = get(gw, "/oasor/echo", **{"X-API-Key": key})
    assert by_key.status_code == 200 and headers_of(by_key.json())["x-pre-hook"] == "ran"
    # Neither: the plugin's answer (the last requirement tried).
    assert (get(gw, "/oasor/echo").status_code, get(gw, "/oasor/echo").json()) == (403, {"error": "Key not authorised"})
    refused = get(gw, "/oasor/echo", Authorization="refuse-with-401")
    assert (refused.status_code, refused.json()) == (401, {"error": "Plugin says: token refused"})
