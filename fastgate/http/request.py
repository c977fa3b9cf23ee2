"""The per-request object every stage reads: parsed head, routing result and auth results.

Headers stay as the raw ``(name, value)`` byte pairs the client sent, in order, so the upstream
receives them as written. ``header()`` looks one up case-insensitively; stages that change
headers (stripping credentials, injecting identity) edit ``headers`` in place before the proxy
builds the upstream request from it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Request"]


class Request:
    """One HTTP request on a client connection (a pipelined request is its own ``Request``)."""

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "version",
        "headers",
        "host",
        "keep_alive",
        "content_length",
        "chunked",
        "expect_continue",
        "client_ip",
        "scheme",
        "api",
        "listen_base",
        "session",
        "session_key",
        "peer_cert",
        "ctx",
        "body_received",
        "complete",
        "error",
        "conn_tokens",
        "forwarded_for",
        "forwarded",
        "response_lines",
        "body_tap",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.path = "/"
        self.query = ""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = ""
        self.keep_alive = True
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.client_ip = ""
        self.scheme = "http"
        self.api: Any = None
        self.listen_base = ""
        self.session: Any = None
        self.session_key = ""
        self.peer_cert: Any = None
        self.ctx: dict[str, Any] | None = None
        self.body_received = 0
        self.complete = False
        self.error: tuple[int, str] | None = None
        self.conn_tokens: list[bytes] | None = None  # header names the client's Connection lists
        self.forwarded_for = b""  # the client's own X-Forwarded-For chain, if any
        self.forwarded = b""  # the client's own Forwarded chain (RFC 7239), if any
        # Header lines stages add to the client's response (rate-limit and quota headers), each
        # ``Name: value\r\n``, formatted once by the stage that knows them.
        self.response_lines = b""
        # Sees each body piece before it is forwarded (fastgate.auth.body): HMAC digests,
        # basic-auth credentials read from the body.
        self.body_tap: Any = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower-case bytes), or ``None``."""
        for key, value in self.headers:
            if len(key) == len(name) and key.lower() == name:
                return value
        return None

    def remove_header(self, name: bytes) -> None:
        """Drop every header called ``name`` (lower-case bytes)."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)
