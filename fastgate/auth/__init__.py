"""Auth methods, one module each, composed per API in Tyk's fixed order.

``compile_auth`` returns the auth stages an API enables, in the order Tyk runs them (OAuth 2.0,
external OAuth, basic, HMAC, JWT, OpenID Connect, custom plugin, auth token); each method module
exposes ``compile_*(spec, services) -> tuple[Stage, ...]`` that is empty when the API does not
use it. In Classic (and OAS legacy) mode every enabled method must pass (AND).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fastgate.apidef.spec import ApiSpec, AuthSource
from fastgate.auth.basic import compile_basic_auth, needs_body
from fastgate.auth.body import CREDENTIALS_BODY_LIMIT, BodyTap
from fastgate.auth.chain import compile_chain
from fastgate.auth.ext_oauth import check_external_oauth, compile_external_oauth
from fastgate.auth.hmac import compile_hmac_auth, digest_of, hmac_warnings
from fastgate.auth.jwt.config import jwt_config
from fastgate.auth.jwt.stage import compile_jwt_auth
from fastgate.auth.oauth import compile_oauth_auth
from fastgate.auth.oidc import compile_oidc_auth
from fastgate.auth.plugin import compile_plugin_auth
from fastgate.auth.sources import compile_credential_check, strip_credentials
from fastgate.auth.token import compile_token_auth
from fastgate.pipeline.stage import Stage
from fastgate.http.request import Request

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["METHOD_COMPILERS", "auth_warnings", "check_auth_settings", "compile_auth", "compile_body_tap", "compile_strip_auth", "credential_sources"]

MethodCompiler = Callable[[ApiSpec, "Services"], tuple[Stage, ...]]


def _method_compilers() -> list[MethodCompiler]:
    return [compile_oauth_auth, compile_external_oauth, compile_basic_auth, compile_hmac_auth, compile_jwt_auth,
            compile_oidc_auth, compile_plugin_auth, compile_token_auth]


def _named_compilers() -> dict[str, MethodCompiler]:
    """Each method by its name in requirements (``fastgate.apidef.security_settings.METHOD_NAMES``):
    what an OR chain composes (``fastgate.auth.chain``). A new method adds its line here too."""
    return {"oauth": compile_oauth_auth, "external_oauth": compile_external_oauth, "basic": compile_basic_auth,
            "hmac": compile_hmac_auth, "jwt": compile_jwt_auth, "oidc": compile_oidc_auth,
            "custom": compile_plugin_auth, "auth_token": compile_token_auth}


METHOD_COMPILERS: list[MethodCompiler] = []


def compile_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """Every auth stage ``spec`` enables, in Tyk's order."""
    if not METHOD_COMPILERS:
        METHOD_COMPILERS.extend(_method_compilers())
    stages: list[Stage] = []
    if spec.security is not None:  # requirements tried in order (OR): fastgate.auth.chain
        stages.extend(compile_chain(spec, services, _named_compilers()))
    else:
        for compiler in METHOD_COMPILERS:
            stages.extend(compiler(spec, services))
    check = compile_credential_check(credential_sources(spec)) if stages else None
    return tuple(stages) if check is None else (check, *stages)


def check_auth_settings(spec: ApiSpec) -> None:
    """Raise ``DefinitionError`` (naming the field) when ``spec``'s auth settings cannot be used:
    what loading refuses, for ``fastgate check`` and the Gateway API to refuse before writing."""
    credential_sources(spec)
    check_external_oauth(spec)


def auth_warnings(spec: ApiSpec) -> list[str]:
    """Settings of ``spec`` that work but are weak, as ``field: what`` (``fastgate check``)."""
    return hmac_warnings(spec)


def credential_sources(spec: ApiSpec) -> list[tuple[AuthSource, bool]]:
    """Where each auth method of ``spec`` reads its credential, and whether it strips ``Bearer ``."""
    found: list[tuple[AuthSource, bool]] = []
    if spec.oauth is not None:
        found.append((spec.oauth.source, False))
    if spec.external_oauth is not None:
        found.append((spec.external_oauth.source, True))
    if spec.basic is not None:
        found.append((spec.basic.source, False))
    if spec.hmac is not None:
        found.append((spec.hmac.source, False))
    jwt = jwt_config(spec)  # parses the key: a secret too short is refused here
    if jwt is not None:
        found.append((jwt.source, True))
    if spec.oidc is not None:
        found.append((spec.oidc.source, True))
    if spec.token is not None:
        found.append((spec.token.source, True))
    return found


def compile_strip_auth(spec: ApiSpec) -> tuple[Stage, ...]:
    """The stage that removes credentials before proxying (``strip_auth_data``)."""
    if spec.use_keyless or not spec.strip_auth_data:
        return ()
    sources = list(spec.auth_configs.values()) or [AuthSource()]

    def strip_auth(req: Request) -> None:
        strip_credentials(req, sources)

    return (strip_auth,)


def compile_body_tap(spec: ApiSpec, *, auth: bool = True, hook_body: int = 0) -> Callable[[Request], BodyTap | None] | None:
    """What watches a request's body for ``spec`` (``CompiledApi.body_tap``; see
    ``fastgate.auth.body``), or None when nothing needs the body: the auth methods (``auth``:
    the API's requests are authenticated) or plugin hooks (``hook_body``: the bytes they may see)."""
    keep_body = needs_body(spec) if auth else None
    check_digest = auth and spec.hmac is not None and spec.hmac.validate_digest
    if keep_body is None and not check_digest and not hook_body:
        return None

    def body_tap(req: Request) -> BodyTap | None:
        if not req.has_body:
            return None
        digest = digest_of(req) if check_digest else None
        keep = CREDENTIALS_BODY_LIMIT if keep_body is not None and keep_body(req) else 0
        keep = max(keep, hook_body)
        if digest is None and not keep:
            return None
        return BodyTap(length=None if req.chunked else req.content_length, digest=digest, keep=keep)

    return body_tap
