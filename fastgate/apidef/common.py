"""Checks shared by the Classic and OAS decoders: a definition that cannot work is refused."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastgate.apidef.spec import DefinitionError
from fastgate.server.http1 import ProtocolError, canonical_path

__all__ = ["check_listen_path", "check_target_url"]


def check_listen_path(field: str, listen_path: str | None) -> str:
    """Return the listen path normalised to start with ``/``, or raise ``DefinitionError``."""
    if not listen_path:
        raise DefinitionError(field, "missing: every API needs a listen path")
    if not listen_path.startswith("/"):
        listen_path = "/" + listen_path
    if any(seg in (".", "..") for seg in listen_path.split("/")) or "\\" in listen_path:
        raise DefinitionError(field, f"{listen_path!r} contains dot segments or backslashes")
    try:
        # Requests are routed on their canonical path: a listen path is matched in the same form.
        return canonical_path(listen_path)
    except ProtocolError as exc:
        raise DefinitionError(field, f"{listen_path!r}: {exc.message}") from None


def check_target_url(field: str, target_url: str | None) -> str:
    """Return a usable http(s) upstream URL, or raise ``DefinitionError`` saying why not."""
    if not target_url:
        raise DefinitionError(field, "missing: every API needs an upstream URL")
    parts = urlsplit(target_url)
    if parts.scheme not in ("http", "https"):
        raise DefinitionError(
            field, f"{target_url!r}: scheme {parts.scheme or '(none)'!r} is not supported (http or https)"
        )
    try:
        port = parts.port
    except ValueError:
        raise DefinitionError(field, f"{target_url!r}: the port is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise DefinitionError(field, f"{target_url!r}: no host")
    del port
    if parts.query or parts.fragment:
        raise DefinitionError(field, f"{target_url!r}: a query or fragment is not allowed in an upstream URL")
    return target_url
