"""HTTP/1.1 message rules, free of I/O: request-head checks, path normalisation, header filtering
and response bytes.

The asyncio shell (``fastgate.server.protocol``) feeds httptools callbacks into a ``Request`` and asks this
module what the request means and what bytes to write. Everything here is a pure function of its
arguments, so the smuggling and normalisation rules are tested with byte strings alone.

Smuggling rules (RFC 9112 §6.1, §6.3, §11.2): llhttp already refuses Content-Length together with
Transfer-Encoding, repeated Content-Length, obs-fold, bare LF and bad field characters. On top of
that we refuse any transfer coding other than exactly ``chunked`` (``gzip, chunked`` would make us
and a lenient upstream disagree on where the body ends), Transfer-Encoding on HTTP/1.0, a missing
or repeated Host on HTTP/1.1, and request targets that are not origin- or absolute-form.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Iterable

__all__ = [
    "HOP_BY_HOP",
    "ProtocolError",
    "error_response",
    "normalize_target",
    "http_date",
    "chunk",
    "LAST_CHUNK",
    "CONTINUE_100",
]

# Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the ones we
# always set ourselves so a client cannot smuggle its own values past us.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class ProtocolError(Exception):
    """A request we refuse before it reaches any API; ``status`` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_date_cache: list[object] = [0, b""]


def http_date(now: float | None = None) -> bytes:
    """The ``Date`` header value, formatted at most once per second."""
    second = int(time.time() if now is None else now)
    if _date_cache[0] != second:
        _date_cache[0] = second
        _date_cache[1] = formatdate(second, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[return-value]


_STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %b\r\n" % (int(s), s.phrase.encode()) for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    """A prebuilt ``HTTP/1.1 <status> <reason>`` line."""
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def json_escape(text: str) -> str:
    """Escape ``text`` for a JSON string literal (messages are ours, but stay safe)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


_error_cache: dict[tuple[int, str, bool], bytes] = {}


def error_response(
    status: int, message: str, *, keep_alive: bool, extra: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """A complete response in Tyk's error envelope ``{"error": "<message>"}``.

    Responses without extra headers are built once and reused: denials are common under attack
    and should cost no formatting.
    """
    extra = tuple(extra)
    cache_key = (status, message, keep_alive)
    if not extra:
        cached = _error_cache.get(cache_key)
        if cached is not None:
            return cached.replace(b"\r\nDate: \r\n", b"\r\nDate: " + http_date() + b"\r\n", 1)
    # Tyk's stock error.json template: pretty-printed with a 4-space indent.
    body = ('{\n    "error": "%s"\n}' % json_escape(message)).encode()
    head = [
        status_line(status),
        b"Content-Type: application/json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n",
    ]
    head.extend(b"%b: %b\r\n" % (name, value) for name, value in extra)
    template = b"".join(head) + b"Date: \r\n\r\n" + body
    if not extra and len(_error_cache) < 1024:
        _error_cache[cache_key] = template
    return template.replace(b"\r\nDate: \r\n", b"\r\nDate: " + http_date() + b"\r\n", 1)


def simple_response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: bytes = b"application/json",
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A complete response with a fixed body (Gateway API and health answers)."""
    head = [
        status_line(status),
        b"Content-Type: %b\r\n" % content_type,
        b"Content-Length: %d\r\n" % len(body),
        b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n",
        b"Date: %b\r\n" % http_date(),
    ]
    head.extend(b"%b: %b\r\n" % (name, value) for name, value in extra)
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


def normalize_target(target: bytes) -> tuple[str, str, str]:
    """Split a request target into ``(host_from_target, path, query)`` with the path made canonical.

    The path that routing and policies see must be the path the upstream receives, so dot
    segments are resolved here; encoded dots, encoded slashes, backslashes and anything that
    climbs above the root are refused rather than guessed at.
    Raises ``ProtocolError(400)`` for anything else.
    """
    host = ""
    if not target.startswith(b"/"):
        lowered = target[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            scheme_end = target.index(b"//") + 2
            slash = target.find(b"/", scheme_end)
            query_mark = target.find(b"?", scheme_end)
            end = min(i for i in (slash, query_mark, len(target)) if i >= 0)
            host = target[scheme_end:end].decode("latin-1").lower()
            if "@" in host or not host:
                raise ProtocolError(400, "Malformed request target")
            target = target[end:] or b"/"
            if target.startswith(b"?"):
                target = b"/" + target
        else:
            raise ProtocolError(400, "Malformed request target")
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(400, "Malformed request target: non-ASCII bytes") from None
    path, _, query = text.partition("?")
    if "#" in path:
        raise ProtocolError(400, "Malformed request target: fragment")
    if "%" in path:
        lowered = path.lower()
        if "%2e" in lowered or "%2f" in lowered or "%5c" in lowered:
            raise ProtocolError(400, "Encoded dot segments, slashes or backslashes are not allowed in the path")
    if "\\" in path:
        raise ProtocolError(400, "Backslashes are not allowed in the path")
    if "/.;" in path or "/..;" in path:
        # "..;x" is a parent segment to Tomcat and Spring (path parameters are dropped before
        # resolving) but an ordinary name to us: the upstream would climb where routing did not.
        raise ProtocolError(400, "Dot segments with path parameters are not allowed in the path")
    if "/." in path:
        path = _remove_dot_segments(path)
    return host, path, query


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments[1:], 1):
        if seg == "..":
            if len(out) == 0:
                raise ProtocolError(400, "The path climbs above the root")
            out.pop()
            if i == len(segments) - 1:
                out.append("")
        elif seg == ".":
            if i == len(segments) - 1:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)
