"""Load a running fastgate with locust: keyless, auth-token, JWT and basic-auth APIs.

At start (``test_start``) the APIs are written into the gateway's ``app_path`` through the
Gateway API (``POST /tyk/apis``), reloaded, and one token key, one basic-auth user and a JWT
secret are made; the users then call the four APIs in turn. locust is a bench extra
(``pip install -e '.[bench]'``), never a runtime dependency.

    FG_SECRET=<gateway secret> locust -f bench/locustfile.py --headless -u 200 -r 50 -t 30s \\
        --host http://127.0.0.1:8080 [--upstream http://127.0.0.1:8000] [--admin-url http://127.0.0.1:9696]

``--upstream`` is where the APIs proxy to (any HTTP server answering 200 on every path);
``--admin-url`` is the Gateway API (default: the ``--host``). The APIs are removed at the end.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from typing import Any

import jwt
import requests
from locust import HttpUser, between, events, task

PREFIX = "locust-"
JWT_SECRET = secrets.token_bytes(32)
STATE: dict[str, Any] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--upstream", default=os.environ.get("FG_UPSTREAM", "http://127.0.0.1:8000"),
                        help="the upstream the test APIs proxy to")
    parser.add_argument("--admin-url", default=os.environ.get("FG_ADMIN_URL", ""),
                        help="the Gateway API base URL (default: --host)")


def _apis(upstream: str) -> list[dict[str, Any]]:
    def api(name: str, **fields: Any) -> dict[str, Any]:
        return {"api_id": PREFIX + name, "name": PREFIX + name, "org_id": "default", "active": True,
                "use_keyless": False,
                "proxy": {"listen_path": f"/{PREFIX}{name}/", "target_url": upstream, "strip_listen_path": True},
                **fields}
    return [
        api("keyless", use_keyless=True),
        api("token", use_standard_auth=True),
        api("jwt", enable_jwt=True, jwt_signing_method="hmac", jwt_source=base64.b64encode(JWT_SECRET).decode(),
            jwt_identity_base_field="sub", jwt_default_policies=[PREFIX + "jwt"]),
        api("basic", use_basic_auth=True),
    ]


@events.test_start.add_listener
def _set_up(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    admin = (options.admin_url or environment.host).rstrip("/")
    headers = {"X-Tyk-Authorization": os.environ["FG_SECRET"]}
    policy = {"id": PREFIX + "jwt", "name": PREFIX + "jwt", "org_id": "default", "active": True, "rate": 0, "per": 0,
              "quota_max": -1, "access_rights": {PREFIX + "jwt": {"api_id": PREFIX + "jwt", "api_name": PREFIX + "jwt",
                                                                   "versions": ["Default"]}}}
    requests.delete(f"{admin}/tyk/policies/{policy['id']}", headers=headers, timeout=10)
    requests.post(f"{admin}/tyk/policies", json=policy, headers=headers, timeout=10).raise_for_status()
    for definition in _apis(options.upstream):
        requests.delete(f"{admin}/tyk/apis/{definition['api_id']}", headers=headers, timeout=10)
        resp = requests.post(f"{admin}/tyk/apis", json=definition, headers=headers, timeout=10)
        resp.raise_for_status()
    requests.get(f"{admin}/tyk/reload", headers=headers, timeout=30).raise_for_status()
    rights = {PREFIX + n: {"api_id": PREFIX + n, "api_name": PREFIX + n, "versions": ["Default"]}
              for n in ("token", "jwt", "basic")}
    key = requests.post(f"{admin}/tyk/keys/create", json={"org_id": "default", "access_rights": rights},
                        headers=headers, timeout=10)
    key.raise_for_status()
    password = secrets.token_hex(8)
    user = requests.post(f"{admin}/tyk/keys/{PREFIX}user", headers=headers, timeout=10,
                         json={"org_id": "default", "access_rights": rights, "basic_auth_data": {"password": password}})
    user.raise_for_status()
    STATE.update(admin=admin, headers=headers, key=key.json()["key"],
                 basic="Basic " + base64.b64encode(f"{PREFIX}user:{password}".encode()).decode())
    time.sleep(1)  # the reload reaches every worker


@events.test_stop.add_listener
def _tear_down(environment: Any, **_: Any) -> None:
    admin, headers = STATE.get("admin"), STATE.get("headers")
    if not admin:
        return
    for definition in _apis(""):
        requests.delete(f"{admin}/tyk/apis/{definition['api_id']}", headers=headers, timeout=10)
    requests.delete(f"{admin}/tyk/policies/{PREFIX}jwt", headers=headers, timeout=10)
    requests.delete(f"{admin}/tyk/keys/{PREFIX}user", headers=headers, timeout=10)
    requests.delete(f"{admin}/tyk/keys/{STATE['key']}", headers=headers, timeout=10)
    requests.get(f"{admin}/tyk/reload", headers=headers, timeout=30)


class GatewayUser(HttpUser):
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        self.token = jwt.encode({"sub": f"{PREFIX}{secrets.token_hex(4)}", "exp": int(time.time()) + 3600},
                                JWT_SECRET, algorithm="HS256")

    @task(4)
    def keyless(self) -> None:
        self.client.get(f"/{PREFIX}keyless/", name="keyless")

    @task(4)
    def token(self) -> None:
        self.client.get(f"/{PREFIX}token/", headers={"Authorization": STATE["key"]}, name="token")

    @task(2)
    def jwt(self) -> None:
        self.client.get(f"/{PREFIX}jwt/", headers={"Authorization": f"Bearer {self.token}"}, name="jwt")

    @task(1)
    def basic(self) -> None:
        self.client.get(f"/{PREFIX}basic/", headers={"Authorization": STATE["basic"]}, name="basic")
