"""Composing auth methods: requirements tried in order (OR), the methods of one all required (AND).

Without ``ApiSpec.security`` an API's methods are simply all required, in Tyk's fixed order
(``fastgate.auth.compile_auth`` lists their stages one after the other; Tyk Classic and OAS
legacy mode). With it (OAS ``securityProcessingMode: "compliant"``, or fastgate's Classic
``fastgate_security``) each requirement compiles to its own group of stages through the same
``compile_<method>_auth`` door every method has, and one OR stage runs the groups:

- the first group whose stages all pass wins: its session is the request's (no base identity
  needed; ``base_identity_provided_by`` still picks inside a group that holds that method);
- a group that fails leaves nothing behind: the session, the context variables and the header
  list are put back as they were (stages replace ``req.headers``, never edit it in place, so restoring is keeping a
  reference: no copy of headers or body is made for a group that may fail);
- when every group fails, the last group's denial is the answer (Tyk's rule).

A request the first group accepts runs exactly the stages it would run without the chain, plus
one loop step; a group's stages run synchronously until one of them needs to wait.

``anonymous`` (fastgate's own) is a group that always passes, as one shared identity with its
own policy: "public with optional login" APIs put it last.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Final, Mapping

import msgspec

from fastgate.apidef.security_settings import AnonymousSettings
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage, deny
from fastgate.sessions.policy_apply import PolicyError
from fastgate.sessions.session import SessionState

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["compile_chain", "security_problem"]

log = logging.getLogger("fastgate")

MethodCompiler = Callable[[ApiSpec, "Services"], tuple[Stage, ...]]
# base_identity_provided_by -> the method that provides it
IDENTITY_METHOD: Final = {
    "auth_token": "auth_token", "basic_auth_user": "basic", "hmac_key": "hmac", "jwt_claim": "jwt",
    "oidc_user": "oidc", "oauth_key": "oauth", "custom_auth": "custom",
}
ANONYMOUS_REFUSED: Final = Denial(403, "Access to this API has been disallowed")


def compile_chain(spec: ApiSpec, services: "Services", compilers: Mapping[str, MethodCompiler]) -> tuple[Stage, ...]:
    """The auth stages of ``spec`` under its ``security`` requirements (see the module doc)."""
    security = spec.security
    assert security is not None
    if security.unconfigured:
        return _unconfigured(spec, security.unconfigured)
    groups: list[tuple[Stage, ...]] = []
    for requirement in security.requirements:
        base = spec.base_identity if IDENTITY_METHOD.get(spec.base_identity) in requirement else ""
        group_spec = msgspec.structs.replace(spec, base_identity=base) if base != spec.base_identity else spec
        stages: list[Stage] = []
        for name in requirement:
            if name == "anonymous":
                assert security.anonymous is not None  # the decoder requires it
                stages.append(_anonymous(spec, services, security.anonymous))
                continue
            compiler = compilers.get(name)
            found = compiler(group_spec, services) if compiler is not None else ()
            if not found:
                if spec.format == "oas":
                    return _unconfigured(spec, name)
                raise DefinitionError(security.field, f"names {name!r}, which this API does not enable "
                                      "(or this gateway does not implement)")
            stages.extend(found)
        groups.append(tuple(stages))
    if len(groups) == 1:
        return groups[0]
    return (_any_of(tuple(groups)),)


def security_problem(spec: ApiSpec) -> DefinitionError | None:
    """What is wrong with ``spec``'s requirements before compiling them (``fastgate check``): a
    Classic requirement naming a method the API does not enable (refused at load), an OAS scheme
    no method implements (served as 500)."""
    security = spec.security
    if security is None:
        return None
    if security.unconfigured:
        return DefinitionError(security.field, f"security scheme {security.unconfigured} is not configured "
                               "(every request is answered 500)")
    enabled = {"basic": spec.basic, "hmac": spec.hmac, "jwt": spec.jwt, "auth_token": spec.token,
               "custom": spec.plugins.auth_check if spec.plugins is not None else None}
    for requirement in security.requirements:
        for name in requirement:
            if name in enabled and enabled[name] is None:
                what = "is not configured" if spec.format == "oas" else "is not enabled on this API"
                return DefinitionError(security.field, f"names {name!r}, which {what}")
    return None


def _unconfigured(spec: ApiSpec, name: str) -> tuple[Stage, ...]:
    message = f"security scheme {name} is not configured"
    log.warning("API %r (%s): %s: every request is answered 500", spec.api_id, spec.source, message)
    return (deny(500, message),)


def _any_of(groups: tuple[tuple[Stage, ...], ...]) -> Stage:
    count = len(groups)

    def check_any(req: Request) -> Denial | None | Awaitable[Denial | None]:
        saved = req.headers
        ctx = dict(req.ctx) if req.ctx else None  # context variables (JWT claims) are updated in place
        denial: Denial | None = None
        for g in range(count):
            group = groups[g]
            result: Any = None
            for s in range(len(group)):
                result = group[s](req)
                if result is None:
                    continue
                if type(result) is not Denial:
                    return _finish(req, saved, ctx, g, s, result)
                break
            if result is None:
                return None
            denial = result
            _forget(req, saved, ctx)
        return denial

    async def _finish(req: Request, saved: list[tuple[bytes, bytes]], ctx: dict[str, Any] | None, g: int, s: int,
                      pending: Any) -> Denial | None:
        result: Any = await pending
        while True:
            group = groups[g]
            s += 1
            while result is None and s < len(group):
                result = group[s](req)
                s += 1
                if result is not None and type(result) is not Denial:
                    result = await result
            if result is None:
                return None
            _forget(req, saved, ctx)
            g += 1
            if g == count:
                denial: Denial = result
                return denial
            s = -1
            result = None

    return check_any


def _forget(req: Request, saved: list[tuple[bytes, bytes]], ctx: dict[str, Any] | None) -> None:
    """Undo what a failed group may have left on the request."""
    req.session = None
    req.session_key = ""
    req.headers = saved
    req.ctx = dict(ctx) if ctx is not None else None


def _anonymous(spec: ApiSpec, services: "Services", settings: AnonymousSettings) -> Stage:
    storage_id = f"anonymous-{spec.api_id}-{settings.identity}"
    template = SessionState(org_id=spec.org_id, apply_policies=[settings.policy_id])
    sessions = services.sessions
    memo: list[Any] = [None, None]  # the policy applier, what it made of the template

    def check_anonymous(req: Request) -> Denial | None:
        if memo[0] is not sessions.applier:
            applied = sessions.apply(template, spec)
            if isinstance(applied, PolicyError):
                log.warning("API %r: anonymous requests refused: policy %r cannot be applied: %s",
                            spec.api_id, settings.policy_id, applied)
                applied = None
            memo[0], memo[1] = sessions.applier, applied
        session = memo[1]
        if session is None:
            return ANONYMOUS_REFUSED
        req.session_key = storage_id
        req.session = session
        return None

    return check_anonymous

