"""Plugins and chains without sockets: decoding, Tyk's objects and outcomes, the hook pool, the
loader, and the OR stage over hand-made stages."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from fastgate.apidef.plugin_decode import classic_plugins, oas_plugins
from fastgate.apidef.security_decode import classic_security, oas_requirement_names, oas_security
from fastgate.apidef.spec import DefinitionError
from fastgate.auth.chain import _any_of
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial
from fastgate.plugins.hooks import apply_edits, check_header
from fastgate.plugins.loader import PluginLoadError, load_function
from fastgate.plugins.native import PluginRequest, canonical
from fastgate.plugins.pool import HookPool, HookTimeout
from fastgate.plugins.tyk_style import FORBIDDEN, KEY_NOT_AUTHORISED, run_auth, run_hook

EXT = "x-tyk-api-gateway"


# ---- decoding ----------------------------------------------------------------------------------


def classic(**fields):
    return {"custom_middleware": {"driver": "python", **fields.pop("middleware", {})}, **fields}


def test_classic_plugins_both_flags_and_hooks():
    for flag in ("custom_plugin_auth_enabled", "enable_coprocess_auth"):
        settings = classic_plugins(classic(**{flag: True}, middleware={
            "auth_check": {"name": "Auth", "path": "a.py"}, "pre": [{"name": "P", "path": "a.py"}],
            "post": [{"name": "Q", "path": "b.py", "disabled": True}]}), use_keyless=False)
        assert settings is not None and settings.auth_check.name == "Auth"
        assert [h.name for h in settings.pre] == ["P"] and settings.post == ()
    # Response hooks are read (keyless too: a response hook alone makes an API use plugins).
    only_response = classic_plugins(classic(middleware={"response": [{"name": "R", "path": "a.py"}]}), use_keyless=True)
    assert only_response is not None and [h.name for h in only_response.response] == ["R"]
    # auth_check without the flag is not used; a keyless API with only a pre hook has plugins.
    assert classic_plugins(classic(middleware={"auth_check": {"name": "A", "path": "a.py"}}), use_keyless=False) is None
    keyless = classic_plugins(classic(middleware={"pre": [{"name": "P", "path": "a.py"}]}), use_keyless=True)
    assert keyless is not None and keyless.auth_check is None


@pytest.mark.parametrize("middleware, field", [
    ({"driver": "otto", "auth_check": {"name": "A", "path": "a.js"}}, "custom_middleware.driver"),
    ({"driver": "grpc", "auth_check": {"name": "A"}}, "custom_middleware.auth_check.path"),
    ({"auth_check": {"path": "a.py"}}, "custom_middleware.auth_check.name"),
    ({"auth_check": {"name": "A", "path": "a.py"}, "response": [{"name": "R"}]}, "custom_middleware.response[0].path"),
    ({"auth_check": {"name": "A", "path": "a.py"}, "pre": {"name": "P"}}, "custom_middleware.pre"),
    ({"auth_check": {"name": "A", "path": "a.py"}, "id_extractor": {"extract_from": "xml"}}, "custom_middleware.id_extractor.extract_from"),
    ({"auth_check": {"name": "A", "path": "a.py"}, "id_extractor": {"extract_from": "header", "extract_with": "xpath",
                                                                    "extractor_config": {"header_name": "X"}}},
     "custom_middleware.id_extractor.extract_with"),
    ({"auth_check": {"name": "A", "path": "a.py"}, "id_extractor": {"extract_from": "header", "extract_with": "regex",
                                                                    "extractor_config": {"header_name": "X", "regex_expression": "("}}},
     "custom_middleware.id_extractor.extractor_config.regex_expression"),
])
def test_classic_plugin_settings_that_cannot_work_name_their_field(middleware, field):
    with pytest.raises(DefinitionError) as caught:
        classic_plugins(classic(custom_plugin_auth_enabled=True, middleware=middleware), use_keyless=False)
    assert caught.value.field == field


def test_oas_plugins():
    raw = {EXT: {"server": {"authentication": {"custom": {"enabled": True, "config": {
        "enabled": True, "functionName": "Auth", "path": "/p/a.py",
        "idExtractor": {"enabled": True, "source": "header", "with": "value", "config": {"headerName": "X-Id"}}}}}},
        "middleware": {"global": {"pluginConfig": {"driver": "python"},
                                  "prePlugins": [{"enabled": True, "functionName": "Pre", "path": "/p/a.py"},
                                                 {"enabled": False, "functionName": "Off", "path": "/p/a.py"}],
                                  "postAuthenticationPlugins": [{"enabled": True, "functionName": "Pka", "path": "/p/a.py"}]}}}}
    settings = oas_plugins(raw, use_keyless=False)
    assert settings.auth_check.name == "Auth" and [h.name for h in settings.pre] == ["Pre"]
    assert [h.name for h in settings.post_key_auth] == ["Pka"]
    assert settings.id_extractor.name == "X-Id" and settings.id_extractor.source == "header"
    raw[EXT]["middleware"]["global"]["pluginConfig"]["driver"] = "goplugin"
    with pytest.raises(DefinitionError, match="pluginConfig.driver"):
        oas_plugins(raw, use_keyless=False)


def test_classic_security_extension():
    found = classic_security({"fastgate_security": {"requirements": [["auth_token", "jwt"], ["anonymous"]],
                                                    "anonymous": {"policy_id": "p"}}}, use_keyless=False)
    assert found.requirements == (("jwt", "auth_token"), ("anonymous",))  # Tyk's order inside one
    assert found.anonymous.policy_id == "p" and found.anonymous.identity == "anonymous"
    for bad, field in (({"requirements": [["jwtt"]]}, "fastgate_security.requirements[0]"),
                       ({"requirements": []}, "fastgate_security.requirements"),
                       ({"requirements": [["anonymous"]]}, "fastgate_security.anonymous"),
                       ({"requirements": [["anonymous", "jwt"]], "anonymous": {"policy_id": "p"}}, "fastgate_security.requirements[0]")):
        with pytest.raises(DefinitionError) as caught:
            classic_security({"fastgate_security": bad}, use_keyless=False)
        assert caught.value.field == field
    assert classic_security({}, use_keyless=False) is None


def oas_doc(mode, security, vendor_security=None):
    return {"components": {"securitySchemes": {"j": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                               "k": {"type": "apiKey", "in": "header", "name": "K"},
                                               "b": {"type": "http", "scheme": "basic"},
                                               "x": {"type": "openIdConnect"}}},
            "security": security,
            EXT: {"server": {"authentication": {"securityProcessingMode": mode, "security": vendor_security or []}}}}


def test_oas_compliant_and_legacy_requirements():
    doc = oas_doc("compliant", [{"j": [], "k": []}, {"b": []}], [["hmac"], ["custom"]])
    settings = oas_security(doc, use_keyless=False)
    assert settings.requirements == (("jwt", "auth_token"), ("basic",), ("hmac",), ("custom",))
    assert oas_requirement_names(oas_doc("legacy", [{"j": []}, {"k": []}])) == [["j"]]
    assert oas_security(oas_doc("legacy", [{"j": []}, {"k": []}]), use_keyless=False) is None
    assert oas_security(oas_doc("compliant", [{"x": []}, {"k": []}]), use_keyless=False).unconfigured == "x"


# ---- Tyk-style outcomes ----------------------------------------------------------------------


def view(**headers: str) -> PluginRequest:
    return PluginRequest("GET", "/p", "a=1", "127.0.0.1", {canonical(k.replace("_", "-")): v for k, v in headers.items()},
                         "api", "org")


SPEC = {"APIID": "api", "OrgID": "org", "config_data": "{}"}


def test_auth_outcomes():
    def auth(request, session, metadata, spec):
        token = request.get_header("authorization")
        if token == "ok":
            session.rate = 5
            session.metadata = {"team": "blue"}
            metadata["token"] = token
            request.add_header("X-User", "u")
        elif token == "401":
            request.object.return_overrides.response_code = 401
            request.object.return_overrides.response_error = "nope"
        elif token is None:
            request.object.return_overrides.response_code = 403
        return request, session, metadata

    v = view(Authorization="ok")
    accepted = run_auth(auth, v, SPEC)
    assert accepted.key == "ok" and accepted.session.rate == 5 and accepted.session.meta_data == {"team": "blue"}
    assert v.set_headers == {"X-User": "u"}
    assert run_auth(auth, view(Authorization="401"), SPEC) == Denial(401, "nope")
    assert run_auth(auth, view(), SPEC) == KEY_NOT_AUTHORISED
    assert run_auth(auth, view(Authorization="other"), SPEC) == FORBIDDEN


def test_hook_outcomes_and_params():
    def pre(request, session, spec):
        assert request.object.params == {"a": "1"} and request.object.url == "/p?a=1" and spec["APIID"] == "api"
        request.delete_header("X-Drop")
        if request.get_header("X-Stop"):
            request.object.return_overrides.response_code = 429
            request.object.return_overrides.headers = {"Retry-After": "5"}
        return request, session

    v = view(X_Drop="1")
    assert run_hook(pre, v, SPEC) is None and v.delete_headers == ["X-Drop"]
    assert run_hook(pre, view(X_Stop="1"), SPEC) == Denial(429, "Request refused", ((b"Retry-After", b"5"),))


def test_header_edits_are_checked_and_make_a_new_list():
    req = Request()
    req.headers = [(b"Keep", b"1"), (b"X-Drop", b"2"), (b"x-set", b"old")]
    original = req.headers
    v = view()
    v.set_header("X-Set", "new")
    v.remove_header("x-drop")
    apply_edits(req, v)
    assert req.headers == [(b"Keep", b"1"), (b"X-Set", b"new")] and original[1] == (b"X-Drop", b"2")
    for name, value in (("X-Evil", "a\r\nb"), ("Bad Name", "v"), ("X-Nul", "a\x00")):
        with pytest.raises(ValueError):
            check_header(name, value)


# ---- the pool and the loader -----------------------------------------------------------------


def test_pool_results_errors_and_timeouts():
    async def main():
        pool = HookPool(2, 0.3)
        assert await pool.run(lambda a, b: a + b, 1, 2) == 3
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        started = time.monotonic()
        with pytest.raises(HookTimeout):
            await pool.run(time.sleep, 2)
        assert time.monotonic() - started < 1
        # One thread is stuck in the sleeping hook; the other still serves.
        assert await pool.run(lambda: "free") == "free"

    asyncio.run(main())


def test_loader_compat_imports_and_failures(tmp_path):
    good = tmp_path / "good.py"
    good.write_text("from tyk.decorators import *\nfrom gateway import TykGateway as tyk\n\n@Hook\ndef F(r, s, spec):\n    return r, s\n")
    before = list(sys.path)
    fn = load_function(good, "F")
    assert callable(fn) and fn.f.__name__ == "F" and sys.path == before
    with pytest.raises(PluginLoadError, match="good.py: defines no function 'G'"):
        load_function(good, "G")
    broken = tmp_path / "broken_auth_plugin.py"
    broken.write_text("def F(:\n")
    with pytest.raises(PluginLoadError, match="broken_auth_plugin.py: syntax error"):
        load_function(broken, "F")
    missing = tmp_path / "missing_import.py"
    missing.write_text("import no_such_module_here\n")
    with pytest.raises(PluginLoadError, match="missing_import.py: does not import: ModuleNotFoundError"):
        load_function(missing, "F")
    with pytest.raises(PluginLoadError, match="cannot be read"):
        load_function(tmp_path / "absent.py", "F")
    assert sys.path == before


# ---- the OR stage ----------------------------------------------------------------------------


def test_or_stage_short_circuits_restores_and_answers_the_last_denial():
    calls: list[str] = []

    def passing(name):
        def stage(req):
            calls.append(name)
            req.session, req.session_key = name, name
            return None
        return stage

    def failing(name, denial):
        def stage(req):
            calls.append(name)
            req.session = "leftover"
            req.headers = req.headers + [(b"X-Leak", b"1")]
            return denial
        return stage

    def waiting(name, result):
        async def later(req):
            await asyncio.sleep(0)
            calls.append(name)
            if result is None:
                req.session, req.session_key = name, name
            return result
        return lambda req: later(req)

    first, second = Denial(401, "first"), Denial(403, "second")
    req = Request()
    req.headers = [(b"A", b"1")]
    assert _any_of(((passing("a"),), (passing("b"),)))(req) is None and calls == ["a"]
    calls.clear()
    assert _any_of(((failing("a", first),), (passing("b"),)))(req) is None
    assert calls == ["a", "b"] and req.headers == [(b"A", b"1")] and req.session == "b"
    calls.clear()
    assert _any_of(((failing("a", first),), (failing("b", second),)))(req) == second
    assert req.session is None and req.session_key == "" and req.headers == [(b"A", b"1")]
    calls.clear()
    pending = _any_of(((waiting("a", first), passing("never")), (passing("b"), waiting("c", None))))(req)
    assert asyncio.run(pending) is None and calls == ["a", "b", "c"] and req.session == "c"
    calls.clear()
    pending = _any_of(((waiting("a", None), failing("x", first)), (waiting("b", second),)))(req)
    assert asyncio.run(pending) == second and calls == ["a", "x", "b"] and req.session is None


@pytest.mark.parametrize("code", [101, 204, 304, 600, "403"])
def test_an_override_status_a_plugin_cannot_answer_with_fails_the_hook(code):
    def pre(request, session, spec):
        request.object.return_overrides.response_code = code
        return request, session

    with pytest.raises(ValueError):
        run_hook(pre, view(), SPEC)


def test_or_stage_puts_context_variables_back():
    def claims(req):
        req.ctx = req.ctx or {}
        req.ctx["jwt_claims_sub"] = "half-authenticated"
        return None

    def refuse(req):
        return Denial(403, "no")

    req = Request()
    req.ctx = {"kept": 1}
    assert _any_of(((claims, refuse), (lambda r: None,)))(req) is None
    assert req.ctx == {"kept": 1}
    req.ctx = None
    assert _any_of(((claims, refuse), (lambda r: None,)))(req) is None and req.ctx is None
