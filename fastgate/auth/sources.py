"""Where a credential is read from, compiled once per API and auth method (Tyk's ``AuthConfig``).

Tyk reads the header (unless disabled), then lets a non-empty query parameter override it, then a
non-empty cookie: the effective precedence is cookie > query > header. Auth token, JWT and
external OAuth strip a leading ``Bearer `` (any case, exactly one space); ``Bearer: x`` is kept
as it is. Stripping credentials before proxying (``strip_auth_data``) uses the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote_plus

from fastgate.apidef.spec import AuthSource
from fastgate.http.request import Request

__all__ = ["Extractor", "compile_extractor", "query_value", "cookie_value", "strip_credentials"]

Extractor = Callable[[Request], str]


@dataclass(frozen=True, slots=True)
class _Names:
    header: bytes | None
    param: str | None
    cookie: str | None
    strip_bearer: bool


def compile_extractor(source: AuthSource, *, strip_bearer: bool = True) -> Extractor:
    """A function returning the credential ``source`` describes, or ``""`` when there is none."""
    names = _Names(
        header=None if source.disable_header else source.header_name.lower().encode("latin-1"),
        param=(source.param_name or source.header_name) if source.use_param else None,
        cookie=(source.cookie_name or source.header_name) if source.use_cookie else None,
        strip_bearer=strip_bearer,
    )
    header = names.header
    if names.param is None and names.cookie is None and header is not None:
        # The common case, kept to one header scan.
        def from_header(req: Request) -> str:
            value = req.header(header)
            if value is None:
                return ""
            text = value.decode("latin-1").strip()
            if strip_bearer and len(text) > 7 and text[6] == " " and text[:6].lower() == "bearer":
                return text[7:]
            return text

        return from_header

    def extract(req: Request) -> str:
        text = ""
        if header is not None:
            value = req.header(header)
            if value is not None:
                text = value.decode("latin-1").strip()
        if names.param is not None:
            text = query_value(req.query, names.param) or text
        if names.cookie is not None:
            text = cookie_value(req.header(b"cookie"), names.cookie) or text
        if strip_bearer and len(text) > 7 and text[6] == " " and text[:6].lower() == "bearer":
            return text[7:]
        return text

    return extract


def query_value(query: str, name: str) -> str:
    """The first value of query parameter ``name`` (decoded), or ``""``."""
    if not query:
        return ""
    prefix = name + "="
    for pair in query.split("&"):
        if pair.startswith(prefix):
            return unquote_plus(pair[len(prefix) :])
    return ""


def cookie_value(header: bytes | None, name: str) -> str:
    """The value of cookie ``name`` in a ``Cookie`` header, or ``""``."""
    if not header:
        return ""
    prefix = name + "="
    for pair in header.decode("latin-1").split(";"):
        pair = pair.strip()
        if pair.startswith(prefix):
            return pair[len(prefix) :]
    return ""


def strip_credentials(req: Request, sources: list[AuthSource]) -> None:
    """Remove every credential ``sources`` name from ``req`` (header, cookie, query parameter)."""
    for source in sources:
        header = source.header_name or "Authorization"
        req.remove_header(header.lower().encode("latin-1"))
        cookie_name = source.cookie_name or header
        cookies = req.header(b"cookie")
        if cookies is not None:
            kept = [
                pair.strip()
                for pair in cookies.decode("latin-1").split(";")
                if pair.strip() and not pair.strip().startswith(cookie_name + "=")
            ]
            req.remove_header(b"cookie")
            if kept:
                req.headers.append((b"Cookie", "; ".join(kept).encode("latin-1")))
        param = (source.param_name or header) if source.use_param else header
        if req.query:
            prefix = param + "="
            req.query = "&".join(p for p in req.query.split("&") if not p.startswith(prefix) and p != param)
