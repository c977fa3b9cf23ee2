"""Hooks of the external OAuth and OpenID Connect benchmark scenarios (issue 13), used by
``scenarios.py``.

An identity provider runs in the bench process (a thread): an RFC 7662 introspection endpoint
that says the bench token is active for a day, and an OpenID Connect issuer (discovery document
+ JWKS) whose key signs the bench ID token. ``setup`` starts it, then creates the API through the
Gateway API (``POST /tyk/apis`` then ``GET /tyk/reload``), so the definition can name the IdP's
port. Both runs repeat one token: the introspection answer is cached (``cache.enabled``), the ID
token verified once and its persisted session read from the session cache, so the figures are
the steady state of a real deployment (one IdP call per token per cache period).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from scenarios import Context, Prepared, gateway_api

__all__ = ["BENCH_TOKEN", "id_token", "setup_ext_introspection", "setup_oidc", "start_idp"]

BENCH_TOKEN = "bench-opaque-access-token-0123456789"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EXP = int(time.time()) + 86_400
_IDP: dict[str, Any] = {}


def start_idp() -> str:
    """Start the in-process IdP once; its base URL."""
    if "url" in _IDP:
        return str(_IDP["url"])
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    jwk.update(kid="bench-1", use="sig", alg="RS256")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            base = _IDP["url"]
            if self.path == "/idp/.well-known/openid-configuration":
                self._send({"issuer": base + "/idp", "jwks_uri": base + "/idp/jwks"})
            elif self.path == "/idp/jwks":
                self._send({"keys": [jwk]})
            else:
                self._send({}, 404)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            active = f"token={BENCH_TOKEN}" in body
            self._send({"active": True, "sub": "bench-user", "exp": _EXP} if active else {"active": False})

        def _send(self, doc: dict[str, Any], status: int = 200) -> None:
            raw = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _IDP["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    return str(_IDP["url"])


def _api(ctx: Context, api_id: str, **fields: Any) -> None:
    gateway_api(ctx, "POST", "/tyk/apis", {
        "name": api_id, "api_id": api_id, "org_id": "default", "use_keyless": False, "active": True,
        "proxy": {"listen_path": f"/{api_id.removeprefix('bench-')}/", "target_url": ctx.upstream_url + "/",
                  "strip_listen_path": True},
        **fields,
    })
    gateway_api(ctx, "GET", "/tyk/reload")


def setup_ext_introspection(ctx: Context) -> Prepared:
    base = start_idp()
    _api(ctx, "bench-ext-oauth", external_oauth={"enabled": True, "providers": [{
        "jwt": {"enabled": False},
        "introspection": {"enabled": True, "url": base + "/introspect", "client_id": "bench",
                          "client_secret": "bench-secret", "identity_base_field": "sub",
                          "cache": {"enabled": True, "timeout": 300}}}]})
    # Tyk's standard session allows 10 000 requests per 60 s: the identity gets a key of its own
    # (stored under Tyk's virtual id, generate_token(org, md5hex(identity))), as a deployment would.
    gateway_api(ctx, "POST", "/tyk/keys/" + hashlib.md5(b"bench-user").hexdigest(), {
        "org_id": "default", "rate": 1000000, "per": 1, "quota_max": -1,
        "access_rights": {"bench-ext-oauth": {"api_id": "bench-ext-oauth", "api_name": "bench-ext-oauth",
                                              "versions": ["Default"]}}})
    return Prepared(headers={"Authorization": "Bearer " + BENCH_TOKEN})


def setup_oidc(ctx: Context) -> Prepared:
    issuer = start_idp() + "/idp"
    _api(ctx, "bench-oidc", use_openid=True, openid_options={"segregate_by_client": False, "providers": [
        {"issuer": issuer, "client_ids": {base64.b64encode(b"bench-app").decode(): "bench-oidc"}}]})
    return Prepared(headers={"Authorization": "Bearer " + id_token(issuer)})


def id_token(issuer: str) -> str:
    """The bench ID token: audience ``bench-app``, valid for a day, signed by the IdP's key."""
    return jwt.encode({"iss": issuer, "aud": "bench-app", "sub": "bench-user", "iat": _EXP - 86_400, "exp": _EXP},
                      _KEY, algorithm="RS256", headers={"kid": "bench-1"})
