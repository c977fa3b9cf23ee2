"""HTTP request signatures (draft-cavage, as Tyk reads them): parsing and signing strings, no I/O.

A signed request carries ``Signature keyId="k",algorithm="hmac-sha256",headers="(request-target)
date",signature="<base64>"`` (in ``Authorization`` by default). The signing string is one line
per listed header, ``name: value`` with the name lower-cased and the value trimmed, joined by
``\\n`` with no trailing newline; ``headers`` defaults to ``date``. Two of Tyk's rules are kept:
the ``date`` line reads ``X-Aux-Date`` (and is then named ``x-aux-date``) when that header is
present, and a listed header that is absent signs as an empty value.

Where Tyk and standard signers disagree, both are accepted, so either kind of client works:

* ``(request-target)``: Tyk signs ``<method> <decoded path>`` without the query; draft-cavage
  (and ``httpsig``) signs the target as sent, query included. ``signing_strings`` returns the
  standard form first and Tyk's only when it differs. Tyk's form leaves the query unsigned, so an
  API that requires ``(request-target)`` to be signed accepts only the standard form.
* the signature: Tyk's clients URL-escape the base64 (``%2B``, sometimes ``%2b``); standard
  signers send it plain. ``decode_signature`` turns both into the raw bytes, which are compared
  in constant time (Tyk compares escaped strings with ``==``).
* a header sent more than once signs as its values joined by ``", "`` (draft-cavage §2.3); Tyk
  signs only the first, which lets a second copy ride along unsigned.

Everything works on bytes: header values are signed exactly as received (non-ASCII included).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, unquote_to_bytes

from fastgate.http.request import Request

__all__ = [
    "SignatureParams", "HMAC_HASHES", "DIGEST_HASHES", "parse_signature_header", "signing_strings",
    "decode_signature", "parse_http_date", "parse_digest", "request_date",
]

HashFactory = Callable[..., Any]  # hashlib constructors

# Tyk's names; anything else is refused (Tyk silently falls back to HMAC-SHA1).
HMAC_HASHES: dict[str, HashFactory] = {
    "hmac-sha1": hashlib.sha1,
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
}

# RFC 3230 / RFC 5843 names (case-insensitive) of the body digests a ``Digest`` header may carry.
DIGEST_HASHES: dict[str, HashFactory] = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}

_PARAMS = frozenset({"keyid", "algorithm", "headers", "signature"})
_DEFAULT_HEADERS = ("date",)
# The header is at most four ``name=value`` / ``name="quoted \"value\""`` pairs (the four names
# Tyk allows), separated by commas or spaces, matched whole in one C call (3 µs; scanning it in
# Python cost 16 µs). Possessive quantifiers, a required separator between pairs and unquoted
# values without separators leave one way to split a header: no backtracking blow-up.
_PAIR = r'([^=\s,"]++)\s*+=\s*+(?:"([^"\\]*+(?:\\.[^"\\]*+)*+)"|([^,"\s]*+))'
_HEADER = re.compile(r"[\s,]*+(?:%s(?:[\s,]++%s)?+(?:[\s,]++%s)?+(?:[\s,]++%s)?+)?+[\s,]*+" % ((_PAIR,) * 4))
_ESCAPE = re.compile(r"\\(.)")
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}


@dataclass(frozen=True, slots=True)
class SignatureParams:
    """The parameters of one ``Signature`` header."""

    key_id: str
    algorithm: str
    headers: tuple[str, ...]  # lower-cased, in signing order
    signature: str  # as sent (maybe URL-escaped)


def parse_signature_header(value: str) -> SignatureParams | None:
    """The parameters of a ``Signature ...`` credential, or None when it is malformed.

    As Tyk: a leading ``Signature``/``signature`` word is dropped, names are case-insensitive,
    values may be quoted (backslash escapes inside quotes), and any parameter other than
    ``keyId``, ``algorithm``, ``headers``, ``signature`` makes the header invalid (so does a
    fifth parameter: each may appear once).
    """
    text = value.strip()
    if text[:9] in ("Signature", "signature"):
        text = text[9:]
    match = _HEADER.fullmatch(text)
    if match is None:
        return None  # not name=value pairs (an unterminated quote, ...), or more than four
    found: dict[str, str] = {}
    groups = match.groups()
    for i in (0, 3, 6, 9):
        name = groups[i]
        if name is None:
            break
        name = name.lower()
        if name not in _PARAMS:
            return None
        quoted = groups[i + 1]
        if quoted is None:
            found[name] = groups[i + 2]
        else:
            found[name] = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
    headers = tuple(found.get("headers", "").lower().split()) or _DEFAULT_HEADERS
    return SignatureParams(found.get("keyid", ""), found.get("algorithm", ""), headers, found.get("signature", ""))


def signing_strings(req: Request, headers: tuple[str, ...], *, tyk_target: bool = True) -> list[bytes]:
    """The signing string(s) ``req`` may have been signed with: the standard one, then (with
    ``tyk_target``) Tyk's ``(request-target)`` form when it differs (see the module doc)."""
    lines: list[bytes] = []
    target_at = -1
    for name in headers:
        if name == "(request-target)":
            target_at = len(lines)
            lines.append(b"")
        elif name == "date":
            aux = _values(req, b"x-aux-date")
            if aux:
                lines.append(b"x-aux-date: " + aux)
            else:
                lines.append(b"date: " + (_values(req, b"date") or b""))
        else:
            encoded = name.encode("latin-1", "replace")
            lines.append(encoded + b": " + (_values(req, encoded) or b""))
    if target_at < 0:
        return [b"\n".join(lines)]
    method = req.method.lower().encode("ascii")
    sent = _target_as_sent(req)
    lines[target_at] = b"(request-target): " + method + b" " + sent
    first = b"\n".join(lines)
    tyk_path = unquote_to_bytes(sent.partition(b"?")[0])
    if not tyk_target or tyk_path == sent:
        return [first]
    lines[target_at] = b"(request-target): " + method + b" " + tyk_path
    return [first, b"\n".join(lines)]


def decode_signature(text: str) -> bytes | None:
    """The raw signature bytes from plain or URL-escaped standard base64; None if it is neither."""
    if "%" in text:
        text = unquote(text)  # not unquote_plus: a plain base64 "+" is a plus
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def request_date(req: Request) -> bytes | None:
    """The request's date as Tyk reads it: ``X-Aux-Date`` when present, else ``Date``."""
    return req.header(b"x-aux-date") or req.header(b"date")


_last_date: tuple[bytes, float | None] = (b"", None)


def parse_http_date(value: bytes) -> float | None:
    """Seconds since the epoch for ``Mon, 02 Jan 2006 15:04:05 GMT`` (Tyk's layout), or None.

    The zone is a name (taken as UTC, as Go does for names it does not know, which covers GMT and
    UTC) or a numeric ``+hh``/``-hh``/``+hhmm``. Clients sign many requests per second with the
    same date, so the last parse is remembered.
    """
    global _last_date
    if value == _last_date[0]:
        return _last_date[1]
    result = _parse_date(value)
    _last_date = (value, result)
    return result


def _parse_date(value: bytes) -> float | None:
    try:
        text = value.decode("ascii").strip()
        weekday, rest = text.split(",", 1)
        day, month, year, clock, zone = rest.split()
        hh, mm, ss = clock.split(":")
        if len(weekday) != 3 or len(day) > 2 or len(year) != 4 or not (len(hh) == len(mm) == len(ss) == 2):
            return None
        stamp = calendar.timegm((int(year), _MONTHS[month.lower()], int(day), int(hh), int(mm), int(ss)))
    except (UnicodeDecodeError, ValueError, KeyError):
        return None
    if zone.isalpha():
        return float(stamp)
    if zone[:1] in "+-" and zone[1:].isdigit() and len(zone) in (3, 5):
        offset = int(zone[1:3]) * 3600 + (int(zone[3:5]) * 60 if len(zone) == 5 else 0)
        return float(stamp - offset if zone[0] == "+" else stamp + offset)
    return None


def parse_digest(value: bytes | None) -> tuple[HashFactory, bytes] | None:
    """The strongest supported entry of a ``Digest`` header (``SHA-256=<base64>``, RFC 3230) as
    (hash constructor, expected digest), or None when it has none or is malformed."""
    if not value:
        return None
    best: tuple[HashFactory, bytes] | None = None
    for entry in value.split(b","):
        name, sep, encoded = entry.strip().partition(b"=")
        factory = DIGEST_HASHES.get(name.decode("latin-1").lower()) if sep else None
        if factory is None:
            continue
        try:
            expected = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(expected) != factory().digest_size:
            return None
        if best is None or factory is hashlib.sha512:
            best = (factory, expected)
    return best


def _values(req: Request, name: bytes) -> bytes | None:
    """Every value of header ``name`` joined by ``", "`` (each trimmed), or None when absent."""
    found = [v.strip() for k, v in req.headers if len(k) == len(name) and k.lower() == name]
    if not found:
        return None
    return found[0] if len(found) == 1 else b", ".join(found)


def _target_as_sent(req: Request) -> bytes:
    target = req.target
    if target.startswith(b"/"):
        return target
    # absolute-form (http://host/path?q): what a signer signs is the path and query
    return (req.path + ("?" + req.query if req.query else "")).encode("latin-1")
