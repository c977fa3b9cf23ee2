"""API definition loading: Tyk's own files, every field issue 2 needs from Classic and OAS, and
definitions that cannot work refused with the file and the field while the others still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fastgate.apidef.loader import decode_definition, load_api_dir
from fastgate.apidef.spec import DefinitionError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TYK_APPS = FIXTURES / "tyk" / "apps"
OURS = FIXTURES / "apidef"


def decode_file(path: Path):
    return decode_definition(path.read_bytes(), str(path))


def classic(**fields) -> dict:
    api = {"api_id": "a", "name": "A", "proxy": {"listen_path": "/a/", "target_url": "http://up.example"}}
    proxy = fields.pop("proxy", None)
    if proxy is not None:
        api["proxy"] = {**api["proxy"], **proxy}
    api.update(fields)
    return api


def decode(raw: dict, source: str = "x.json"):
    return decode_definition(json.dumps(raw).encode(), source)


def refusal(raw, source: str = "x.json") -> str:
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(DefinitionError) as info:
        decode_definition(body, source)
    return str(info.value)


# ---- Tyk's own sample files ------------------------------------------------------------------

LOADED = {
    # file: (api_id, listen_path, target_url, use_keyless)
    "app_sample.json": ("1", "/tyk-api-test/", "http://httpbin.org", False),
    "quickstart.json": ("3", "/quickstart/", "http://httpbin.org/", True),
    "test-amf-authkey.json": ("test-amf-authkey", "/test-amf-authkey/", "http://backend-ok:80", False),
    "test-amf-basicauth.json": ("test-amf-basicauth", "/test-amf-basicauth/", "http://backend-ok:80", False),
    "test-amf-jwt.json": ("test-amf-jwt", "/test-amf-jwt/", "http://backend-ok:80", False),
    "test-amf-oauth.json": ("test-amf-oauth", "/test-amf-oauth/", "http://backend-ok:80", False),
    "test-ihd-basicauth.json": ("test-ihd-basicauth", "/test-ihd-basicauth/", "http://backend-ok:80", False),
    "test-ihd-oauth.json": ("test-ihd-oauth", "/test-ihd-oauth/", "http://backend-ok:80", False),
}
REFUSED = {
    # file: the exact "field: what is wrong" after the file name
    "non-empty-x-tyk-ext-oas-template.json": (
        "x-tyk-api-gateway.server.listenPath.value: missing: every API needs a listen path"
    ),
    "petstore-no-responses.json": (
        "x-tyk-api-gateway: missing: a plain OpenAPI document is not a Tyk API definition"
    ),
    "tykprotocol-auth.json": "proxy.target_url: 'tyk://1/': scheme 'tyk' is not supported (http or https)",
}


def test_every_tyk_sample_is_covered():
    assert sorted(p.name for p in TYK_APPS.glob("*.json")) == sorted([*LOADED, *REFUSED])


@pytest.mark.parametrize("name", sorted(LOADED))
def test_tyk_sample_loads(name):
    spec = decode_file(TYK_APPS / name)
    api_id, listen_path, target_url, keyless = LOADED[name]
    assert (spec.api_id, spec.listen_path, spec.target_url, spec.use_keyless) == (
        api_id, listen_path, target_url, keyless,
    )
    assert spec.format == "classic"
    assert spec.active  # Tyk's samples omit "active" (or set it true)
    assert spec.org_id == "default"
    assert spec.strip_listen_path is True
    assert spec.source == str(TYK_APPS / name)
    # Unknown fields are kept, untouched, for later stages.
    assert spec.raw == json.loads((TYK_APPS / name).read_text())


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_tyk_sample_refused_with_field_and_reason(name):
    with pytest.raises(DefinitionError) as info:
        decode_file(TYK_APPS / name)
    assert str(info.value) == REFUSED[name]


def test_loading_tyks_directory_refuses_three_and_loads_the_rest():
    result = load_api_dir(TYK_APPS)
    assert sorted(s.api_id for s in result.apis) == sorted(v[0] for v in LOADED.values())
    assert sorted(result.problems) == sorted(f"{TYK_APPS / name}: {why}" for name, why in REFUSED.items())


def test_tyk_sample_auth_header_configs():
    spec = decode_file(TYK_APPS / "app_sample.json")
    # The deprecated top-level "auth" block is where Tyk reads the auth token header from.
    assert spec.auth_configs["authToken"].header_name == "authorization"
    quick = decode_file(TYK_APPS / "quickstart.json")
    assert quick.auth_configs["authToken"].header_name == "Authorization"  # "" means the default


# ---- Classic fields --------------------------------------------------------------------------


def test_classic_fields_are_decoded():
    spec = decode_file(OURS / "classic-full.json")
    assert spec.format == "classic"
    assert spec.api_id == "classic-full"
    assert spec.name == "Full Classic"
    assert spec.org_id == "org-7"
    assert spec.active is True
    assert spec.use_keyless is True
    assert spec.domain == "api.example.com"  # hosts compare case-insensitively
    assert spec.listen_path == "/full/"
    assert spec.target_url == "https://upstream.example:8443/base/"
    assert spec.strip_listen_path is True
    assert spec.preserve_host_header is True
    assert spec.max_request_body_bytes == 2048  # Tyk's global_size_limit
    assert spec.raw["enable_batch_request_support"] is True
    assert spec.raw["custom_middleware"] == {"pre": [], "post": []}


def test_classic_defaults():
    spec = decode(classic())
    assert spec.active is True
    assert spec.use_keyless is False  # Tyk's default: protected
    assert spec.strip_listen_path is False
    assert spec.preserve_host_header is False
    assert spec.domain == ""
    assert spec.org_id == ""
    assert spec.max_request_body_bytes == 0


def test_classic_name_defaults_to_the_id_and_listen_path_gets_its_slash():
    spec = decode({"api_id": "only-id", "proxy": {"listen_path": "no-slash/", "target_url": "http://u"}})
    assert spec.name == "only-id"
    assert spec.listen_path == "/no-slash/"


def test_classic_inactive_is_loaded_as_inactive(tmp_path):
    (tmp_path / "off.json").write_text(json.dumps(classic(active=False)))
    result = load_api_dir(tmp_path)
    assert result.apis == [] and result.problems == []
    assert [s.api_id for s in result.inactive] == ["a"]


def test_fastgate_body_limit_field_wins_over_tyks():
    spec = decode(classic(max_request_body_bytes=10, version_data={"versions": {"v": {"global_size_limit": 99}}}))
    assert spec.max_request_body_bytes == 10


@pytest.mark.parametrize(
    "raw,message",
    [
        (classic(api_id=""), "api_id: missing: every API needs an id"),
        ({"name": "no id", "proxy": {"listen_path": "/x/", "target_url": "http://u"}}, "api_id: missing"),
        (classic(proxy={"listen_path": ""}), "proxy.listen_path: missing: every API needs a listen path"),
        ({"api_id": "a"}, "proxy.listen_path: missing"),
        (classic(proxy={"listen_path": "/a/../b/"}), "proxy.listen_path: '/a/../b/' contains dot segments"),
        (classic(proxy={"listen_path": "/a\\b/"}), "proxy.listen_path: '/a\\\\b/' contains dot segments or backslashes"),
        (classic(proxy={"target_url": ""}), "proxy.target_url: missing: every API needs an upstream URL"),
        (classic(proxy={"target_url": "upstream.example"}), "proxy.target_url: 'upstream.example': scheme '(none)' is not supported"),
        (classic(proxy={"target_url": "ftp://u.example"}), "proxy.target_url: 'ftp://u.example': scheme 'ftp' is not supported"),
        (classic(proxy={"target_url": "http://"}), "proxy.target_url: 'http://': no host"),
        (classic(proxy={"target_url": "http://u:99999"}), "proxy.target_url: 'http://u:99999': the port is not a number"),
        (classic(proxy={"target_url": "http://u/?a=1"}), "proxy.target_url: 'http://u/?a=1': a query or fragment is not allowed"),
        (classic(use_keyless="yes"), "use_keyless: Expected `bool | null`, got `str`"),
        (classic(proxy={"strip_listen_path": [True]}), "proxy.strip_listen_path: Expected `bool | null`, got `array`"),
        ({"api_id": "a", "proxy": "http://u"}, "proxy: Expected `object | null`, got `str`"),
        (classic(domain=7), "domain: Expected `str | null`, got `int`"),
    ],
)
def test_classic_that_cannot_work_is_refused_naming_the_field(raw, message):
    assert refusal(raw).startswith(message)


@pytest.mark.parametrize(
    "body,message",
    [(b"{", "not valid JSON"), (b"[1, 2]", "not a JSON object"), (b'"api"', "not a JSON object"), (b"", "not valid JSON")],
)
def test_not_a_definition_at_all(body, message):
    assert message in refusal(body)


# ---- OAS fields ------------------------------------------------------------------------------


def test_oas_fields_are_decoded():
    spec = decode_file(OURS / "oas-full.json")
    assert spec.format == "oas"
    assert spec.api_id == "oas-full"
    assert spec.name == "Full OAS (gateway name)"
    assert spec.org_id == "org-9"
    assert spec.active is True
    assert spec.listen_path == "/pets-api/"
    assert spec.strip_listen_path is True
    assert spec.domain == "pets.example.com"
    assert spec.target_url == "http://pets.internal:8080/v2"
    assert spec.use_keyless is False  # server.authentication.enabled
    assert spec.auth_configs["authToken"].header_name == "X-Api-Key"
    # The OpenAPI part and unknown extension fields are kept.
    assert spec.raw["paths"]["/pets"]["get"]["responses"]["200"]["description"] == "ok"
    assert spec.raw["x-tyk-api-gateway"]["middleware"] == {"global": {"cors": {"enabled": False}}}


def test_oas_fallbacks():
    spec = decode_file(OURS / "oas-minimal.json")
    assert spec.api_id == "oas-minimal"  # no info.id: the file name
    assert spec.name == "Minimal OAS"  # no x-tyk name: the OpenAPI title
    assert spec.listen_path == "/minimal"
    assert spec.strip_listen_path is False
    assert spec.domain == "old.style.example"  # the older plain-string customDomain
    assert spec.use_keyless is True  # no authentication block


def test_oas_state_inactive_and_disabled_domain():
    raw = json.loads((OURS / "oas-full.json").read_text())
    ext = raw["x-tyk-api-gateway"]
    ext["info"]["state"]["active"] = False
    ext["server"]["customDomain"]["enabled"] = False
    ext["server"]["authentication"]["enabled"] = False
    spec = decode(raw)
    assert spec.active is False
    assert spec.domain == ""
    assert spec.use_keyless is True


def test_told_apart_by_content_not_by_name():
    oas = (OURS / "oas-full.json").read_bytes()
    assert decode_definition(oas, "looks-classic.json").format == "oas"
    # An x-tyk-api-gateway document without "openapi" is still OAS.
    raw = json.loads(oas)
    del raw["openapi"]
    assert decode(raw).format == "oas"
    assert decode(classic(), "oas.json").format == "classic"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda ext: ext["server"].pop("listenPath"), "x-tyk-api-gateway.server.listenPath.value: missing"),
        (lambda ext: ext.pop("upstream"), "x-tyk-api-gateway.upstream.url: missing"),
        (lambda ext: ext["upstream"].update(url="pets.internal"), "x-tyk-api-gateway.upstream.url: 'pets.internal': scheme"),
        (lambda ext: ext["server"]["listenPath"].update(strip="yes"), "x-tyk-api-gateway.server.listenPath.strip: Expected `bool | null`"),
        (lambda ext: ext["info"].update(state=[]), "x-tyk-api-gateway.info.state: Expected `object | null`"),
    ],
    ids=["no-listen-path", "no-upstream", "bad-upstream", "wrong-type", "wrong-type-nested"],
)
def test_oas_that_cannot_work_is_refused_naming_the_field(change, message):
    raw = json.loads((OURS / "oas-full.json").read_text())
    change(raw["x-tyk-api-gateway"])
    assert refusal(raw).startswith(message)


# ---- a directory: clashes and partial failure ------------------------------------------------


def write_apps(directory: Path, files: dict[str, dict]) -> None:
    for name, raw in files.items():
        (directory / name).write_text(json.dumps(raw))


def test_same_listen_path_and_domain_is_refused_and_the_others_load(tmp_path):
    write_apps(
        tmp_path,
        {
            "1-first.json": classic(api_id="first", proxy={"listen_path": "/shared/"}),
            "2-second.json": classic(api_id="second", proxy={"listen_path": "/shared/"}),
            "3-other-domain.json": classic(api_id="third", domain="a.example", proxy={"listen_path": "/shared/"}),
            "4-same-domain.json": classic(api_id="fourth", domain="A.example", proxy={"listen_path": "/shared/"}),
            "5-unrelated.json": classic(api_id="fifth", proxy={"listen_path": "/fifth/"}),
        },
    )
    result = load_api_dir(tmp_path)
    assert [s.api_id for s in result.apis] == ["first", "third", "fifth"]
    assert result.problems == [
        f"{tmp_path / '2-second.json'}: proxy.listen_path: '/shared/' is already served by "
        f"{tmp_path / '1-first.json'} (api_id 'first')",
        f"{tmp_path / '4-same-domain.json'}: proxy.listen_path: '/shared/' on domain 'a.example' is already "
        f"served by {tmp_path / '3-other-domain.json'} (api_id 'third')",
    ]


def test_oas_and_classic_clash_on_one_listen_path(tmp_path):
    oas = json.loads((OURS / "oas-full.json").read_text())
    oas["x-tyk-api-gateway"]["server"].pop("customDomain")
    write_apps(tmp_path, {"a.json": classic(proxy={"listen_path": "/pets-api/"}), "b.json": oas})
    result = load_api_dir(tmp_path)
    assert [s.api_id for s in result.apis] == ["a"]
    (problem,) = result.problems
    assert problem.startswith(f"{tmp_path / 'b.json'}: x-tyk-api-gateway.server.listenPath.value: '/pets-api/'")


def test_duplicate_api_id_is_refused_and_the_others_load(tmp_path):
    write_apps(
        tmp_path,
        {
            "a.json": classic(api_id="dup", proxy={"listen_path": "/one/"}),
            "b.json": classic(api_id="dup", proxy={"listen_path": "/two/"}),
            "c.json": classic(api_id="other", proxy={"listen_path": "/three/"}),
        },
    )
    result = load_api_dir(tmp_path)
    assert [s.api_id for s in result.apis] == ["dup", "other"]
    assert result.problems == [f"{tmp_path / 'b.json'}: api_id: 'dup' is already used by {tmp_path / 'a.json'}"]


def test_inactive_definitions_do_not_clash(tmp_path):
    write_apps(
        tmp_path,
        {"a.json": classic(api_id="a", active=False), "b.json": classic(api_id="a")},
    )
    result = load_api_dir(tmp_path)
    assert [s.api_id for s in result.apis] == ["a"] and result.problems == []


def test_broken_files_do_not_stop_the_others(tmp_path):
    shutil.copy(TYK_APPS / "quickstart.json", tmp_path / "quickstart.json")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "notes.txt").write_text("not a definition, not read")
    result = load_api_dir(tmp_path)
    assert [s.api_id for s in result.apis] == ["3"]
    (problem,) = result.problems
    assert problem.startswith(f"{tmp_path / 'broken.json'}: not valid JSON")


def test_missing_app_path_is_a_problem_not_a_crash(tmp_path):
    result = load_api_dir(tmp_path / "nope")
    assert result.apis == []
    assert result.problems == [f"{tmp_path / 'nope'}: app_path: not a directory"]


def test_field_types_are_checked_as_go_decodes_them():
    # Tyk's Go decoder refuses "true" for a bool; a loose conversion would hide typos.
    body = b'{"api_id": "x", "use_keyless": "true", "proxy": {"listen_path": "/x/", "target_url": "http://a"}}'
    with pytest.raises(DefinitionError) as err:
        decode_definition(body, "x.json")
    assert err.value.field == "use_keyless" and "bool" in err.value.message
