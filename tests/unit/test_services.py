"""The typed Services object and the session manager's one key write path, on a memory store."""

from __future__ import annotations

import asyncio

from fastgate.apidef.auth_settings import BasicSettings, HmacSettings, JwtSettings, TokenSettings
from fastgate.apidef.classic import decode_classic
from fastgate.apidef.oas import decode_oas
from fastgate.apidef.spec import ApiSpec
from fastgate.sessions.key_ids import storage_key_id
from fastgate.sessions.session import SessionState
from tests.kit.services import make_services, put_keys

SPEC = ApiSpec(api_id="a", name="a", listen_path="/a/", target_url="http://x")


def test_services_are_built_from_the_config():
    services = make_services(basic_auth_failures_per_user=3, hash_keys=False)
    assert services.config.hash_keys is False
    assert services.basic_failures.per_user.limit == 3
    assert services.certificates.store is services.store and services.sessions.store is services.store
    assert services.policies == {} and services.lifecycle.closers == []


def test_a_write_through_the_manager_replaces_the_cached_session():
    services = make_services(hash_keys=False)
    put_keys(services, {"key-1": SessionState(rate=1)}, warm=True)
    found = services.sessions.cached("key-1", SPEC)
    assert found and found[1].rate == 1  # known without awaiting

    async def rewrite() -> SessionState | None:
        await services.sessions.put("key-1", SessionState(rate=2))
        assert services.sessions.cached("key-1", SPEC) is None  # dropped at once, not served stale
        again = await services.sessions.lookup("key-1", SPEC)
        return again[1] if again else None

    rewritten = asyncio.run(rewrite())
    assert rewritten is not None and rewritten.rate == 2


def test_a_delete_through_the_manager_forgets_the_key():
    services = make_services()
    put_keys(services, {"key-2": SessionState()}, warm=True)
    storage_id = storage_key_id("key-2", services.config.hash_keys)

    async def delete() -> tuple[bool, object]:
        existed = await services.sessions.delete(storage_id)
        return existed, await services.sessions.lookup("key-2", SPEC)

    assert asyncio.run(delete()) == (True, None)
    assert services.sessions.cached("key-2", SPEC) is None


def _oas(server_auth: dict, schemes: dict, security: list) -> ApiSpec:
    return decode_oas({
        "openapi": "3.0.3", "info": {"title": "o", "version": "1"}, "paths": {}, "security": security,
        "components": {"securitySchemes": schemes},
        "x-tyk-api-gateway": {"info": {"id": "o", "name": "o"}, "upstream": {"url": "http://x"},
                              "server": {"listenPath": {"value": "/o/"}, "authentication": server_auth}},
    }, "o.json")


def test_both_formats_decode_into_the_same_settings_types():
    classic = decode_classic({
        "api_id": "c", "use_keyless": False, "proxy": {"listen_path": "/c/", "target_url": "http://x"},
        "use_basic_auth": True, "enable_signature_checking": True, "enable_jwt": True,
        "base_identity_provided_by": "basic_auth_user",
    }, "c.json")
    assert isinstance(classic.basic, BasicSettings) and isinstance(classic.hmac, HmacSettings)
    assert isinstance(classic.jwt, JwtSettings) and classic.token is None
    assert classic.base_identity == "basic_auth_user" and classic.mtls.static is False
    oas = _oas(
        {"enabled": True, "baseIdentityProvider": "jwt_claim",
         "hmac": {"enabled": True, "allowedClockSkew": 1000},
         "securitySchemes": {"ba": {"enabled": True}, "j": {"enabled": True}, "k": {"enabled": True}}},
        {"ba": {"type": "http", "scheme": "basic"}, "j": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
         "k": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        [{"j": [], "ba": [], "k": []}],  # legacy mode: only the first requirement's schemes are on
    )
    assert isinstance(oas.basic, BasicSettings) and isinstance(oas.hmac, HmacSettings)
    assert oas.hmac.where == "x-tyk-api-gateway.server.authentication.hmac" and oas.hmac.clock_skew_ms == 1000
    assert isinstance(oas.jwt, JwtSettings) and oas.jwt.is_oas
    assert oas.token == TokenSettings(oas.auth_configs["authToken"]) and oas.token.source.header_name == "X-Key"
    assert oas.base_identity == "jwt_claim"


def test_a_keyless_api_has_no_auth_settings():
    spec = decode_classic({"api_id": "k", "use_keyless": True, "use_basic_auth": True,
                           "proxy": {"listen_path": "/k/", "target_url": "http://x"}}, "k.json")
    assert (spec.token, spec.basic, spec.hmac, spec.jwt) == (None, None, None, None)
