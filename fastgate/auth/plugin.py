"""Custom auth plugins (Tyk's ``custom_plugin_auth_enabled`` / ``enable_coprocess_auth``, OAS
``server.authentication.custom``): a Python hook decides, its session becomes a key.

The hook (``fastgate.plugins.hooks``) answers ``Accept(key, session)`` or a ``Denial``. As in
Tyk, an accepted session is stored as the key ``metadata["token"]`` (hashed like every key when
``hash_keys`` is on; the Gateway API finds it by the token alone), in the API's organisation, with
the stored key's quota counters carried over and its policies applied (a policy that cannot be
applied: 403 "Forbidden"); rate limits, quotas and access rights then apply as to any key. A hook
that raises or times out: 403 "Key not authorised", the exception only in the log.

With an ``id_extractor`` (header or query-string value, whole or a regex group), the key is
``generate_token(org, md5(value))`` as in Tyk, and while the stored key's
``id_extractor_deadline`` is in the future the hook is not called at all: the stored session is
used. A request without the value: 400 "Authorization field missing". (Form and body sources need
the request body before auth, which fastgate streams: they are refused at load.)

Writing the key on every request would cost a store write and a cluster event each time, so the
write is skipped while the hook returns an equal session for the same key and nothing may have
changed the stored copy (the session cache's version, which every key write or delete on any
node moves, and the policy set are those of the last write).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Final

import msgspec

from fastgate.apidef.plugin_settings import IdExtractor
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.sources import query_value
from fastgate.auth.identity import offer_session
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage
from fastgate.plugins.hooks import Later, LoadedHook, apply_edits, check_denial, load_hook, report, view_of
from fastgate.plugins.native import Accept, PluginRequest
from fastgate.plugins.tyk_style import FORBIDDEN, KEY_NOT_AUTHORISED
from fastgate.sessions.key_ids import generate_token, storage_key_id, too_short
from fastgate.sessions.policy_apply import PolicyError
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["compile_plugin_auth"]

MAX_MEMO: Final = 10_000
MISSING: Final = Denial(400, "Authorization field missing")


def compile_plugin_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The custom-auth stage of ``spec``, or nothing when it has no auth plugin."""
    plugins = spec.plugins
    if plugins is None or plugins.auth_check is None:
        return ()
    hook = load_hook(plugins.auth_check, "auth", spec, services)
    keys = _PluginKeys(spec, services)
    base = spec.base_identity
    extract = _id_extractor(plugins.id_extractor) if plugins.id_extractor is not None else None

    def check_plugin(req: Request) -> Any:
        if extract is not None:
            return check_extracted(req)
        return run(req, "")

    async def check_extracted(req: Request) -> Denial | None:
        assert extract is not None
        value = extract(req)
        if not value:
            return MISSING
        key_id = generate_token(spec.org_id, hashlib.md5(value.encode()).hexdigest(), services.config.hash_key_function)
        cached = await keys.extracted(key_id)
        if cached is not None:
            offer_session(req, base, "custom_auth", *cached)
            return None
        result = run(req, key_id)
        if result is not None and type(result) is not Denial:
            result = await result
        return result

    def run(req: Request, key_id: str) -> Any:
        """The hook's verdict: at once when the hook answered without waiting and the key needs
        no write, else an awaitable of it."""
        view = view_of(req, spec)
        try:
            outcome = hook.call(view)
        except Exception as exc:  # noqa: BLE001 - Tyk's answer when the auth dispatch fails
            report(hook, req, exc)
            return KEY_NOT_AUTHORISED
        if type(outcome) is Later:
            return finish(req, view, outcome, key_id)
        return decide(req, view, outcome, key_id)

    async def finish(req: Request, view: PluginRequest, later: Later, key_id: str) -> Denial | None:
        try:
            outcome = await later
        except Exception as exc:  # noqa: BLE001
            report(hook, req, exc)
            return KEY_NOT_AUTHORISED
        result = decide(req, view, outcome, key_id)
        if result is not None and type(result) is not Denial:
            result = await result
        return result

    def decide(req: Request, view: PluginRequest, outcome: Any, key_id: str) -> Any:
        try:
            if isinstance(outcome, Denial):
                check_denial(outcome)
                return outcome
            if not isinstance(outcome, Accept):
                raise TypeError(f"an auth hook returns Accept or Denial, not {type(outcome).__name__}")
            apply_edits(req, view)
        except Exception as exc:  # noqa: BLE001
            report(hook, req, exc)
            return KEY_NOT_AUTHORISED
        if key_id:
            outcome = Accept(key_id, outcome.session)
        found = keys.written_now(outcome)
        if found is None:
            return persist(req, outcome)
        offer_session(req, base, "custom_auth", *found)
        return None

    async def persist(req: Request, accepted: Accept) -> Denial | None:
        found = await keys.persist(accepted, hook, req)
        if isinstance(found, Denial):
            return found
        offer_session(req, base, "custom_auth", *found)
        return None

    return (check_plugin,)


def _id_extractor(settings: IdExtractor) -> Callable[[Request], str]:
    if settings.source not in ("header", "querystring"):
        raise DefinitionError(f"{settings.field}.extract_from", f"{settings.source!r}: reading the id from the request "
                              "body is not implemented (use header or querystring)")
    header = settings.name.lower().encode("latin-1")
    pattern = re.compile(settings.regexp) if settings.kind == "regex" else None
    index = settings.match_index

    def extract(req: Request) -> str:
        if settings.source == "header":
            raw = req.header(header)
            value = raw.decode("latin-1") if raw is not None else ""
        else:
            value = query_value(req.query, settings.name) or ""
        if pattern is not None and value:
            found = [m.group(0) for m in pattern.finditer(value)]  # whole matches, as Tyk's FindAllString
            value = found[index] if len(found) > index else ""
        return value

    return extract


class _PluginKeys:
    """The keys an auth plugin makes: stored as Tyk does, written only when they changed."""

    def __init__(self, spec: ApiSpec, services: "Services") -> None:
        self.spec = spec
        self.sessions = services.sessions
        self.hash_keys = services.config.hash_keys
        self.min_length = services.config.min_token_length
        # storage id -> (session as the hook made it, cache version after our write, applier,
        # applied, the very object the hook returned: a native hook returning one constant
        # session is recognised by identity, without a compare)
        self.written: OrderedDict[str, tuple[SessionState, int, Any, SessionState, SessionState]] = OrderedDict()

    async def extracted(self, key_id: str) -> tuple[str, SessionState] | None:
        """The stored key of an id extractor's value while its ``id_extractor_deadline`` holds."""
        storage_id = storage_key_id(key_id, self.hash_keys)
        stored = await self.sessions.cache.get(storage_id)
        if stored is None or stored.id_extractor_deadline <= time.time():
            return None
        applied = self.sessions.apply(stored, self.spec)
        return None if isinstance(applied, PolicyError) else (storage_id, applied)

    def written_now(self, accepted: Accept) -> tuple[str, SessionState] | None:
        """Without awaiting: the key as last written when the hook returned the very same session
        object for it and nothing changed since (the common case of a native hook); else None."""
        if type(accepted.key) is not str:
            return None
        storage_id = storage_key_id(accepted.key, self.hash_keys)
        known = self.written.get(storage_id)
        if known is None or known[4] is not accepted.session:
            return None
        cache = self.sessions.cache
        if known[1] != cache.version or known[1] < 0 or known[2] is not self.sessions.applier:
            return None
        return storage_id, known[3]

    async def persist(self, accepted: Accept, hook: LoadedHook, req: Request) -> tuple[str, SessionState] | Denial:
        token = accepted.key
        if too_short(token, self.min_length) or len(token) > 1024:
            return FORBIDDEN
        returned = session = accepted.session
        if not isinstance(session, SessionState):
            report(hook, req, TypeError("Accept.session is not a SessionState"))
            return KEY_NOT_AUTHORISED
        storage_id = storage_key_id(token, self.hash_keys)
        sessions = self.sessions
        cache = sessions.cache
        known = self.written.get(storage_id)
        fresh = known is not None and known[1] == cache.version and known[1] >= 0 and known[2] is sessions.applier
        if fresh and known is not None and known[4] is returned:
            return storage_id, known[3]
        if session.org_id != self.spec.org_id:
            session = msgspec.structs.replace(session, org_id=self.spec.org_id)
        if fresh and known is not None and known[0] == session:
            return storage_id, known[3]
        stored = await cache.get(storage_id)
        to_store = session
        if stored is not None:  # Tyk carries the quota over from the stored key
            to_store = msgspec.structs.replace(session, quota_remaining=stored.quota_remaining,
                                               quota_renews=stored.quota_renews)
        applied = sessions.apply(to_store, self.spec)
        if isinstance(applied, PolicyError):
            report(hook, req, ValueError(f"the plugin's session cannot take its policies: {applied}"))
            return FORBIDDEN
        await sessions.put(storage_id, to_store)
        written = self.written
        written[storage_id] = (session, cache.version, sessions.applier, applied, returned)
        if len(written) > MAX_MEMO:
            written.popitem(last=False)
        return storage_id, applied
