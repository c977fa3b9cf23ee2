"""Host and longest listen-path prefix to a compiled API, with dict lookups only.

Listen paths match on segment boundaries: ``/api/`` and ``/api`` both serve ``/api``, ``/api/``
and ``/api/x`` but never ``/apix``. A request's path is tried whole, then with its last segment
cut, and so on: a handful of dict lookups whatever the number of APIs, and no regex per request.
APIs with a ``domain`` answer only requests whose Host names it; the others answer any host.

``route`` remembers its answers by the exact ``(Host, path)`` it was asked about (bounded, and
gone with the router when APIs are reloaded): a gateway sees few distinct paths, and a hit costs
one dict lookup instead of the port split and the prefix walk.
"""

from __future__ import annotations

from typing import Final, Generic, Iterable, TypeVar

__all__ = ["Router"]

T = TypeVar("T")

MAX_MEMO: Final = 4096


class Router(Generic[T]):
    """Maps ``(host, path)`` to the API that serves it; built once per (re)load, then read-only."""

    __slots__ = ("_by_domain", "_any_host", "_memo")

    def __init__(self, routes: Iterable[tuple[str, str, T]]) -> None:
        """``routes`` are ``(domain, listen_path, api)``; an empty domain means any host."""
        self._by_domain: dict[str, dict[str, T]] = {}
        self._any_host: dict[str, T] = {}
        for domain, listen_path, api in routes:
            table = self._by_domain.setdefault(domain, {}) if domain else self._any_host
            table[listen_path.rstrip("/")] = api
        self._memo: dict[tuple[str, str], tuple[T, str] | None] = {}

    def route(self, host: str, path: str) -> tuple[T, str] | None:
        """``match`` for a Host header value (``host`` may carry a port), remembered per exact
        ``(host, path)``; at most ``MAX_MEMO`` answers are kept."""
        key = (host, path)
        memo = self._memo
        if key in memo:
            return memo[key]
        name = host.rsplit(":", 1)[0] if ":" in host and not host.endswith("]") else host
        found = self.match(name, path)
        if len(memo) >= MAX_MEMO:
            memo.clear()
        memo[key] = found
        return found

    def match(self, host: str, path: str) -> tuple[T, str] | None:
        """Return ``(api, listen_path_base)`` for the longest listen path that owns ``path``."""
        if self._by_domain:
            table = self._by_domain.get(host)
            if table is not None:
                found = _longest(table, path)
                if found is not None:
                    return found
        return _longest(self._any_host, path)


def _longest(table: dict[str, T], path: str) -> tuple[T, str] | None:
    candidate = path.rstrip("/")
    while True:
        api = table.get(candidate)
        if api is not None:
            return api, candidate
        if not candidate:
            return None
        candidate = candidate[: candidate.rfind("/")]
