"""From a ``HookRef`` in a definition to an awaitable hook, and the pre/post stages built on them.

``load_hook`` imports the function and picks how it runs: an ``async`` function (native) on the
event loop under ``asyncio.wait_for`` with the per-hook timeout; a plain function marked
``@inline`` on the loop directly; any other plain function (every Tyk-style hook) in the plugin
thread pool (``fastgate.plugins.pool``) with the timeout. Either way the result is an
``Accept`` / ``Denial`` / ``None`` and the header edits the hook recorded on its
``PluginRequest``, applied to the request here on the loop.

Failures never reach the client as text: a raising or timed-out hook is logged (its exception
type and message, with the request's header values blanked out) and answered with the caller's
fixed denial (auth: 403 "Key not authorised"; pre/post: 500 "Middleware error").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Final, Literal, Protocol

from fastgate.apidef.plugin_settings import HookRef
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.config import Config
from fastgate.http.h1 import FIELD_DATE, FIELD_PASS, response_field_kind
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage
from fastgate.plugins import runtime
from fastgate.plugins.loader import PluginLoadError, load_function, resolve_path
from fastgate.plugins.native import INLINE_MARK, PluginRequest, canonical
from fastgate.plugins.pool import HookPool
from fastgate.plugins.tyk_style import TykResponse, run_auth, run_hook, run_response, spec_dict
from fastgate.store.base import Store

__all__ = ["MIDDLEWARE_ERROR", "HookKind", "Later", "LoadedHook", "ResponseHooks", "apply_edits", "compile_hook_stages",
           "compile_body_stage", "compile_response_hooks", "load_hook", "view_of"]

log = logging.getLogger("fastgate.plugins")

HookKind = Literal["auth", "pre", "post_key_auth", "post", "response"]
MIDDLEWARE_ERROR: Final = Denial(500, "Middleware error")
BODY_TOO_LARGE: Final = Denial(413, "Request body too large for the API's plugins")
BODY_TIMEOUT: Final = Denial(408, "Request timed out")
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
MAX_HEADER_VALUE: Final = 8192


class PluginServices(Protocol):
    """What plugins need of ``fastgate.services.Services`` (which sits above them)."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...


class Later:
    """A hook outcome that is not known yet: await it (inside the request's task)."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable

    def __await__(self) -> Any:
        return self.awaitable.__await__()


@dataclass(frozen=True, slots=True)
class LoadedHook:
    """One hook ready to call: ``call(view)`` returns its outcome, or a ``Later`` to await when
    the hook has to wait (a pool thread, an ``async`` hook that suspends). A native hook that
    finishes without suspending is answered synchronously: the request then needs no task."""

    ref: HookRef
    kind: HookKind
    call: Callable[[PluginRequest], Any]


def load_hook(ref: HookRef, kind: HookKind, spec: ApiSpec, services: PluginServices) -> LoadedHook:
    """Import ``ref`` and wrap it to run as its style says; ``DefinitionError`` naming the file
    when it cannot be imported."""
    path = resolve_path(ref.path, services.config.base_dir)
    try:
        fn = load_function(path, ref.name)
    except PluginLoadError as exc:
        raise DefinitionError(ref.field, str(exc)) from None
    options = services.config.plugins
    pool = runtime.bind(services.store, options.thread_pool_size, options.hook_timeout)
    target = getattr(fn, "f", fn)  # a Tyk @Hook wraps the function in ``f``
    timeout = options.hook_timeout
    inline = getattr(target, INLINE_MARK, False) or getattr(fn, INLINE_MARK, False)
    if kind == "response" and (inline or inspect.iscoroutinefunction(target)):
        raise DefinitionError(ref.field, f"{ref.name}: a response hook is a plain (Tyk-style) function "
                              "def hook(request, response, session, metadata, spec); async and @inline are not supported")
    if inspect.iscoroutinefunction(target):
        return LoadedHook(ref, kind, _native_eager(target, timeout) if inline else _native_async(target, timeout))
    if inline:
        return LoadedHook(ref, kind, _native_inline(target))
    tyk_spec = spec_dict(spec.api_id, spec.org_id, spec.plugins.config_data if spec.plugins else None)
    runner = run_auth if kind == "auth" else run_response if kind == "response" else run_hook
    return LoadedHook(ref, kind, _pooled(pool, runner, fn, tyk_spec))


def _native_async(fn: Callable[..., Any], timeout: float) -> Callable[[PluginRequest], Any]:
    def call(view: PluginRequest) -> Any:
        return Later(_timed(fn(view), timeout))

    return call


async def _timed(coro: Any, timeout: float) -> Any:
    # asyncio.timeout cancels the request's own task at the deadline: unlike wait_for it makes no
    # second task per call (measured: 40 -> 5 us).
    async with asyncio.timeout(timeout):
        return await coro


def _native_eager(fn: Callable[..., Any], timeout: float) -> Callable[[PluginRequest], Any]:
    def call(view: PluginRequest) -> Any:
        # ``@inline async def``: the coroutine's first step runs here, before the request has a
        # task (so no task-bound API such as asyncio.timeout or aiohttp before its first await).
        # A hook that decides without awaiting then costs no task at all (loopbench: 71 -> 27 us);
        # one that suspends goes on inside the request's task under the timeout.
        coro = fn(view)
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            return done.value
        return Later(_resume(coro, yielded, timeout))

    return call


async def _resume(coro: Any, yielded: Any, timeout: float) -> Any:
    async with asyncio.timeout(timeout):
        return await _Continue(coro, yielded)


class _Continue:
    """Awaits the rest of a coroutine whose first step already ran and yielded ``first``."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task (cancellation): pass it on
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


def _native_inline(fn: Callable[..., Any]) -> Callable[[PluginRequest], Any]:
    return fn


def _pooled(pool: HookPool, runner: Callable[..., Any], fn: Callable[..., Any], tyk_spec: dict[str, Any]
            ) -> Callable[..., Any]:
    def call(view: PluginRequest, *more: Any) -> Any:
        return Later(pool.run(runner, fn, view, tyk_spec, *more))

    return call


def view_of(req: Request, spec: ApiSpec) -> PluginRequest:
    """A snapshot of ``req`` for a hook (headers by canonical name, first value)."""
    headers: dict[str, str] = {}
    names = _NAMES
    for name, value in req.headers:
        key = names.get(name)
        if key is None:
            key = canonical(name.decode("latin-1"))
            if len(names) < 4096:
                names[name] = key
        if key not in headers:
            headers[key] = value.decode("latin-1")
    path = req.path
    if spec.strip_listen_path and req.listen_base:
        path = path[len(req.listen_base):] or "/"
        if not path.startswith("/"):
            path = "/" + path
    view = PluginRequest(req.method, path, req.query, req.client_ip, headers, spec.api_id, spec.org_id, req.session)
    tap = req.body_tap  # fastgate.auth.body.BodyTap: the body, kept for the hooks (compile_body_stage)
    if tap is not None:
        body = tap.kept()
        if body:
            view.body = body
    return view


_NAMES: dict[bytes, str] = {}  # header name as sent -> canonical name, bounded


def apply_edits(req: Request, view: PluginRequest) -> None:
    """Apply the header edits a hook recorded (raises ``ValueError`` for a bad name or value)."""
    if not view.set_headers and not view.delete_headers:
        return
    added: list[tuple[bytes, bytes]] = []
    for name, value in view.set_headers.items():
        added.append(check_header(name, value))
    drop = {n.lower().encode("latin-1") for n in view.delete_headers} | {name.lower() for name, _ in added}
    # A new list, never an edit in place: an OR chain restores the list it saw (fastgate.auth.chain).
    req.headers = [(k, v) for k, v in req.headers if k.lower() not in drop] + added


def check_header(name: Any, value: Any) -> tuple[bytes, bytes]:
    """A header a plugin sets, as bytes; ``ValueError`` when it could split or smuggle a request."""
    name, value = str(name), str(value)
    if not _TOKEN.match(name):
        raise ValueError(f"header name {name[:40]!r} is not an HTTP token")
    if _BAD_VALUE.search(value) or len(value) > MAX_HEADER_VALUE:
        raise ValueError(f"header {name!r}: the value has a line break or NUL, or is over {MAX_HEADER_VALUE} bytes")
    return name.encode("latin-1"), value.encode("latin-1", "replace")


def report(hook: LoadedHook, req: Request, exc: BaseException) -> None:
    """Log a hook's failure: its type and message, never a header value of the request."""
    text = str(exc)
    for _, value in req.headers:
        if len(value) >= 4:
            text = text.replace(value.decode("latin-1"), "[redacted]")
    log.warning("plugin %s hook %s (%s) failed on %s %s: %s: %s", hook.kind, hook.ref.name, hook.ref.path,
                req.method, req.path, type(exc).__name__, text[:500])


def compile_body_stage(spec: ApiSpec, services: PluginServices, max_body: int) -> tuple[Stage | None, int]:
    """For an API with ``pre``/``auth_check``/``post_key_auth``/``post`` hooks: the stage that
    waits for the request body (kept by the request's ``BodyTap``, ``fastgate.auth.body``) before
    the first hook runs, and how many bytes the tap keeps (``[plugins] request_body_limit``, at
    most the API's max request body). ``(None, 0)`` for other APIs: their bodies stream."""
    plugins = spec.plugins
    if plugins is None or not (plugins.pre or plugins.post or plugins.post_key_auth or plugins.auth_check):
        return None, 0
    limit = services.config.plugins.request_body_limit
    keep = min(max_body, limit) if max_body else limit
    timeout = services.config.http_server_options.read_timeout

    def read_body(req: Request) -> Any:
        tap = req.body_tap
        if tap is None or tap.complete and not tap.too_large:
            return None  # no body, or all of it is here
        if tap.too_large:
            return BODY_TOO_LARGE
        return _wait(tap)

    async def _wait(tap: Any) -> Denial | None:
        try:
            found = await tap.body(timeout)
        except TimeoutError:
            return BODY_TIMEOUT
        return BODY_TOO_LARGE if found is None else None

    return read_body, keep


def compile_hook_stages(spec: ApiSpec, services: PluginServices, kind: HookKind) -> tuple[Stage, ...]:
    """One stage per ``kind`` hook of ``spec`` (pre, post_key_auth or post), in order."""
    plugins = spec.plugins
    if plugins is None:
        return ()
    refs = {"pre": plugins.pre, "post_key_auth": plugins.post_key_auth, "post": plugins.post}.get(kind, ())
    return tuple(_hook_stage(load_hook(ref, kind, spec, services), spec) for ref in refs)


def _hook_stage(hook: LoadedHook, spec: ApiSpec) -> Stage:
    def run(req: Request) -> Any:
        view = view_of(req, spec)
        try:
            outcome = hook.call(view)
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is the client's 500, never a crash
            report(hook, req, exc)
            return MIDDLEWARE_ERROR
        if type(outcome) is Later:
            return _finish(req, view, outcome)
        return _settle(req, view, outcome)

    async def _finish(req: Request, view: PluginRequest, later: Later) -> Denial | None:
        try:
            outcome = await later
        except Exception as exc:  # noqa: BLE001
            report(hook, req, exc)
            return MIDDLEWARE_ERROR
        return _settle(req, view, outcome)

    def _settle(req: Request, view: PluginRequest, outcome: Any) -> Denial | None:
        try:
            if outcome is not None and not isinstance(outcome, Denial):
                raise TypeError(f"a {hook.kind} hook returns None or a Denial, not {type(outcome).__name__}")
            if outcome is None:
                apply_edits(req, view)
            else:
                _check_denial(outcome)
        except Exception as exc:  # noqa: BLE001
            report(hook, req, exc)
            return MIDDLEWARE_ERROR
        result: Denial | None = outcome
        return result

    return run


def _check_denial(denial: Denial) -> None:
    for name, value in denial.headers:
        check_header(name.decode("latin-1"), value.decode("latin-1"))
    # 1xx would announce an interim answer (101: a protocol switch), 204/304 cannot carry the body.
    if not 200 <= denial.status <= 599 or denial.status in (204, 304):
        raise ValueError(f"status {denial.status} is not a status a plugin can answer with")


check_denial = _check_denial  # for the auth stage (fastgate.auth.plugin)


# ---- response hooks ------------------------------------------------------------------------------

ResponseOutcome = tuple[int, bytes, list[bytes], bytes, bool]  # status, reason, header lines, body, body changed


class ResponseHooks:
    """An API's response hooks, run in order on an upstream response held whole (the exchange
    buffers it, up to ``limit`` bytes). ``run`` answers the response to send (status, reason,
    header lines ``b"Name: value\\r\\n"``, body, whether the body changed) or ``MIDDLEWARE_ERROR``
    when a hook raised, timed out or returned something unusable (logged, never sent). Framing
    and hop-by-hop fields (``Content-Length``, ``Transfer-Encoding``, ``Connection``...) are never
    taken from a hook: the exchange frames the body it sends."""

    __slots__ = ("hooks", "spec", "limit")

    def __init__(self, hooks: tuple[LoadedHook, ...], spec: ApiSpec, limit: int) -> None:
        self.hooks = hooks
        self.spec = spec
        self.limit = limit

    async def run(self, req: Request, status: int, reason: bytes, lines: list[bytes], body: bytes) -> ResponseOutcome | Denial:
        pairs: list[tuple[str, str]] = []
        for line in lines:
            name, _, value = line[:-2].partition(b": ")
            pairs.append((canonical(name.decode("latin-1")), value.decode("latin-1")))
        response = TykResponse(status, pairs, body)
        first = dict(response.headers)
        current, text = body, response.body
        for hook in self.hooks:
            view = view_of(req, self.spec)
            try:
                returned = await hook.call(view, response)
                if not isinstance(returned, TykResponse):
                    raise TypeError(f"a response hook returns the response, not {type(returned).__name__}")
                response = returned
                # The body it left (raw_body, else the text form), both forms set for the next.
                current = _body_of(response, current, text)
                if len(self.hooks) > 1:
                    response.raw_body, response.body = current, current.decode("utf-8", "replace")
                    text = response.body
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is the client's 500, never a crash
                report(hook, req, exc)
                return MIDDLEWARE_ERROR
        try:
            return _outcome(response, status, reason, lines, pairs, first, current, current is not body)
        except Exception as exc:  # noqa: BLE001
            report(self.hooks[-1], req, exc)
            return MIDDLEWARE_ERROR


def _body_of(response: TykResponse, before: bytes, text: str) -> bytes:
    """The body a hook left: ``raw_body`` when it changed, else ``body`` when that changed."""
    raw = response.raw_body
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, (bytes, bytearray)):
        raise TypeError(f"response.raw_body is bytes, not {type(raw).__name__}")
    if not isinstance(response.body, str):
        raise TypeError(f"response.body is a str, not {type(response.body).__name__}")
    if raw != before:
        return bytes(raw)
    if response.body != text:
        return response.body.encode("utf-8")
    return before


def _outcome(response: TykResponse, status: int, reason: bytes, lines: list[bytes], pairs: list[tuple[str, str]],
             first: dict[str, str], out_body: bytes, changed: bool) -> ResponseOutcome:
    new_status = response.status_code
    if type(new_status) is not int or not 200 <= new_status <= 599:
        raise ValueError(f"response.status_code {new_status!r} is not a status a plugin can answer with")
    headers = response.headers
    if not isinstance(headers, dict):
        raise TypeError(f"response.headers is a dict, not {type(headers).__name__}")
    wanted: dict[str, str] = {}
    for name, value in headers.items():
        wanted[canonical(str(name))] = str(value)
    out: list[bytes] = []
    done: set[str] = set()
    for line, (name, _value) in zip(lines, pairs):
        if name not in wanted:
            continue  # removed by a hook
        if wanted[name] == first.get(name):
            out.append(line)  # untouched: every value the upstream sent
        elif name not in done:
            done.add(name)
            out.append(_line(name, wanted[name]))
    for name, value in wanted.items():
        if name not in first and _settable(name):
            out.append(_line(name, value))
    return new_status, reason if new_status == status else b"", out, out_body, changed


def _settable(name: str) -> bool:
    return response_field_kind(name.encode("latin-1")) in (FIELD_PASS, FIELD_DATE)


def _line(name: str, value: str) -> bytes:
    key, data = check_header(name, value)
    return b"%b: %b\r\n" % (key, data)


def compile_response_hooks(spec: ApiSpec, services: PluginServices) -> ResponseHooks | None:
    """The response hooks of ``spec`` (None without any)."""
    plugins = spec.plugins
    if plugins is None or not plugins.response:
        return None
    hooks = tuple(load_hook(ref, "response", spec, services) for ref in plugins.response)
    return ResponseHooks(hooks, spec, services.config.plugins.response_body_limit)
