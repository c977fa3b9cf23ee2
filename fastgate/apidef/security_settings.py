"""Which auth methods an API combines, and how: the OR of AND groups (``fastgate.auth.chain``).

Without ``SecuritySettings`` an API runs every method it enables, all of them required (Tyk's
Classic and OAS legacy mode). With it, requests try ``requirements`` in order: inside one
requirement every method must pass (AND); the first requirement that passes wins and its session
is used; when all fail, the last one's error is the answer. Sources:

- Tyk OAS ``server.authentication.securityProcessingMode: "compliant"``: the document's
  ``security`` requirements, then the vendor ``server.authentication.security`` ones (for
  ``hmac``, ``custom``, ``oidc``);
- fastgate's Classic extension ``fastgate_security: {"requirements": [["jwt"], ["auth_token"]]}``.

The method names are those of ``METHOD_NAMES``; ``anonymous`` is fastgate's fallback that lets a
request through as one named identity with its own policy (``AnonymousSettings``).
Decoding is ``fastgate.apidef.security_decode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["METHOD_NAMES", "AnonymousSettings", "SecuritySettings"]

# In Tyk's fixed order (the AND order inside one requirement).
METHOD_NAMES: Final = ("oauth", "external_oauth", "basic", "hmac", "jwt", "oidc", "custom", "auth_token", "anonymous")


@dataclass(frozen=True, slots=True)
class AnonymousSettings:
    """The identity a request gets from the ``anonymous`` requirement: a session with the policy
    ``policy_id`` stored as ``anonymous-<api id>-<identity>`` (so anonymous callers share one rate
    limit and quota, apart from every key)."""

    policy_id: str
    identity: str = "anonymous"


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """Requirements tried in order (OR), each a tuple of method names (AND)."""

    requirements: tuple[tuple[str, ...], ...]
    field: str  # where the definition wrote them, for messages
    # An OAS scheme a requirement names that no method implements: every request is answered
    # 500 "security scheme X is not configured", as Tyk does (``fastgate check`` reports it).
    unconfigured: str = ""
    anonymous: AnonymousSettings | None = None
