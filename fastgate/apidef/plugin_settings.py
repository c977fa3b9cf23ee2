"""Custom plugin settings (Tyk's ``custom_middleware`` / OAS plugin sections), typed.

Classic: ``custom_plugin_auth_enabled`` (or the older ``enable_coprocess_auth`` /
``use_go_plugin_auth``) with ``custom_middleware`` {``driver``, ``auth_check``, ``pre``,
``post_key_auth``, ``post``, ``response``, ``id_extractor``}. OAS: ``server.authentication.custom``
{``enabled``, ``config`` {``functionName``, ``path``, ``idExtractor``}} and
``middleware.global`` {``pluginConfig.driver``, ``prePlugins``, ``postAuthenticationPlugins``,
``postPlugins``, ``responsePlugins``} (and the older singular ``prePlugin`` {plugins: [...]}).

Only the ``python`` driver runs in fastgate; any other driver with an active hook refuses the API
(a plugin may restrict access: serving without it would open the API wider than written).
Paths stay as written; the plugin loader resolves relative ones against the config directory.
Decoding is ``fastgate.apidef.plugin_decode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["HookRef", "IdExtractor", "PluginSettings"]

EXTRACT_FROM: Final = ("header", "form", "body", "querystring")
EXTRACT_WITH: Final = ("value", "regex")


@dataclass(frozen=True, slots=True)
class HookRef:
    """One hook: the function ``name`` in the Python file ``path``; ``field`` for messages."""

    name: str
    path: str
    field: str


@dataclass(frozen=True, slots=True)
class IdExtractor:
    """Tyk's id extractor: which request value identifies the caller, so the auth plugin runs once
    per value until the stored session's ``id_extractor_deadline``."""

    source: str  # header | form | body | querystring
    kind: str  # value | regex
    name: str  # the header or parameter name
    regexp: str = ""
    match_index: int = 0
    field: str = "custom_middleware.id_extractor"


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """Every Python hook of one API (an empty tuple / None: that hook is not used)."""

    driver: str = "python"
    auth_check: HookRef | None = None  # set only when custom plugin auth is enabled
    pre: tuple[HookRef, ...] = ()
    post_key_auth: tuple[HookRef, ...] = ()
    post: tuple[HookRef, ...] = ()
    response: tuple[HookRef, ...] = ()
    id_extractor: IdExtractor | None = None
    config_data: dict[str, Any] | None = None  # the definition's config_data, for ``spec``

    @property
    def hooks(self) -> tuple[HookRef, ...]:
        """Every hook, auth first."""
        first = (self.auth_check,) if self.auth_check is not None else ()
        return (*first, *self.pre, *self.post_key_auth, *self.post, *self.response)
