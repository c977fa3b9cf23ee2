"""JWT micro benchmarks (entries in ``micro.py``'s ``MICROS``): per-token verification cost.

``jwt.*.verify`` time what an uncached token costs in fastgate (parse the compact JWS, check the
header, verify the signature with a key parsed once); ``pyjwt.*`` the same token through
``jwt.decode`` for comparison; ``jwt.stage.*`` the whole JWT stage plus the post-auth checks of a
centralised API on the memory store, for a repeated (cached) token and for a token never seen.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, Callable

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "bench-hmac-secret-0123456789abcdef"
CLAIMS = {"sub": "bench-user", "iss": "https://idp.example.com/", "aud": "bench", "pol": "bench-jwt"}
_KEYS: dict[str, Any] = {}


def _rsa() -> Any:
    if "rsa" not in _KEYS:
        _KEYS["rsa"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS["rsa"]


def _pem(private: Any) -> bytes:
    return bytes(private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _claims() -> dict[str, Any]:
    return {**CLAIMS, "exp": int(time.time()) + 3600, "iat": int(time.time())}


def _verify(token: str, family: str, material: bytes) -> Callable[[], object]:
    from fastgate.auth.jwt import jose

    key = jose.key_from_material(family, material)

    def op() -> bool:
        parsed = jose.parse(token)
        return jose.verify(parsed, key)  # type: ignore[arg-type]

    assert op() is True
    return op


def hs256_verify() -> Callable[[], object]:
    return _verify(pyjwt.encode(_claims(), SECRET, algorithm="HS256"), "hmac", SECRET.encode())


def rs256_verify() -> Callable[[], object]:
    private = _rsa()
    return _verify(pyjwt.encode(_claims(), private, algorithm="RS256"), "rsa", _pem(private))


def es256_verify() -> Callable[[], object]:
    private = ec.generate_private_key(ec.SECP256R1())
    return _verify(pyjwt.encode(_claims(), private, algorithm="ES256"), "ecdsa", _pem(private))


def pyjwt_hs256() -> Callable[[], object]:
    token = pyjwt.encode(_claims(), SECRET, algorithm="HS256")
    options: Any = {"verify_aud": False}
    return lambda: pyjwt.decode(token, SECRET, algorithms=["HS256"], options=options)


def pyjwt_rs256() -> Callable[[], object]:
    private = _rsa()
    token = pyjwt.encode(_claims(), private, algorithm="RS256")
    public = private.public_key()
    options: Any = {"verify_aud": False}
    return lambda: pyjwt.decode(token, public, algorithms=["RS256"], options=options)


def _stages(alg: str) -> tuple[Any, Any, Any, str]:
    """(JwtAuth, post-auth stages, request, token) for a centralised API with a warm session."""
    from fastgate.apidef.classic import decode_classic
    from fastgate.auth.jwt.stage import JwtAuth
    from fastgate.auth.jwt.config import jwt_config
    from fastgate.pipeline.post_auth import compile_post_auth
    from fastgate.config import config_from_mapping
    from fastgate.sessions.policies import decode_policy
    from fastgate.http.request import Request
    from fastgate.services import open_services

    if alg == "HS256":
        source, method, token = base64.b64encode(SECRET.encode()).decode(), "hmac", pyjwt.encode(_claims(), SECRET, algorithm="HS256")
    else:
        source, method, token = base64.b64encode(_pem(_rsa())).decode(), "rsa", pyjwt.encode(_claims(), _rsa(), algorithm="RS256")
    config = config_from_mapping({"storage": {"url": "memory://"}}, environ={})
    spec = decode_classic(
        {"api_id": "a", "org_id": "default", "use_keyless": False, "enable_jwt": True, "jwt_signing_method": method,
         "jwt_source": source, "jwt_policy_field_name": "pol",
         "proxy": {"listen_path": "/a/", "target_url": "http://127.0.0.1:1/"}},
        "bench",
    )
    services = open_services(config)
    sessions = services.sessions
    sessions.set_policies({"bench-jwt": decode_policy({
        "id": "bench-jwt", "org_id": "default", "rate": 1e9, "per": 1, "quota_max": 10**12, "quota_renewal_rate": 3600,
        "access_rights": {"a": {"api_id": "a", "api_name": "a", "versions": ["Default"]}}})})
    loop = asyncio.new_event_loop()
    loop.run_until_complete(sessions.start())
    cfg = jwt_config(spec)
    assert cfg is not None
    auth = JwtAuth(spec, cfg, services)
    post = compile_post_auth(spec, services)
    req = Request()
    req.headers = [(b"Host", b"api.example.com"), (b"Authorization", b"Bearer " + token.encode())]
    req.path, req.listen_base, req.method = "/a/get", "/a", "GET"
    for _ in range(3):  # create the virtual session, then read it back into the cache
        result = auth.check(req)
        if result is not None and not hasattr(result, "status"):
            result = loop.run_until_complete(result)
        assert result is None, result
        for stage in post:
            outcome = stage(req)
            if outcome is not None and not hasattr(outcome, "status"):
                loop.run_until_complete(outcome)
    return auth, post, req, token


def _run_sync(auth: Any, post: Any, req: Any) -> None:
    if auth.check(req) is not None:
        raise AssertionError("the JWT stage did not pass synchronously")
    for stage in post:
        if stage(req) is not None:
            raise AssertionError("a post-auth stage did not pass synchronously")


def stage_cached(alg: str) -> Callable[[], Callable[[], object]]:
    def setup() -> Callable[[], object]:
        auth, post, req, _ = _stages(alg)

        def op() -> None:
            _run_sync(auth, post, req)

        op()
        return op

    return setup


def stage_uncached_rs256() -> Callable[[], object]:
    """A token the stage has not seen: parse, verify, remember, session decision (cache emptied each time)."""
    auth, post, req, _ = _stages("RS256")
    clear = auth.cache.clear

    def op() -> None:
        clear()
        _run_sync(auth, post, req)

    op()
    return op


stage_hs256 = stage_cached("HS256")
stage_rs256 = stage_cached("RS256")
