"""A raw HTTP/1.1 client over a plain socket, for tests that must control every byte.

``requests`` and ``urllib`` normalise what they send and hide what they receive (interim 100
responses, framing, whether the connection was closed). These tests need exactly that, so this
client writes the bytes it is given and parses responses itself: status line, headers in order,
and the body framed by Content-Length, chunked coding or connection close.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

__all__ = ["RawClient", "RawResponse"]


@dataclass
class RawResponse:
    """One parsed response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}

    def json(self) -> object:
        import json

        return json.loads(self.body)


class RawClient:
    """One TCP connection to ``127.0.0.1:port``; ``send`` bytes, ``read_response`` answers."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, host: str = "gw", headers: str = "", body: bytes = b"") -> RawResponse:
        """Send one simple request (Content-Length framed when there is a body) and read the answer."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        self.send(head.encode() + b"\r\n" + body)
        return self.read_response(head_only=method == "HEAD")

    # ---- reading ---------------------------------------------------------------------------

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}; got {self.buf[:200]!r}")
        out, _, self.buf = self.buf.partition(marker)
        return out

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError(f"connection closed with {len(self.buf)} of {n} body bytes")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, head_only: bool = False) -> RawResponse:
        """Read one response (a 1xx interim response is returned on its own)."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        version, status, *reason = lines[0].split(" ", 2)
        resp = RawResponse(version=version, status=int(status), reason=reason[0] if reason else "")
        for line in lines[1:]:
            name, _, value = line.partition(":")
            resp.headers.append((name, value.strip()))
        if head_only or resp.status < 200 or resp.status in (204, 304):
            return resp
        te = resp.header("transfer-encoding")
        length = resp.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            resp.chunked = True
            parts = []
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")  # no trailers from us
                    break
                parts.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n"
            resp.body = b"".join(parts)
        elif length is not None:
            resp.body = self._read_exact(int(length))
        else:
            while self._fill():
                pass
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True when the peer closes the connection within ``timeout`` with nothing more to say."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self._fill():
                    return True
            except socket.timeout:
                return False
            except OSError:
                return True
        return False

    def read_all(self, timeout: float = 3.0) -> bytes:
        """Everything until the peer closes (or ``timeout``)."""
        self.closed_by_peer(timeout)
        out, self.buf = self.buf, b""
        return out
