"""The build: mypyc compiles fastgate's hot modules when it can, the pure-Python sources otherwise.

pyproject.toml holds the metadata; this file only adds the compiled extensions. Three ways to a
pure-Python install, each said in one line on stderr: ``FASTGATE_PURE=1``, mypyc failing to
translate (its import or type check), and the C compiler failing (missing, or an error). The
``.py`` sources are installed either way, so a module without its extension still imports.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# mypyc puts the compiled code of all the modules in one shared library, ``<group>__mypyc``, the
# modules' own extensions being small shims importing it. Inside the package it is found wherever
# fastgate is (a top-level one beside fastgate/ is missed by the editable install's finder).
GROUP = "fastgate.native"


def _say(message: str) -> None:
    print(f"fastgate build: {message}", file=sys.stderr, flush=True)


def _compiled_modules() -> tuple[str, ...]:
    """``fastgate.build.COMPILED_MODULES``, read without importing fastgate."""
    namespace: dict[str, object] = {}
    exec(compile((HERE / "fastgate" / "build.py").read_text(), "fastgate/build.py", "exec"), namespace)
    return namespace["COMPILED_MODULES"]  # type: ignore[return-value]


def _remove_stale_extensions(keep: tuple[str, ...] = ()) -> None:
    """Deletes extensions an earlier in-place build left beside the sources (`make install`),
    but for the modules of ``keep`` (those about to be rebuilt).

    Python imports ``x.cpython-*.so`` before ``x.py``: a stale one would shadow the pure build,
    and the shim of a module no longer compiled would look for its code in a shared library
    that no longer has it (an ImportError at start-up).
    """
    for path in (HERE / "fastgate").rglob("*.so"):
        module = ".".join(path.relative_to(HERE).with_name(path.name.split(".", 1)[0]).parts)
        if module not in keep and not module.startswith(GROUP):
            path.unlink()
    if not keep:
        for path in (HERE / "fastgate").glob(f"{GROUP.rsplit('.', 1)[1]}__mypyc.*.so"):
            path.unlink()


def _extensions() -> list:
    """mypyc's extensions for the hot modules, or none (each fallback said in one line)."""
    if os.environ.get("FASTGATE_PURE") == "1":
        _remove_stale_extensions()
        _say("FASTGATE_PURE=1: installing pure Python")
        return []
    modules = _compiled_modules()
    _remove_stale_extensions(keep=modules)  # a module dropped from the list keeps no shim
    paths = [str(Path("fastgate", *name.split(".")[1:])) + ".py" for name in modules]
    try:
        from mypyc.build import mypycify
    except ImportError:
        _remove_stale_extensions()
        _say("mypyc is not installed (pip install mypy); installing pure Python")
        return []
    try:
        # Imported packages without type information (or not installed in an isolated build
        # environment) count as Any; errors in the modules not compiled are not this build's.
        flags = ["--ignore-missing-imports", "--follow-imports=silent"]
        return mypycify([*flags, *paths], opt_level="3", debug_level="0", group_name=GROUP)
    except (Exception, SystemExit) as exc:  # mypy's type check failed (SystemExit), or mypyc did
        _remove_stale_extensions()
        _say(f"mypyc could not translate the hot modules ({type(exc).__name__}, mypy's words above);"
             " installing pure Python")
        return []


class OptionalBuildExt(build_ext):
    """Builds the extensions, or none of them: a compile error falls back to the sources."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing compiler
            _remove_stale_extensions()
            for ext in self.extensions:  # none or all: a module's shim without the shared library fails
                path = os.path.join(self.build_lib, self.get_ext_filename(ext.name))
                if os.path.exists(path):
                    os.remove(path)
            _say(f"compiling the hot modules failed ({type(exc).__name__}, the compiler's words above;"
                 " gcc and python3-dev compile them); installing pure Python")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
