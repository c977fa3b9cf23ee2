"""External OAuth and OpenID Connect without sockets: decoding both formats into the typed
settings, the introspection answer rules (TTLs, garbage), the cache's keys, Tyk's standard
session, and the stages' refusals that need no I/O."""

from __future__ import annotations

import base64
import json
import math

import pytest

from fastgate.apidef.auth_settings import ExternalOAuthSettings, OidcSettings
from fastgate.apidef.loader import decode_definition
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth import compile_auth
from fastgate.auth.ext_oauth import standard_session
from fastgate.auth.idp_http import IdpError
from fastgate.auth.introspection import NEGATIVE_TTL, NO_EXP_TTL, Introspected, Introspector, parse_answer, token_key
from fastgate.auth.oidc import oidc_session_token
from fastgate.auth.oidc_issuers import discovery_url
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial
from tests.kit.services import make_services

UP = "http://up.example"


def classic(**fields):
    api = {"api_id": "a", "name": "A", "org_id": "o", "use_keyless": False,
           "proxy": {"listen_path": "/a/", "target_url": UP}}
    api.update(fields)
    return api


def decode(raw) -> ApiSpec:
    return decode_definition(json.dumps(raw).encode(), "x.json")


def refused(raw) -> str:
    with pytest.raises(DefinitionError) as info:
        decode(raw)
    return str(info.value)


def ext(*providers):
    return {"external_oauth": {"enabled": True, "providers": list(providers)}}


INTRO = {"enabled": True, "url": "https://idp.example/introspect", "client_id": "c", "client_secret": "s",
         "identity_base_field": "uid", "cache": {"enabled": True, "timeout": 30}}


# ---- decoding --------------------------------------------------------------------------------


def test_classic_external_oauth_introspection_fields():
    spec = decode(classic(**ext({"jwt": {"enabled": False}, "introspection": INTRO}),
                          auth_configs={"externalOAuth": {"auth_header_name": "X-Token"}}))
    settings = spec.external_oauth
    assert isinstance(settings, ExternalOAuthSettings) and settings.has_provider and settings.jwt is None
    intro = settings.introspection
    assert intro is not None
    assert (intro.url, intro.client_id, intro.client_secret, intro.identity_field) == (
        "https://idp.example/introspect", "c", "s", "uid")
    assert (intro.cache_enabled, intro.cache_timeout, intro.basic_auth) == (True, 30.0, False)
    assert settings.source.header_name == "X-Token"
    assert spec.token is None  # external OAuth is the API's method, not the auth token


def test_classic_external_oauth_jwt_fields_and_source_spellings():
    url = "https://idp.example/jwks"
    for source in (url, base64.b64encode(url.encode()).decode()):
        spec = decode(classic(**ext({"jwt": {"enabled": True, "signing_method": "RSA", "source": source,
                                             "identity_base_field": "email", "expires_at_validation_skew": 5}})))
        jwt = spec.external_oauth.jwt
        assert (jwt.family, jwt.keys.kind, jwt.keys.jwks, jwt.identity_field, jwt.exp_skew) == (
            "rsa", "jwks", ((url, None),), "email", 5)
    secret = decode(classic(**ext({"jwt": {"enabled": True, "signing_method": "hmac",
                                           "source": base64.b64encode(b"s" * 40).decode()}})))
    assert secret.external_oauth.jwt.keys.material == b"s" * 40


def test_no_provider_still_protects():
    spec = decode(classic(**ext()))
    assert spec.external_oauth is not None and not spec.external_oauth.has_provider
    assert compile_auth(spec, make_services())  # stages exist: never served open


@pytest.mark.parametrize(("provider", "field"), [
    ({"introspection": {**INTRO, "url": "ftp://idp.example/x"}}, "external_oauth.providers[0].introspection.url"),
    ({"introspection": {**INTRO, "url": ""}}, "external_oauth.providers[0].introspection.url"),
    ({"introspection": {**INTRO, "client_auth": "jwt"}}, "external_oauth.providers[0].introspection.client_auth"),
    ({"introspection": {**INTRO, "cache": {"enabled": True, "timeout": -1}}},
     "external_oauth.providers[0].introspection.cache.timeout"),
    ({"jwt": {"enabled": True, "signing_method": "none", "source": "https://x/jwks"}},
     "external_oauth.providers[0].jwt.signing_method"),
    ({"jwt": {"enabled": True, "signing_method": "rsa", "source": ""}}, "external_oauth.providers[0].jwt.source"),
    ({"jwt": {"enabled": True, "signing_method": "rsa", "source": "%%%"}}, "external_oauth.providers[0].jwt.source"),
    ({"jwt": {"enabled": True, "signing_method": "rsa", "source": "https://x/j", "expires_at_validation_skew": -1}},
     "external_oauth.providers[0].jwt.expires_at_validation_skew"),
])
def test_unusable_external_oauth_settings_name_the_field(provider, field):
    assert refused(classic(**ext(provider))).startswith(field + ": ")


def test_oas_oauth2_scheme_with_providers():
    raw = {
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
        "components": {"securitySchemes": {"ext": {"type": "oauth2", "flows": {}}}},
        "security": [{"ext": []}],
        "x-tyk-api-gateway": {
            "info": {"id": "oas", "name": "t", "state": {"active": True}}, "upstream": {"url": UP},
            "server": {"listenPath": {"value": "/oas/"}, "authentication": {"enabled": True, "securitySchemes": {"ext": {
                "enabled": True, "header": {"enabled": True, "name": "X-Bearer"},
                "providers": [{"jwt": {"enabled": True, "signingMethod": "ecdsa", "source": "https://x/jwks",
                                       "identityBaseField": "uid", "notBeforeValidationSkew": 3},
                               "introspection": {"enabled": True, "url": "https://x/i", "clientId": "c",
                                                 "clientSecret": "s", "clientAuth": "basic",
                                                 "cache": {"enabled": True, "timeout": 9}}}]}}}},
        },
    }
    settings = decode(raw).external_oauth
    assert settings is not None and settings.source.header_name == "X-Bearer"
    assert (settings.jwt.family, settings.jwt.identity_field, settings.jwt.nbf_skew) == ("ecdsa", "uid", 3)
    intro = settings.introspection
    assert (intro.client_id, intro.basic_auth, intro.cache_timeout) == ("c", True, 9.0)
    # an oauth2 scheme without providers is the OAuth 2.0 server's, not external OAuth
    del raw["x-tyk-api-gateway"]["server"]["authentication"]["securitySchemes"]["ext"]["providers"]
    assert decode(raw).external_oauth is None


def test_classic_openid_fields():
    spec = decode(classic(use_openid=True, openid_options={"segregate_by_client": True, "providers": [
        {"issuer": "https://idp.example/", "client_ids": {base64.b64encode(b"web").decode(): "pol1",
                                                          base64.b64encode(b"cli").decode(): "pol2"}}]},
        scopes={"oidc": {"scope_claim_name": "scp", "scope_to_policy": {"read": "r"}}},
        auth_configs={"oidc": {"auth_header_name": "X-Id"}}))
    oidc = spec.oidc
    assert isinstance(oidc, OidcSettings) and oidc.segregate_by_client
    assert oidc.providers[0].issuer == "https://idp.example/"
    assert oidc.providers[0].clients == (("web", "pol1"), ("cli", "pol2"))
    assert (oidc.scope_claims, oidc.scope_to_policy, oidc.source.header_name) == (("scp",), {"read": "r"}, "X-Id")
    assert spec.token is None


def test_oas_oidc_fields():
    raw = {
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
        "x-tyk-api-gateway": {
            "info": {"id": "oas", "name": "t", "state": {"active": True}}, "upstream": {"url": UP},
            "server": {"listenPath": {"value": "/oas/"}, "authentication": {"enabled": True, "oidc": {
                "enabled": True, "segregateByClientId": True,
                "providers": [{"issuer": "https://idp.example", "clientToPolicyMapping": [{"clientId": "web", "policyId": "p"}]}],
                "scopes": {"claimName": "scope", "scopeToPolicyMapping": [{"scope": "a", "policyId": "pa"}]}}}},
        },
    }
    oidc = decode(raw).oidc
    assert oidc.providers[0].clients == (("web", "p"),) and oidc.segregate_by_client
    assert (oidc.scope_claims, oidc.scope_to_policy) == (("scope",), {"a": "pa"})


@pytest.mark.parametrize(("options", "field"), [
    ({"providers": [{"issuer": "idp.example", "client_ids": {}}]}, "openid_options.providers[0].issuer"),
    ({"providers": [{"issuer": "https://idp.example", "client_ids": {"not base64!": "p"}}]},
     "openid_options.providers[0].client_ids"),
])
def test_unusable_openid_settings_name_the_field(options, field):
    assert refused(classic(use_openid=True, openid_options=options)).startswith(field + ": ")


# ---- introspection answers ----------------------------------------------------------------------


def test_positive_answer_kept_until_the_earlier_of_timeout_and_exp():
    assert parse_answer(b'{"active": true, "exp": 1100}', 60, 1000).until == 1060
    assert parse_answer(b'{"active": true, "exp": 1030}', 60, 1000).until == 1030
    assert parse_answer(b'{"active": true, "exp": 1030}', 0, 1000).until == 1030
    assert parse_answer(b'{"active": true}', 0, 1000).until == 1000 + NO_EXP_TTL


def test_negative_answer_has_a_short_ttl_of_its_own():
    answer = parse_answer(b'{"active": false}', 600, 1000)
    assert not answer.active and answer.until == 1000 + NEGATIVE_TTL
    assert parse_answer(b'{"active": false}', 3, 1000).until == 1003


@pytest.mark.parametrize("body", [b"", b"<html>", b"[]", b'{"sub": "x"}', b'{"active": "true"}',
                                  b'{"active": true, "exp": "soon"}'])
def test_garbage_answers_are_errors(body):
    with pytest.raises(IdpError):
        parse_answer(body, 60, 1000)


def test_cache_is_keyed_by_a_hash_and_expires():
    intro = decode(classic(**ext({"introspection": INTRO}))).external_oauth.introspection
    introspector = Introspector(intro)
    key = token_key("secret-token")
    assert key == __import__("hashlib").sha256(b"secret-token").digest()
    introspector.cache[key] = Introspected(True, {"sub": "x"}, 2000.0)
    assert introspector.cached(key, 1999.0) is not None
    assert introspector.cached(key, 2000.0) is None and key not in introspector.cache


def test_form_as_tyk_sends_it_or_basic():
    intro = decode(classic(**ext({"introspection": INTRO}))).external_oauth.introspection
    assert Introspector(intro)._form("t o&k") == b"token=t+o%26k&client_id=c&client_secret=s"
    basic = decode(classic(**ext({"introspection": {**INTRO, "client_auth": "basic"}}))).external_oauth.introspection
    introspector = Introspector(basic)
    assert introspector._form("tok") == b"token=tok"
    assert ("Authorization", "Basic " + base64.b64encode(b"c:s").decode()) in introspector._headers


# ---- sessions and ids --------------------------------------------------------------------------


def test_standard_session_is_tyks():
    spec = decode(classic(**ext()))
    session = standard_session(spec)
    assert (session.rate, session.per, session.quota_max, session.expires) == (10000, 60, -1, -1)
    assert list(session.access_rights) == ["a"] and session.access_rights["a"].versions == ["Default"]


def test_oidc_session_ids():
    plain = oidc_session_token("o", "client", "user", False, "sha256")
    assert plain != oidc_session_token("o", "client", "user", True, "sha256")
    assert plain == oidc_session_token("o", "other", "user", False, "sha256")
    assert discovery_url("https://idp.example/") == "https://idp.example/.well-known/openid-configuration"


# ---- refusals without I/O ------------------------------------------------------------------------


def _request(authorization: str | None) -> Request:
    req = Request()
    req.headers = [(b"authorization", authorization.encode())] if authorization is not None else []
    return req


def test_missing_token_and_unconfigured_issuer_refused_without_io():
    services = make_services()
    spec = decode(classic(use_openid=True, openid_options={"providers": [
        {"issuer": "https://idp.example", "client_ids": {base64.b64encode(b"web").decode(): "p"}}]}))
    stage = compile_auth(spec, services)[-1]
    assert stage(_request(None)) == Denial(401, "Key not authorised")
    from tests.kit.jwks import RsaKey
    token = RsaKey("k").sign({"iss": "https://evil.example", "aud": "web", "sub": "x", "exp": 2**31})
    assert stage(_request("Bearer " + token)) == Denial(401, "Key not authorised")
    assert services.oidc_issuers.jwks_uris == {} and "https://evil.example" not in services.oidc_issuers.configured
    assert math.isfinite(services.jwks.cache_timeout)


def test_oidc_context_variables_and_known_keys_without_fetching():
    import asyncio
    import time as _time

    from fastgate.auth.jwt.jwks import parse_jwks
    from fastgate.sessions.policies import decode_policy
    from tests.kit.jwks import RsaKey

    key = RsaKey("k1")
    issuer, jwks_url = "https://idp.example", "https://idp.example/jwks"
    services = make_services()
    services.sessions.set_policies({"p": decode_policy({
        "id": "p", "org_id": "o", "active": True, "rate": 100, "per": 1, "quota_max": -1,
        "access_rights": {"a": {"api_id": "a", "api_name": "a", "versions": ["Default"]}}})})
    spec = decode(classic(use_openid=True, enable_context_vars=True, openid_options={"providers": [
        {"issuer": issuer, "client_ids": {base64.b64encode(b"web").decode(): "p"}}]}))
    assert spec.oidc.context_vars
    stage = compile_auth(spec, services)[-1]
    # what discovery would have found: no I/O in this test
    services.oidc_issuers.jwks_uris[issuer] = jwks_url
    services.jwks.sets[jwks_url] = parse_jwks(jwks_url, json.dumps({"keys": [key.jwk()]}).encode(), 0.0)
    token = key.sign({"iss": issuer, "aud": "web", "sub": "u1", "exp": int(_time.time()) + 60, "email": "u@x"})
    req = _request("Bearer " + token)

    async def run():
        result = stage(req)
        return await result if result is not None and not isinstance(result, Denial) else result

    assert asyncio.run(run()) is None
    assert req.ctx["jwt_claims_email"] == "u@x" and req.ctx["jwt_claims_sub"] == "u1" and req.ctx["token"] == token
    assert req.session is not None and req.session.apply_policies == ["p"]
