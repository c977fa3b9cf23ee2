"""Which auth method's session the post-auth checks use (Tyk's session hand-off rule).

Each auth stage, on success, offers its session with its identity type. As in Tyk, the session
is taken when the API's ``base_identity_provided_by`` is empty or names that type; with it empty
and several methods enabled, the last successful method's session wins. An API whose methods all
pass but none provides the base identity is answered 400 by the post-auth checks ("Session state
is missing or unset!").
"""

from __future__ import annotations

from typing import Literal

from fastgate.http.request import Request
from fastgate.sessions.session import SessionState

__all__ = ["IdentityType", "offer_session"]

IdentityType = Literal[
    "auth_token", "basic_auth_user", "hmac_key", "jwt_claim", "oidc_user", "oauth_key", "custom_auth"
]


def offer_session(req: Request, base: str, kind: IdentityType, storage_id: str, session: SessionState) -> None:
    """Put ``session`` on ``req`` if ``kind`` may provide the identity (``base``: the API's ``ApiSpec.base_identity``)."""
    if not base or base == kind:
        req.session_key = storage_id
        req.session = session
