"""The optional access log: one JSON line per response, written off nothing but the loop.

Off by default (nothing is formatted per request unless it is switched on). Credentials never
appear: only method, path (without the query string, which may carry an API key), status,
API id, client address and duration, and for a request to an API the decision (``proxied``,
``refused`` with its ``reason``, ``answered``), the latency split (``upstream_ms``,
``overhead_ms``) and the identity as ``sha256:`` and 16 hex digits of the key's storage id. Gateway API paths that carry a key or an OAuth client or
token (``/tyk/keys/<key>``, ``/tyk/keys/policy/<key>``, ``/tyk/oauth/...``) are written with each
such segment replaced by ``sha256:`` and the first 16 hex digits of its SHA-256 (``redact_path``),
enough to match two lines about one key, never the key itself.
"""

from __future__ import annotations

import hashlib
import sys
import time
from typing import IO, TYPE_CHECKING

import orjson


if TYPE_CHECKING:
    from fastgate.config import AccessLogConfig
    from fastgate.server.exchange import Exchange

__all__ = ["AccessLog", "redact_path"]

# Literal words of the Gateway API's key and OAuth paths; every other segment there is a secret.
_LITERAL_SEGMENTS = frozenset({
    "tyk", "keys", "create", "preview", "policy", "oauth", "clients", "tokens", "refresh",
    "revoke", "revoke_all", "authorize-client", "apis",
})
_SECRET_PREFIXES = ("/tyk/keys/", "/tyk/oauth/")


def redact_path(path: str) -> str:
    """``path`` with every key or OAuth id segment of a Gateway API path hashed (others as is)."""
    if not path.startswith(_SECRET_PREFIXES):
        return path
    return "/".join(
        s if not s or s in _LITERAL_SEGMENTS else "sha256:" + hashlib.sha256(s.encode()).hexdigest()[:16]
        for s in path.split("/")
    )


class AccessLog:
    """Writes one JSON object per line to a file or standard error."""

    __slots__ = ("stream", "flushed_at")

    # Lines are buffered and flushed at most once a second (and at exit), so a busy gateway does
    # not make a write system call per request, and `tail -f` still sees lines within a second.
    FLUSH_EVERY = 1.0

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.flushed_at = 0.0

    @classmethod
    def open(cls, config: "AccessLogConfig") -> "AccessLog":
        if config.path:
            return cls(open(config.path, "ab", buffering=65536))
        return cls(sys.stderr.buffer)

    def write(self, exchange: "Exchange") -> None:
        req = exchange.req
        record = {
            "time": time.time(),
            "client": req.client_ip,
            "method": req.method,
            "path": redact_path(req.path),
            "status": exchange.status,
            "api_id": exchange.api.spec.api_id if exchange.api is not None else None,
            "duration_ms": round((time.monotonic() - exchange.started) * 1000, 1),
        }
        if exchange.api is not None:
            _add_decision(record, exchange)
        self.stream.write(orjson.dumps(record) + b"\n")
        if record["time"] - self.flushed_at >= self.FLUSH_EVERY:
            self.flushed_at = record["time"]
            self.stream.flush()


def _add_decision(record: dict[str, object], exchange: "Exchange") -> None:
    """The auth decision, the identity (a digest of the key's storage id, never the key) and the
    latency split of a request to an API."""
    req = exchange.req
    denial = exchange.denial
    if exchange.sent_at:
        record["decision"] = "proxied"
        record["upstream_ms"] = round(max(exchange.head_at - exchange.sent_at, 0.0) * 1000, 2) if exchange.head_at else None
        record["overhead_ms"] = round((exchange.sent_at - exchange.started) * 1000, 2)
    elif denial is not None:
        record["decision"] = "refused"
        record["reason"] = denial.message
    else:
        record["decision"] = "answered"
    request_id = req.header(b"x-request-id")
    if request_id is not None:
        record["request_id"] = request_id[:128].decode("latin-1")
    if req.session_key:
        record["identity"] = "sha256:" + hashlib.sha256(req.session_key.encode()).hexdigest()[:16]
