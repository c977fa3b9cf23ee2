"""The OAuth 2.0 server's sans-IO parts: settings decoding (Classic and OAS), client credentials
from HTTP Basic, PKCE parameters, the config knobs, and the Bearer stage on a memory store."""

from __future__ import annotations

import asyncio
import base64
import inspect

import pytest

import orjson

from fastgate.apidef.loader import decode_definition as _decode
from fastgate.apidef.spec import DefinitionError
from fastgate.auth.oauth import CLIENT_REVOKED, MALFORMED, MISSING, NOT_AUTHORISED, compile_oauth_auth
from fastgate.config import ConfigError, config_from_mapping
from fastgate.oauth.server import OAuthError, _pkce_challenge, client_credentials_from_basic
from fastgate.oauth.storage import ClientRecord, digest
from fastgate.http.request import Request
from fastgate.sessions.key_ids import generate_token, storage_key_id
from fastgate.sessions.session import SessionState
from tests.kit.apis import classic_api, oas_api
from tests.kit.services import make_services

def decode_definition(raw: dict, source: str):
    return _decode(orjson.dumps(raw), source)


GRANTS = ["authorization_code", "refresh_token", "password", "client_credentials"]


def classic(**fields):
    return classic_api("o", "/o/", "http://up", use_keyless=False, use_oauth2=True, **fields)


def test_classic_settings():
    spec = decode_definition(classic(
        oauth_meta={"allowed_access_types": GRANTS, "allowed_authorize_types": ["code"],
                    "auth_login_redirect": "https://login.test/x", "require_pkce": True},
        notifications={"shared_secret": "s", "oauth_on_keychange_url": "http://n.test/k"},
        auth_configs={"oauth": {"auth_header_name": "X-Token"}}), "o.json")
    oauth = spec.oauth
    assert oauth is not None and spec.token is None
    assert oauth.access_types == frozenset(GRANTS) and oauth.authorize_types == frozenset({"code"})
    assert (oauth.login_redirect, oauth.shared_secret, oauth.keychange_url) == ("https://login.test/x", "s",
                                                                                  "http://n.test/k")
    assert oauth.require_pkce and oauth.source.header_name == "X-Token"
    keyless = decode_definition({**classic(), "use_keyless": True}, "k.json")
    assert keyless.oauth is None


@pytest.mark.parametrize("fields, field", [
    ({"oauth_meta": {"allowed_access_types": ["magic"]}}, "oauth_meta.allowed_access_types"),
    ({"oauth_meta": {"allowed_authorize_types": "code"}}, "oauth_meta.allowed_authorize_types"),
    ({"oauth_meta": {"auth_login_redirect": "javascript:alert(1)"}}, "oauth_meta.auth_login_redirect"),
    ({"oauth_meta": {"require_pkce": "yes"}}, "oauth_meta.require_pkce"),
    ({"notifications": {"oauth_on_keychange_url": "ftp://x"}}, "notifications.oauth_on_keychange_url"),
    ({"notifications": []}, "notifications"),
])
def test_classic_settings_that_cannot_work_name_their_field(fields, field):
    with pytest.raises(DefinitionError) as exc:
        decode_definition(classic(**fields), "o.json")
    assert exc.value.field == field


def test_osin_access_types_fastgate_does_not_implement_grant_nothing():
    spec = decode_definition(classic(oauth_meta={"allowed_access_types": ["assertion", "client_credentials"]}), "o")
    assert spec.oauth is not None and spec.oauth.access_types == frozenset({"client_credentials"})


def test_oas_oauth2_scheme():
    doc = oas_api("oo", "/oo/", "http://up")
    doc["components"] = {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {
        "authorizationCode": {"authorizationUrl": "/a", "tokenUrl": "/t", "scopes": {}},
        "clientCredentials": {"tokenUrl": "/t", "scopes": {}}}}}}
    doc["security"] = [{"oauth": []}]
    doc["x-tyk-api-gateway"]["server"]["authentication"] = {"enabled": True, "securitySchemes": {"oauth": {
        "enabled": True, "refreshToken": True, "authLoginRedirect": "https://login.test/",
        "notifications": {"sharedSecret": "s", "onKeyChangeUrl": "https://n.test/"}}}}
    oauth = decode_definition(doc, "oo.json").oauth
    assert oauth is not None
    assert oauth.access_types == frozenset({"authorization_code", "client_credentials", "refresh_token"})
    assert oauth.authorize_types == frozenset({"code"}) and oauth.login_redirect == "https://login.test/"
    assert (oauth.shared_secret, oauth.keychange_url) == ("s", "https://n.test/")
    # a restriction this gateway does not implement refuses the API
    vendor = doc["x-tyk-api-gateway"]["server"]["authentication"]["securitySchemes"]["oauth"]
    vendor["scopeCheck"] = {"enabled": True}
    with pytest.raises(DefinitionError) as exc:
        decode_definition(doc, "oo.json")
    assert exc.value.field.endswith("securitySchemes.oauth.scopeCheck")
    del vendor["scopeCheck"]
    # a vendor entry with providers is external OAuth, not this server
    doc["x-tyk-api-gateway"]["server"]["authentication"]["securitySchemes"]["oauth"]["providers"] = []
    assert decode_definition(doc, "oo.json").oauth is None


def test_client_credentials_from_basic():
    def basic(text: str) -> bytes:
        return b"Basic " + base64.b64encode(text.encode())

    assert client_credentials_from_basic(basic("id:se:cret")) == ("id", "se:cret")
    assert client_credentials_from_basic(basic("a%3Ab:s%2Bx")) == ("a:b", "s+x")  # RFC 6749 §2.3.1
    for bad in (None, b"", basic("no-colon"), basic(":secret"), b"Basic !!!", b"Bearer abc", b"Basic " + b"A" * 9000):
        assert client_credentials_from_basic(bad) is None


def test_pkce_parameters():
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert _pkce_challenge({"code_challenge": challenge, "code_challenge_method": "S256"}, False) == challenge
    assert _pkce_challenge({}, False) == ""
    for params, required in (({"code_challenge": challenge, "code_challenge_method": "plain"}, False),
                             ({"code_challenge": challenge}, False),
                             ({"code_challenge_method": "S256"}, False),
                             ({"code_challenge": "short", "code_challenge_method": "S256"}, False),
                             ({}, True)):
        with pytest.raises(OAuthError) as exc:
            _pkce_challenge(params, required)
        assert exc.value.code == "invalid_request"


def test_digest_is_sha256_hex():
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_config_knobs():
    config = config_from_mapping({"oauth_token_expire": 60, "oauth_redirect_uri_separator": ";"}, environ={})
    assert (config.oauth_token_expire, config.oauth_error_status_code, config.oauth_redirect_uri_separator) == \
        (60, 403, ";")
    for bad in ({"oauth_error_status_code": 500}, {"oauth_token_expire": 0}):
        with pytest.raises(ConfigError):
            config_from_mapping(bad, environ={})


def _request(authorization: bytes | None) -> Request:
    req = Request()
    req.headers = [] if authorization is None else [(b"Authorization", authorization)]
    return req


async def _run(result):
    return await result if inspect.isawaitable(result) else result


def test_bearer_stage_rows():
    services = make_services()
    spec = decode_definition(classic(oauth_meta={"allowed_access_types": GRANTS}), "o.json")
    stage, = compile_oauth_auth(spec, services)
    token = generate_token("default", None, "sha256")
    plain_key = generate_token("default", None, "sha256")

    async def scenario() -> None:
        await services.sessions.put(_id(services, token),
                                    SessionState(org_id="default", oauth_client_id="c1"))
        await services.sessions.put(_id(services, plain_key), SessionState(org_id="default"))
        await services.oauth.storage.put_client("o", ClientRecord(client_id="c1", secret="s", redirect_uri="r"))
        assert await _run(stage(_request(None))) is MISSING
        assert await _run(stage(_request(token.encode()))) is MISSING
        assert await _run(stage(_request(b"Basic abc"))) is MALFORMED
        assert await _run(stage(_request(b"Bearer unknown"))) is NOT_AUTHORISED
        assert await _run(stage(_request(b"Bearer " + plain_key.encode()))) is NOT_AUTHORISED
        req = _request(b"bearer " + token.encode())
        assert await _run(stage(req)) is None and req.session.oauth_client_id == "c1"
        await services.oauth.storage.delete_client("o", "c1")
        await asyncio.sleep(1.05)  # the per-node client check is remembered for a second
        assert await _run(stage(_request(b"Bearer " + token.encode()))) is CLIENT_REVOKED

    asyncio.run(scenario())


def _id(services, token: str) -> str:
    return storage_key_id(token, services.config.hash_keys)
