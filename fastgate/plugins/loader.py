"""Importing plugin files: Tyk's Python plugin files, unchanged, and native ones.

A file is imported with ``fastgate/plugins/compat`` and the file's own directory at the front of
``sys.path`` for the time of the import only, so ``from tyk.decorators import *`` and
``from gateway import TykGateway as tyk`` resolve to fastgate's compatibility modules and a
plugin may import its sibling files. Each file becomes a module of its own name
(``fastgate_plugin_<hash of its path>``), imported again when the file changes (so a reload picks
up an edited plugin) and shared by every API that names it otherwise.

A file that does not import (syntax error, missing import, an exception at import time) or lacks
the named function raises ``PluginLoadError`` naming the file: the API is refused at load and
``fastgate check`` reports it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

__all__ = ["COMPAT_DIR", "PluginLoadError", "load_function", "resolve_path"]

COMPAT_DIR = Path(__file__).resolve().parent / "compat"

_LOCK = threading.Lock()
# path -> (mtime_ns, size, module)
_MODULES: dict[str, tuple[int, int, ModuleType]] = {}


class PluginLoadError(Exception):
    """A plugin file or function that cannot be used; the message names the file."""


def resolve_path(path: str, base_dir: str) -> Path:
    """``path`` as written in a definition: absolute, or relative to the config file's directory."""
    p = Path(path)
    return p if p.is_absolute() else Path(base_dir) / p


def load_function(path: Path, name: str) -> Callable[..., Any]:
    """The callable ``name`` of the plugin file ``path`` (imported when new or changed)."""
    module = _module(path)
    fn = getattr(module, name, None)
    if fn is None:
        raise PluginLoadError(f"{path}: defines no function {name!r}")
    if not callable(fn):
        raise PluginLoadError(f"{path}: {name!r} is not a function")
    return fn  # type: ignore[no-any-return]


def _module(path: Path) -> ModuleType:
    try:
        stat = path.stat()
    except OSError as exc:
        raise PluginLoadError(f"{path}: cannot be read: {exc.strerror}") from None
    if not path.is_file():
        raise PluginLoadError(f"{path}: not a file")
    key = str(path.resolve())
    with _LOCK:
        known = _MODULES.get(key)
        if known is not None and known[0] == stat.st_mtime_ns and known[1] == stat.st_size:
            return known[2]
        module = _import(path, key)
        _MODULES[key] = (stat.st_mtime_ns, stat.st_size, module)
        return module


def _import(path: Path, key: str) -> ModuleType:
    name = "fastgate_plugin_" + hashlib.sha256(key.encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    added = [str(COMPAT_DIR), str(path.parent)]
    sys.path[:0] = added
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise PluginLoadError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of a plugin's import refuses its API
        raise PluginLoadError(f"{path}: does not import: {type(exc).__name__}: {exc}") from None
    finally:
        for entry in added:
            try:
                sys.path.remove(entry)
            except ValueError:
                pass
    return module
