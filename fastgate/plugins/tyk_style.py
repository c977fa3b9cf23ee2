"""Tyk's Python plugin objects, and Tyk-style hooks adapted to the native outcome.

A Tyk hook receives ``request`` (``get_header``, ``add_header``, ``delete_header``, and
``request.object`` with ``headers``, ``body``, ``url``, ``params``, ``method`` and
``return_overrides``), ``session`` (Tyk's session fields as attributes), for auth hooks
``metadata``, and ``spec`` (``OrgID``, ``APIID``, ``config_data``). It returns ``(request,
session)``, or ``(request, session, metadata)`` for auth. The adapters below run such a hook (in a
pool thread) and turn what it did into the native outcome: ``Accept``, a ``Denial`` or ``None``.

Tyk's rules, kept: an auth hook's ``return_overrides.response_code`` ≥ 400 answers that code with
``response_error`` (else "Key not authorised") and the override headers; another non-zero code
answers directly; success needs ``metadata["token"]``, else 403 "Forbidden".
"""

from __future__ import annotations

from typing import Any, Callable, Final

import msgspec

from fastgate.pipeline.stage import Denial
from fastgate.plugins.native import Accept, PluginRequest, canonical
from fastgate.sessions.session import SessionState

__all__ = ["FORBIDDEN", "KEY_NOT_AUTHORISED", "ReturnOverrides", "TykRequest", "TykResponse", "TykSession", "run_auth",
           "run_hook", "run_response"]

KEY_NOT_AUTHORISED: Final = Denial(403, "Key not authorised")
FORBIDDEN: Final = Denial(403, "Forbidden")
_EMPTY: Final = SessionState()
# Every field, defaults included (the session type omits defaults when it encodes).
_DEFAULT_SESSION: Final[dict[str, Any]] = {f: msgspec.to_builtins(getattr(_EMPTY, f)) for f in SessionState.__struct_fields__}
_FIELDS: Final = frozenset(SessionState.__struct_fields__)


class ReturnOverrides:
    """``request.object.return_overrides``: a hook's way to answer the client itself."""

    def __init__(self) -> None:
        self.response_code = 0
        self.response_error = ""
        self.response_body = ""
        self.headers: dict[str, str] = {}
        self.override_error = False


class _MiniRequest:
    """``request.object``: Tyk's mini request object (``params`` parsed on first use)."""

    def __init__(self, view: PluginRequest) -> None:
        self.headers = view.headers  # the view is this call's own snapshot
        self.set_headers = view.set_headers
        self.delete_headers = view.delete_headers
        # The request body (APIs with hooks keep it for them; read only: the upstream receives
        # the body as the client sent it).
        self.raw_body = view.body
        self.body = view.body.decode("utf-8", "replace") if view.body else ""
        self.url = view.url
        self.request_uri = view.url
        self.method = view.method
        self.scheme = "http"
        self.return_overrides = ReturnOverrides()
        self._view = view

    @property
    def params(self) -> dict[str, str]:
        return self._view.params


class TykRequest:
    """The ``request`` argument of a Tyk hook."""

    def __init__(self, view: PluginRequest) -> None:
        self.object = _MiniRequest(view)

    def get_header(self, key: str) -> str | None:
        headers = self.object.headers
        value = headers.get(key)
        return value if value is not None else headers.get(canonical(key))

    def add_header(self, key: str, value: str) -> None:
        self.object.set_headers[key] = value

    def delete_header(self, key: str) -> None:
        self.object.delete_headers.append(key)


class TykSession:
    """The ``session`` argument: Tyk's session fields as plain attributes."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)
        self.__dict__.setdefault("metadata", self.__dict__.get("meta_data") or {})

    @classmethod
    def of(cls, session: SessionState | None) -> "TykSession":
        if session is None:
            return cls(_fresh(_DEFAULT_SESSION))
        return cls({f: msgspec.to_builtins(getattr(session, f)) for f in _FIELDS})

    def to_state(self) -> SessionState:
        """The session the hook built (raises ``msgspec.ValidationError`` for a wrong type).
        Only the fields that differ from the defaults are converted (a hook sets a handful)."""
        defaults = _DEFAULT_SESSION
        fields = {k: v for k, v in self.__dict__.items() if k in defaults and v != defaults[k]}
        metadata = self.__dict__.get("metadata")
        if isinstance(metadata, dict) and metadata and not fields.get("meta_data"):
            fields["meta_data"] = metadata
        return msgspec.convert(fields, SessionState, strict=False)


def _fresh(defaults: dict[str, Any]) -> dict[str, Any]:
    """The default fields with new containers (a hook may mutate them in place): the scalars
    copied, the containers decoded afresh from their JSON (faster than a deep copy)."""
    fields = dict(defaults)
    fields.update(msgspec.json.decode(_CONTAINERS_JSON))
    return fields


_CONTAINERS_JSON: Final = msgspec.json.encode({k: v for k, v in _DEFAULT_SESSION.items() if isinstance(v, (dict, list))})


def spec_dict(api_id: str, org_id: str, config_data: dict[str, Any] | None) -> dict[str, Any]:
    """The ``spec`` argument (Tyk's names); ``config_data`` as a JSON string, as Tyk sends it."""
    return {"APIID": api_id, "OrgID": org_id, "config_data": msgspec.json.encode(config_data or {}).decode()}


def run_auth(fn: Callable[..., Any], view: PluginRequest, spec: dict[str, Any]) -> Accept | Denial:
    """Call a Tyk auth hook (in a pool thread) and read its outcome."""
    request = TykRequest(view)
    session = TykSession.of(None)
    metadata: dict[str, Any] = {}
    returned = fn(request, session, metadata, spec)
    if isinstance(returned, tuple):
        if len(returned) > 1 and isinstance(returned[1], TykSession):
            session = returned[1]
        if len(returned) > 2 and isinstance(returned[2], dict):
            metadata = returned[2]
    denial = _overridden(request.object.return_overrides, "Key not authorised")
    if denial is not None:
        return denial
    token = metadata.get("token")
    if not token or not isinstance(token, str):
        return FORBIDDEN
    return Accept(token, session.to_state())


def run_hook(fn: Callable[..., Any], view: PluginRequest, spec: dict[str, Any]) -> Denial | None:
    """Call a Tyk pre / post_key_auth / post hook (in a pool thread) and read its outcome."""
    request = TykRequest(view)
    fn(request, TykSession.of(view.session), spec)
    return _overridden(request.object.return_overrides, "")


class TykResponse:
    """The ``response`` argument of a Tyk response hook: ``status_code``, ``headers`` (canonical
    name -> first value), ``multivalue_headers`` (``[{"key": name, "values": [...]}]``, read
    only), ``raw_body`` (bytes) and ``body`` (the same, as text). A hook changes them in place
    (or returns another ``TykResponse``)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status_code: Any = status
        first: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            first.setdefault(name, value)
            multi.setdefault(name, []).append(value)
        self.headers: Any = first
        self.multivalue_headers: Any = [{"key": k, "values": v} for k, v in multi.items()]
        self.raw_body: Any = body
        self.body: Any = body.decode("utf-8", "replace")


def run_response(fn: Callable[..., Any], view: PluginRequest, spec: dict[str, Any], response: TykResponse) -> TykResponse:
    """Call a Tyk response hook (in a pool thread): ``fn(request, response, session, metadata,
    spec)``; the response it returned (or the one it changed in place)."""
    session = TykSession.of(view.session)
    metadata = dict(view.session.meta_data) if view.session is not None else {}
    returned = fn(TykRequest(view), response, session, metadata, spec)
    if isinstance(returned, tuple):
        returned = next((r for r in returned if isinstance(r, TykResponse)), None)
    return returned if isinstance(returned, TykResponse) else response


def _overridden(overrides: ReturnOverrides, default: str) -> Denial | None:
    code = overrides.response_code
    if not code:
        return None
    if not isinstance(code, int) or not 200 <= code <= 599 or code in (204, 304):
        raise ValueError(f"return_overrides.response_code {code!r} is not a status a plugin can answer with")
    message = str(overrides.response_error or overrides.response_body or default or ("OK" if code < 400 else "Request refused"))
    headers = tuple((str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in (overrides.headers or {}).items())
    return Denial(code, message, headers)
