"""OAuth 2.0 access tokens on protected requests (Tyk's ``Oauth2KeyExists``).

The gateway's own OAuth server (``fastgate.oauth``) issues access tokens as ordinary keys, so
this stage is a key lookup behind Tyk's header rules: ``Authorization: Bearer <token>``; fewer
than two words → 400 "Authorization field missing"; another scheme → 400 "Bearer token
malformed"; an unknown (revoked, rotated) token → 403 "Key not authorised"; a token whose OAuth
client was deleted → 403 "Key not authorised. OAuth client access was revoked". A found token's
session goes on the request for the post-auth checks (expiry, ACL, rate, quota), as a key's does.

Whether a client still exists is remembered per node for ``CLIENT_TTL`` seconds (Tyk: 1 s), so a
cached token costs no store round trip and a deleted client is refused everywhere within that.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Awaitable, Final

from fastgate.apidef.spec import ApiSpec
from fastgate.auth.identity import offer_session
from fastgate.auth.sources import compile_extractor
from fastgate.http.request import Request
from fastgate.pipeline.stage import Denial, Stage
from fastgate.sessions.manager import Found

if TYPE_CHECKING:
    from fastgate.services import Services

__all__ = ["CLIENT_REVOKED", "CLIENT_TTL", "MALFORMED", "MISSING", "NOT_AUTHORISED", "compile_oauth_auth"]

MISSING: Final = Denial(400, "Authorization field missing")
MALFORMED: Final = Denial(400, "Bearer token malformed")
NOT_AUTHORISED: Final = Denial(403, "Key not authorised")
CLIENT_REVOKED: Final = Denial(403, "Key not authorised. OAuth client access was revoked")
CLIENT_TTL: Final = 1.0
MAX_CLIENTS: Final = 10_000


def compile_oauth_auth(spec: ApiSpec, services: "Services") -> tuple[Stage, ...]:
    """The access-token stage of an OAuth API, or nothing when the API does not use OAuth."""
    settings = spec.oauth
    if settings is None:
        return ()
    extract = compile_extractor(settings.source, strip_bearer=False)
    sessions = services.sessions
    storage = services.oauth.storage
    base = spec.base_identity
    api_id = spec.api_id
    clients: dict[str, tuple[bool, float]] = {}  # client id -> (exists, checked until)

    # A repeated token is answered by ``sessions.cached`` from its memo (fastgate.sessions.manager).
    def check_oauth(req: Request) -> Denial | None | Awaitable[Denial | None]:
        value = extract(req)
        if not value:
            return MISSING
        scheme, space, token = value.partition(" ")
        if not space:
            return MISSING
        if scheme.lower() != "bearer":
            return MALFORMED
        found = sessions.cached(token, spec)
        if found is None:
            return _lookup(req, token)
        if found is False:
            return NOT_AUTHORISED
        return accept(req, found)

    def accept(req: Request, found: Found) -> Denial | None | Awaitable[Denial | None]:
        client_id = found[1].oauth_client_id
        if not client_id:
            return NOT_AUTHORISED  # a key the OAuth server did not issue
        hit = clients.get(client_id)
        if hit is None or hit[1] < time.monotonic():
            return _check_client(req, found, client_id)
        if not hit[0]:
            return CLIENT_REVOKED
        offer_session(req, base, "oauth_key", found[0], found[1])
        return None

    async def _check_client(req: Request, found: Found, client_id: str) -> Denial | None:
        exists = await storage.client(api_id, client_id) is not None
        if len(clients) >= MAX_CLIENTS:
            clients.clear()
        clients[client_id] = (exists, time.monotonic() + CLIENT_TTL)
        if not exists:
            return CLIENT_REVOKED
        offer_session(req, base, "oauth_key", found[0], found[1])
        return None

    async def _lookup(req: Request, token: str) -> Denial | None:
        found = await sessions.lookup(token, spec)
        if not found:
            return NOT_AUTHORISED
        result = accept(req, found)
        return result if result is None or type(result) is Denial else await result  # type: ignore[misc]

    return (check_oauth,)
