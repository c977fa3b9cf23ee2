"""JWT pieces without sockets: JWS parsing and verification (RFC 7515 appendix examples, tokens
minted with PyJWT and with ``cryptography`` directly), API definitions into ``JwtConfig``, Tyk's
claim rules, the centralised-session decision, the JWKS manager, and the stage itself on a
memory store. Scenario numbers refer to tyk-reference §17.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fastgate.apidef.classic import decode_classic
from fastgate.apidef.oas import decode_oas
from fastgate.apidef.spec import DefinitionError
from fastgate.auth.jwt import jose
from fastgate.auth.jwt.jwks import JwksManager, parse_jwks
from fastgate.auth.jwt.stage import JwtAuth, compile_jwt_auth
from fastgate.auth.jwt.claims import check_extra_claims, check_times, identity_of, scopes_in, subject_of
from fastgate.auth.jwt.config import JwtConfig, jwt_config, parse_duration
from fastgate.auth.jwt.revocation import Revocations
from fastgate.auth.jwt.session import Decision, decide, virtual_session_token
from fastgate.sessions.key_ids import storage_key_id
from fastgate.pipeline.stage import Denial
from fastgate.sessions.policies import decode_policy
from fastgate.http.request import Request
from fastgate.sessions.session import JWTData, SessionState
from fastgate.store.memory import MemoryStore
from tests.kit.jwks import EcKey, EdKey, RsaKey, b64, hs256
from tests.kit.services import make_services

SECRET = "unit-test-hmac-secret-of-32-bytes"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def classic(**fields: Any) -> Any:
    raw = {
        "api_id": "api", "name": "api", "org_id": "default", "use_keyless": False, "enable_jwt": True,
        "proxy": {"listen_path": "/api/", "target_url": "http://127.0.0.1:9"},
    }
    raw.update(fields)
    return decode_classic(raw, "test.json")


def oas(scheme: dict[str, Any], **extra: Any) -> Any:
    raw = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {},
        "components": {"securitySchemes": {"jwtAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"jwtAuth": []}],
        "x-tyk-api-gateway": {
            "info": {"id": "oas", "name": "oas", "orgId": "default", "state": {"active": True}},
            "upstream": {"url": "http://127.0.0.1:9"},
            "server": {
                "listenPath": {"value": "/oas/", "strip": True},
                "authentication": {"enabled": True, "securitySchemes": {"jwtAuth": {"enabled": True, **scheme}}},
            },
            **extra,
        },
    }
    return decode_oas(raw, "oas.json")


# ---- RFC 7515 appendix A -------------------------------------------------------------------------

RFC = json.loads((FIXTURES / "jose" / "rfc7515.json").read_text())


@pytest.mark.parametrize("name,family", [("A.1", "hmac"), ("A.2", "rsa"), ("A.3", "ecdsa"), ("A.4", "ecdsa")])
def test_rfc7515_examples_verify(name: str, family: str) -> None:
    example = RFC[name]
    key = jose.key_from_jwk(example["jwk"], family)
    assert key is not None
    parsed = jose.parse(example["jws"])
    if name == "A.4":  # a JWS whose payload is the text "Payload": not a JWT, so built by hand
        assert parsed == "segment is not JSON"
        head, payload, sig = example["jws"].split(".")
        parsed = jose.Jws({"alg": "ES512"}, {}, "ES512", None, f"{head}.{payload}".encode(), jose.b64url_decode(sig) or b"")
    assert isinstance(parsed, jose.Jws)
    assert jose.verify(parsed, key)
    # one flipped bit of the signing input breaks it
    head, payload, sig = example["jws"].split(".")
    tampered = jose.Jws(parsed.header, {}, parsed.alg, None, parsed.signing_input[:-1] + b"x", parsed.signature)
    assert not jose.verify(tampered, key)


def test_rfc7515_unsecured_example_never_verifies() -> None:
    parsed = jose.parse(RFC["A.5"]["jws"])
    assert isinstance(parsed, jose.Jws) and parsed.alg == "none" and parsed.signature == b""
    assert jose.ALG_FAMILY["none"] == "none"
    for key in (b"", b"anything", jose.key_from_jwk(RFC["A.1"]["jwk"], "hmac")):
        assert not jose.verify(parsed, key)


def test_rfc7515_payload_is_read_with_its_crlf_whitespace() -> None:
    parsed = jose.parse(RFC["A.1"]["jws"])
    assert isinstance(parsed, jose.Jws)
    assert parsed.claims == {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}
    assert parsed.header == {"typ": "JWT", "alg": "HS256"}


# ---- tokens minted with PyJWT and with cryptography directly --------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_algorithms_minted_by_pyjwt(alg: str) -> None:
    key = RsaKey()
    parsed = jose.parse(key.sign({"sub": "u"}, alg=alg))
    assert isinstance(parsed, jose.Jws)
    assert jose.verify(parsed, jose.key_from_material("rsa", key.public_pem))
    assert not jose.verify(parsed, jose.key_from_material("rsa", RsaKey().public_pem))


@pytest.mark.parametrize("curve,alg", [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")])
def test_ecdsa_algorithms_minted_by_pyjwt(curve: ec.EllipticCurve, alg: str) -> None:
    key = EcKey(curve=curve, alg=alg)
    parsed = jose.parse(key.sign({"sub": "u"}))
    assert isinstance(parsed, jose.Jws)
    assert jose.verify(parsed, jose.key_from_material("ecdsa", key.public_pem))
    assert jose.verify(parsed, jose.key_from_jwk(key.jwk(), "ecdsa"))


def test_ecdsa_key_of_another_curve_is_refused() -> None:
    p256, p384 = EcKey(), EcKey(curve=ec.SECP384R1(), alg="ES384")
    parsed = jose.parse(p256.sign({"sub": "u"}))
    assert isinstance(parsed, jose.Jws)
    assert not jose.verify(parsed, p384.private.public_key())


def test_eddsa_minted_by_pyjwt() -> None:
    key = EdKey()
    parsed = jose.parse(key.sign({"sub": "u"}))
    assert isinstance(parsed, jose.Jws) and parsed.alg == "EdDSA"
    assert jose.verify(parsed, jose.key_from_jwk(key.jwk(), "eddsa"))
    assert jose.verify(parsed, jose.key_from_material("eddsa", key.public_pem))


def test_tokens_minted_with_cryptography_directly() -> None:
    header = b64u(b'{"alg":"RS256","kid":"k"}')
    payload = b64u(b'{"sub":"direct"}')
    data = f"{header}.{payload}".encode()
    rsa_key = RsaKey()
    signature = rsa_key.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    parsed = jose.parse(f"{header}.{payload}.{b64u(signature)}")
    assert isinstance(parsed, jose.Jws) and jose.verify(parsed, rsa_key.private.public_key())

    header = b64u(b'{"alg":"ES256"}')
    data = f"{header}.{payload}".encode()
    ec_key = EcKey()
    r, s = decode_dss_signature(ec_key.private.sign(data, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    parsed = jose.parse(f"{header}.{payload}.{b64u(raw)}")
    assert isinstance(parsed, jose.Jws) and jose.verify(parsed, ec_key.private.public_key())

    header = b64u(b'{"alg":"HS512"}')
    data = f"{header}.{payload}".encode()
    mac = hmac.new(SECRET.encode(), data, hashlib.sha512).digest()
    parsed = jose.parse(f"{header}.{payload}.{b64u(mac)}")
    assert isinstance(parsed, jose.Jws) and jose.verify(parsed, SECRET.encode())


def test_key_material_pem_certificate_and_der() -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    key = RsaKey()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.private.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private, hashes.SHA256())
    )
    parsed = jose.parse(key.sign({"sub": "u"}))
    assert isinstance(parsed, jose.Jws)
    for material in (
        key.public_pem,
        cert.public_bytes(serialization.Encoding.PEM),
        cert.public_bytes(serialization.Encoding.DER),
        key.private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
    ):
        assert jose.verify(parsed, jose.key_from_material("rsa", material))
    assert jose.key_from_material("ecdsa", key.public_pem) is None  # wrong family
    assert jose.key_from_material("rsa", b"not a key") is None
    assert jose.key_from_material("rsa", RsaKey(bits=1024).public_pem) is None  # too small


# ---- API definitions -----------------------------------------------------------------------------


def test_classic_fields_and_defaults() -> None:
    cfg = jwt_config(classic(
        jwt_signing_method="RSA", jwt_source="", jwt_identity_base_field="user.id", jwt_policy_field_name="pol",
        jwt_client_base_field="azp", jwt_default_policies=["d1", "d2"], jwt_skip_kid=True,
        jwt_issued_at_validation_skew=1, jwt_expires_at_validation_skew=2, jwt_not_before_validation_skew=3,
        scopes={"jwt": {"scope_claim_name": "scp", "scope_to_policy": {"read": "p1"}}},
        auth_configs={"jwt": {"auth_header_name": "X-Jwt", "use_param": True}},
    ))
    assert cfg is not None
    assert cfg.family == "rsa" and cfg.key_source.kind == "session" and not cfg.centralised
    assert cfg.identity_fields == ("user.id",) and cfg.policy_fields == ("pol",) and cfg.client_base_field == "azp"
    assert cfg.default_policies == ("d1", "d2") and cfg.skip_kid
    assert (cfg.iat_skew, cfg.exp_skew, cfg.nbf_skew) == (1, 2, 3)
    assert cfg.scope_claims == ("scp",) and cfg.scope_to_policy == {"read": "p1"}
    assert cfg.source.header_name == "X-Jwt" and cfg.source.use_param and cfg.source.param_name == "X-Jwt"
    assert jwt_config(classic(enable_jwt=False)) is None
    assert jwt_config(classic(use_keyless=True)) is None


def test_deprecated_flat_scope_fields_and_signing_method_fallback() -> None:
    cfg = jwt_config(classic(jwt_signing_method="bla", jwt_scope_claim_name="roles", jwt_scope_to_policy_mapping={"a": "p"}))
    assert cfg is not None and cfg.family == "hmac"
    assert cfg.scope_claims == ("roles",) and cfg.scope_to_policy == {"a": "p"}
    assert jwt_config(classic(jwt_signing_method="eddsa")).family == "eddsa"  # type: ignore[union-attr]


def test_key_sources() -> None:
    rsa_key = RsaKey()
    url = "https://idp.example.com/.well-known/jwks.json"
    cases = {
        url: ("jwks", url),
        b64(url): ("jwks", url),
        b64(rsa_key.public_pem): ("static", None),
        rsa_key.public_pem.decode(): ("static", None),  # pasted as PEM: accepted too
    }
    for source, (kind, jwks_url) in cases.items():
        cfg = jwt_config(classic(jwt_signing_method="rsa", jwt_source=source))
        assert cfg is not None and cfg.key_source.kind == kind, source
        if jwks_url:
            assert cfg.key_source.jwks == ((jwks_url, None),)
        else:
            assert cfg.key_source.key is not None
    hmac_cfg = jwt_config(classic(jwt_source=b64(SECRET)))
    assert hmac_cfg is not None and hmac_cfg.key_source.key == SECRET.encode()
    for bad, family in (("header", "hmac"), (b64("not a pem"), "rsa"), (b64(rsa_key.public_pem), "hmac")):
        cfg = jwt_config(classic(jwt_signing_method=family, jwt_source=bad))
        assert cfg is not None and cfg.key_source.kind == "static" and cfg.key_source.key is None
        assert cfg.key_source.problem


def test_tyk_sample_with_bogus_source_loads_and_refuses() -> None:
    raw = json.loads((FIXTURES / "tyk" / "apps" / "test-amf-jwt.json").read_text())
    cfg = jwt_config(decode_classic(raw, "test-amf-jwt.json"))
    assert cfg is not None and cfg.key_source.kind == "static" and cfg.key_source.key is None


def test_negative_skew_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError) as err:
        jwt_config(classic(jwt_expires_at_validation_skew=-1))
    assert err.value.field == "jwt_expires_at_validation_skew"


def test_oas_scheme_fields() -> None:
    cfg = jwt_config(oas({
        "header": {"enabled": True, "name": "Authorization"},
        "query": {"enabled": True, "name": "jwt"},
        "jwksURIs": [{"url": "https://a/jwks", "cacheTimeout": "1m30s"}, {"url": "https://b/jwks"}],
        "signingMethod": "ecdsa", "subjectClaims": ["email", "sub"], "basePolicyClaims": ["pol", "policy"],
        "scopes": {"claims": ["scp", "scope"], "scopeToPolicyMapping": [{"scope": "read", "policyId": "p1"}]},
        "defaultPolicies": ["d"], "allowedIssuers": ["iss"], "allowedAudiences": ["aud"], "allowedSubjects": ["s"],
        "jtiValidation": {"enabled": True}, "expiresAtValidationSkew": 5,
        "customClaimValidation": {"role": {"type": "exact_match", "allowedValues": ["admin"], "nonBlocking": True}},
    }, middleware={"global": {"contextVariables": {"enabled": True}}}))
    assert cfg is not None and cfg.is_oas and cfg.family == "ecdsa" and cfg.context_vars
    assert cfg.key_source.kind == "jwks" and cfg.key_source.jwks == (("https://a/jwks", 90.0), ("https://b/jwks", None))
    assert cfg.identity_fields == ("email", "sub") and cfg.policy_fields == ("pol", "policy")
    assert cfg.scope_claims == ("scp", "scope") and cfg.scope_to_policy == {"read": "p1"}
    assert cfg.jti_required and cfg.exp_skew == 5 and cfg.custom_claims[0].non_blocking
    assert cfg.source.use_param and cfg.source.param_name == "jwt" and not cfg.source.disable_header


def test_oas_scheme_must_be_required_and_enabled() -> None:
    assert jwt_config(oas({"enabled": False})) is None
    spec = oas({})
    raw = dict(spec.raw)
    raw["security"] = []
    assert jwt_config(decode_oas(raw, "x.json")) is None


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1m30s") == 90 and parse_duration("1h") == 3600
    assert parse_duration("500ms") == 0.5 and parse_duration(12) == 12 and parse_duration("15") == 15
    assert parse_duration("") is None and parse_duration("bogus") is None and parse_duration(None) is None


# ---- claims --------------------------------------------------------------------------------------

_BASE = jwt_config(classic())
assert _BASE is not None
# Only what the claim checks read beside the skews: the source, the family and the key.
CFG0 = JwtConfig(source=_BASE.source, family="hmac", keys=_BASE.keys, key_source=_BASE.key_source)


def with_skews(exp: int = 0, iat: int = 0, nbf: int = 0) -> JwtConfig:
    return JwtConfig(source=CFG0.source, family="hmac", keys=CFG0.keys, key_source=CFG0.key_source,
                     exp_skew=exp, iat_skew=iat, nbf_skew=nbf)


def test_time_claims_as_tyk_scenario_43() -> None:
    now = 1_000_000
    assert check_times({"exp": now - 1}, now, with_skews()) == "token has expired"
    assert check_times({"exp": now - 1}, now, with_skews(exp=2)) is None
    assert check_times({"exp": now - 1}, now, with_skews(exp=1000)) is None
    assert check_times({"exp": now}, now, with_skews()) == "token has expired"  # exp must be after now
    assert check_times({"iat": now + 1}, now, with_skews()) == "token used before issued"
    assert check_times({"iat": now + 1}, now, with_skews(iat=1)) is None
    assert check_times({"iat": now - 100}, now, with_skews()) is None
    assert check_times({"nbf": now + 1}, now, with_skews()) == "token is not valid yet"
    assert check_times({"nbf": now + 1}, now, with_skews(nbf=1)) is None
    assert check_times({"exp": 0, "iat": 0, "nbf": 0}, now, with_skews()) is None  # 0 is "absent"
    assert check_times({"exp": "tomorrow"}, now, with_skews()) == "token has expired"
    assert check_times({"exp": True}, now, with_skews()) == "token has expired"
    assert check_times({"exp": None}, now, with_skews()) == "token has expired"
    # several failures: the last one checked (nbf, then iat, then exp) is reported
    assert check_times({"exp": now - 5, "iat": now + 5, "nbf": now + 5}, now, with_skews()) == "token is not valid yet"
    assert check_times({"exp": now - 5, "iat": now + 5}, now, with_skews()) == "token used before issued"


def oas_cfg(**scheme: Any) -> JwtConfig:
    cfg = jwt_config(oas(scheme))
    assert cfg is not None
    return cfg


def test_oas_extra_claim_messages() -> None:
    cfg = oas_cfg(allowedIssuers=["https://idp"])
    assert check_extra_claims({}, {}, cfg) == "issuer claim is required but not present in token"
    assert check_extra_claims({"iss": 1}, {}, cfg) == "issuer claim must be a string"
    assert check_extra_claims({"iss": "x"}, {}, cfg) == "invalid issuer claim: x"
    assert check_extra_claims({"iss": "https://idp"}, {}, cfg) is None
    cfg = oas_cfg(allowedAudiences=["api"])
    assert check_extra_claims({}, {}, cfg) == "audience claim is required but not present in token"
    assert check_extra_claims({"aud": 5}, {}, cfg) == "invalid audience claim format"
    assert check_extra_claims({"aud": ["a", "b"]}, {}, cfg) == "no matching audience found in token: [a b]"
    assert check_extra_claims({"aud": "api"}, {}, cfg) is None
    assert check_extra_claims({"aud": ["x", "api"]}, {}, cfg) is None
    cfg = oas_cfg(jtiValidation={"enabled": True})
    assert check_extra_claims({}, {}, cfg) == "JWT ID (jti) claim is required but not present in token"
    cfg = oas_cfg(allowedSubjects=["alice"])
    assert check_extra_claims({"sub": "bob"}, {}, cfg) == "invalid subject value: bob"
    assert check_extra_claims({"sub": "alice"}, {}, cfg) is None
    assert check_extra_claims({"sub": "bob"}, {"kid": "alice"}, cfg) is None  # kid is the identity unless skipKid


def test_oas_custom_claim_rules() -> None:
    cfg = oas_cfg(customClaimValidation={
        "role": {"type": "exact_match", "allowedValues": ["admin", 1]},
        "org.tier": {"type": "contains", "allowedValues": ["gold"]},
        "perms": {"type": "contains", "allowedValues": ["write"], "nonBlocking": True},
        "tenant": {"type": "required"},
    })
    ok = {"role": "admin", "org": {"tier": "gold-plus"}, "tenant": "t"}
    assert check_extra_claims(ok, {}, cfg) is None
    assert check_extra_claims({**ok, "role": 1.0}, {}, cfg) is None  # numbers by value
    assert check_extra_claims({**ok, "role": True}, {}, cfg) == "claim role value does not match any expected values"
    assert check_extra_claims({**ok, "role": "user"}, {}, cfg) == "claim role value does not match any expected values"
    assert check_extra_claims({"role": "admin", "tenant": "t"}, {}, cfg) == "custom claim org.tier is required but not present in token"
    assert check_extra_claims({**ok, "org": {"tier": "silver"}}, {}, cfg) == "claim org.tier value does not contain any expected values"
    assert check_extra_claims({**ok, "tenant": None}, {}, cfg) == "custom claim tenant expects a non nil value"
    assert check_extra_claims({**ok, "perms": ["read"]}, {}, cfg) is None  # non-blocking: only logged
    arrays = oas_cfg(customClaimValidation={"groups": {"type": "contains", "allowedValues": ["ops"]}})
    assert check_extra_claims({"groups": ["dev", "ops"]}, {}, arrays) is None
    assert check_extra_claims({"groups": ["dev"]}, {}, arrays) == "claim groups value does not contain any expected values"


def test_identity_rules() -> None:
    classic_cfg = jwt_config(classic(jwt_source=b64(SECRET), jwt_identity_base_field="user.id"))
    assert classic_cfg is not None
    assert identity_of({"user": {"id": "u1"}, "sub": "s"}, classic_cfg) == ("u1", "")
    assert identity_of({"user.id": "lit", "user": {"id": "u1"}}, classic_cfg) == ("lit", "")
    assert identity_of({"sub": "s"}, classic_cfg) == ("s", "")
    assert identity_of({"user.id": ""}, classic_cfg) == ("", "found an empty user ID in predefined base claim, claim: user.id")
    assert identity_of({"sub": ""}, classic_cfg) == ("", "found an empty user ID in sub claim")
    assert identity_of({"sub": 5}, classic_cfg) == ("", "no suitable claims for user ID were found")
    oas_c = oas_cfg(subjectClaims=["email", "uid"])
    assert identity_of({"uid": "u", "sub": "s"}, oas_c) == ("u", "")
    assert identity_of({"sub": "s"}, oas_c) == ("s", "")
    assert identity_of({"sub": ""}, oas_c) == ("", "found an empty user ID in predefined base claim, claim: sub")
    assert identity_of({}, oas_c) == ("", "no suitable claims for user ID were found")
    assert subject_of({"kid": "k"}, {"sub": "s"}, classic_cfg) == ("k", "")
    assert subject_of({"kid": 7}, {"sub": "s"}, classic_cfg) == ("s", "")


def test_scopes() -> None:
    assert scopes_in({"scope": "a b  c"}, "scope") == ["a", "b", "", "c"]
    assert scopes_in({"scp": ["a", ["b c"], 3]}, "scp") == ["a", "b c"]
    assert scopes_in({"realm": {"roles": ["x"]}}, "realm.roles") == ["x"]
    assert scopes_in({}, "scope") == []


# ---- centralised sessions (scenarios 41, 44-48) ---------------------------------------------------


def policy(pid: str, *apis: str, **fields: Any) -> Any:
    return decode_policy({
        "id": pid, "org_id": "default", "active": True, "rate": 100, "per": 1, "quota_max": -1,
        "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in (apis or ("api",))},
        **fields,
    })


POLICIES = {p: policy(p) for p in ("base", "d1", "d2", "p1", "p2")}
POLICIES["other-org"] = policy("other-org", org_id="elsewhere")


def run(existing: SessionState | None, cfg: JwtConfig, base: str = "", scopes: list[str] | None = None, exp: Any = None) -> Decision | str:
    return decide(existing, cfg=cfg, policies=POLICIES, org_id="default", session_token="tok", identity="user",
                  base_policy=base, scopes=scopes, exp=exp, client_id="", now=1000)


def central(**fields: Any) -> JwtConfig:
    cfg = jwt_config(classic(jwt_source=b64(SECRET), **fields))
    assert cfg is not None and cfg.centralised
    return cfg


def test_new_session_from_policy_claim() -> None:
    made = run(None, central(jwt_policy_field_name="pol"), base="base", exp=5000)
    assert isinstance(made, Decision) and made.store
    s = made.session
    assert s.apply_policies == ["base"] and s.expires == 5000 and s.alias == "user"
    assert s.meta_data == {"TykJWTSessionID": "tok"} and "api" in s.access_rights
    assert run(None, central(jwt_policy_field_name="pol"), base="nope") == "key not authorized: no matching policy"
    assert run(None, central(jwt_policy_field_name="pol"), base="other-org") == "key not authorized: no matching policy"
    assert run(None, central()) == "key not authorized: no matching policy found"


def test_default_policies_and_switches() -> None:
    cfg = central(jwt_policy_field_name="pol", jwt_default_policies=["d1", "d2"])
    first = run(None, cfg)
    assert isinstance(first, Decision) and first.session.apply_policies == ["d1", "d2"]
    again = run(first.session, cfg)
    assert isinstance(again, Decision) and not again.store and again.session is first.session
    fewer = run(first.session, central(jwt_policy_field_name="pol", jwt_default_policies=["d1"]))
    assert isinstance(fewer, Decision) and fewer.store and fewer.session.apply_policies == ["d1"]
    claimed = run(first.session, cfg, base="base")
    assert isinstance(claimed, Decision) and claimed.session.apply_policies == ["base"]
    back = run(claimed.session, cfg)
    assert isinstance(back, Decision) and back.session.apply_policies == ["d1", "d2"]
    assert run(first.session, cfg, base="nope") == "key not authorized: no matching policy"


def test_scope_mapping() -> None:
    cfg = central(jwt_policy_field_name="pol", jwt_default_policies=["d1"],
                  scopes={"jwt": {"scope_to_policy": {"user:read": "p1", "user:write": "p2"}}})
    both = run(None, cfg, base="base", scopes=["user:read", "user:write"])
    assert isinstance(both, Decision) and sorted(both.session.apply_policies) == ["base", "p1", "p2"]
    defaults_unused = run(None, cfg, scopes=["user:read"])
    assert isinstance(defaults_unused, Decision) and defaults_unused.session.apply_policies == ["p1"]
    no_scopes = run(None, cfg, scopes=[])
    assert isinstance(no_scopes, Decision) and no_scopes.session.apply_policies == ["d1"]
    assert run(None, cfg, scopes=["nonexisting"]) == "key not authorized: no matching policy found in scope claim"


def test_privilege_escalation_guards_scenario_47() -> None:
    scoped = central(scopes={"jwt": {"scope_to_policy": {"read": "p1"}}})
    made = run(None, scoped, scopes=["read"])
    assert isinstance(made, Decision)
    assert run(made.session, scoped, scopes=[]) == "key not authorized: no scope or policy in token"
    assert isinstance(run(made.session, scoped, scopes=["read"]), Decision)
    plain = central(jwt_policy_field_name="pol")
    by_claim = run(None, plain, base="base")
    assert isinstance(by_claim, Decision)
    assert run(by_claim.session, plain) == "key not authorized: no matching policy found"


def test_expiry_raised_to_exp_scenario_48() -> None:
    short = dict(POLICIES, base=policy("base", key_expires_in=1))
    cfg = central(jwt_policy_field_name="pol")
    made = decide(None, cfg=cfg, policies=short, org_id="default", session_token="t", identity="u",
                  base_policy="base", scopes=None, exp=1072, client_id="", now=1000)
    assert isinstance(made, Decision) and made.session.expires == 1072
    made = decide(None, cfg=cfg, policies=short, org_id="default", session_token="t", identity="u",
                  base_policy="base", scopes=None, exp=1000, client_id="", now=1000)
    assert isinstance(made, Decision) and made.session.expires == 1001  # policy expiry is later
    later = run(made.session, cfg, base="base", exp=1005)
    assert isinstance(later, Decision) and later.store and later.session.expires == 1005


def test_virtual_session_token_is_tyks() -> None:
    md5 = hashlib.md5(b"user@example.com").hexdigest()
    assert virtual_session_token("org", "user@example.com", "") == "org" + md5
    token = virtual_session_token("org", "user@example.com", "sha256")
    assert json.loads(base64.b64decode(token)) == {"org": "org", "id": md5, "h": "sha256"}


# ---- revocations ---------------------------------------------------------------------------------


def test_revocation_rules() -> None:
    revoked = Revocations()
    now = time.time()
    revoked.jti = {"t1": now + 60, "old": now - 1}
    revoked.sub = {"alice": (now - 10, now + 60)}
    assert revoked.refused("t1", "x", None, now)
    assert not revoked.refused("old", "x", None, now)
    assert revoked.refused(None, "alice", now - 20, now)  # issued before the revocation
    assert revoked.refused(None, "alice", None, now)
    assert not revoked.refused(None, "alice", now - 5, now)  # issued after: a new login
    assert not revoked.refused(None, "bob", None, now)


def test_revocation_changes_go_through_the_store() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        one, two = Revocations(), Revocations()
        assert not await one.change(store, "jti", "t1", time.time() + 60)
        await two.load(store)
        assert "t1" in two.jti
        assert await one.change(store, "jti", "t1", None)
        await two.load(store)
        assert two.jti == {}

    asyncio.run(scenario())


# ---- JWKS manager --------------------------------------------------------------------------------


class FakeIdp:
    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.down = False

    async def __call__(self, url: str, timeout: float) -> bytes:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise OSError("connection refused")
        return json.dumps({"keys": self.keys}).encode()


def test_parse_jwks_skips_unusable_keys_and_reuses_unchanged_ones() -> None:
    good, small = RsaKey("a"), RsaKey("b", bits=1024)
    enc = dict(RsaKey("c").jwk(), use="enc")
    body = json.dumps({"keys": [good.jwk(), small.jwk(), enc, {"kty": "weird"}, "junk", EcKey("e").jwk()]}).encode()
    first = parse_jwks("u", body, 0.0)
    assert set(first.by_kid) == {"a", "e"} and first.by_kid["e"][0].family == "ecdsa"
    second = parse_jwks("u", body, 1.0, first)
    assert second.by_kid["a"][0] is first.by_kid["a"][0]
    for bad in (b"nope", b"[]", b'{"keys": 1}'):
        with pytest.raises(ValueError):
            parse_jwks("u", bad, 0.0)


def test_jwks_single_flight_cooldown_and_last_good_set() -> None:
    async def scenario() -> None:
        idp = FakeIdp(RsaKey("a").jwk())
        now = [0.0]
        manager = JwksManager(cache_timeout=100, refetch_cooldown=10, fetcher=idp, clock=lambda: now[0])
        results = await asyncio.gather(*(manager.fetch("u") for _ in range(20)))
        assert idp.calls == 1 and all(r is results[0] for r in results)
        assert not manager.may_fetch("u")
        now[0] = 11
        assert manager.may_fetch("u")
        idp.down = True
        kept = await manager.fetch("u")
        assert kept is results[0] and idp.calls == 2  # the IdP is down: the last good set stays
        never = JwksManager(fetcher=idp, clock=lambda: now[0])
        assert await never.fetch("v") is None

    asyncio.run(scenario())


def test_jwks_flush_refetches_and_clears_verified_tokens() -> None:
    async def scenario() -> None:
        idp = FakeIdp(RsaKey("a").jwk())
        manager = JwksManager(fetcher=idp)
        cleared: list[bool] = []
        manager.register("api", [("u", None)], lambda: cleared.append(True))
        await asyncio.sleep(0.05)
        assert idp.calls == 1 and manager.current("u") is not None
        manager.flush("api")
        assert manager.current("u") is None and cleared == [True]
        await asyncio.sleep(0.05)
        assert idp.calls == 2 and manager.current("u") is not None
        manager.flush(None)
        await asyncio.sleep(0.05)
        assert idp.calls == 3

    asyncio.run(scenario())


def test_jwks_background_refresh_before_expiry() -> None:
    async def scenario() -> None:
        idp = FakeIdp(RsaKey("a").jwk())
        manager = JwksManager(cache_timeout=0.2, refetch_cooldown=0.05, fetcher=idp)
        manager.register("api", [("u", None)], lambda: None)
        manager.start()
        await asyncio.sleep(0.6)
        await manager.close()
        assert idp.calls >= 3

    asyncio.run(scenario())


# ---- the stage on a memory store -----------------------------------------------------------------


def request(token: str | None) -> Request:
    req = Request()
    req.method, req.path = "GET", "/api/"
    if token is not None:
        req.headers.append((b"Authorization", token.encode()))
    return req


def run_stage(stage: Any, req: Request) -> Denial | None:
    result = stage(req)
    if result is None or isinstance(result, Denial):
        return result
    outcome: Denial | None = asyncio.run(result)
    return outcome


def test_stage_statuses_static_hmac() -> None:
    services = make_services()
    services.sessions.set_policies({"base": policy("base")})
    (stage,) = compile_jwt_auth(classic(jwt_source=b64(SECRET), jwt_policy_field_name="pol"), services)
    exp = int(time.time()) + 60
    assert run_stage(stage, request(None)) == Denial(400, "Authorization field missing")
    assert run_stage(stage, request("junk")) == Denial(403, "Key not authorized")
    rsa_token = RsaKey().sign({"sub": "u"})
    assert run_stage(stage, request(rsa_token)) == Denial(403, "Key not authorized: Unexpected signing method")
    assert run_stage(stage, request(hs256({"sub": "u", "exp": exp}, "wrong-secret-wrong-secret-wrong!"))) == Denial(403, "Key not authorized")
    expired = hs256({"sub": "u", "exp": int(time.time()) - 10, "pol": "base"}, SECRET)
    assert run_stage(stage, request(expired)) == Denial(401, "Key not authorized: token has expired")
    good = hs256({"sub": "u", "exp": exp, "pol": "base"}, SECRET)
    req = request("Bearer " + good)
    assert run_stage(stage, req) is None
    assert req.session.apply_policies == ["base"]
    assert req.session_key == storage_key_id(virtual_session_token("default", "u", "sha256"), True)


def test_stage_caches_verified_tokens_by_exact_text(monkeypatch: pytest.MonkeyPatch) -> None:
    services = make_services()
    services.sessions.set_policies({"base": policy("base")})
    (stage,) = compile_jwt_auth(classic(jwt_source=b64(SECRET), jwt_policy_field_name="pol"), services)
    auth: JwtAuth = stage.__self__  # type: ignore[attr-defined]
    calls: list[int] = []
    real = jose.verify

    def counting(jws: jose.Jws, key: Any) -> bool:
        calls.append(1)
        return real(jws, key)

    monkeypatch.setattr("fastgate.auth.jwt.stage.verify", counting)
    good = hs256({"sub": "u", "exp": int(time.time()) + 60, "pol": "base"}, SECRET)
    for _ in range(3):
        assert run_stage(stage, request(good)) is None
    assert len(calls) == 1 and good in auth.cache
    # the same claims signed again are other bytes: verified on their own
    assert run_stage(stage, request(good + "x")) == Denial(403, "Key not authorized")


def test_stage_one_to_one_follows_the_keys_secret() -> None:
    services = make_services(hash_keys=False, hash_key_function="")
    sessions = services.sessions
    (stage,) = compile_jwt_auth(classic(), services)

    async def put(secret: str) -> None:
        session = SessionState(org_id="default", jwt_data=JWTData(secret=secret))
        await sessions.put("default" + "kid1", session)

    token = hs256({"sub": "x"}, SECRET, kid="kid1")
    asyncio.run(put(SECRET))
    assert run_stage(stage, request(token)) is None
    asyncio.run(put("another-secret-another-secret-xx"))
    assert run_stage(stage, request(token)) == Denial(403, "Key not authorized")
    assert run_stage(stage, request(hs256({"sub": "x"}, SECRET, kid="nobody"))) == Denial(403, "Key not authorized")


def test_jwks_reload_keeps_sets_of_apis_still_defined() -> None:
    async def scenario() -> None:
        idp = FakeIdp(RsaKey("a").jwk())
        manager = JwksManager(fetcher=idp)
        manager.register("old", [("u", None)], lambda: None)
        await asyncio.sleep(0.05)
        manager.forget_apis()  # a reload: "old" is gone, "new" uses the same IdP
        assert manager.urls() == set()
        manager.register("new", [("u", None)], lambda: None)
        await asyncio.sleep(0.05)
        assert idp.calls == 1 and manager.urls() == {"u"} and manager.current("u") is not None

    asyncio.run(scenario())
