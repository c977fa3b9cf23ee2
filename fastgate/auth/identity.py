"""Which auth method's session the post-auth checks use (Tyk's session hand-off rule).

Each auth stage, on success, offers its session with its identity type. As in Tyk, the session
is taken when the API's ``base_identity_provided_by`` is empty or names that type; with it empty
and several methods enabled, the last successful method's session wins. An API whose methods all
pass but none provides the base identity is answered 400 by the post-auth checks ("Session state
is missing or unset!").
"""

from __future__ import annotations

from typing import Literal

from fastgate.apidef.spec import ApiSpec
from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

__all__ = ["IdentityType", "offer_session", "base_identity"]

IdentityType = Literal[
    "auth_token", "basic_auth_user", "hmac_key", "jwt_claim", "oidc_user", "oauth_key", "custom_auth"
]


def base_identity(spec: ApiSpec) -> str:
    """The API's ``base_identity_provided_by`` (Classic) / ``baseIdentityProvider`` (OAS)."""
    raw = spec.raw
    if spec.format == "oas":
        auth = ((raw.get("x-tyk-api-gateway") or {}).get("server") or {}).get("authentication") or {}
        return str(auth.get("baseIdentityProvider") or "")
    return str(raw.get("base_identity_provided_by") or "")


def offer_session(req: Request, base: str, kind: IdentityType, storage_id: str, session: SessionState) -> None:
    """Put ``session`` on ``req`` if ``kind`` may provide the identity (``base`` from ``base_identity``)."""
    if not base or base == kind:
        req.session_key = storage_id
        req.session = session
