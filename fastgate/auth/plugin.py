"""Custom auth plugins (Tyk's ``custom_plugin_auth_enabled`` / ``enable_coprocess_auth``, OAS
``server.authentication.custom``): a Python hook decides, its session becomes a key.

The hook (``fastgate.plugins.hooks``) answers ``Accept(key, session)`` or a ``Denial``. As in
Tyk, an accepted session is stored as the key ``metadata["token"]`` (hashed like every key when
``hash_keys`` is on; the Gateway API finds it by the token alone), in the API's organisation, with
the stored key's quota counters carried over and its policies applied (a policy that cannot be
applied: 403 "Forbidden"); rate limits, quotas and access rights then apply as to any key. A hook
that raises or times out: 403 "Key not authorised", the exception only in the log.

Writing the key on every request would cost a store write and a cluster event each time, so the
write is skipped while the hook returns an equal session for the same key and nothing may have
changed the stored copy (the session cache's version, which every key write or delete on any
node moves, and the policy set are those of the last write).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage
from fastgate.plugins.hooks import LoadedHook, apply_edits, check_denial, load_hook, report, view_of
from fastgate.plugins.native import Accept
from fastgate.plugins.tyk_style import FORBIDDEN, KEY_NOT_AUTHORISED
from fastgate.sessions.key_ids import storage_key_id, too_short
from fastgate.sessions.policy_apply import PolicyError
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["compile_plugin_auth"]

MAX_MEMO: Final = 10_000


def compile_plugin_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The custom-auth stage of ``spec``, or nothing when it has no auth plugin."""
    plugins = spec.plugins
    if plugins is None or plugins.auth_check is None:
        return ()
    hook = load_hook(plugins.auth_check, "auth", spec, services)
    keys = _PluginKeys(spec, services)
    base = spec.base_identity

    async def check_plugin(req: Request) -> Denial | None:
        view = view_of(req, spec)
        try:
            outcome = await hook.call(view)
            if isinstance(outcome, Denial):
                check_denial(outcome)
                return outcome
            if not isinstance(outcome, Accept):
                raise TypeError(f"an auth hook returns Accept or Denial, not {type(outcome).__name__}")
            apply_edits(req, view)
        except Exception as exc:  # noqa: BLE001 - Tyk's answer when the auth dispatch fails
            report(hook, req, exc)
            return KEY_NOT_AUTHORISED
        found = await keys.persist(outcome, hook, req)
        if isinstance(found, Denial):
            return found
        offer_session(req, base, "custom_auth", *found)
        return None

    return (check_plugin,)


class _PluginKeys:
    """The keys an auth plugin makes: stored as Tyk does, written only when they changed."""

    def __init__(self, spec: ApiSpec, services: "Services") -> None:
        self.spec = spec
        self.sessions = services.sessions
        self.hash_keys = services.config.hash_keys
        self.min_length = services.config.min_token_length
        # storage id -> (session as the hook made it, cache version after our write, applier, applied)
        self.written: OrderedDict[str, tuple[SessionState, int, Any, SessionState]] = OrderedDict()

    async def persist(self, accepted: Accept, hook: LoadedHook, req: Request) -> tuple[str, SessionState] | Denial:
        token = accepted.key
        if too_short(token, self.min_length) or len(token) > 1024:
            return FORBIDDEN
        session = accepted.session
        if not isinstance(session, SessionState):
            report(hook, req, TypeError("Accept.session is not a SessionState"))
            return KEY_NOT_AUTHORISED
        if session.org_id != self.spec.org_id:
            session = msgspec.structs.replace(session, org_id=self.spec.org_id)
        storage_id = storage_key_id(token, self.hash_keys)
        sessions = self.sessions
        cache = sessions.cache
        known = self.written.get(storage_id)
        if (known is not None and known[1] == cache.version and known[1] >= 0 and known[2] is sessions.applier
                and known[0] == session):
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
        written[storage_id] = (session, cache.version, sessions.applier, applied)
        if len(written) > MAX_MEMO:
            written.popitem(last=False)
        return storage_id, applied
