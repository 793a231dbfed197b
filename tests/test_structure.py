"""The shape of ``compiler_tasks`` and ``cli``: packages by concept, no import circle,
small units.

Read from the source with :mod:`ast`, so these run in milliseconds and need nothing
installed but the package itself; the Celery-free checks import in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The packages held to the shape: the worker side and the client.
PACKAGES = ("compiler_tasks", "cli")

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Functions allowed over the limit, each with the reason. Keep this empty but for a cause.
LONG_FUNCTIONS: set[str] = set()
#: Top-level packages a Celery-free module must not import, directly or transitively.
CELERY = ("celery", "kombu", "billiard")
#: Imports the package's ``__init__`` modules must not pull in (the client's hit path).
HEAVY = (*CELERY, "boto3", "botocore", "sentry_sdk", "sass", "prometheus_client", "redis")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of :data:`PACKAGES`."""
    found = {}
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Modules of :data:`PACKAGES` that ``name`` imports anywhere: at the top, in functions (lazy
    imports) and under ``TYPE_CHECKING``: a circle through any of them is still one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return {m for m in found if m in MODULES and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_circle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    assert sum(map(len, graph.values())) > 100, "the graph builder found too few imports"
    circle = _cycle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_modules_are_short() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def _functions(tree: ast.AST, prefix: str = "") -> list[tuple[str, ast.AST]]:
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = prefix + node.name
            if not isinstance(node, ast.ClassDef):
                found.append((name, node))
            found += _functions(node, name + ".")
        else:
            found += _functions(node, prefix)
    return found


def test_functions_are_short() -> None:
    long = {}
    for path in MODULES.values():
        where = path.relative_to(ROOT).as_posix()
        for name, node in _functions(ast.parse(path.read_text())):
            lines = node.end_lineno - node.lineno + 1  # type: ignore[attr-defined]
            if lines > MAX_FUNCTION_LINES and f"{where}::{name}" not in LONG_FUNCTIONS:
                long[f"{where}::{name}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_module_says_what_it_owns() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def test_pyproject_lists_every_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("compiler_tasks", "cli")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert listed == packages


def _imported_by(statement: str, roots: tuple[str, ...]) -> list[str]:
    """Modules under ``roots`` that a fresh interpreter holds after ``statement``."""
    code = (
        f"import sys; {statement}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return list(ast.literal_eval(proc.stdout.strip()))


@pytest.mark.parametrize(
    "module", ["compiler_tasks.worker.pipeline", "compiler_tasks.worker.context"]
)
def test_celery_free_modules_import_no_celery(module: str) -> None:
    assert _imported_by(f"import {module}", CELERY) == []


def test_the_celery_side_does_import_celery() -> None:
    """The check above would pass vacuously if the probe could not see Celery."""
    assert "celery" in _imported_by("import compiler_tasks.worker.bootsteps", CELERY)


@pytest.mark.parametrize(
    "package", sorted(name for name, path in MODULES.items() if path.name == "__init__.py")
)
def test_importing_a_package_is_cheap(package: str) -> None:
    assert _imported_by(f"import {package}", HEAVY) == []
