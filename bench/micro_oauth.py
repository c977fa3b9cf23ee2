"""Micro benchmark of the OAuth access-token stage beside the auth-token stage (µs per call, a
repeated cached credential, no sockets): ``PYTHONPATH=. .venv/bin/python bench/micro_oauth.py``."""

from __future__ import annotations

import asyncio
import inspect
import time

import orjson

from fastgate.apidef.loader import decode_definition
from fastgate.auth.oauth import compile_oauth_auth
from fastgate.auth.token import compile_token_auth
from fastgate.http.request import Request
from fastgate.oauth.storage import ClientRecord
from fastgate.sessions.key_ids import generate_token, storage_key_id
from fastgate.sessions.session import AccessDefinition, SessionState
from tests.kit.apis import classic_api
from tests.kit.services import make_services

CALLS = 100_000


async def main() -> None:
    services = make_services()
    oauth_api = classic_api("o", "/o/", "http://up", use_keyless=False, use_oauth2=True,
                            oauth_meta={"allowed_access_types": ["client_credentials"]})
    token_api = classic_api("t", "/t/", "http://up", use_keyless=False, use_standard_auth=True)
    o = decode_definition(orjson.dumps(oauth_api), "o")
    t = decode_definition(orjson.dumps(token_api), "t")
    (oauth_stage,) = compile_oauth_auth(o, services)
    (token_stage,) = compile_token_auth(t, services)
    oauth_token = generate_token("default", None, "sha256")
    key = generate_token("default", None, "sha256")
    await services.sessions.start()
    await services.sessions.put(storage_key_id(oauth_token, True), SessionState(
        org_id="default", oauth_client_id="c", access_rights={"o": AccessDefinition(api_id="o")}))
    await services.sessions.put(storage_key_id(key, True), SessionState(
        org_id="default", access_rights={"t": AccessDefinition(api_id="t")}))
    await services.oauth.storage.put_client("o", ClientRecord(client_id="c", secret="s", redirect_uri="r"))
    for name, stage, header in (("oauth access token", oauth_stage, b"Bearer " + oauth_token.encode()),
                                ("auth token", token_stage, key.encode())):
        req = Request()
        req.headers = [(b"Host", b"x"), (b"Authorization", header), (b"Accept", b"*/*")]
        for _ in range(3):  # warm: the store lookup, then the caches
            result = stage(req)
            if inspect.isawaitable(result):
                result = await result
            assert result is None, result
        start = time.perf_counter()
        for _ in range(CALLS):
            stage(req)
        print(f"{name:20} {(time.perf_counter() - start) / CALLS * 1e6:.2f} µs per call")


if __name__ == "__main__":
    asyncio.run(main())
