"""A small asyncio HTTP/1.1 client for identity providers: introspection and OIDC discovery.

One request per connection (``Connection: close``), no redirects followed, no proxy from the
environment: the gateway contacts exactly the URL the definition names. Every wait is bounded
(``connect_timeout`` for DNS, TCP and TLS; ``read_timeout`` for the whole exchange after that),
and so is the answer (``max_bytes`` of body, 16 KiB of head): an IdP that hangs or floods costs
the gateway a bounded wait and buffer, never a stuck request. Failures raise ``IdpError`` with a
message fit for a log line (never the request body, which holds the client secret and the token).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import httptools

__all__ = ["IdpError", "IdpResponse", "idp_request"]

MAX_HEAD_BYTES: Final = 16 * 1024
_TLS: ssl.SSLContext | None = None


class IdpError(Exception):
    """The identity provider could not be asked, or did not answer an HTTP response."""


@dataclass(frozen=True, slots=True)
class IdpResponse:
    status: int
    body: bytes


async def idp_request(
    url: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: tuple[tuple[str, str], ...] = (),
    connect_timeout: float = 2.0,
    read_timeout: float = 5.0,
    max_bytes: int = 64 * 1024,
) -> IdpResponse:
    """Send one request to ``url`` (http or https) and return its status and body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise IdpError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=_tls_context() if tls else None, limit=MAX_HEAD_BYTES),
            connect_timeout,
        )
    except asyncio.TimeoutError:
        raise IdpError(f"connecting to {parts.hostname}:{port} timed out after {connect_timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise IdpError(f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}") from None
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close",
                 "Accept: application/json", "User-Agent: fastgate"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            return await asyncio.wait_for(_read_response(reader, max_bytes), read_timeout)
        except asyncio.TimeoutError:
            raise IdpError(f"{parts.hostname}:{port} did not answer within {read_timeout:g} s") from None
    finally:
        writer.close()


async def _read_response(reader: asyncio.StreamReader, max_bytes: int) -> IdpResponse:
    collected = _Collector(max_bytes)
    parser = httptools.HttpResponseParser(collected)
    seen = 0
    while not collected.complete:
        try:
            chunk = await reader.read(65536)
        except (OSError, ssl.SSLError) as exc:
            raise IdpError(f"the connection failed while reading: {exc}") from None
        if not chunk:
            if collected.headers_done and collected.until_close:
                break
            raise IdpError("the connection closed before a complete HTTP response")
        seen += len(chunk)
        try:
            parser.feed_data(chunk)
        except httptools.HttpParserError as exc:
            raise IdpError(f"not an HTTP response: {exc}") from None
        if collected.head_bytes > MAX_HEAD_BYTES or (not collected.headers_done and seen > MAX_HEAD_BYTES):
            raise IdpError("the response head is too large")
        if collected.too_large:
            raise IdpError(f"the response body is larger than {max_bytes} bytes")
    return IdpResponse(parser.get_status_code(), b"".join(collected.body))


class _Collector:
    """httptools callbacks: the body, bounded."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.too_large = False
        self.until_close = True
        self._framed = False
        self.head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.until_close = not self._framed

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            self.too_large = True
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


def _tls_context() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS
