"""Keys and a JWKS endpoint for the JWT tests: an identity provider in a thread that rotates keys.

``JwksServer`` serves ``{"keys": [...]}`` at ``url`` from whatever ``keys`` holds at the moment,
counts every fetch in ``hits``, and can be taken down (``down = True``: 503) to play an IdP outage.
``RsaKey`` / ``EcKey`` / ``EdKey`` are private keys with a kid that sign tokens (PyJWT) and give
their public JWK and PEM.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

__all__ = ["EcKey", "EdKey", "JwksServer", "RsaKey", "b64", "b64u", "hs256", "signed"]


def b64(data: bytes | str) -> str:
    """Standard base64 (what Tyk's ``jwt_source`` holds)."""
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def hs256(claims: dict[str, Any], secret: str | bytes, **headers: Any) -> str:
    return signed({"alg": "HS256", "typ": "JWT", **headers}, claims, secret.encode() if isinstance(secret, str) else secret)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A compact JWS with exactly this header (PyJWT's encoder refuses odd ones, e.g. a numeric kid);
    header members set to None are left out."""
    header = {k: v for k, v in header.items() if v is not None}
    data = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
    if isinstance(key, bytes):  # any bytes as an HMAC secret, even a public key (for the attack tests)
        signature = hmac.new(key, data.encode(), "sha" + header["alg"][2:]).digest()
    else:
        signature = jwt.get_algorithm_by_name(header["alg"]).sign(data.encode(), key)
    return f"{data}.{b64u(signature)}"


class _Key:
    private: Any
    alg: str
    kid: str

    @property
    def public_pem(self) -> bytes:
        return bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ))

    def sign(self, claims: dict[str, Any], alg: str | None = None, **headers: Any) -> str:
        """A token with ``kid`` set to this key's (a ``kid`` of None leaves it out)."""
        header = {"alg": alg or self.alg, "typ": "JWT", "kid": self.kid, **headers}
        return signed(header, claims, self.private)

    def jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        found: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        found.update(kid=self.kid, use="sig")
        return found


class RsaKey(_Key):
    def __init__(self, kid: str = "rsa-1", bits: int = 2048) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.alg = "RS256"
        self.kid = kid


class EcKey(_Key):
    def __init__(self, kid: str = "ec-1", curve: ec.EllipticCurve | None = None, alg: str = "ES256") -> None:
        self.private = ec.generate_private_key(curve or ec.SECP256R1())
        self.alg = alg
        self.kid = kid


class EdKey(_Key):
    def __init__(self, kid: str = "ed-1") -> None:
        self.private = ed25519.Ed25519PrivateKey.generate()
        self.alg = "EdDSA"
        self.kid = kid


class JwksServer:
    """A JWKS endpoint on a free loopback port."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys: list[dict[str, Any]] = list(keys)
        self.hits = 0
        self.down = False
        self.body: bytes | None = None  # served as is when set (malformed documents)
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.hits += 1
                if server.delay:
                    time.sleep(server.delay)
                if server.down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.body if server.body is not None else json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
