"""The native plugin API: typed, ``async``, on the event loop.

A native plugin file defines ``async`` functions and names them in the API definition exactly as
a Tyk plugin's hooks (``custom_middleware.auth_check``, ``pre``, ``post_key_auth``, ``post``)::

    from fastgate.plugins import Accept, Denial, PluginRequest, SessionState

    async def check(request: PluginRequest) -> Accept | Denial:
        token = request.header("Authorization")
        if token != "let-me-in":
            return Denial(403, "Key not authorised")
        return Accept(token, SessionState(rate=100, per=1, quota_max=-1))

    async def tag(request: PluginRequest) -> Denial | None:     # pre / post_key_auth / post
        request.set_header("X-Tagged", "yes")
        return None

An ``async`` hook runs in the request's task under the per-hook timeout. Marked ``@inline`` too,
its first step (up to its first ``await`` that suspends) runs before the request has a task: a
hook that answers from memory then costs no task at all, the cheapest path; it must not use
task-bound APIs (``asyncio.timeout``, aiohttp's timeouts) before that first suspension.

An auth hook returns ``Accept(key, session)`` (the session is stored as key ``key``, policies
applied, exactly as a Tyk plugin's ``metadata["token"]``) or a ``Denial``; other hooks return
``None`` to continue or a ``Denial``. An ``async`` hook runs on the event loop with the per-hook
timeout; a plain ``def`` hook runs in the plugin thread pool unless marked ``@inline`` (a promise
that it never blocks: it then runs on the loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Final, TypeVar
from urllib.parse import parse_qsl

from fastgate.pipeline.stage import Denial
from fastgate.sessions.session import SessionState

__all__ = ["Accept", "Denial", "PluginRequest", "SessionState", "canonical", "inline"]

F = TypeVar("F", bound=Callable[..., Any])
INLINE_MARK: Final = "__fastgate_inline__"
MAX_HEADER_VALUE: Final = 8192


def inline(fn: F) -> F:
    """Mark a hook as non-blocking: a plain function runs on the event loop, not in the pool; an
    ``async`` one starts before the request has a task (see the module doc)."""
    setattr(fn, INLINE_MARK, True)
    return fn


@dataclass(frozen=True, slots=True)
class Accept:
    """An auth hook's yes: store ``session`` as the key ``key`` and use it for this request."""

    key: str
    session: SessionState


class PluginRequest:
    """What a hook sees of a request: a snapshot, safe to read from any thread; header edits are
    recorded and applied to the request when the hook returns (and checked then: a name that is
    not an HTTP token or a value with a line break fails the hook)."""

    __slots__ = ("method", "path", "query", "url", "client_ip", "headers", "body", "api_id", "org_id", "session",
                 "set_headers", "delete_headers", "_params")

    def __init__(self, method: str, path: str, query: str, client_ip: str, headers: dict[str, str],
                 api_id: str, org_id: str, session: SessionState | None = None) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.url = path + "?" + query if query else path
        self.client_ip = client_ip
        self.headers = headers  # canonical name (``X-Api-Key``) -> first value
        self.body = b""
        self.api_id = api_id
        self.org_id = org_id
        self.session = session  # post_key_auth / post: the caller's session (read-only)
        self.set_headers: dict[str, str] = {}
        self.delete_headers: list[str] = []
        self._params: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        value = self.headers.get(name)
        if value is None:
            value = self.headers.get(canonical(name))
        return value

    def set_header(self, name: str, value: str) -> None:
        """Set header ``name`` to ``value`` on the request the upstream receives."""
        self.set_headers[name] = value

    def remove_header(self, name: str) -> None:
        """Remove header ``name`` from the request the upstream receives."""
        self.delete_headers.append(name)

    @property
    def params(self) -> dict[str, str]:
        """The query parameters (first value of each)."""
        if self._params is None:
            params: dict[str, str] = {}
            for key, value in parse_qsl(self.query, keep_blank_values=True):
                params.setdefault(key, value)
            self._params = params
        return self._params


_CANONICAL: dict[str, str] = {}


def canonical(name: str) -> str:
    """Go's canonical header name (``x-api-key`` -> ``X-Api-Key``), as Tyk hands headers to plugins."""
    found = _CANONICAL.get(name)
    if found is None:
        found = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
        if len(_CANONICAL) < 4096:
            _CANONICAL[name] = found
    return found
