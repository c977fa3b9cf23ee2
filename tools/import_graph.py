"""Print fastgate's internal import graph: cycles, and imports hidden in functions or TYPE_CHECKING.

    python tools/import_graph.py            # strongly connected components (import loops)
    python tools/import_graph.py --hidden   # every import inside a function or TYPE_CHECKING block

Counts every ``import fastgate...`` / ``from fastgate... import`` edge, wherever it sits (module
level, function body, TYPE_CHECKING), so a loop dodged by a late import still shows. import-linter
(``lint-imports``) enforces the layers; this script answers "is there any loop at all".
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastgate"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module ``name`` starts with (``a.b.C`` -> ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def edges(modules: dict[str, Path]) -> list[tuple[str, str, str, int]]:
    """(importer, imported, where, line): where is 'module', 'function' or 'type_checking'."""
    known = set(modules)
    found = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"

        def visit(node: ast.AST, where: str) -> None:
            for child in ast.iter_child_nodes(node):
                here = where
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    here = "function"
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    here = "type_checking" if where == "module" else where
                if isinstance(child, ast.Import):
                    for alias in child.names:
                        target = resolve(alias.name, known)
                        if target and target != mod:
                            found.append((mod, target, here, child.lineno))
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        pkg = mod if is_pkg else mod.rpartition(".")[0]
                        for _ in range(child.level - 1):
                            pkg = pkg.rpartition(".")[0]
                        base = f"{pkg}.{base}" if base else pkg
                    for alias in child.names:
                        target = resolve(f"{base}.{alias.name}", known) or resolve(base, known)
                        if target and target != mod:
                            found.append((mod, target, here, child.lineno))
                visit(child, here)

        visit(tree, "module")
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10000)

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def main() -> int:
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    found = edges(modules)
    if "--hidden" in sys.argv:
        for mod, target, where, line in found:
            if where != "module":
                print(f"{modules[mod].relative_to(ROOT)}:{line}: {where}: {target}")
        return 0
    include_tc = "--runtime" not in sys.argv
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, target, where, _ in found:
        if include_tc or where != "type_checking":
            graph[mod].add(target)
    loops = strongly_connected(graph)
    for comp in loops:
        print(f"loop of {len(comp)}: {' '.join(comp)}")
    if not loops:
        print("no import loops")
    return 1 if loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
