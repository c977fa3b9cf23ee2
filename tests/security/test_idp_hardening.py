"""The identity-provider client cannot be held, flooded or redirected, and definitions of the IdP
methods that cannot be enforced are refused by ``fastgate check`` with the file and the field.

Each server here is a raw socket in a thread playing one misbehaving IdP: silent, endless,
oversized, redirecting, chunked.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from fastgate.auth.idp_http import IdpError, idp_request
from tests.kit.apis import classic_api
from tests.kit.procs import ROOT, free_port, write_config


class RawServer:
    """Accepts connections and hands each to ``behave`` (in a thread)."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x"
        self.behave = behave
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            self.behave(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


def ask(url: str, **kwargs) -> object:
    return asyncio.run(idp_request(url, method="POST", body=b"token=t", **kwargs))


def test_silent_idp_times_out():
    server = RawServer(lambda conn: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(IdpError, match="did not answer"):
        ask(server.url, read_timeout=0.5)
    assert time.monotonic() - started < 2
    server.close()


def test_trickling_idp_times_out_as_a_whole():
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(30):
            conn.sendall(b"x")
            time.sleep(0.1)

    server = RawServer(trickle)
    with pytest.raises(IdpError):
        ask(server.url, read_timeout=0.5)
    server.close()


def test_oversized_body_is_refused():
    def flood(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
        for _ in range(200):
            conn.sendall(b"a" * 65536)

    server = RawServer(flood)
    with pytest.raises(IdpError, match="larger than"):
        ask(server.url, max_bytes=1024)
    server.close()


def test_oversized_head_is_refused():
    def headers(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 40000 + b"\r\n\r\n{}")

    server = RawServer(headers)
    with pytest.raises(IdpError):
        ask(server.url)
    server.close()


def test_redirect_is_not_followed():
    def redirect(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n")

    server = RawServer(redirect)
    assert ask(server.url).status == 302
    server.close()


def test_chunked_and_close_delimited_bodies_are_read():
    def chunked(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"act\r\n"
                     b"b\r\nive\": true}\r\n0\r\n\r\n")

    def until_close(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n{\"active\": false}")

    for behave, body in ((chunked, b'{"active": true}'), (until_close, b'{"active": false}')):
        server = RawServer(behave)
        answer = ask(server.url)
        assert (answer.status, answer.body) == (200, body)
        server.close()


def test_garbage_and_refused_connections_are_errors():
    server = RawServer(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n"))
    with pytest.raises(IdpError):
        ask(server.url)
    server.close()
    with pytest.raises(IdpError, match="cannot connect"):
        ask(f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(IdpError, match="not an http"):
        ask("file:///etc/passwd")


# ---- fastgate check -------------------------------------------------------------------------------

UP = "http://127.0.0.1:9"

REFUSED = {
    "intro-url.json": (classic_api("e1", "/e1/", UP, use_keyless=False, external_oauth={"enabled": True, "providers": [
        {"introspection": {"enabled": True, "url": "gopher://idp/introspect"}}]}),
        "external_oauth.providers[0].introspection.url"),
    "jwt-method.json": (classic_api("e2", "/e2/", UP, use_keyless=False, external_oauth={"enabled": True, "providers": [
        {"jwt": {"enabled": True, "signing_method": "none", "source": "https://idp/jwks"}}]}),
        "external_oauth.providers[0].jwt.signing_method"),
    "rsa-secret.json": (classic_api("e5", "/e5/", UP, use_keyless=False, external_oauth={"enabled": True, "providers": [
        {"jwt": {"enabled": True, "signing_method": "rsa", "source": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="}}]}),
        "external_oauth.providers[0].jwt.source"),
    "issuer.json": (classic_api("e3", "/e3/", UP, use_keyless=False, use_openid=True,
                                openid_options={"providers": [{"issuer": "not a url", "client_ids": {}}]}),
                    "openid_options.providers[0].issuer"),
    "client-ids.json": (classic_api("e4", "/e4/", UP, use_keyless=False, use_openid=True, openid_options={
        "providers": [{"issuer": "https://idp.example", "client_ids": {"%%": "p"}}]}), "openid_options.providers[0].client_ids"),
}


def test_fastgate_check_names_file_and_field(tmp_path: Path):
    apps = tmp_path / "apps"
    apps.mkdir()
    for name, (api, _) in REFUSED.items():
        (apps / name).write_text(json.dumps(api))
    config = write_config(tmp_path, {"app_path": "apps"})
    proc = subprocess.run([sys.executable, "-m", "fastgate", "check", "--config", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    for name, (_, field) in REFUSED.items():
        assert any(f"/{name}: {field}: " in line for line in proc.stdout.splitlines()), (name, proc.stdout)
