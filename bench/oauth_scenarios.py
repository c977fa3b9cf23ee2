"""Hooks of the OAuth 2.0 server benchmark scenarios (issue 12), used by ``scenarios.py``.

* ``oauth-token``: a protected request with an access token issued by ``client_credentials``;
  wrk repeats it, so after the first request the token's session and its client's existence are
  node-local cache hits (the client is re-checked in the store once a second). The client has a
  policy-less session (access to this API alone) with no limits; nginx does its fixed API-key
  check on the same path shape.
* ``oauth-token-endpoint``: ``POST /oauth/token`` with ``grant_type=client_credentials`` and
  HTTP Basic client authentication on every request: client lookup, constant-time secret check,
  a new key, its token-list entry and its grant written to the store (memory), the JSON answer.
  fastgate only; no target yet.
"""

from __future__ import annotations

import base64
import json
import urllib.request

from scenarios import Context, Prepared, gateway_api

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "setup_oauth_endpoint", "setup_oauth_token"]

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret-0123456789"
BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


def _client(ctx: Context) -> None:
    gateway_api(ctx, "POST", "/tyk/oauth/clients/create", {
        "client_id": CLIENT_ID, "secret": CLIENT_SECRET, "api_id": "bench-oauth",
        "redirect_uri": "https://client.example.test/cb"})


def setup_oauth_token(ctx: Context) -> Prepared:
    _client(ctx)
    req = urllib.request.Request(ctx.fastgate_url + "/oauth/oauth/token", data=b"grant_type=client_credentials",
                                 headers={"Authorization": BASIC}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        token = json.loads(resp.read())["access_token"]
    return Prepared(headers={"Authorization": "Bearer " + token})


def setup_oauth_endpoint(ctx: Context) -> Prepared:
    _client(ctx)
    return Prepared(headers={"Authorization": BASIC})
