"""The one internal API model both Tyk formats decode into.

Classic JSON and Tyk OAS documents are different spellings of the same thing; the rest of the
gateway (router, pipeline, auth compilers) only ever sees an ``ApiSpec``: each auth method's
settings are typed (``fastgate.apidef.auth_settings``, one field per method). The decoded
document stays in ``raw`` for the Gateway API and the decoders only: the rest of the gateway
never reads it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from fastgate.apidef.observe_settings import ObserveSettings
from fastgate.apidef.auth_settings import (
    AuthSource,
    BasicSettings,
    ExternalOAuthSettings,
    HmacSettings,
    JwtSettings,
    MtlsSettings,
    OAuthSettings,
    OidcSettings,
    TokenSettings,
)
from fastgate.apidef.plugin_settings import PluginSettings
from fastgate.apidef.security_settings import SecuritySettings

__all__ = ["AccessRules", "ApiSpec", "AuthSource", "DefinitionError", "PathRule"]


class DefinitionError(Exception):
    """An API definition that cannot work; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


RuleKind = Literal["ignored", "black", "white", "internal"]


class PathRule(msgspec.Struct, frozen=True):
    """One endpoint entry: ``path`` as Tyk writes it (``{id}`` segments, or a regex)."""

    kind: RuleKind
    path: str
    methods: tuple[str, ...] | None = None  # None: every method; (): no method at all
    ignore_case: bool = False


class AccessRules(msgspec.Struct, frozen=True, kw_only=True):
    """Every access restriction of one API, typed and checked at load time."""

    allowed_ips: tuple[str, ...] = ()  # empty: no allowlist
    blocked_ips: tuple[str, ...] = ()
    paths: tuple[PathRule, ...] = ()  # in Tyk's order: ignored, black, white, internal
    rate: float = 0.0  # API-wide limit, requests per ``per`` seconds; 0: none
    per: float = 0.0
    internal: bool = False
    allow_method_override: bool = False

    @property
    def whitelist(self) -> bool:
        """With any allow entry, everything not listed is refused (Tyk's white list)."""
        return any(r.kind == "white" for r in self.paths)


class ApiSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One API as the gateway serves it, whichever format it was written in."""

    api_id: str
    name: str
    org_id: str = ""
    active: bool = True
    listen_path: str
    strip_listen_path: bool = True
    target_url: str
    preserve_host_header: bool = False
    domain: str = ""
    use_keyless: bool = True
    use_standard_auth: bool = False
    strip_auth_data: bool = False
    auth_configs: dict[str, AuthSource] = {}
    max_request_body_bytes: int = 0  # 0: the gateway-wide limit applies
    # fastgate's own: ";" path parameters reach this API's upstream (refused with 400 otherwise).
    allow_path_parameters: bool = False
    format: Literal["classic", "oas"] = "classic"
    source: str = ""  # the file it came from, for messages
    access: AccessRules = AccessRules()  # IP lists, endpoint lists, API rate limit (fastgate.apidef.access)
    # The auth methods' settings, one field per method (None: the API does not use it).
    token: TokenSettings | None = None
    basic: BasicSettings | None = None
    hmac: HmacSettings | None = None
    jwt: JwtSettings | None = None
    mtls: MtlsSettings = MtlsSettings()
    oauth: OAuthSettings | None = None  # OAuth 2.0 server (fastgate.oauth, fastgate.auth.oauth)
    external_oauth: ExternalOAuthSettings | None = None
    oidc: OidcSettings | None = None
    base_identity: str = ""  # base_identity_provided_by: which method's session the checks use
    plugins: PluginSettings | None = None  # custom Python hooks (fastgate.plugins); None: none
    security: SecuritySettings | None = None  # OR of AND groups (fastgate.auth.chain); None: AND of all
    # Analytics and report-only switches (fastgate.apidef.observe_settings).
    observe: ObserveSettings = ObserveSettings()
    raw: dict[str, Any] = {}
