"""What every Gateway API resource module shares: the refusal type and the request-body helpers.

Apart from ``api.py`` so the resource modules (keys, policies, apis, certs, jwks) import these
without importing the dispatcher that registers them: ``api.py`` imports the resource modules at
the top, and nothing here imports back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Protocol
from urllib.parse import parse_qs

import orjson

from fastgate.validation import split_error

if TYPE_CHECKING:
    from fastgate.http.request import Request
    from fastgate.pipeline.compile import CompiledApi
    from fastgate.services import Services

__all__ = ["ApiError", "GatewayControl", "Handler", "Registrar", "json_object", "malformed", "query_params"]

Handler = Callable[["Request", bytes, dict[str, str]], Awaitable[tuple[int, Any]]]


class GatewayControl(Protocol):
    """What the Gateway API needs of the gateway it runs in (``fastgate.gateway.Gateway``): its
    services, what is loaded, and the reload switch. Handed down, never imported."""

    services: "Services"
    load_problems: list[str]
    started_at: float

    @property
    def apis(self) -> "Mapping[str, CompiledApi]":
        """The APIs loaded now, by id (read-only here)."""

    def reload_everywhere(self) -> None:
        """Reload here and in every sibling worker."""


class Registrar(Protocol):
    """What a resource module needs of the dispatcher (``fastgate.admin.api.AdminApi``) to
    register its endpoints: named here so the resource modules never import the dispatcher."""

    gateway: GatewayControl
    services: "Services"

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve ``method`` on ``pattern`` with ``handler``."""


class ApiError(Exception):
    """A Gateway API refusal: ``{"status": "error", "message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """``body`` decoded as a JSON object, or ``ApiError(400)`` saying what is wrong with it.

    ``what`` names the expected document in the message ("policy", "API definition", ...).
    """
    if not body.strip():
        raise ApiError(400, f"Request malformed: the body must be a {what} JSON object")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Request malformed: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "Request malformed: the body must be a JSON object")
    return raw


def malformed(exc: Exception) -> ApiError:
    """A 400 for a msgspec validation error, naming the field first (``rate: Expected ...``)."""
    field, what = split_error(exc)
    return ApiError(400, f"Request malformed: {field + ': ' if field else ''}{what}")


def query_params(req: "Request") -> dict[str, str]:
    """The request's query string as a dict of first values."""
    return {k: v[0] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
