"""The layering the package promises: dependencies point one way, `definitions → defs → core/serving → spec`,
the pure layers never import Dagster, and no module imports another that imports it back (directly or not,
at module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ml_platform"
PURE = (
    "ml_platform.core",
    "ml_platform.serving",
    "ml_platform.spec",
    "ml_platform.fields",
    "ml_platform.cli",
    "ml_platform.reproduce_command",
    "ml_platform.trace_command",
    "ml_platform.settings",
    "ml_platform.simulate",
)


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under `if TYPE_CHECKING:` (annotations only, never imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module of the package this one imports at run time, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {module for module in found if module in known}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, set(modules)) - {name} for name, path in modules.items()}


def test_the_pure_layers_never_import_dagster():
    offenders = []
    for name, path in _modules().items():
        if name.startswith(PURE):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("dagster", "dagster_mlflow")]
    assert offenders == []


CODE_LOCATIONS = ("ml_platform.definitions", "ml_platform.locations")  # the one of all specs, those per team


def test_nothing_imports_the_wiring_but_the_code_locations():
    graph = _graph()
    importers = sorted(
        name
        for name, imported in graph.items()
        if not name.startswith("ml_platform.defs")
        and name not in CODE_LOCATIONS
        and any(m.startswith("ml_platform.defs") for m in imported)
    )
    assert importers == []


def test_no_module_imports_in_a_circle():
    graph = _graph()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(graph[node]):
            if target in on_path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target, [*path, target], on_path | {target}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start}, done)
    # a package's __init__ re-exporting its own submodules is not a circle between modules
    real = [c for c in cycles if not all(m.startswith(c[0]) or c[0].startswith(m) for m in c)]
    assert real == [], "\n".join(" → ".join(c) for c in real)
