"""``fastgate import-oas`` and ``POST /tyk/apis/oas/import`` against a real gateway: the imported
petstore is served with its API key header, refused imports store nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from tests.kit.apis import rights
from tests.kit.gateway_api import create_key
from tests.kit.procs import SECRET, free_port, run_cli

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "openapi"
ADMIN = {"X-Tyk-Authorization": SECRET}


def wait_served(url: str, status: int, headers: dict | None = None, timeout: float = 5.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = requests.get(url, headers=headers or {}, timeout=5)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_cli_import_written_into_app_path_is_served(make_gateway, up, tmp_path):
    out = tmp_path / "petstore.json"
    done = run_cli("import-oas", str(DOCS / "petstore.json"), "--listen-path", "/petstore/", "--upstream", up.url,
                   "--authentication", "--out", str(out))
    assert done.returncode == 0, done.stderr
    definition = json.loads(out.read_text())
    ext = definition["x-tyk-api-gateway"]
    api_id = ext["info"]["id"]
    assert api_id and ext["server"]["authentication"]["securitySchemes"]["api_key"]["header"]["enabled"] is True
    gw = make_gateway([definition])
    resp = requests.get(gw.url + "/petstore/pets", timeout=5)
    assert resp.status_code == 401 and resp.json() == {"error": "Authorization field missing"}
    assert up.seen() == []
    key = create_key(gw, {"access_rights": rights(api_id), "org_id": "default"})["key"]
    resp = requests.get(gw.url + "/petstore/pets?limit=2", headers={"X-API-Key": key}, timeout=5)
    assert resp.status_code == 200
    seen = up.seen()[-1]
    assert seen["path"].endswith("/pets") and seen["query"] == "limit=2"


def test_cli_yaml_to_stdout_and_refusals(tmp_path):
    done = run_cli("import-oas", str(DOCS / "inventory.yaml"), "--listen-path", "/inventory/",
                   "--upstream", "http://127.0.0.1:1/", "--authentication")
    assert done.returncode == 0, done.stderr
    schemes = json.loads(done.stdout)["x-tyk-api-gateway"]["server"]["authentication"]["securitySchemes"]
    assert set(schemes) == {"basicAuth", "bearerJwt"}

    out = tmp_path / "never.json"
    done = run_cli("import-oas", str(DOCS / "swagger2.json"), "--upstream", "http://127.0.0.1:1/", "--out", str(out))
    assert done.returncode != 0 and "/swagger" in done.stderr and not out.exists()

    ghost = json.loads((DOCS / "petstore.json").read_text())
    ghost["security"] = [{"ghost_scheme": []}]
    src = tmp_path / "ghost.json"
    src.write_text(json.dumps(ghost))
    done = run_cli("import-oas", str(src), "--upstream", "http://127.0.0.1:1/", "--authentication", "--out", str(out))
    assert done.returncode != 0 and "/security/0/ghost_scheme" in done.stderr and not out.exists()

    done = run_cli("import-oas", str(tmp_path / "missing.yaml"))
    assert done.returncode != 0 and "missing.yaml" in done.stderr


def test_gateway_api_import_json_and_yaml(make_gateway, up):
    control = free_port()
    gw = make_gateway([], {"control_api_port": control})
    api = f"http://127.0.0.1:{control}"
    query = {"upstreamURL": up.url, "listenPath": "/petstore/", "authentication": "true"}

    for bad, where in ((DOCS / "swagger2.json").read_bytes(), "/swagger"), (
            json.dumps({**json.loads((DOCS / "petstore.json").read_text()), "security": [{"ghost_scheme": []}]}
                       ).encode(), "/security/0/ghost_scheme"):
        resp = requests.post(api + "/tyk/apis/oas/import", params=query, data=bad,
                             headers={**ADMIN, "Content-Type": "application/json"}, timeout=5)
        assert resp.status_code == 400
        body = resp.json()
        assert set(body) == {"status", "message"} and body["status"] == "error" and where in body["message"]
    assert requests.get(api + "/tyk/apis/oas", headers=ADMIN, timeout=5).json() == []

    resp = requests.post(api + "/tyk/apis/oas/import", params=query, data=(DOCS / "petstore.json").read_bytes(),
                         headers={**ADMIN, "Content-Type": "application/json"}, timeout=5)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    pets = answer["key"]
    assert answer == {"key": pets, "status": "ok", "action": "added"} and pets

    yaml_query = {**query, "listenPath": "/inventory/"}
    resp = requests.post(api + "/tyk/apis/oas/import", params=yaml_query, data=(DOCS / "inventory.yaml").read_bytes(),
                         headers={**ADMIN, "Content-Type": "application/yaml"}, timeout=5)
    assert resp.status_code == 200, resp.text
    inventory = resp.json()["key"]
    assert inventory and inventory != pets

    assert requests.get(api + "/tyk/reload?block=true", headers=ADMIN, timeout=10).status_code == 200
    stored = requests.get(api + f"/tyk/apis/oas/{pets}", headers=ADMIN, timeout=5).json()
    assert stored["openapi"] == "3.0.3" and stored["x-tyk-api-gateway"]["info"]["id"] == pets
    assert stored["x-tyk-api-gateway"]["server"]["listenPath"]["value"] == "/petstore/"
    stored = requests.get(api + f"/tyk/apis/oas/{inventory}", headers=ADMIN, timeout=5).json()
    assert stored["openapi"] == "3.1.0" and stored["x-tyk-api-gateway"]["info"]["name"] == "Inventory"

    resp = wait_served(gw.url + "/petstore/pets", 401)
    assert resp.status_code == 401 and resp.json() == {"error": "Authorization field missing"}

    made = requests.post(api + "/tyk/keys/create", json={"access_rights": rights(pets), "org_id": "default"},
                         headers=ADMIN, timeout=5).json()
    resp = requests.get(gw.url + "/petstore/pets?limit=2", headers={"X-API-Key": made["key"]}, timeout=5)
    assert resp.status_code == 200
    seen = up.seen()[-1]
    assert seen["path"].endswith("/pets") and seen["query"] == "limit=2"

    # YAML aliases would expand without bound once stored as JSON: refused.
    resp = requests.post(api + "/tyk/apis/oas/import", params=query, data=b"a: &a [1]\nb: *a\n",
                         headers={**ADMIN, "Content-Type": "application/yaml"}, timeout=5)
    assert resp.status_code == 400 and "aliases" in resp.json()["message"]
    resp = requests.post(api + "/tyk/apis/oas/import", params=query, data=b"", headers=ADMIN, timeout=5)
    assert resp.status_code == 400
