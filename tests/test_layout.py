"""The house rules of the code's layout (issue 23), read from the source itself:

- ser_core imports nothing of search, Ray or Optuna;
- search's packages import one way, in the order a sweep's data flows (search/__init__.py);
  the sweep definition, results, analysis and the dashboard never import Ray, even lazily;
- no import circle between modules;
- no `_private` name is imported from a module of another package;
- no module is longer than MAX_LINES.

Imports are read with `ast` from every module, including those inside functions (a lazy import
is still an import), and one check imports the Ray-free packages in a fresh interpreter.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450

# search's packages, and the packages of search each may import (itself always).
ALLOWED: dict[str, set[str]] = {
    "definition": set(),
    "results": {"definition"},
    "worker": set(),
    "recording": {"definition", "results", "worker"},
    "analysis": {"definition", "results"},
    "driver": {"definition", "results", "worker", "recording"},
    "dashboard": {"definition", "results", "analysis"},
    "cli": {"definition", "results", "analysis", "driver", "dashboard", "worker", "recording"},
}
NO_RAY = ("definition", "results", "analysis", "dashboard")
TOP_LEVEL = {"moved"}  # search/moved.py: the old module paths (it imports nothing of search at import time)


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("ser_core", "search"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(module: str) -> str:
    """The package a module belongs to (its own name for a package's __init__)."""
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


@cache
def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names imported from it, line) for every import in the module, lazy ones too."""
    tree = ast.parse(MODULES[module].read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(module).split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if target in MODULES and MODULES[target].name == "__init__.py":
                # `from pkg import submodule` imports the submodule
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
                out += [(s, [], node.lineno) for s in subs]
                names = [n for n in names if f"{target}.{n}" not in MODULES]
                if not names and subs:
                    continue
            out.append((target, names, node.lineno))
    return out


def _search_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "search" and len(parts) > 1 else None


def test_ser_core_imports_nothing_of_search_ray_or_optuna():
    bad = [f"{m}:{line} imports {target}" for m in MODULES if m.startswith("ser_core")
           for target, _, line in _imports(m) if target.split(".")[0] in ("search", "ray", "optuna")]
    assert not bad, "\n".join(bad)


def test_search_packages_import_one_way():
    assert {p.name for p in (ROOT / "search").iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(ALLOWED)
    bad = []
    for m in MODULES:
        own = _search_package(m)
        if own is None or own in TOP_LEVEL:
            continue
        for target, _, line in _imports(m):
            other = _search_package(target)
            if target == "search" or (other is not None and other != own and other not in ALLOWED[own]):
                bad.append(f"{m}:{line} ({own}) imports {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", NO_RAY)
def test_ray_free_packages_never_import_ray_even_lazily(package):
    bad = [f"{m}:{line} imports {target}" for m in MODULES if _search_package(m) == package
           for target, _, line in _imports(m) if target.split(".")[0] == "ray"]
    assert not bad, "\n".join(bad)


def test_ray_free_packages_import_without_ray_in_a_fresh_interpreter():
    modules = [m for m in MODULES if _search_package(m) in NO_RAY]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", f"importing {len(modules)} modules pulled in {out.stdout.strip()}"


def test_no_import_circle():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # a package's __init__ re-exports its modules; a module of the package reaching back to it is a circle
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                circles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not circles, "\n".join(" → ".join(c) for c in circles)


def test_no_private_name_crosses_a_package():
    bad = []
    for m in MODULES:
        for target, names, line in _imports(m):
            if target not in MODULES:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _package(target) != _package(m) and not target.startswith(_package(m) + "."):
                bad.append(f"{m}:{line} imports {private} from {target}")
    assert not bad, "\n".join(bad)


def test_no_module_over_the_line_limit():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_rules_see_a_violation():
    """The import reader finds lazy and relative imports (else every rule above would pass vacuously)."""
    imports = {t for t, _, _ in _imports("search.cli")}
    assert "search.driver" in imports and "search.analysis.leaderboard" in imports  # lazy, inside functions
    assert ("search.definition.objectives", ["Objective", "objectives_from_record", "pareto_mask"]) in [
        (t, n) for t, n, _ in _imports("search.analysis.pareto")]
    assert any(t == "ray.tune.logger" for t, _, _ in _imports("search.recording.trackers"))  # lazy
