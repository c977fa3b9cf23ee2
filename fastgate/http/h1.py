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

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Final, Iterable

__all__ = [
    "HOP_BY_HOP",
    "FIELD_PASS",
    "FIELD_DATE",
    "FIELD_LENGTH",
    "FIELD_TRANSFER_ENCODING",
    "FIELD_CONNECTION",
    "FIELD_HOP",
    "RESPONSE_FIELDS",
    "response_field_kind",
    "length_bits",
    "upstream_status_line",
    "ProtocolError",
    "error_response",
    "normalize_target",
    "canonical_path",
    "canonical_host",
    "forwarded_element",
    "chunk_framing_excess",
    "MAX_CHUNK_EXCESS",
    "path_parameters_refusal",
    "without_path_parameters",
    "http_date",
    "chunk",
    "LAST_CHUNK",
    "CONTINUE_100",
]

# Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the ones we
# always set ourselves so a client cannot smuggle its own values past us.
HOP_BY_HOP: Final = frozenset(
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

# What the gateway does with a field of an upstream's response head, by the name as sent (kept
# once per distinct name, so a response costs one dict lookup per field and no lower()):
# forwarded as is, forwarded and noted (Date), or consumed (framing and hop-by-hop fields).
FIELD_PASS: Final = 0
FIELD_DATE: Final = 1
FIELD_LENGTH: Final = 2
FIELD_TRANSFER_ENCODING: Final = 3
FIELD_CONNECTION: Final = 4
FIELD_HOP: Final = 5
RESPONSE_FIELDS: Final[dict[bytes, int]] = {}
MAX_RESPONSE_FIELDS: Final = 4096


def length_bits(names: Iterable[bytes]) -> int:
    """Bit ``n`` set for each length ``n`` among ``names``: ``bits >> len(x) & 1`` is 0 for a name
    ``x`` that cannot be one of them, without hashing it (compiled, a shift and a mask)."""
    bits = 0
    for name in names:
        bits |= 1 << len(name)
    return bits


# The lengths of the names that are not FIELD_PASS (the hop-by-hop ones, Date, Content-Length), as
# bits: a name of any other length is forwarded without a hash or a lookup.
_SORTED_LENGTHS: Final = length_bits(HOP_BY_HOP | {b"date", b"content-length"})


def response_field_kind(name: bytes) -> int:
    """The ``FIELD_*`` kind of a response field called ``name`` (any case), remembered in
    ``RESPONSE_FIELDS`` (bounded). Compiled, a name of another length than the sorted ones, or
    sent in the usual case, costs no hash (≈ 400 instructions a field less, ``bench/instr.py``)."""
    if not (_SORTED_LENGTHS >> len(name)) & 1:
        return FIELD_PASS
    if name == b"Date":
        return FIELD_DATE
    if name == b"Content-Length":
        return FIELD_LENGTH
    if name == b"Connection":
        return FIELD_CONNECTION
    kind = RESPONSE_FIELDS.get(name)
    if kind is not None:
        return kind
    lname = name.lower()
    if lname == b"date":
        kind = FIELD_DATE
    elif lname == b"content-length":
        kind = FIELD_LENGTH
    elif lname == b"transfer-encoding":
        kind = FIELD_TRANSFER_ENCODING
    elif lname == b"connection":
        kind = FIELD_CONNECTION
    elif lname in HOP_BY_HOP:
        kind = FIELD_HOP
    else:
        kind = FIELD_PASS
    if len(RESPONSE_FIELDS) < MAX_RESPONSE_FIELDS:
        RESPONSE_FIELDS[name] = kind
    return kind


CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"


class ProtocolError(Exception):
    """A request we refuse before it reaches any API; ``status`` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def chunk(data: bytes) -> bytes:
    """Frame ``data`` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_date_cache: Final[list[object]] = [0, b""]


def http_date(now: float | None = None) -> bytes:
    """The ``Date`` header value, formatted at most once per second."""
    second = int(time.time() if now is None else now)
    if _date_cache[0] != second:
        _date_cache[0] = second
        _date_cache[1] = formatdate(second, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[return-value]


_STATUS_LINES: Final = {
    int(s): b"HTTP/1.1 %d %b\r\n" % (int(s), s.phrase.encode()) for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    """A prebuilt ``HTTP/1.1 <status> <reason>`` line."""
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


_UPSTREAM_STATUS_LINES: Final[dict[tuple[int, bytes], bytes]] = {}
# status -> (reason, line) for the first reason seen with it: the usual case is looked up by the
# int and one bytes comparison, no tuple built or hashed (at most 1000 statuses: llhttp reads 3 digits).
_LINE_BY_STATUS: Final[dict[int, tuple[bytes, bytes]]] = {}


def upstream_status_line(status: int, reason: bytes) -> bytes:
    """The status line forwarded for an upstream's ``status`` and ``reason`` (ours when it sent
    none), built once per distinct pair (at most 1024 kept)."""
    usual = _LINE_BY_STATUS.get(status)
    if usual is not None and usual[0] == reason:
        return usual[1]
    key = (status, reason)
    line = _UPSTREAM_STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/1.1 %d %b\r\n" % (status, reason) if reason else status_line(status)
        if len(_UPSTREAM_STATUS_LINES) < 1024:
            _UPSTREAM_STATUS_LINES[key] = line
    if usual is None:
        _LINE_BY_STATUS[status] = (reason, line)
    return line


def json_escape(text: str) -> str:
    """Escape ``text`` for a JSON string literal (messages are ours, but stay safe)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


_error_cache: Final[dict[tuple[int, str, bool], bytes]] = {}


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


_TARGETS: Final[dict[bytes, tuple[str, str, str]]] = {}
MAX_TARGETS: Final = 4096


def normalize_target(target: bytes) -> tuple[str, str, str]:
    """Split a request target into ``(host_from_target, path, query)`` with the path made canonical.

    The path that routing and policies see must be the path the upstream receives, so it is made
    canonical here, once (see ``canonical_path``). The query is left as sent.
    Raises ``ProtocolError(400)`` for a target that is neither origin- nor absolute-form.

    The answer is a pure function of the exact target bytes, so accepted targets are remembered
    (at most ``MAX_TARGETS``; refusals are never remembered and are worked out each time).
    """
    found = _TARGETS.get(target)
    if found is not None:
        return found
    found = _normalize_target(target)
    if len(_TARGETS) >= MAX_TARGETS:
        _TARGETS.clear()
    _TARGETS[target] = found
    return found


def _normalize_target(target: bytes) -> tuple[str, str, str]:
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
    if "%" in path or "\\" in path or "//" in path or "/." in path:
        path = canonical_path(path)  # the common plain path skips even the call
    return host, path, query


def canonical_path(path: str) -> str:
    """The one form of ``path`` that routing, policies and the upstream all see.

    - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2: ``%61`` is ``a``),
      other escapes kept with upper-case hex digits (§6.2.2.1: ``%3f`` is ``%3F``);
    - empty segments are merged (``//`` is ``/``, as nginx's ``merge_slashes``);
    - dot segments are resolved (§5.2.4).

    Refused with ``ProtocolError(400)``: ``%00``, malformed escapes (``%ZZ``, a lone ``%``,
    ``%u0061``), encoded dots, slashes and backslashes (decoding them would change the path's
    structure behind the listen path's back), backslashes, dot segments carrying ``;``
    parameters, and a path that climbs above the root. ``;`` path parameters are kept: whether an
    API accepts them is decided once it is routed (``path_parameters_refusal``).

    A path without ``%``, ``\\``, ``//`` or ``/.`` is returned as it is, after four substring scans.
    """
    if "%" in path:
        path = _canonical_escapes(path)
    if "\\" in path:
        raise ProtocolError(400, "Backslashes are not allowed in the path")
    if "//" in path:
        path = _SLASH_RUN.sub("/", path)
    if "/." in path:
        if "/.;" in path or "/..;" in path:
            # "..;x" is a parent segment to Tomcat and Spring (path parameters are dropped before
            # resolving) but an ordinary name to us: the upstream would climb where routing did not.
            raise ProtocolError(400, "Dot segments with path parameters are not allowed in the path")
        path = _remove_dot_segments(path)
    return path


PATH_PARAMETERS_REFUSED: Final = "Path parameters (';') are not allowed in the path of this API"


def path_parameters_refusal(path: str, listen_base: str, allowed: bool) -> str | None:
    """Why ``path`` (canonical, routed to an API at ``listen_base``) is refused for its ``;``
    parameters, or ``None``. Upstreams such as Tomcat and Spring drop them before matching, so
    ``/api/private;x/y`` would be ``/api/private/y`` there: only an API that says its upstream
    expects them receives them, and never inside its listen path (routing matched the path with
    parameters removed)."""
    if not allowed:
        return PATH_PARAMETERS_REFUSED
    n = len(listen_base)
    if path.startswith(listen_base) and (len(path) == n or path[n] == "/"):
        return None
    return "Path parameters (';') are not allowed in the listen path"


def without_path_parameters(path: str) -> str:
    """``path`` with every segment's ``;`` parameters removed: what routing matches on."""
    return "/".join(segment.partition(";")[0] for segment in path.split("/"))


_SLASH_RUN: Final = re.compile("/{2,}")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
_HEX: Final = "0123456789ABCDEFabcdef"


def _escape_table() -> dict[str, str]:
    """Every two-character string after a ``%`` that is valid, mapped to what replaces
    ``%`` + it; the refused ones map to their error message prefixed with ``!``."""
    table: dict[str, str] = {}
    for hi in _HEX:
        for lo in _HEX:
            pair = hi + lo
            char = chr(int(pair, 16))
            if char == "\0":
                table[pair] = "!A %00 (NUL) escape is not allowed in the path"
            elif char in "./\\":
                table[pair] = "!Encoded dot segments, slashes or backslashes are not allowed in the path"
            elif char in _UNRESERVED:
                table[pair] = char
            else:
                table[pair] = "%" + pair.upper()
    return table


_ESCAPES: Final = _escape_table()


def _canonical_escapes(path: str) -> str:
    parts = path.split("%")
    out = [parts[0]]
    for part in parts[1:]:
        replacement = _ESCAPES.get(part[:2])
        if replacement is None:
            raise ProtocolError(400, "Malformed percent-encoding in the path: '%' must be followed by two hex digits")
        if replacement[0] == "!":
            raise ProtocolError(400, replacement[1:])
        out.append(replacement)
        out.append(part[2:])
    return "".join(out)


# A Host (RFC 9110 §7.2, RFC 3986 §3.2.2): a bracketed IP literal or a reg-name of unreserved
# and sub-delim characters (no "%": percent-encoded host names are not served), then an optional
# port. Lower-case already. Anything else (spaces, "@", "/", "?", "#", "\\") could be read as
# another authority by whatever parses it next.
_HOST: Final = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=-]*)(?::(.*))?")
_HOSTS: Final[dict[str, str]] = {}


def canonical_host(host: str) -> str:
    """``host`` (a lower-cased Host header or absolute-form authority) checked and made canonical:
    a trailing dot removed (``api.test.`` is ``api.test``). Raises ``ProtocolError(400)`` naming
    what is wrong. Results are remembered: a gateway sees few distinct hosts."""
    found = _HOSTS.get(host)
    if found is not None:
        return found
    if len(host) > 255:
        raise ProtocolError(400, "Invalid Host header: longer than 255 bytes")
    match = _HOST.fullmatch(host)
    if match is None:
        raise ProtocolError(400, "Invalid Host header: not a host name or IP address with an optional port")
    name, port = match.groups()
    if port is not None and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ProtocolError(400, "Invalid Host header: the port is not a number from 0 to 65535")
    if name.endswith(".") and name.strip("."):
        name = name.rstrip(".")
    canonical = name if port is None else name + ":" + port
    if len(_HOSTS) >= 4096:
        _HOSTS.clear()
    _HOSTS[host] = canonical
    return canonical


def forwarded_element(client_ip: bytes, scheme: bytes, host: bytes) -> bytes:
    """This hop's ``Forwarded`` element (RFC 7239 §4): ``for=...;proto=...;host="..."``. An IPv6
    address is bracketed and quoted (§6); the host is always quoted (a port's ":" is not a token
    character) and holds no quote or backslash (``canonical_host`` checked it)."""
    node = b'"[%b]"' % client_ip if b":" in client_ip else client_ip
    return b'for=%b;proto=%b;host="%b"' % (node, scheme, host)


# Chunk framing (size lines with their extensions, CRLFs, trailers) beyond what the data paid for
# is "excess"; more than this is refused (Go's net/http chunked reader has the same rule, with
# 16 KiB): extensions cannot stream forever with no data, and one size line cannot grow far past
# this size. httptools reports neither extensions nor line lengths (only ``on_chunk_header`` once
# a size line has ended), so the connection measures framing as the bytes read during a chunked
# body minus the data they carried.
MAX_CHUNK_EXCESS: Final = 4096


def chunk_framing_excess(excess: int, framing: int, chunks: int, data: int) -> int:
    """The excess after a read of ``framing`` framing bytes, ``chunks`` size lines and ``data``
    data bytes: each chunk pays for 16 bytes of framing and each data byte for 2 (a size line
    for a 1-byte chunk is ``1\\r\\n`` plus a CRLF after the data), never below zero."""
    excess += framing - 16 * chunks - 2 * data
    return max(0, excess)


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
