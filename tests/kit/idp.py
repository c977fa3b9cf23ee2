"""Identity providers in the test process (threads): an RFC 7662 introspection endpoint and an
OpenID Connect issuer (discovery document + JWKS), each counting the calls it gets.

``IntrospectionServer`` answers ``POST /introspect`` (form ``token``, with the client credentials
as form fields or HTTP Basic; wrong or missing credentials get 401) from ``answers`` (token ->
JSON object; unknown tokens are ``{"active": false}``), counts calls per token in ``calls``, and
can be slowed (``delay``) or made to answer garbage (``garbage``). ``OidcIssuer`` serves
``/.well-known/openid-configuration`` and ``/jwks`` under its ``issuer`` URL and counts both.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

__all__ = ["IntrospectionServer", "OidcIssuer"]


class _Server:
    def __init__(self, handler: Callable[[BaseHTTPRequestHandler, str], tuple[int, bytes]]) -> None:
        route = handler

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

            def _answer(self, method: str) -> None:
                status, body = route(self, method)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class IntrospectionServer(_Server):
    """An RFC 7662 endpoint at ``url``."""

    def __init__(self, client_id: str = "gw-client", client_secret: str = "gw-secret-0123456789") -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.answers: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.refused = 0  # calls with wrong or missing client credentials
        self.delay = 0.0
        self.garbage: bytes | None = None
        self.seen_forms: list[dict[str, list[str]]] = []
        self._lock = threading.Lock()
        super().__init__(self._route)
        self.url = f"http://127.0.0.1:{self.port}/introspect"

    def activate(self, token: str, **claims: Any) -> None:
        self.answers[token] = {"active": True, **claims}

    def deactivate(self, token: str) -> None:
        self.answers[token] = {"active": False}

    def total(self) -> int:
        return sum(self.calls.values())

    def _route(self, handler: BaseHTTPRequestHandler, method: str) -> tuple[int, bytes]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode()
        if method != "POST" or handler.path != "/introspect":
            return 404, b'{"error": "not found"}'
        form = parse_qs(raw)
        token = (form.get("token") or [""])[0]
        with self._lock:
            self.seen_forms.append(form)
            self.calls[token] += 1
        if not self._client_ok(handler, form):
            with self._lock:
                self.refused += 1
            return 401, b'{"error": "invalid_client"}'
        if self.delay:
            time.sleep(self.delay)
        if self.garbage is not None:
            return 200, self.garbage
        return 200, json.dumps(self.answers.get(token, {"active": False})).encode()

    def _client_ok(self, handler: BaseHTTPRequestHandler, form: dict[str, list[str]]) -> bool:
        header = handler.headers.get("Authorization") or ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return unquote(user) == self.client_id and unquote(password) == self.client_secret
        return (form.get("client_id") or [""])[0] == self.client_id and (
            form.get("client_secret") or [""])[0] == self.client_secret


class OidcIssuer(_Server):
    """An OpenID Connect issuer at ``issuer`` (``http://127.0.0.1:<port>/idp``) serving ``keys``."""

    def __init__(self, *keys: dict[str, Any], name: str = "idp") -> None:
        self.keys: list[dict[str, Any]] = list(keys)
        self.discovery_hits = 0
        self.jwks_hits = 0
        self.down = False
        self.claimed_issuer: str | None = None  # the "issuer" the document names (default: the real one)
        super().__init__(self._route)
        self.issuer = f"http://127.0.0.1:{self.port}/{name}"
        self._name = name

    def _route(self, handler: BaseHTTPRequestHandler, method: str) -> tuple[int, bytes]:
        path = handler.path
        if path == f"/{self._name}/.well-known/openid-configuration":
            self.discovery_hits += 1
            if self.down:
                return 503, b"{}"
            doc = {"issuer": self.claimed_issuer or self.issuer, "jwks_uri": self.issuer + "/jwks",
                   "id_token_signing_alg_values_supported": ["RS256"]}
            return 200, json.dumps(doc).encode()
        if path == f"/{self._name}/jwks":
            self.jwks_hits += 1
            if self.down:
                return 503, b"{}"
            return 200, json.dumps({"keys": self.keys}).encode()
        return 404, b"{}"
