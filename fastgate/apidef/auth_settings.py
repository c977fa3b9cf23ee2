"""The auth settings of one API, typed: one settings type per auth method, one field on ``ApiSpec``.

The Classic and OAS decoders (``fastgate.apidef.auth_decode``) fill these from either format, so
an auth method compiles from its settings and never reads a raw definition. Each type carries
the names its fields have in the definition the API was written in (``where``, ``*_field``), so
an error found when the method compiles names the field as the user wrote it.

Adding a method (OAuth, external OAuth, OIDC, plugins): a settings type here, its Classic and
OAS decoding in ``auth_decode``, a field on ``ApiSpec``, and ``compile(settings, services)`` in
``fastgate/auth/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

__all__ = [
    "AuthSource", "BasicSettings", "ClaimRule", "HmacSettings", "JwtKeySettings", "JwtSettings",
    "MtlsSettings", "OAuthSettings", "TokenSettings",
    "ExtJwtSettings", "ExternalOAuthSettings", "IntrospectionSettings", "OidcProvider", "OidcSettings",
]


class AuthSource(msgspec.Struct, frozen=True, kw_only=True):
    """Where one auth method reads its credential (Tyk's ``AuthConfig``)."""

    header_name: str = "Authorization"
    disable_header: bool = False
    use_param: bool = False
    param_name: str = ""
    use_cookie: bool = False
    cookie_name: str = ""
    use_certificate: bool = False


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """Auth token (Tyk's "standard auth"): where the key is read from."""

    source: AuthSource


@dataclass(frozen=True, slots=True)
class BasicSettings:
    """Basic auth (Classic ``use_basic_auth`` + ``basic_auth``, or an OAS ``http/basic`` scheme)."""

    source: AuthSource
    disable_caching: bool
    cache_ttl: float
    user_regexp: re.Pattern[bytes] | None  # set when credentials may come from the body
    password_regexp: re.Pattern[bytes] | None


@dataclass(frozen=True, slots=True)
class HmacSettings:
    """Request signatures (Classic ``enable_signature_checking``, OAS ``authentication.hmac``)."""

    source: AuthSource
    allowed_algorithms: frozenset[str]  # empty: any known algorithm
    clock_skew_ms: float  # < 0: no window, set explicitly (the date must still parse)
    required_headers: tuple[str, ...]
    validate_digest: bool
    replay_protection: bool
    where: str = "hmac"  # the settings' place in the definition, for messages
    skew_field: str = "hmac_allowed_clock_skew"
    required_field: str = "hmac_required_headers"


@dataclass(frozen=True, slots=True)
class MtlsSettings:
    """Client certificates: the static allowlist, and keys derived from (bound to) certificates."""

    static: bool = False
    allowlist: tuple[str, ...] = ()
    dynamic: bool = False
    identity: str = "sha256"
    crl_file: str = ""
    # Where the definition keeps the two settings checked at compile time, for messages.
    identity_field: str = field(default="client_certificate_identity", compare=False)
    crl_field: str = field(default="client_certificate_crl_file", compare=False)


@dataclass(frozen=True, slots=True)
class ClaimRule:
    """One OAS ``customClaimValidation`` entry."""

    path: str
    type: str  # required | exact_match | contains (anything else: presence only, as Tyk)
    allowed: tuple[Any, ...]
    non_blocking: bool


@dataclass(frozen=True, slots=True)
class JwtKeySettings:
    """Where JWT verification keys come from, as the definition says it; the JWT method parses
    ``material`` into a key of the signing family when it compiles."""

    kind: Literal["static", "jwks", "session"]
    material: bytes = b""  # static: the decoded secret, PEM key or certificate
    problem: str = ""  # static: why the configured source is unusable ("" when it may be)
    jwks: tuple[tuple[str, float | None], ...] = ()  # (url, cache timeout or None for the default)
    field: str = "jwt_source"  # for messages
    allow_short_field: str = "jwt_allow_short_hmac_secret"
    allow_short: bool = False


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """JSON Web Tokens (Classic ``enable_jwt`` + ``jwt_*``, or an OAS bearer-JWT scheme), with
    Tyk's defaults applied."""

    source: AuthSource
    family: str  # hmac | rsa | ecdsa | eddsa
    keys: JwtKeySettings
    is_oas: bool = False
    identity_fields: tuple[str, ...] = ()  # Classic: one field then `sub`; OAS: subjectClaims
    skip_kid: bool = False
    policy_fields: tuple[str, ...] = ()
    client_base_field: str = ""
    default_policies: tuple[str, ...] = ()
    scope_claims: tuple[str, ...] = ()
    scope_to_policy: dict[str, str] = field(default_factory=dict)
    iat_skew: int = 0
    nbf_skew: int = 0
    exp_skew: int = 0
    allowed_issuers: tuple[str, ...] = ()
    allowed_audiences: tuple[str, ...] = ()
    allowed_subjects: tuple[str, ...] = ()
    jti_required: bool = False
    custom_claims: tuple[ClaimRule, ...] = ()
    idp_client_id_mapping_disabled: bool = False
    context_vars: bool = False
    session_lifetime: int = 0


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """OAuth 2.0 with the gateway as the authorization server (Classic ``use_oauth2`` +
    ``oauth_meta`` + ``notifications``, or an OAS ``oauth2`` scheme); see ``fastgate.oauth``."""

    source: AuthSource  # where protected requests carry ``Bearer <access token>``
    access_types: frozenset[str]  # grants the token endpoint accepts
    authorize_types: frozenset[str]  # response types authorize / authorize-client accept
    login_redirect: str = ""  # auth_login_redirect: the login page /oauth/authorize sends users to
    shared_secret: str = ""  # notifications.shared_secret (X-Tyk-Shared-Secret)
    keychange_url: str = ""  # notifications.oauth_on_keychange_url ("" : no notifications)
    require_pkce: bool = False  # fastgate's own: every code needs an S256 code_challenge


# ---- external OAuth and OpenID Connect (issue 13) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtJwtSettings:
    """External OAuth's JWT path (``providers[0].jwt``): tokens verified locally."""

    family: str  # hmac | rsa | ecdsa | eddsa
    keys: JwtKeySettings
    identity_field: str = ""  # then ``sub``
    iat_skew: int = 0
    nbf_skew: int = 0
    exp_skew: int = 0


@dataclass(frozen=True, slots=True)
class IntrospectionSettings:
    """External OAuth's RFC 7662 path (``providers[0].introspection``)."""

    url: str
    client_id: str
    client_secret: str
    identity_field: str = ""  # then ``sub``
    cache_enabled: bool = False
    cache_timeout: float = 0.0  # seconds; 0: until the token's ``exp``
    basic_auth: bool = False  # fastgate's ``client_auth: "basic"``: credentials as HTTP Basic
    where: str = "external_oauth.providers[0].introspection"


@dataclass(frozen=True, slots=True)
class ExternalOAuthSettings:
    """External OAuth (Classic ``external_oauth``, or an OAS ``oauth2`` scheme with vendor
    ``providers``): only the first provider is used, as in Tyk; ``has_provider`` False answers
    every request 404 "there should be at least one provider configured"."""

    source: AuthSource
    has_provider: bool
    jwt: ExtJwtSettings | None = None
    introspection: IntrospectionSettings | None = None
    where: str = "external_oauth"


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """One OpenID Connect issuer and its client ids (decoded) -> policy id, in definition order."""

    issuer: str
    clients: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """OpenID Connect (Classic ``use_openid`` + ``openid_options``, OAS ``authentication.oidc``)."""

    source: AuthSource
    providers: tuple[OidcProvider, ...]
    segregate_by_client: bool = False
    scope_claims: tuple[str, ...] = ()
    scope_to_policy: dict[str, str] = field(default_factory=dict)
    where: str = "openid_options"
    context_vars: bool = False  # ``enable_context_vars``: the claims as ``jwt_claims_<name>``
