"""Rewrite fastgate module paths from the flat layout to the layered one (docs/ARCHITECTURE.md).

    python tools/rewrite_imports.py [FILE ...]     # default: every *.py and *.md under fastgate/,
                                                  # tests/, bench/, docs/ and tools/

For code written against the old layout (a branch merged after the restructure): rewrites dotted
module names (imports, ``monkeypatch.setattr("fastgate.keys.x", ...)`` strings, docstrings) and
``fastgate/keys.py``-style paths, and sends the names that moved between modules to their new
module (``from fastgate.pipeline import Denial, compile_api`` becomes one import from
``fastgate.pipeline.stage`` and one from ``fastgate.pipeline.compile``). Idempotent: new names are
left alone. Logger names are not module paths: check ``logging.getLogger("fastgate....")`` by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES = {  # old module -> new module
    "fastgate.server.http1": "fastgate.http.h1",
    "fastgate.server.request": "fastgate.http.request",
    "fastgate.upstream": "fastgate.server.upstream",
    "fastgate.server.runner": "fastgate.runner",
    "fastgate.router": "fastgate.pipeline.router",
    "fastgate.pipeline": "fastgate.pipeline.compile",
    "fastgate.authorize": "fastgate.pipeline.post_auth",
    "fastgate.session": "fastgate.sessions.session",
    "fastgate.sessions": "fastgate.sessions.manager",
    "fastgate.session_cache": "fastgate.sessions.cache",
    "fastgate.keys": "fastgate.sessions.key_ids",
    "fastgate.policy": "fastgate.sessions.policies",
    "fastgate.limits": "fastgate.store.limits",
    "fastgate.certs": "fastgate.certs.store",
    "fastgate.auth.jwt": "fastgate.auth.jwt.stage",
    "fastgate.auth.jwt_claims": "fastgate.auth.jwt.claims",
    "fastgate.auth.jwt_config": "fastgate.auth.jwt.config",
    "fastgate.auth.jwt_revocation": "fastgate.auth.jwt.revocation",
    "fastgate.auth.jwt_services": "fastgate.auth.jwt.services",
    "fastgate.auth.jwt_session": "fastgate.auth.jwt.session",
    "fastgate.auth.jwks": "fastgate.auth.jwt.jwks",
    "fastgate.auth.jose": "fastgate.auth.jwt.jose",
    "fastgate.access": "fastgate.pipeline.access",
}

NAMES = {  # (new module, name) -> the module the name lives in now
    ("fastgate.pipeline.compile", "Denial"): "fastgate.pipeline.stage",
    ("fastgate.pipeline.compile", "Stage"): "fastgate.pipeline.stage",
    ("fastgate.pipeline.compile", "StageResult"): "fastgate.pipeline.stage",
    ("fastgate.pipeline.compile", "deny"): "fastgate.pipeline.stage",
    ("fastgate.store.limits", "endpoint_key_suffix"): "fastgate.sessions.key_ids",
    ("fastgate.store.limits", "limit_names"): "fastgate.sessions.key_ids",
    ("fastgate.server.tls", "PeerCertificate"): "fastgate.certs.peer",
    ("fastgate.server.tls", "peer_certificate"): "fastgate.certs.peer",
    ("fastgate.server.tls", "forwarded_client_cert"): "fastgate.certs.peer",
}

def _layout_modules() -> set[str]:
    """Every module of the new layout (``fastgate.pipeline.stage``, ...), read from this tree."""
    found = set()
    for path in (ROOT / "fastgate").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.add(".".join(parts))
    return found


LAYOUT = _layout_modules()
# Old modules whose name is now a package: a bare mention may mean either (a logger name, the
# package), so only import statements and attribute paths are rewritten for them.
AMBIGUOUS = {old for old in MODULES if old in LAYOUT}

_OLD = "|".join(re.escape(k) for k in sorted(MODULES, key=len, reverse=True))
_DOTTED = re.compile(r"(?<![\w.])(" + _OLD + r")(?![\w])((?:\.[A-Za-z_]\w*)*)")
_PATHS = {k.replace(".", "/") + ".py": v.replace(".", "/") + ".py" for k, v in MODULES.items()}
_PATH = re.compile(r"(?<![\w/])(" + "|".join(re.escape(k) for k in sorted(_PATHS, key=len, reverse=True)) + r")")
_FROM = re.compile(r"^(?P<indent>[ \t]*)from (?P<module>fastgate[\w.]*) import "
                   r"(?P<names>\([^)]*\)|[^\n#(]*[^\s#(])(?P<comment>[ \t]*#[^\n]*)?$", re.M)
_SUBMODULES = {("fastgate.auth", "jose"): "fastgate.auth.jwt", ("fastgate.auth", "jwks"): "fastgate.auth.jwt"}


def _target(module: str, name: str) -> str:
    """Where ``name`` imported from ``module`` (old or new spelling) lives in the new layout."""
    if (module, name) in _SUBMODULES:
        return _SUBMODULES[(module, name)]
    if f"{module}.{name}" in LAYOUT:  # a submodule: `from fastgate.auth.jwt import jose`
        return module
    if module in MODULES:
        module = MODULES[module]
    return NAMES.get((module, name), module)


def _from(match: re.Match[str]) -> str:
    module, indent = match.group("module"), match.group("indent")
    names = [n.strip() for n in match.group("names").strip("()").replace("\n", " ").split(",") if n.strip()]
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_target(module, name.split(" as ")[0].strip()), []).append(name)
    if list(groups) == [module]:
        return match.group(0)
    if len(groups) == 1:  # one new home: keep the statement as written, only the module changes
        return match.group(0).replace(f"from {module} import", f"from {next(iter(groups))} import", 1)
    lines = [_statement(indent, target, group) for target, group in sorted(groups.items())]
    lines[0] += match.group("comment") or ""
    return "\n".join(lines)


def _statement(indent: str, module: str, names: list[str], width: int = 110) -> str:
    one = f"{indent}from {module} import {', '.join(names)}"
    if len(one) <= width:
        return one
    rows, row = [], indent + "   "
    for name in names:
        if len(row) + len(name) + 2 > width:
            rows.append(row.rstrip())
            row = indent + "   "
        row += f" {name},"
    rows.append(row)
    return f"{indent}from {module} import (\n" + "\n".join(rows) + f"\n{indent})"


def _dotted(match: re.Match[str]) -> str:
    old, rest = match.group(1), match.group(2)
    first = rest.split(".")[1] if rest else ""
    if not rest and old in AMBIGUOUS:
        return match.group(0)  # `"fastgate.certs"`: a logger name or the package, not a module path
    if first and f"{old}.{first}" in LAYOUT:
        return match.group(0)  # already new: `fastgate.pipeline.stage`
    return MODULES[old] + rest


def rewrite(text: str) -> str:
    text = _FROM.sub(_from, text)
    text = _DOTTED.sub(_dotted, text)
    return _PATH.sub(lambda m: _PATHS[m.group(1)], text)


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or [
        p for d in ("fastgate", "tests", "bench", "docs", "tools") for p in sorted((ROOT / d).rglob("*"))
        if p.suffix in (".py", ".md") and "results" not in p.parts and p.name != "rewrite_imports.py"
    ]
    for path in files:
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
