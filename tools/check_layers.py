"""Check the import rules of docs/architecture.md: floors only point down, no cycles, SQL only in memory.

Every import of every module counts, at module level or inside a function
(a cycle hidden behind a function-level import is still a cycle), and so do
imports under `if TYPE_CHECKING:`. The floors, lowest first:

    envs  <-  memory  <-  agent  <-  distill  <-  oel

A module may import its own package and the packages below it. Only `memory`
may import SQLAlchemy, Alembic or `memory.models`. Cycles are searched among
the project's modules with Tarjan's algorithm.

The script folders `benchmarks/` and `tools/` sit above every floor: they may
import any floor (and no floor may import them), but the SQL rule and the
cycle rule hold for them too. A script runs with its own folder first on
`sys.path`, so a bare `import x` there means its sibling `x.py` when one
exists, and a script named like a floor (`benchmarks/envs.py`) would shadow
that package for every script beside it: that is a violation of its own.

Run `python tools/check_layers.py [ROOT]` (CI does, on the repository); it
prints every violation, one per line, and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("envs", "memory", "agent", "distill", "oel")
SCRIPTS = ("benchmarks", "tools")
"""Folders of scripts, one level above the top floor."""
SQL_ONLY_IN_MEMORY = ("sqlalchemy", "alembic", "memory.models")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the floors and script folders under `root`."""
    modules = {}
    for package in (*FLOORS, *SCRIPTS):
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(imported dotted name, line) for every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (itself, or the module holding the imported attribute)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def resolve_from(name: str, module: str, modules: dict[str, Path]) -> str | None:
    """What `name` refers to when `module` imports it: a script's sibling first, else as `resolve`."""
    if module.split(".")[0] in SCRIPTS:
        folder = module.rpartition(".")[0]
        sibling = resolve(f"{folder}.{name}", modules)
        if sibling is not None and sibling.startswith(f"{folder}."):
            return sibling
    return resolve(name, modules)


def floor(module: str) -> int:
    """A module's level: its floor's index, or one above the top floor for a script."""
    top = module.split(".")[0]
    return len(FLOORS) if top in SCRIPTS else FLOORS.index(top)


def violations(root: Path = ROOT) -> list[str]:
    """Every broken rule in the tree at `root`, as one line each."""
    modules = project_modules(root)
    problems: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        where = path.relative_to(root)
        top = module.split(".")[0]
        if top in SCRIPTS and path.stem in FLOORS:
            problems.append(f"{where}: shadows the {path.stem} package for the scripts beside it; rename it")
        sql_lines: set[int] = set()
        for name, line in imports_of(path, module):
            banned = next((b for b in SQL_ONLY_IN_MEMORY if name == b or name.startswith(f"{b}.")), None)
            if banned and top != "memory" and line not in sql_lines:
                sql_lines.add(line)
                problems.append(f"{where}:{line}: imports {banned}; only memory/ may touch SQL")
            target = resolve_from(name, module, modules)
            if target is None or target == module:
                continue
            if floor(target) > floor(module):
                problems.append(
                    f"{where}:{line}: {module} ({top}) imports {target} "
                    f"({target.split('.')[0]}), a floor above it"
                )
            graph[module].add(target)
    for cycle in cycles(graph):
        problems.append("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    return sorted(set(problems))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT
    problems = violations(root)
    for problem in problems:
        print(problem)
    print(f"{len(project_modules(root))} modules checked: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
