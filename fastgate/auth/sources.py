"""Where a credential is read from, compiled once per API and auth method (Tyk's ``AuthConfig``).

Tyk reads the header (unless disabled), then lets a non-empty query parameter override it, then a
non-empty cookie: the effective precedence is cookie > query > header. Auth token, JWT and
external OAuth strip a leading ``Bearer `` (any case, exactly one space); ``Bearer: x`` is kept
as it is. Stripping credentials before proxying (``strip_auth_data``) uses the same names.

Each method reads one copy of its credential, and the request is forwarded with every copy, so a
second copy would reach the upstream unchecked. ``compile_credential_check`` (one stage ahead of
every auth method of an API) refuses with 400 a request in which any configured credential
location (header, query parameter, cookie) appears more than once, or in which one method finds
different non-empty values in its several locations. Methods that share a location (two methods
reading ``Authorization``) read the same single copy, so they stay consistent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_plus
from typing import Final

from fastgate.apidef.spec import AuthSource
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial

__all__ = [
    "MULTIPLE_CREDENTIALS",
    "Extractor",
    "compile_credential_check",
    "compile_extractor",
    "cookie_value",
    "query_value",
    "strip_credentials",
]

MULTIPLE_CREDENTIALS: Final = Denial(400, "Multiple credentials in one request: send each credential once")

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
            text = cookie_value(all_cookies(req), names.cookie) or text
        if strip_bearer and len(text) > 7 and text[6] == " " and text[:6].lower() == "bearer":
            return text[7:]
        return text

    return extract


def compile_credential_check(
    sources: list[tuple[AuthSource, bool]],
) -> Callable[[Request], Denial | None] | None:
    """The stage refusing a request that carries one of ``sources``' credentials twice, or
    different values of one method's credential in its several locations (``MULTIPLE_CREDENTIALS``).

    ``sources`` holds, per auth method of the API, where it reads its credential and whether it
    strips a ``Bearer `` prefix. None when there is nothing to check."""
    methods = [_names(source, strip_bearer) for source, strip_bearer in sources]
    if not methods:
        return None
    headers = frozenset(n.header for n in methods if n.header is not None)
    params = frozenset(n.param for n in methods if n.param is not None)
    cookies = frozenset(n.cookie for n in methods if n.cookie is not None)
    lengths = frozenset(len(h) for h in headers)
    several = tuple(n for n in methods if (n.header is not None) + (n.param is not None) + (n.cookie is not None) > 1)
    if len(headers) == 1 and not params and not cookies and not several:
        # The common case: every method reads one header (often the same one).
        (only,) = headers
        size = len(only)

        def check_header(req: Request) -> Denial | None:
            seen = False
            for key, _ in req.headers:
                if len(key) == size and key.lower() == only:
                    if seen:
                        return MULTIPLE_CREDENTIALS
                    seen = True
            return None

        return check_header

    def check_credentials(req: Request) -> Denial | None:
        seen: set[bytes] = set()
        cookie_headers: list[bytes] = []
        for key, value in req.headers:
            if len(key) in lengths:
                name = key.lower()
                if name in headers:
                    if name in seen:
                        return MULTIPLE_CREDENTIALS
                    seen.add(name)
            if cookies and len(key) == 6 and key.lower() == b"cookie":
                cookie_headers.append(value)
        if params and req.query and _repeated(_query_names(req.query), params):
            return MULTIPLE_CREDENTIALS
        if cookie_headers and _repeated(_cookie_names(cookie_headers), cookies):
            return MULTIPLE_CREDENTIALS
        for names in several:
            found = ""
            for text in _values(req, names):
                if text:
                    if found and text != found:
                        return MULTIPLE_CREDENTIALS
                    found = text
        return None

    return check_credentials


def _names(source: AuthSource, strip_bearer: bool) -> _Names:
    return _Names(
        header=None if source.disable_header else (source.header_name or "Authorization").lower().encode("latin-1"),
        param=(source.param_name or source.header_name) if source.use_param else None,
        cookie=(source.cookie_name or source.header_name) if source.use_cookie else None,
        strip_bearer=strip_bearer,
    )


def _repeated(names: list[str], wanted: frozenset[str]) -> bool:
    seen: set[str] = set()
    for name in names:
        if name in wanted:
            if name in seen:
                return True
            seen.add(name)
    return False


def _query_names(query: str) -> list[str]:
    # Names as an upstream decodes them, so ``%6Awt=`` counts as ``jwt=``.
    names = []
    for pair in query.split("&"):
        name = pair.partition("=")[0]
        names.append(unquote_plus(name) if "%" in name or "+" in name else name)
    return names


def _cookie_names(cookie_headers: list[bytes]) -> list[str]:
    return [pair.partition("=")[0].strip()
            for header in cookie_headers for pair in header.decode("latin-1").split(";")]


def _values(req: Request, names: _Names) -> list[str]:
    """One method's credential as found in each of its locations, ``Bearer `` stripped."""
    values = []
    if names.header is not None:
        value = req.header(names.header)
        if value is not None:
            values.append(value.decode("latin-1").strip())
    if names.param is not None:
        values.append(query_value(req.query, names.param))
    if names.cookie is not None:
        values.append(cookie_value(all_cookies(req), names.cookie))
    if names.strip_bearer:
        values = [v[7:] if len(v) > 7 and v[6] == " " and v[:6].lower() == "bearer" else v for v in values]
    return values


def query_value(query: str, name: str) -> str:
    """The first value of query parameter ``name`` (decoded), or ``""``."""
    if not query:
        return ""
    prefix = name + "="
    for pair in query.split("&"):
        if pair.startswith(prefix):
            return unquote_plus(pair[len(prefix) :])
    return ""


def all_cookies(req: Request) -> bytes | None:
    """Every ``Cookie`` header of ``req`` as one (a client may split cookies over several)."""
    found = [value for key, value in req.headers if len(key) == 6 and key.lower() == b"cookie"]
    if len(found) < 2:
        return found[0] if found else None
    return b"; ".join(found)


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
        cookies = all_cookies(req)
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
