"""The JWT settings of one API, as the JWT stage uses them: ``JwtSettings`` (decoded from the
Classic or OAS definition by ``fastgate.apidef.auth_decode``) with the verification key parsed.

Classic keeps them as flat ``jwt_*`` fields, ``scopes.jwt`` (or the deprecated flat
``jwt_scope_claim_name`` / ``jwt_scope_to_policy_mapping``) and ``auth_configs.jwt``; OAS as a
``{type: http, scheme: bearer, bearerFormat: JWT}`` security scheme with its vendor block under
``x-tyk-api-gateway.server.authentication.securitySchemes.<name>``. Both become one ``JwtSettings``
(``ApiSpec.jwt``), and here one ``JwtConfig``.

``key_source`` says where verification keys come from, as Tyk decides it: OAS ``jwksURIs``; else
``jwt_source`` as a JWKS URL (plain or base64), or base64 of an HMAC secret or of a PEM public
key or certificate; else the keys themselves ("one-to-one": each key's ``jwt_data.secret``).
A source that cannot work (bad base64, a PEM that is not a key of the configured family, an HMAC
secret that is a public key) refuses every token with 403, as in Tyk, and says why at load.
An HMAC secret shorter than 32 bytes (decoded) refuses the whole definition (RFC 8725 §3.5;
Tyk takes any length) unless the API sets ``jwt_allow_short_hmac_secret`` (Classic) or
``allowShortHmacSecret`` (OAS vendor scheme): the opt-out is per API, so accepting one legacy
issuer's weak secret loosens nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal

from fastgate.apidef.auth_decode import parse_duration
from fastgate.apidef.auth_settings import ClaimRule, JwtKeySettings, JwtSettings
from fastgate.apidef.spec import ApiSpec, DefinitionError
from fastgate.auth.jwt.jose import key_from_material

__all__ = ["ClaimRule", "JwtConfig", "KeySource", "jwt_config", "parse_duration", "parse_key_source"]

# RFC 8725 section 3.5: an HMAC key must have at least the hash's output length (HS256: 32 bytes).
MIN_HMAC_SECRET_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where verification keys come from."""

    kind: Literal["static", "jwks", "session"]
    key: Any = None  # static: the parsed key, None when the configured source is unusable
    problem: str = ""  # static: why the key is unusable
    jwks: tuple[tuple[str, float | None], ...] = ()  # (url, cache timeout or None for the default)


@dataclass(frozen=True, slots=True)
class JwtConfig(JwtSettings):
    """Everything the JWT stage of one API needs: the API's ``JwtSettings`` with its verification
    key parsed (``key_source``)."""

    key_source: KeySource = field(kw_only=True)

    @property
    def centralised(self) -> bool:
        """True when sessions are virtual (built from claims), not keys named by the token."""
        return self.key_source.kind != "session"


def jwt_config(spec: ApiSpec) -> JwtConfig | None:
    """The API's JWT settings with its key parsed, None when it does not use JWT; raises
    ``DefinitionError`` for a secret that is too short."""
    settings = spec.jwt
    if settings is None:
        return None
    copied = {name: getattr(settings, name) for name in _SETTINGS}
    return JwtConfig(**copied, key_source=parse_key_source(settings.keys, settings.family))


_SETTINGS: Final = tuple(f.name for f in fields(JwtSettings))


def parse_key_source(keys: JwtKeySettings, family: str) -> KeySource:
    """The verification key ``keys`` name, parsed for the signing ``family`` (external OAuth's
    JWT path uses it too)."""
    if keys.kind != "static" or keys.problem:
        return KeySource(keys.kind, problem=keys.problem, jwks=keys.jwks)
    material = keys.material
    key = key_from_material(family, material)
    if key is None:
        problem = (
            "jwt_source is a public key, not an HMAC secret" if family == "hmac"
            else f"jwt_source is not a PEM public key or certificate for signing method {family!r}"
        )
        return KeySource("static", problem=problem)
    if family == "hmac" and not keys.allow_short and len(material) < MIN_HMAC_SECRET_BYTES:
        raise DefinitionError(keys.field, (
            f"the HMAC secret is {len(material)} bytes once decoded; at least {MIN_HMAC_SECRET_BYTES} are "
            f"needed (RFC 8725 section 3.5); set {keys.allow_short_field}: true to accept a shorter one"))
    return KeySource("static", key=key)
