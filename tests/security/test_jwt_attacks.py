"""The classic JWT attacks, against a real gateway: none of them may get a 200, a 5xx or a stack trace.

alg "none"; algorithm confusion (an RSA public key as an HMAC secret, in PEM, DER and JWK form);
``crit`` extensions; ``kid`` of other types; keys offered by the token itself (``jku``, ``x5u``,
``jwk``, ``x5c``), which must never be fetched or trusted; oversized and malformed tokens; ECDSA
signatures with r or s out of range; a token verified for one API replayed on another. Plus the two
holes PyJWT closed in 2.15 (an unknown ``crit`` ignored, a public JWK accepted as an HMAC secret),
checked both in the installed PyJWT and in the gateway.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from fastgate.auth.jwt import jose
from tests.kit.jwks import EcKey, JwksServer, RsaKey, b64, b64u, hs256, signed
from tests.kit.procs import Gateway
from tests.kit.apis import classic_api, rights
from tests.kit.gateway_api import create_key

SECRET_A = "attack-tests-secret-A-32-bytes!!"
SECRET_B = "attack-tests-secret-B-32-bytes!!"
RSA = RsaKey("victim")
EC = EcKey("victim-ec")
ATTACKER = RsaKey("attacker")
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
APIS = ("hs", "hs2", "rs", "es", "jwks", "hs-pem", "hs-o2o")


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    server = JwksServer(RSA.jwk())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attacker_idp() -> Iterator[JwksServer]:
    server = JwksServer(ATTACKER.jwk())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, upstream: Any, idp: JwksServer) -> Iterator[Gateway]:
    def api(api_id: str, **fields: Any) -> dict[str, Any]:
        return classic_api(api_id, f"/{api_id}/", upstream.url, use_keyless=False, enable_jwt=True,
                           jwt_policy_field_name="pol", **fields)

    apis = [
        api("hs", jwt_signing_method="hmac", jwt_source=b64(SECRET_A)),
        api("hs2", jwt_signing_method="hmac", jwt_source=b64(SECRET_B)),
        api("rs", jwt_signing_method="rsa", jwt_source=b64(RSA.public_pem)),
        api("es", jwt_signing_method="ecdsa", jwt_source=b64(EC.public_pem)),
        api("jwks", jwt_signing_method="rsa", jwt_source=idp.url),
        # misconfigured: a public key where an HMAC secret belongs
        api("hs-pem", jwt_signing_method="hmac", jwt_source=b64(RSA.public_pem)),
        classic_api("hs-o2o", "/hs-o2o/", upstream.url, use_keyless=False, enable_jwt=True, jwt_signing_method="hmac"),
    ]
    policy = {"id": "pol", "org_id": "default", "active": True, "quota_max": -1,
              "access_rights": {a: {"api_id": a, "api_name": a, "versions": ["Default"]} for a in APIS}}
    gateway = Gateway(tmp_path_factory.mktemp("jwt-attacks"), apis, {}, policies={"pol": policy})
    yield gateway
    gateway.stop()
    assert "Traceback" not in gateway.log


CLAIMS = {"sub": "victim", "pol": "pol"}


def call(gw: Gateway, api: str, token: str) -> requests.Response:
    return requests.get(f"{gw.url}/{api}/", headers={"Authorization": token}, timeout=5)


def refused(r: requests.Response, status: int = 403, message: str = "Key not authorized") -> None:
    assert (r.status_code, r.json()) == (status, {"error": message}), (r.status_code, r.text)


def test_the_apis_work_with_honest_tokens(gw: Gateway) -> None:
    assert call(gw, "hs", hs256(CLAIMS, SECRET_A)).status_code == 200
    assert call(gw, "rs", RSA.sign(CLAIMS)).status_code == 200
    assert call(gw, "es", EC.sign(CLAIMS)).status_code == 200
    assert call(gw, "jwks", RSA.sign(CLAIMS)).status_code == 200


# ---- alg none ------------------------------------------------------------------------------------


def unsigned(header: dict[str, Any], claims: dict[str, Any] = CLAIMS, signature: bytes = b"") -> str:
    return f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}.{b64u(signature)}"


@pytest.mark.parametrize("api", ["hs", "rs", "jwks"])
def test_alg_none_never_passes(gw: Gateway, api: str) -> None:
    refused(call(gw, api, unsigned({"alg": "none"})), 403, "Key not authorized: Unexpected signing method")
    refused(call(gw, api, unsigned({"alg": "none", "kid": "victim"}, signature=b"anything")), 403,
            "Key not authorized: Unexpected signing method")
    for spelling in ("None", "NONE", "nOnE", "", " none"):
        refused(call(gw, api, unsigned({"alg": spelling, "kid": "victim"})))
    refused(call(gw, api, unsigned({"typ": "JWT"})))  # no alg at all
    refused(call(gw, api, unsigned({"alg": ["HS256"]})))


# ---- algorithm confusion -------------------------------------------------------------------------


def public_forms() -> dict[str, bytes]:
    public = RSA.private.public_key()
    return {
        "pem": RSA.public_pem,
        "pem-pkcs1": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(RSA.jwk()).encode(),
        "ssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
    }


@pytest.mark.parametrize("form", list(public_forms()))
def test_public_key_used_as_hmac_secret(gw: Gateway, form: str) -> None:
    material = public_forms()[form]
    forged = signed({"alg": "HS256", "kid": "victim"}, CLAIMS, material)
    refused(call(gw, "rs", forged), 403, "Key not authorized: Unexpected signing method")
    refused(call(gw, "jwks", forged), 403, "Key not authorized: Unexpected signing method")
    refused(call(gw, "hs-pem", forged))  # the API's own "secret" is that public key: refused outright
    assert jose.key_from_material("hmac", material) is None


def test_public_jwk_as_one_to_one_hmac_secret(gw: Gateway) -> None:
    jwk_text = json.dumps(RSA.jwk())
    body = {"org_id": "default", "access_rights": rights("hs-o2o"), "jwt_data": {"secret": jwk_text}}
    create_key(gw, body, "jwk-holder")
    refused(call(gw, "hs-o2o", signed({"alg": "HS256", "kid": "jwk-holder"}, CLAIMS, jwk_text.encode())))


# ---- crit, b64, kid ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [
    {"crit": ["exp"], "exp": 1},
    {"crit": ["http://example.invalid/ext"], "http://example.invalid/ext": True},
    {"crit": []},
    {"crit": "b64", "b64": False},
    {"crit": ["b64"], "b64": False},
    {"b64": True},
])
def test_crit_and_b64_headers_are_refused(gw: Gateway, header: dict[str, Any]) -> None:
    refused(call(gw, "hs", signed({"alg": "HS256", **header}, CLAIMS, SECRET_A.encode())))
    refused(call(gw, "rs", signed({"alg": "RS256", **header}, CLAIMS, RSA.private)))


@pytest.mark.parametrize("kid", [123, ["victim"], {"kid": "victim"}, True, 1.5])
def test_kid_must_be_a_string(gw: Gateway, idp: JwksServer, kid: Any) -> None:
    hits = idp.hits
    refused(call(gw, "jwks", signed({"alg": "RS256", "kid": kid}, CLAIMS, RSA.private)))
    refused(call(gw, "rs", signed({"alg": "RS256", "kid": kid}, CLAIMS, RSA.private)))
    assert idp.hits == hits


# ---- keys offered by the token -------------------------------------------------------------------


def test_keys_named_or_embedded_in_the_token_are_never_used(gw: Gateway, attacker_idp: JwksServer) -> None:
    x5c = [b64(ATTACKER.public_pem)]
    for extra in (
        {"jku": attacker_idp.url},
        {"x5u": attacker_idp.url},
        {"jwk": ATTACKER.jwk()},
        {"x5c": x5c},
        {"jku": attacker_idp.url, "jwk": ATTACKER.jwk(), "x5u": attacker_idp.url, "x5c": x5c},
    ):
        for api in ("rs", "jwks"):
            refused(call(gw, api, signed({"alg": "RS256", "kid": "attacker", **extra}, CLAIMS, ATTACKER.private)))
            refused(call(gw, api, signed({"alg": "RS256", "kid": "victim", **extra}, CLAIMS, ATTACKER.private)))
    assert attacker_idp.hits == 0
    # the same headers on an honest token change nothing
    assert call(gw, "jwks", RSA.sign(CLAIMS, jku=attacker_idp.url, jwk=ATTACKER.jwk())).status_code == 200
    assert attacker_idp.hits == 0


# ---- size and malformed input --------------------------------------------------------------------


def test_tokens_over_16_kib_are_refused(gw: Gateway) -> None:
    def padded(size: int) -> str:
        pad = 0
        while len(token := hs256({**CLAIMS, "pad": "x" * pad}, SECRET_A)) < size:
            pad += max(1, (size - len(token)) * 3 // 4)
        return token

    fits = padded(16 * 1024 - 4)
    assert len(fits) <= 16 * 1024 and call(gw, "hs", fits).status_code == 200
    too_big = padded(16 * 1024 + 10)
    assert len(too_big) > 16 * 1024
    refused(call(gw, "hs", too_big))


MALFORMED = [
    "a.b", "a.b.c.d", "..", "...", "!!!.@@@.###",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b"not json") + ".AAAA",
    b64u(b"not json") + "." + b64u(b'{"sub":"x"}') + ".AAAA",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'["an","array"]') + ".AAAA",
    b64u(b'"HS256"') + "." + b64u(b'{"sub":"x"}') + ".AAAA",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b"[" * 5000) + ".AAAA",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'{"exp":' + b"9" * 400 + b"}") + ".AAAA",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'{"sub":"x"}') + ".A",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'{"sub":"x"}') + ".AA=A",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'{"sub":"x"}') + ".+/+/",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'{"sub":"x"}') + ".AAAA====",
    b64u(b'{"alg":"HS256"}') + "." + b64u(b'\xff\xfe{"sub":"x"}') + ".AAAA",
    "eyJhbGciOiJIUzI1NiJ9.e30.\u00e9\u00e9",
]


@pytest.mark.parametrize("token", MALFORMED)
def test_malformed_tokens_are_403_not_500(gw: Gateway, token: str) -> None:
    r = requests.get(f"{gw.url}/hs/", headers={"Authorization": token.encode("utf-8")}, timeout=5)
    refused(r)


def test_a_valid_signature_moved_or_stripped_is_refused(gw: Gateway) -> None:
    good = hs256(CLAIMS, SECRET_A)
    head, payload, sig = good.split(".")
    refused(call(gw, "hs", f"{head}.{payload}."))
    refused(call(gw, "hs", f"{head}.{b64u(json.dumps({**CLAIMS, 'sub': 'admin'}).encode())}.{sig}"))
    refused(call(gw, "hs", f"{head}.{payload}.{sig}.{sig}"))


# ---- ECDSA r and s -------------------------------------------------------------------------------


def es256_with(r: int, s: int, size: int = 32) -> str:
    header = b64u(json.dumps({"alg": "ES256", "kid": "victim-ec"}).encode())
    payload = b64u(json.dumps(CLAIMS).encode())
    return f"{header}.{payload}.{b64u(r.to_bytes(size, 'big') + s.to_bytes(size, 'big'))}"


@pytest.mark.parametrize("r,s", [(0, 0), (0, 1), (1, 0), (P256_ORDER, 1), (1, P256_ORDER), (P256_ORDER + 1, P256_ORDER + 1)])
def test_ecdsa_signatures_with_r_or_s_out_of_range(gw: Gateway, r: int, s: int) -> None:
    refused(call(gw, "es", es256_with(r, s)))


def test_ecdsa_signature_in_der_or_wrong_length_is_refused(gw: Gateway) -> None:
    header = b64u(json.dumps({"alg": "ES256"}).encode())
    payload = b64u(json.dumps(CLAIMS).encode())
    der = EC.private.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    refused(call(gw, "es", f"{header}.{payload}.{b64u(der)}"))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert call(gw, "es", f"{header}.{payload}.{b64u(raw)}").status_code == 200
    longer = b64u(bytes(1) + raw)
    refused(call(gw, "es", f"{header}.{payload}.{longer}"))
    refused(call(gw, "es", f"{header}.{payload}.{b64u(raw[:-1])}"))


# ---- one API's token on another ------------------------------------------------------------------


def test_a_token_verified_for_one_api_does_not_open_another(gw: Gateway) -> None:
    token = hs256({**CLAIMS, "sub": "replay"}, SECRET_A)
    assert call(gw, "hs", token).status_code == 200
    assert call(gw, "hs", token).status_code == 200  # now cached for "hs"
    refused(call(gw, "hs2", token))


# ---- the two PyJWT < 2.15 holes ------------------------------------------------------------------


def test_installed_pyjwt_refuses_an_unknown_crit_extension() -> None:
    token = pyjwt.encode(CLAIMS, SECRET_A, algorithm="HS256", headers={"crit": ["urn:example:ext"], "urn:example:ext": 1})
    with pytest.raises(pyjwt.InvalidTokenError):
        pyjwt.decode(token, SECRET_A, algorithms=["HS256"])
    parsed = jose.parse(token)
    assert parsed == "crit header names an extension this gateway does not understand"


def test_installed_pyjwt_refuses_a_public_jwk_as_hmac_secret() -> None:
    jwk_text = json.dumps(RSA.jwk())
    with pytest.raises(pyjwt.InvalidKeyError):
        pyjwt.algorithms.HMACAlgorithm(pyjwt.algorithms.HMACAlgorithm.SHA256).prepare_key(jwk_text)
    assert jose.key_from_material("hmac", jwk_text.encode()) is None
    assert jose.key_from_material("hmac", json.dumps({"keys": [RSA.jwk()]}).encode()) is None
