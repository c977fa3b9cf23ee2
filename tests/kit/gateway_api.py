"""Calling a test gateway's Gateway API (``/tyk/...``) the way every test module needs it.

``ADMIN`` is the header for ``requests``, ``ADMIN_HEADER`` the raw line for ``RawClient``;
``create_key`` asserts the 200 so a test fails where the key was refused, not later; it goes
through ``Gateway.admin``, which also reaches a TLS gateway (its certificate is not checked).
"""

from __future__ import annotations

from typing import Any

from tests.kit.procs import SECRET, Gateway

__all__ = ["ADMIN", "ADMIN_HEADER", "SECRET", "create_key", "error_of"]

ADMIN = {"X-Tyk-Authorization": SECRET}
ADMIN_HEADER = f"X-Tyk-Authorization: {SECRET}\r\n"


def create_key(gw: Gateway, body: dict[str, Any], key_id: str | None = None, *, timeout: float = 10) -> dict[str, Any]:
    """``POST /tyk/keys/create`` (or ``/tyk/keys/<key_id>``) with ``body``; asserts 200 and returns
    the answer (``["key"]`` is the key)."""
    path = "/tyk/keys/create" if key_id is None else f"/tyk/keys/{key_id}"
    status, answer = gw.admin("POST", path, body, timeout=timeout)
    assert status == 200, answer
    return answer


def error_of(response: Any) -> str:
    """The ``error`` of a gateway's JSON error body (a ``requests`` or a ``RawResponse``)."""
    return response.json()["error"]
