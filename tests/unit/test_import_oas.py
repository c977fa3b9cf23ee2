"""OpenAPI 3 documents into Tyk OAS definitions (``fastgate.apidef.import_oas``), on real public
documents (tests/fixtures/openapi): golden extensions field by field, and every refusal naming
the JSON pointer of what cannot be mapped."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest

from fastgate.apidef.import_oas import ImportOptions, ImportProblem, import_openapi, parse_document, pointer
from fastgate.apidef.loader import decode_definition
from fastgate.auth import check_auth_settings

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "openapi"
UPSTREAM = "http://127.0.0.1:9999/"


def load(name: str) -> dict:
    return parse_document((DOCS / name).read_bytes(), yaml_hint=name.endswith(".yaml"))


def test_petstore_json_golden():
    doc = load("petstore.json")
    before = copy.deepcopy(doc)
    out = import_openapi(doc, ImportOptions(upstream_url=UPSTREAM, listen_path="/petstore/", authentication=True,
                                            api_id="pets"))
    assert doc == before  # the input is not modified
    assert out["openapi"] == "3.0.3" and list(out["paths"]) == list(doc["paths"]) == ["/pets", "/pets/{petId}"]
    assert {k: v for k, v in out.items() if k != "x-tyk-api-gateway"} == doc
    assert out["x-tyk-api-gateway"] == {
        "info": {"id": "pets", "name": "Swagger Petstore", "state": {"active": True}},
        "upstream": {"url": UPSTREAM},
        "server": {
            "listenPath": {"value": "/petstore/", "strip": True},
            "authentication": {
                "enabled": True,
                "securitySchemes": {"api_key": {"enabled": True, "header": {"enabled": True, "name": "X-API-Key"}}},
            },
        },
    }
    spec = decode_definition(orjson.dumps(out), "pets.json")  # what the loader makes of it
    check_auth_settings(spec)
    assert (spec.api_id, spec.listen_path, spec.target_url, spec.use_keyless) == ("pets", "/petstore/", UPSTREAM, False)
    assert spec.token is not None and spec.token.source.header_name == "X-API-Key"


def test_inventory_yaml_31_golden():
    doc = load("inventory.yaml")
    out = import_openapi(doc, ImportOptions(upstream_url=UPSTREAM, listen_path="/inventory/", authentication=True))
    ext = out["x-tyk-api-gateway"]
    assert out["openapi"] == "3.1.0" and list(out["paths"]) == ["/items", "/items/{sku}", "/reservations"]
    assert isinstance(ext["info"]["id"], str) and len(ext["info"]["id"]) == 32  # one is made when none is given
    assert ext["info"]["name"] == "Inventory" and ext["info"]["state"] == {"active": True}
    assert ext["server"]["listenPath"]["value"] == "/inventory/" and ext["upstream"]["url"] == UPSTREAM
    auth = ext["server"]["authentication"]
    assert auth["enabled"] is True
    bearer = {"enabled": True, "header": {"enabled": True, "name": "Authorization"}}
    # Only the root requirement's schemes: oauth and oidc belong to single operations.
    assert auth["securitySchemes"] == {"basicAuth": bearer, "bearerJwt": bearer}
    spec = decode_definition(orjson.dumps(out), "inventory.json")
    check_auth_settings(spec)
    assert spec.basic is not None and spec.jwt is not None and spec.token is None


def test_larger_public_document_without_authentication_uses_servers_and_allow_list():
    doc = load("swagger-petstore-v3.yaml")  # 19 operations, oauth2 + apiKey schemes
    out = import_openapi(doc, ImportOptions(upstream_url=UPSTREAM, listen_path="/store/", allow_list=True))
    ext = out["x-tyk-api-gateway"]
    assert "authentication" not in ext["server"]
    operations = ext["middleware"]["operations"]
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert sorted(operations) == sorted(ids) and len(ids) == 19
    assert all(entry == {"allow": {"enabled": True}} for entry in operations.values())
    decode_definition(orjson.dumps(out), "store.json")


def test_upstream_from_servers_with_variables():
    out = import_openapi(load("inventory.yaml"), ImportOptions())
    assert out["x-tyk-api-gateway"]["upstream"]["url"] == "https://inventory.example.com/v2"
    assert out["x-tyk-api-gateway"]["server"]["listenPath"] == {"value": "/", "strip": True}


def test_query_and_cookie_api_keys_and_oauth():
    doc = load("petstore.json")
    doc["components"]["securitySchemes"] = {
        "q": {"type": "apiKey", "in": "query", "name": "key"},
        "c": {"type": "apiKey", "in": "cookie", "name": "session"},
        "o": {"type": "oauth2", "flows": {}},
        "oidc": {"type": "openIdConnect", "openIdConnectUrl": "https://idp.example/.well-known/openid-configuration"},
    }
    doc["security"] = [{"q": [], "c": [], "o": [], "oidc": []}]
    schemes = import_openapi(doc, ImportOptions(upstream_url=UPSTREAM, authentication=True))[
        "x-tyk-api-gateway"]["server"]["authentication"]["securitySchemes"]
    assert schemes["q"] == {"enabled": True, "query": {"enabled": True, "name": "key"}}
    assert schemes["c"] == {"enabled": True, "cookie": {"enabled": True, "name": "session"}}
    assert schemes["o"] == schemes["oidc"] == {"enabled": True, "header": {"enabled": True, "name": "Authorization"}}


def refusal(doc: dict, **options) -> ImportProblem:
    with pytest.raises(ImportProblem) as caught:
        import_openapi(doc, ImportOptions(**{"upstream_url": UPSTREAM, **options}))
    return caught.value


def test_swagger_2_is_refused_naming_swagger():
    problem = refusal(json.loads((DOCS / "swagger2.json").read_text()))
    assert problem.where == "/swagger" and "OpenAPI 3" in str(problem)


def test_undefined_scheme_is_refused_with_its_pointer():
    doc = load("petstore.json")
    doc["security"] = [{"ghost_scheme": []}]
    problem = refusal(doc, authentication=True)
    assert problem.where == "/security/0/ghost_scheme"
    assert "/components/securitySchemes" in str(problem)


@pytest.mark.parametrize("change, where", [
    (lambda d: d.pop("openapi"), "/openapi"),
    (lambda d: d.update(openapi="2.0"), "/openapi"),
    (lambda d: d.update(openapi="4.0.0"), "/openapi"),
    (lambda d: d["info"].pop("title"), "/info/title"),
    (lambda d: d.pop("info"), "/info"),
    (lambda d: d.update(paths=[]), "/paths"),
    (lambda d: d.update({"x-tyk-api-gateway": {}}), "/x-tyk-api-gateway"),
    (lambda d: d.pop("security"), "/security"),
    (lambda d: d.update(security=[{}]), "/security/0"),
    (lambda d: d["components"]["securitySchemes"].update(
        api_key={"type": "http", "scheme": "digest"}), "/components/securitySchemes/api_key/scheme"),
    (lambda d: d["components"]["securitySchemes"].update(
        api_key={"type": "http", "scheme": "bearer"}), "/components/securitySchemes/api_key/bearerFormat"),
    (lambda d: d["components"]["securitySchemes"].update(
        api_key={"type": "mutualTLS"}), "/components/securitySchemes/api_key/type"),
    (lambda d: d["components"]["securitySchemes"].update(
        api_key={"type": "apiKey", "in": "body", "name": "k"}), "/components/securitySchemes/api_key/in"),
    (lambda d: d["components"]["securitySchemes"].update(
        api_key={"type": "apiKey", "in": "header"}), "/components/securitySchemes/api_key/name"),
])
def test_each_unmappable_part_names_its_pointer(change, where):
    doc = load("petstore.json")
    change(doc)
    assert refusal(doc, authentication=True).where == where


def test_no_upstream_anywhere_names_servers():
    doc = load("petstore.json")
    doc["servers"] = [{"url": "/v1"}]
    assert refusal(doc, upstream_url="").where == "/servers/0/url"
    doc.pop("servers")
    assert refusal(doc, upstream_url="").where == "/servers"


def test_pointer_escapes():
    assert pointer("paths", "/pets/{id}", "a~b") == "/paths/~1pets~1{id}/a~0b"


def test_yaml_aliases_and_bad_input_are_refused():
    bomb = b"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(ImportProblem, match="aliases"):
        parse_document(bomb, yaml_hint=True)
    with pytest.raises(ImportProblem, match="not valid JSON"):
        parse_document(b'{"openapi": ')
    with pytest.raises(ImportProblem, match="YAML"):
        parse_document(b"openapi: [unclosed\n")
    with pytest.raises(ImportProblem, match="object"):
        parse_document(b"[1, 2]")
    with pytest.raises(ImportProblem, match="tag"):
        parse_document(b"a: !!python/object/apply:os.system ['true']\n", yaml_hint=True)
