"""Turning a msgspec validation error into what users read: the field path first.

msgspec says ``Expected `int`, got `str` - at `$.http_server_options.idle_timeout```; config
errors, definition errors and Gateway API 400s all name the field instead of the JSON path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_dict", "split_error"]


def split_error(exc: Exception) -> tuple[str, str]:
    """``(field path, what is wrong)``; the path is ``""`` for the document itself."""
    what, _, where = str(exc).partition(" - at `$")
    return where.rstrip("`").lstrip("."), what


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when a definition gave an object there, else an empty one (a wrong type reads as absent)."""
    return value if isinstance(value, dict) else {}
