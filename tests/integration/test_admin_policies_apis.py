"""Gateway API: ``/tyk/policies`` and ``/tyk/apis`` (Classic and OAS) against a real gateway.

Round trips for every endpoint, every refusal with its status and message (Tyk's, where Tyk has
one), nothing written when a request is refused, a policy change reaching an existing key at
once, and an API written through the API served only after ``/tyk/reload``.
"""

from __future__ import annotations

import copy
import json
import os
import time

import pytest
import requests

from tests.kit.fixtures import REDIS_TEST_URL
from tests.kit.apis import classic_api, oas_api
from tests.kit.fixtures import shared_gateway


def policy(pid: str | None, api_ids=("pol",), **fields) -> dict:
    body = {
        "name": f"policy {pid}",
        "org_id": "default",
        "active": True,
        "rate": 100,
        "per": 1,
        "quota_max": -1,
        "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in api_ids},
        **fields,
    }
    if pid is not None:
        body["id"] = pid
    return body


def ok(action: str, key: str) -> dict:
    return {"key": key, "status": "ok", "action": action}


def err(message: str) -> dict:
    return {"status": "error", "message": message}


def files(directory) -> list[str]:
    return sorted(os.listdir(directory))


def get(gw, path: str, **headers) -> requests.Response:
    return requests.get(gw.url + path, headers=headers, timeout=5)


def starting_apis(upstream_url: str) -> list[dict]:
    return [
        classic_api("existing", "/existing/", upstream_url),
        oas_api("oas-existing", "/oas-existing/", upstream_url),
        classic_api("pol", "/pol/", upstream_url, use_keyless=False, use_standard_auth=True),
    ]


@pytest.fixture
def gw(make_gateway, upstream):
    return make_gateway(starting_apis(upstream.url), policies={"gold": policy("gold")})


@pytest.fixture(scope="module")
def refusals_gw(tmp_path_factory, upstream):
    """The same gateway shared by the refusal tests: each checks that nothing was written."""
    yield from shared_gateway(tmp_path_factory, "refusals", starting_apis(upstream.url), policies={"gold": policy("gold")})


# ---- policies ---------------------------------------------------------------------------------


def test_policy_round_trip(gw):
    status, listed = gw.admin("GET", "/tyk/policies")
    assert status == 200 and [p["id"] for p in listed] == ["gold"]

    assert gw.admin("POST", "/tyk/policies", policy("silver", rate=5)) == (200, ok("added", "silver"))
    on_disk = json.loads((gw.dir / "policies" / "silver.json").read_text())
    assert on_disk["id"] == "silver" and on_disk["rate"] == 5
    assert on_disk["access_rights"]["pol"]["versions"] == ["Default"]

    status, got = gw.admin("GET", "/tyk/policies/silver")
    assert status == 200 and got["id"] == "silver" and got["rate"] == 5 and got["name"] == "policy silver"
    status, listed = gw.admin("GET", "/tyk/policies")
    assert sorted(p["id"] for p in listed) == ["gold", "silver"]

    assert gw.admin("PUT", "/tyk/policies/silver", policy("silver", rate=7)) == (200, ok("modified", "silver"))
    assert gw.admin("GET", "/tyk/policies/silver")[1]["rate"] == 7
    assert json.loads((gw.dir / "policies" / "silver.json").read_text())["rate"] == 7

    assert gw.admin("DELETE", "/tyk/policies/silver") == (200, ok("deleted", "silver"))
    assert not (gw.dir / "policies" / "silver.json").exists()
    assert gw.admin("GET", "/tyk/policies/silver") == (404, err("Policy not found"))
    assert files(gw.dir / "policies") == ["gold.json"]  # no temporary files left behind


def test_policy_id_from_url_and_from_underscore_id(gw):
    assert gw.admin("POST", "/tyk/policies/bronze", policy(None)) == (200, ok("added", "bronze"))
    assert gw.admin("GET", "/tyk/policies/bronze")[1]["id"] == "bronze"
    assert gw.admin("PUT", "/tyk/policies/bronze", policy(None, rate=3)) == (200, ok("modified", "bronze"))
    assert gw.admin("GET", "/tyk/policies/bronze")[1]["rate"] == 3
    assert gw.admin("POST", "/tyk/policies", {**policy(None), "_id": "5e189590801287e42a6cf5ce"}) == (
        200, ok("added", "5e189590801287e42a6cf5ce"))
    # PUT of a policy that does not exist yet creates it, as in Tyk.
    assert gw.admin("PUT", "/tyk/policies/fresh", policy("fresh")) == (200, ok("modified", "fresh"))
    assert gw.admin("GET", "/tyk/policies/fresh")[0] == 200


def test_policy_refusals_write_nothing(refusals_gw):
    gw = refusals_gw
    before = files(gw.dir / "policies")
    cases = [
        ("POST", "/tyk/policies", b"{not json", 400, "Request malformed: not valid JSON"),
        ("POST", "/tyk/policies", b"", 400, "Request malformed: the body must be a policy JSON object"),
        ("POST", "/tyk/policies", [1, 2], 400, "Request malformed: the body must be a JSON object"),
        ("POST", "/tyk/policies", policy("x", rate="fast"), 400, "Request malformed: rate: Expected `int | float`"),
        ("POST", "/tyk/policies", policy("x", access_rights=[]), 400, "Request malformed: access_rights: Expected `object`"),
        ("POST", "/tyk/policies", policy("x", tags="a"), 400, "Request malformed: tags: Expected `array`"),
        ("POST", "/tyk/policies", policy("bad id!"), 400, "Invalid Policy ID: Allowed characters: a-z, A-Z, 0-9, ., _, -, ~"),
        ("POST", "/tyk/policies", policy("../../etc"), 400, "Invalid Policy ID: Allowed characters"),
        ("POST", "/tyk/policies", policy("x" * 201), 400, "Invalid Policy ID: at most 200 characters"),
        ("POST", "/tyk/policies", policy(None), 400, "Unable to create policy without id."),
        ("POST", "/tyk/policies/one", policy("two"), 400, "Request ID does not match that in policy!"),
        ("PUT", "/tyk/policies/gold", policy("silver"), 400,
         "Request ID does not match that in policy! For Update operations these must match."),
        ("PUT", "/tyk/policies", policy("gold"), 400, "Must specify an apiID to update"),
        ("DELETE", "/tyk/policies", None, 400, "Must specify an apiID to delete"),
        ("DELETE", "/tyk/policies/nope", None, 404, "Policy not found"),
        ("GET", "/tyk/policies/nope", None, 404, "Policy not found"),
        ("PATCH", "/tyk/policies/gold", policy("gold"), 405, "Method not supported"),
    ]
    for method, path, body, status, message in cases:
        got_status, got = gw.admin(method, path, body)
        assert got_status == status, (method, path, body, got)
        assert got["status"] == "error" and got["message"].startswith(message), (method, path, got)
    assert files(gw.dir / "policies") == before
    assert gw.admin("GET", "/tyk/policies/gold")[1]["rate"] == 100
    assert gw.admin("GET", "/tyk/policies", secret="wrong")[0] == 403


def test_policy_written_through_the_api_takes_effect_at_once(make_gateway, upstream, store_url):
    gw = make_gateway(
        [classic_api("existing", "/existing/", upstream.url),
         classic_api("pol", "/pol/", upstream.url, use_keyless=False, use_standard_auth=True)],
        {"storage": {"url": store_url}},
    )
    assert gw.admin("POST", "/tyk/policies", policy("live")) == (200, ok("added", "live"))
    status, created = gw.admin("POST", "/tyk/keys/create", {"apply_policies": ["live"]})
    assert status == 200, created
    key = created["key"]
    assert get(gw, "/pol/echo", Authorization=key).status_code == 200

    # The policy now switches the key off: no reload, the next request sees it.
    assert gw.admin("PUT", "/tyk/policies/live", policy("live", is_inactive=True))[0] == 200
    r = get(gw, "/pol/echo", Authorization=key)
    assert r.status_code == 403 and r.json()["error"] == "Key is inactive, please renew"

    # Access moved to another API.
    assert gw.admin("PUT", "/tyk/policies/live", policy("live", api_ids=("existing",)))[0] == 200
    r = get(gw, "/pol/echo", Authorization=key)
    assert r.status_code == 403 and r.json()["error"] == "Access to this API has been disallowed"

    assert gw.admin("PUT", "/tyk/policies/live", policy("live"))[0] == 200
    assert get(gw, "/pol/echo", Authorization=key).status_code == 200


@pytest.mark.parametrize("store_url", ["memory://", REDIS_TEST_URL],
                         indirect=True, ids=["memory", "redis"])
def test_deleting_a_keys_only_policy_makes_the_key_unknown_at_once(make_gateway, upstream, store_url):
    gw = make_gateway([classic_api("pol", "/pol/", upstream.url, use_keyless=False, use_standard_auth=True)],
                      {"storage": {"url": store_url}})
    assert gw.admin("POST", "/tyk/policies", policy("live"))[0] == 200
    key = gw.admin("POST", "/tyk/keys/create", {"apply_policies": ["live"]})[1]["key"]
    assert get(gw, "/pol/echo", Authorization=key).status_code == 200
    assert gw.admin("DELETE", "/tyk/policies/live") == (200, ok("deleted", "live"))
    r = get(gw, "/pol/echo", Authorization=key)
    assert r.status_code == 403 and r.json()["error"] == "Access to this API has been disallowed"


@pytest.mark.parametrize("store_url", [REDIS_TEST_URL], indirect=True, ids=["redis"])
def test_policy_change_reaches_the_other_node(make_gateway, upstream, store_url, tmp_path):
    shared = tmp_path / "shared-policies"
    shared.mkdir()
    apis = [classic_api("pol", "/pol/", upstream.url, use_keyless=False, use_standard_auth=True)]
    settings = {"storage": {"url": store_url}, "policies": {"policy_path": str(shared)}}
    a, b = make_gateway(apis, settings), make_gateway(apis, settings)

    assert a.admin("POST", "/tyk/policies", policy("shared"))[0] == 200
    key = a.admin("POST", "/tyk/keys/create", {"apply_policies": ["shared"]})[1]["key"]
    assert _eventually(lambda: get(b, "/pol/echo", Authorization=key).status_code == 200)
    assert b.admin("GET", "/tyk/policies/shared")[0] == 200

    assert a.admin("PUT", "/tyk/policies/shared", policy("shared", is_inactive=True))[0] == 200
    assert _eventually(lambda: get(b, "/pol/echo", Authorization=key).status_code == 403)
    assert get(b, "/pol/echo", Authorization=key).json()["error"] == "Key is inactive, please renew"


def _eventually(check, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_policies_in_a_map_file_are_edited_in_place(make_gateway, upstream):
    gw = make_gateway([], policies={"all": {"a": policy(None, rate=1), "b": policy(None, rate=2)}})
    status, listed = gw.admin("GET", "/tyk/policies")
    assert sorted(p["id"] for p in listed) == ["a", "b"]

    assert gw.admin("PUT", "/tyk/policies/a", policy("a", rate=10)) == (200, ok("modified", "a"))
    assert files(gw.dir / "policies") == ["all.json"]
    stored = json.loads((gw.dir / "policies" / "all.json").read_text())
    assert stored["a"]["rate"] == 10 and stored["b"]["rate"] == 2

    assert gw.admin("DELETE", "/tyk/policies/b") == (200, ok("deleted", "b"))
    assert list(json.loads((gw.dir / "policies" / "all.json").read_text())) == ["a"]
    assert gw.admin("GET", "/tyk/policies/b")[0] == 404
    assert gw.admin("DELETE", "/tyk/policies/a")[0] == 200
    assert files(gw.dir / "policies") == []


def test_policy_file_holding_another_policy_is_not_overwritten(make_gateway):
    gw = make_gateway([], policies={"x": policy("y")})  # x.json holds policy "y"
    status, body = gw.admin("POST", "/tyk/policies", policy("x"))
    assert status == 400 and "x.json holding other policies (y)" in body["message"]
    assert json.loads((gw.dir / "policies" / "x.json").read_text())["id"] == "y"


def test_policy_writes_without_policy_path_are_a_config_error(make_gateway):
    gw = make_gateway([], {"policies": {"policy_path": ""}})
    assert gw.admin("GET", "/tyk/policies") == (200, [])
    assert gw.admin("GET", "/tyk/policies/gold") == (404, err("Policy not found"))
    assert gw.admin("DELETE", "/tyk/policies/gold") == (404, err("Policy not found"))
    assert gw.admin("POST", "/tyk/policies", policy("gold")) == (
        500, err("Policies cannot be written: [policies] policy_path is not set in the gateway config"))


def test_policy_writes_with_service_source_are_refused(make_gateway):
    gw = make_gateway([], {"policies": {"policy_source": "service"}})
    assert gw.admin("POST", "/tyk/policies", policy("gold")) == (
        500, err("Due to enabled service policy source, please use the Dashboard API"))


# ---- Classic APIs -----------------------------------------------------------------------------


def test_classic_api_round_trip_served_after_reload(gw, upstream):
    body = classic_api("new1", "/new1/", upstream.url)
    assert gw.admin("POST", "/tyk/apis", body) == (200, ok("added", "new1"))
    assert json.loads((gw.dir / "apps" / "new1.json").read_text()) == body
    assert gw.admin("GET", "/tyk/apis/new1") == (200, body)
    status, listed = gw.admin("GET", "/tyk/apis")
    assert status == 200 and body in listed
    assert {a.get("api_id") or a["x-tyk-api-gateway"]["info"]["id"] for a in listed} == {
        "existing", "oas-existing", "pol", "new1"}

    assert get(gw, "/new1/echo").status_code == 404  # not served until a reload
    assert gw.admin("GET", "/tyk/reload") == (200, {"status": "ok", "message": ""})
    r = get(gw, "/new1/echo")
    assert r.status_code == 200 and r.json()["path"] == "/echo"

    changed = classic_api("new1", "/renamed/", upstream.url)
    assert gw.admin("PUT", "/tyk/apis/new1", changed) == (200, ok("modified", "new1"))
    assert gw.admin("GET", "/tyk/apis/new1") == (200, changed)
    assert get(gw, "/new1/echo").status_code == 200  # still the old one until the reload
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/new1/echo").status_code == 404
    assert get(gw, "/renamed/echo").status_code == 200

    assert gw.admin("DELETE", "/tyk/apis/new1") == (200, ok("deleted", "new1"))
    assert not (gw.dir / "apps" / "new1.json").exists()
    assert gw.admin("GET", "/tyk/apis/new1") == (404, err("API not found"))
    assert get(gw, "/renamed/echo").status_code == 200
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/renamed/echo").status_code == 404
    assert all(not name.startswith(".") for name in files(gw.dir / "apps"))


def test_classic_api_ids_generated_and_taken_from_the_url(gw, upstream):
    body = classic_api("x", "/gen/", upstream.url)
    del body["api_id"]
    status, reply = gw.admin("POST", "/tyk/apis", body)
    assert status == 200 and reply["action"] == "added"
    generated = reply["key"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert gw.admin("GET", f"/tyk/apis/{generated}")[1]["api_id"] == generated

    body = classic_api("x", "/byurl/", upstream.url)
    del body["api_id"]
    assert gw.admin("POST", "/tyk/apis/byurl", body) == (200, ok("added", "byurl"))
    body["name"] = "renamed"
    assert gw.admin("PUT", "/tyk/apis/byurl", body) == (200, ok("modified", "byurl"))
    assert gw.admin("GET", "/tyk/apis/byurl")[1]["name"] == "renamed"


def test_classic_api_refusals_write_nothing(refusals_gw, upstream):
    gw = refusals_gw
    before = files(gw.dir / "apps")
    up = upstream.url
    no_target = classic_api("t1", "/t1/", up)
    del no_target["proxy"]["target_url"]
    cases = [
        ("POST", "/tyk/apis", b"{oops", 400, "Request malformed: not valid JSON"),
        ("POST", "/tyk/apis", b"", 400, "Request malformed"),
        ("POST", "/tyk/apis", "a string", 400, "Request malformed: the body must be a JSON object"),
        ("POST", "/tyk/apis", no_target, 400,
         "Validation of API Definition failed. Reason: proxy.target_url: missing: every API needs an upstream URL."),
        ("POST", "/tyk/apis", classic_api("t2", "/t2/", "ftp://x"), 400,
         "Validation of API Definition failed. Reason: proxy.target_url:"),
        ("POST", "/tyk/apis", classic_api("t3", 5, up), 400,
         "Validation of API Definition failed. Reason: proxy.listen_path: Expected `str | null`, got `int`"),
        ("POST", "/tyk/apis", classic_api("t4", "/t4/", up, use_keyless="yes"), 400,
         "Validation of API Definition failed. Reason: use_keyless:"),
        ("POST", "/tyk/apis", classic_api(7, "/t5/", up), 400,
         "Validation of API Definition failed. Reason: api_id: expected a string"),
        ("POST", "/tyk/apis", classic_api("existing", "/elsewhere/", up), 400,
         "API with api_id 'existing' already exists (existing.json); update it with PUT /tyk/apis/existing"),
        ("POST", "/tyk/apis", classic_api("oas-existing", "/elsewhere/", up), 400,
         "API with api_id 'oas-existing' already exists"),
        ("POST", "/tyk/apis", classic_api("clash", "/existing/", up), 400,
         "Validation of API Definition failed. Reason: proxy.listen_path: '/existing/' is already used by API 'existing'."),
        ("POST", "/tyk/apis", classic_api("clash2", "/oas-existing/", up), 400, "Validation of API Definition failed."),
        ("POST", "/tyk/apis", classic_api("../escape", "/esc/", up), 400, "Invalid API ID"),
        ("POST", "/tyk/apis", classic_api("a\\b", "/esc/", up), 400, "Invalid API ID"),
        ("POST", "/tyk/apis", classic_api("..", "/esc/", up), 400, "Invalid API ID"),
        ("POST", "/tyk/apis", classic_api("%2e%2e", "/esc/", up), 400, "Invalid API ID"),
        ("POST", "/tyk/apis", classic_api("x" * 201, "/esc/", up), 400, "Invalid API ID"),
        ("POST", "/tyk/apis", oas_api("o", "/o/", up), 400,
         "this API endpoint only supports Tyk Classic APIs; please use the appropriate Tyk OAS API endpoint"),
        ("POST", "/tyk/apis/one", classic_api("two", "/two/", up), 400,
         "Request APIID does not match that in Definition! For Update operations these must match."),
        ("PUT", "/tyk/apis/existing", classic_api("other", "/existing/", up), 400,
         "Request APIID does not match that in Definition! For Update operations these must match."),
        ("PUT", "/tyk/apis/existing", classic_api("existing", "/pol/", up), 400,
         "Validation of API Definition failed. Reason: proxy.listen_path: '/pol/' is already used by API 'pol'."),
        ("PUT", "/tyk/apis/existing", {**classic_api("existing", "/existing/", up), "proxy": []}, 400,
         "Validation of API Definition failed. Reason: proxy:"),
        ("PUT", "/tyk/apis/existing", b"[", 400, "Request malformed"),
        ("PUT", "/tyk/apis/nope", classic_api("nope", "/nope/", up), 404, "API not found"),
        ("PUT", "/tyk/apis/oas-existing", oas_api("oas-existing", "/oas-existing/", up), 400,
         "this API endpoint only supports Tyk Classic APIs"),
        ("PUT", "/tyk/apis/existing", oas_api("existing", "/existing/", up), 400,
         "this API endpoint only supports Tyk Classic APIs"),
        ("GET", "/tyk/apis/nope", None, 404, "API not found"),
        ("DELETE", "/tyk/apis/nope", None, 404, "API not found"),
        ("DELETE", "/tyk/apis/a%01b", None, 400, "Invalid API ID"),
        ("PUT", "/tyk/apis", classic_api("existing", "/existing/", up), 405, "Method not supported"),
    ]
    for method, path, body, status, message in cases:
        got_status, got = gw.admin(method, path, body)
        assert got_status == status, (method, path, got)
        assert got["status"] == "error" and got["message"].startswith(message), (method, path, got)
    assert files(gw.dir / "apps") == before
    assert gw.admin("GET", "/tyk/apis/existing")[1]["proxy"]["listen_path"] == "/existing/"


def test_inactive_api_may_share_a_listen_path(gw, upstream):
    body = classic_api("sleeper", "/existing/", upstream.url, active=False)
    assert gw.admin("POST", "/tyk/apis", body) == (200, ok("added", "sleeper"))
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/existing/echo").status_code == 200


def test_a_file_named_for_the_id_but_holding_another_api_is_kept(make_gateway, upstream):
    gw = make_gateway([])
    (gw.dir / "apps" / "taken.json").write_text(json.dumps(classic_api("someone", "/someone/", upstream.url)))
    status, body = gw.admin("POST", "/tyk/apis", classic_api("taken", "/taken/", upstream.url))
    assert status == 400 and "taken.json defining API 'someone'" in body["message"]
    # A PUT rewrites the file that holds the API, whatever its name.
    changed = classic_api("someone", "/someone-else/", upstream.url)
    assert gw.admin("PUT", "/tyk/apis/someone", changed) == (200, ok("modified", "someone"))
    assert json.loads((gw.dir / "apps" / "taken.json").read_text()) == changed
    assert files(gw.dir / "apps") == ["taken.json"]


# ---- OAS APIs ---------------------------------------------------------------------------------


def test_oas_api_round_trip_served_after_reload(gw, upstream):
    doc = oas_api("oas1", "/oas1/", upstream.url)
    assert gw.admin("POST", "/tyk/apis/oas", doc) == (200, ok("added", "oas1"))
    assert json.loads((gw.dir / "apps" / "oas1.json").read_text()) == doc
    assert gw.admin("GET", "/tyk/apis/oas/oas1") == (200, doc)
    assert gw.admin("GET", "/tyk/apis/oas1") == (200, doc)  # the Classic endpoint shows it as stored
    status, listed = gw.admin("GET", "/tyk/apis/oas")
    assert status == 200 and sorted(d["x-tyk-api-gateway"]["info"]["id"] for d in listed) == ["oas-existing", "oas1"]
    status, public = gw.admin("GET", "/tyk/apis/oas?mode=public")
    assert status == 200 and all("x-tyk-api-gateway" not in d for d in public) and len(public) == 2
    status, one = gw.admin("GET", "/tyk/apis/oas/oas1?mode=public")
    assert status == 200 and one == {k: v for k, v in doc.items() if k != "x-tyk-api-gateway"}

    assert get(gw, "/oas1/echo").status_code == 404
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/oas1/echo").status_code == 200

    changed = oas_api("oas1", "/oas1-v2/", upstream.url)
    assert gw.admin("PUT", "/tyk/apis/oas/oas1", changed) == (200, ok("modified", "oas1"))
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/oas1/echo").status_code == 404
    assert get(gw, "/oas1-v2/echo").status_code == 200

    assert gw.admin("DELETE", "/tyk/apis/oas/oas1") == (200, ok("deleted", "oas1"))
    assert gw.admin("GET", "/tyk/apis/oas/oas1") == (404, err("API not found"))
    gw.admin("GET", "/tyk/reload")
    assert get(gw, "/oas1-v2/echo").status_code == 404


def test_oas_api_generated_id_and_id_from_url(gw, upstream):
    status, reply = gw.admin("POST", "/tyk/apis/oas", oas_api(None, "/gen-oas/", upstream.url))
    assert status == 200 and len(reply["key"]) == 32
    stored = gw.admin("GET", f"/tyk/apis/oas/{reply['key']}")[1]
    assert stored["x-tyk-api-gateway"]["info"]["id"] == reply["key"]

    assert gw.admin("PUT", f"/tyk/apis/oas/{reply['key']}", oas_api(None, "/gen-oas2/", upstream.url)) == (
        200, ok("modified", reply["key"]))


def test_oas_patch(gw, upstream):
    original = gw.admin("GET", "/tyk/apis/oas/oas-existing")[1]
    # Without x-tyk-api-gateway: the OpenAPI part changes, the Tyk part and servers are kept.
    original_with_servers = {**original, "servers": [{"url": "http://gw.example/oas-existing/"}]}
    assert gw.admin("PUT", "/tyk/apis/oas/oas-existing", original_with_servers)[0] == 200
    patch = {"openapi": "3.0.3", "info": {"title": "patched", "version": "2"}, "paths": {"/x": {}}}
    assert gw.admin("PATCH", "/tyk/apis/oas/oas-existing", patch) == (200, ok("modified", "oas-existing"))
    stored = gw.admin("GET", "/tyk/apis/oas/oas-existing")[1]
    assert stored["info"]["title"] == "patched" and stored["paths"] == {"/x": {}}
    assert stored["x-tyk-api-gateway"] == original["x-tyk-api-gateway"]
    assert stored["servers"] == [{"url": "http://gw.example/oas-existing/"}]

    # Query parameters override the listen path and upstream.
    status, _ = gw.admin("PATCH", "/tyk/apis/oas/oas-existing?listenPath=/patched/&upstreamURL="
                         + upstream.url + "/base", patch)
    assert status == 200
    ext = gw.admin("GET", "/tyk/apis/oas/oas-existing")[1]["x-tyk-api-gateway"]
    assert ext["server"]["listenPath"]["value"] == "/patched/"
    assert ext["upstream"]["url"] == upstream.url + "/base"
    gw.admin("GET", "/tyk/reload")
    r = get(gw, "/patched/echo")
    assert r.status_code == 200 and r.json()["path"] == "/base/echo"

    # With x-tyk-api-gateway: the whole document is replaced, as PUT does.
    full = oas_api("oas-existing", "/full/", upstream.url)
    assert gw.admin("PATCH", "/tyk/apis/oas/oas-existing", full) == (200, ok("modified", "oas-existing"))
    assert gw.admin("GET", "/tyk/apis/oas/oas-existing")[1] == full


def test_oas_refusals_write_nothing(refusals_gw, upstream):
    gw = refusals_gw
    before = files(gw.dir / "apps")
    up = upstream.url
    no_upstream = oas_api("o1", "/o1/", up)
    del no_upstream["x-tyk-api-gateway"]["upstream"]
    bad_version = {**oas_api("o2", "/o2/", up), "openapi": "2.0"}
    no_info = {k: v for k, v in oas_api("o3", "/o3/", up).items() if k != "info"}
    no_paths = {k: v for k, v in oas_api("o4", "/o4/", up).items() if k != "paths"}
    bad_ext = {**oas_api("o5", "/o5/", up), "x-tyk-api-gateway": []}
    bad_server = copy.deepcopy(oas_api("o6", "/o6/", up))
    bad_server["x-tyk-api-gateway"]["server"] = {"listenPath": {"value": 1}}
    plain = {k: v for k, v in oas_api("o7", "/o7/", up).items() if k != "x-tyk-api-gateway"}
    cases = [
        ("POST", "/tyk/apis/oas", b"nope", 400, "Request malformed: not valid JSON"),
        ("POST", "/tyk/apis/oas", plain, 400, "the payload should contain x-tyk-api-gateway"),
        ("POST", "/tyk/apis/oas", classic_api("c", "/c/", up), 400, "the payload should contain x-tyk-api-gateway"),
        ("POST", "/tyk/apis/oas", no_upstream, 400,
         "Validation of API Definition failed. Reason: x-tyk-api-gateway.upstream.url: missing"),
        ("POST", "/tyk/apis/oas", bad_version, 400, "Validation of API Definition failed. Reason: openapi:"),
        ("POST", "/tyk/apis/oas", no_info, 400, "Validation of API Definition failed. Reason: info:"),
        ("POST", "/tyk/apis/oas", no_paths, 400, "Validation of API Definition failed. Reason: paths:"),
        ("POST", "/tyk/apis/oas", bad_ext, 400,
         "Validation of API Definition failed. Reason: x-tyk-api-gateway: expected an object."),
        ("POST", "/tyk/apis/oas", bad_server, 400,
         "Validation of API Definition failed. Reason: x-tyk-api-gateway.server.listenPath.value:"),
        ("POST", "/tyk/apis/oas", oas_api("existing", "/x/", up), 400, "API with api_id 'existing' already exists"),
        ("POST", "/tyk/apis/oas", oas_api("o8", "/existing/", up), 400,
         "Validation of API Definition failed. Reason: x-tyk-api-gateway.server.listenPath.value: "
         "'/existing/' is already used by API 'existing'."),
        ("POST", "/tyk/apis/oas", oas_api("a/b", "/ab/", up), 400, "Invalid API ID"),
        ("GET", "/tyk/apis/oas/existing", None, 400,
         "the requested API definition is in Tyk classic format, please use old api endpoint"),
        ("GET", "/tyk/apis/oas/nope", None, 404, "API not found"),
        ("PUT", "/tyk/apis/oas/existing", oas_api("existing", "/existing/", up), 400,
         "the supplied API definition is in OAS format, please use the Tyk classic format for this API"),
        ("PUT", "/tyk/apis/oas/nope", oas_api("nope", "/nope/", up), 404, "API not found"),
        ("PUT", "/tyk/apis/oas/oas-existing", plain, 400, "the payload should contain x-tyk-api-gateway"),
        ("PUT", "/tyk/apis/oas/oas-existing", oas_api("other", "/oas-existing/", up), 400,
         "Request APIID does not match that in Definition! For Update operations these must match."),
        ("PATCH", "/tyk/apis/oas/nope", plain, 404, "API not found"),
        ("PATCH", "/tyk/apis/oas/existing", plain, 400, "the supplied API definition is in OAS format"),
        ("PATCH", "/tyk/apis/oas/oas-existing", [], 400, "Request malformed"),
        ("PATCH", "/tyk/apis/oas/oas-existing?listenPath=/existing/", plain, 400,
         "Validation of API Definition failed. Reason: x-tyk-api-gateway.server.listenPath.value: "
         "'/existing/' is already used by API 'existing'."),
        ("PATCH", "/tyk/apis/oas/oas-existing", {**plain, "openapi": 3}, 400,
         "Validation of API Definition failed. Reason: openapi:"),
        ("DELETE", "/tyk/apis/oas/nope", None, 404, "API not found"),
    ]
    for method, path, body, status, message in cases:
        got_status, got = gw.admin(method, path, body)
        assert got_status == status, (method, path, got)
        assert got["status"] == "error" and got["message"].startswith(message), (method, path, got)
    assert files(gw.dir / "apps") == before


def test_delete_through_the_oas_path_removes_a_classic_api_too(gw):
    assert gw.admin("DELETE", "/tyk/apis/oas/existing") == (200, ok("deleted", "existing"))
    assert gw.admin("GET", "/tyk/apis/existing")[0] == 404


def test_no_client_input_causes_a_5xx(gw, upstream):
    bodies = [b"", b"null", b"0", b"\"\"", b"[]", b"{}", b"{\"a\":", b"\xff\xfe", b"{\"api_id\":null}",
              b"{\"proxy\":null}", b"{\"proxy\":{\"listen_path\":{}}}", b"{\"x-tyk-api-gateway\":null}",
              b"{\"x-tyk-api-gateway\":{\"info\":[]}}", b"{\"x-tyk-api-gateway\":{\"info\":{\"id\":5}}}",
              b"{\"openapi\":\"3.0.0\",\"x-tyk-api-gateway\":\"s\"}", b"{\"access_rights\":{\"a\":5}}",
              b"{\"id\":[]}", b"{\"partitions\":1}", json.dumps(oas_api("z", "/z/", "not a url")).encode()]
    paths = [("POST", "/tyk/apis"), ("POST", "/tyk/apis/zz"), ("PUT", "/tyk/apis/existing"),
             ("POST", "/tyk/apis/oas"), ("PUT", "/tyk/apis/oas/oas-existing"),
             ("PATCH", "/tyk/apis/oas/oas-existing"), ("PATCH", "/tyk/apis/oas/oas-existing?listenPath=/q/"),
             ("POST", "/tyk/policies"), ("POST", "/tyk/policies/zz"), ("PUT", "/tyk/policies/gold")]
    for method, path in paths:
        for body in bodies:
            status, got = gw.admin(method, path, body)
            assert status < 500, (method, path, body, got)
            if status != 200:  # "{}" is a valid policy when the URL names it
                assert got["status"] == "error" and got["message"], (method, path, body, got)
    assert "Traceback" not in gw.log
