"""Turning a msgspec validation error into what users read: the field path first.

msgspec says ``Expected `int`, got `str` - at `$.http_server_options.idle_timeout```; config
errors, definition errors and Gateway API 400s all name the field instead of the JSON path.
"""

from __future__ import annotations

__all__ = ["split_error"]


def split_error(exc: Exception) -> tuple[str, str]:
    """``(field path, what is wrong)``; the path is ``""`` for the document itself."""
    what, _, where = str(exc).partition(" - at `$")
    return where.rstrip("`").lstrip("."), what
