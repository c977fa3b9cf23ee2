"""Custom plugins in Python: Tyk's plugin files run unchanged, in-process, and a native API.

- ``loader``: imports plugin files with the ``tyk`` / ``gateway`` compatibility modules
  (``compat/``) on the import path only while importing;
- ``hooks``: a definition's hook to an awaitable (native ``async`` on the loop, Tyk-style or plain
  functions in the bounded thread pool of ``pool``, each with the per-hook timeout), and the
  pre / post_key_auth / post stages;
- ``tyk_style``: Tyk's request, session and return-override objects, and the adapters;
- ``native``: the typed API for new plugins (``PluginRequest``, ``Accept``, ``Denial``);
- ``runtime``: the log, the store and the pool as plugins reach them.

The auth hook's stage (sessions persisted as keys) is ``fastgate.auth.plugin``.
"""

from __future__ import annotations

from fastgate.plugins.native import Accept, Denial, PluginRequest, SessionState, inline
from fastgate.plugins.runtime import get_data, store_data

__all__ = ["Accept", "Denial", "PluginRequest", "SessionState", "get_data", "inline", "store_data"]
