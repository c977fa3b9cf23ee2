"""``@Hook`` and its relatives, as Tyk's ``tyk.decorators`` spells them.

The decorators only mark a function; which hook it is (pre, auth, post, ...) comes from the API
definition, as in Tyk. The wrapped function stays callable as before.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

__all__ = ["CustomKeyCheck", "Event", "HandlerDecorator", "Hook", "Post", "PostKeyAuth", "Pre"]


class HandlerDecorator:
    """Wraps a hook function (``f``) and calls through to it."""

    def __init__(self, f: Callable[..., Any]) -> None:
        self.f = f
        functools.update_wrapper(self, f)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.f(*args, **kwargs)


class Hook(HandlerDecorator):
    """A plugin hook (Tyk's generic decorator)."""


class Pre(Hook):
    """A pre hook (older Tyk plugins)."""


class Post(Hook):
    """A post hook (older Tyk plugins)."""


class PostKeyAuth(Hook):
    """A post-key-auth hook (older Tyk plugins)."""


class CustomKeyCheck(Hook):
    """An auth hook (older Tyk plugins)."""


class Event(HandlerDecorator):
    """An event handler: accepted so files that define one load; fastgate does not call it."""
