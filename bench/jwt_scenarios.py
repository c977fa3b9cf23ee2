"""Hooks of the JWT benchmark scenarios (issue 4), used by ``scenarios.py``.

Both APIs are centralised (the virtual session of one identity, built from the ``pol`` claim and
the ``bench-jwt`` policy in ``configs/policies``). The HS256 API is a file in ``configs/apps``; the
RS256 API needs a public key made for the run, so ``setup`` creates it through the Gateway API
(``POST /tyk/apis`` then ``GET /tyk/reload``) and signs tokens with the matching private key. nginx
does its fixed API-key check on the same path shape, which is the fastest an auth check can be.

The uncached run gives wrk (``lua/tokens.lua``) more distinct RS256 tokens than the gateway's
verified-token cache holds per API (10 000), cycled in order, so every request is a cache miss:
parse, signature check, claims, session decision.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scenarios import Context, Prepared, gateway_api

__all__ = ["HS256_SECRET", "UNCACHED_TOKENS", "setup_hs256", "setup_rs256", "setup_rs256_uncached"]

HS256_SECRET = "bench-hmac-secret-0123456789abcdef"  # base64 of it is jwt_source in configs/apps/jwt-hs256.json
UNCACHED_TOKENS = 11_000
RS256_API = "bench-jwt-rs256"


def _claims(jti: int = 0) -> dict[str, Any]:
    # One identity and one exp for every token: the virtual session is written once, then only read.
    return {"sub": "bench-user", "pol": "bench-jwt", "exp": _EXP, "iat": _EXP - 86_400, "jti": f"bench-{jti}"}


_EXP = int(time.time()) + 86_400


def setup_hs256(ctx: Context) -> Prepared:
    token = jwt.encode(_claims(), HS256_SECRET, algorithm="HS256")
    return Prepared(headers={"Authorization": "Bearer " + token})


def _rs256_api(ctx: Context) -> Any:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    gateway_api(ctx, "POST", "/tyk/apis", {
        "name": "Bench JWT RS256 (centralised: jwt_source public key, policy claim)",
        "api_id": RS256_API,
        "org_id": "default",
        "use_keyless": False,
        "enable_jwt": True,
        "jwt_signing_method": "rsa",
        "jwt_source": base64.b64encode(pem).decode(),
        "jwt_policy_field_name": "pol",
        "active": True,
        "proxy": {"listen_path": "/jwt-rs256/", "target_url": ctx.upstream_url + "/", "strip_listen_path": True},
    })
    gateway_api(ctx, "GET", "/tyk/reload")
    return private


def setup_rs256(ctx: Context) -> Prepared:
    private = _rs256_api(ctx)
    return Prepared(headers={"Authorization": "Bearer " + jwt.encode(_claims(), private, algorithm="RS256")})


def _sign_range(args: tuple[bytes, int, int]) -> list[str]:
    der, start, stop = args
    private = serialization.load_der_private_key(der, password=None)
    return [jwt.encode(_claims(i), private, algorithm="RS256") for i in range(start, stop)]  # type: ignore[arg-type]


def setup_rs256_uncached(ctx: Context) -> Prepared:
    private = _rs256_api(ctx)
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chunk = 1_000
    with ProcessPoolExecutor() as pool:
        parts = pool.map(_sign_range, [(der, i, min(i + chunk, UNCACHED_TOKENS)) for i in range(0, UNCACHED_TOKENS, chunk)])
        tokens = [t for part in parts for t in part]
    path = ctx.prefix / "jwt-rs256-tokens.txt"
    path.write_text("\n".join(tokens) + "\n")
    return Prepared(headers={"Authorization": "Bearer " + tokens[0]}, lua_args=(str(path), "Authorization", "Bearer "))
