"""The package's layers, checked on its import graph (every import, lazy ones included).

    entry points   cli, workers, server, __main__
    app            app, health                      (health asks every feature's resources)
    features       identity/, rpc/, records/, webapp/       (none imports another)
    primitives     storage/, chain/, telemetry/, ratelimit, caller, openapi, error_responses, cors
    base           config, defaults, errors, and small utilities

An import may go to its own layer or below, never up; a feature never imports another
feature; and no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gateway"

LAYERS = {
    "entry": {"cli", "workers", "server", "__main__"},
    "app": {"app", "health"},
    "feature": {"identity", "rpc", "records", "relay", "webapp"},
    "primitive": {
        "storage",
        "lane",
        "chain",
        "telemetry",
        "ratelimit",
        "caller",
        "openapi",
        "error_responses",
        "cors",
        "heap",
        "heldwrites",
    },
    "base": {
        "config",
        "defaults",
        "errors",
        "jsonexact",
        "clock",
        "build",
        "background",
        "bodies",
        "eventloop",
        "faults",
        "gateway",
    },
}
ORDER = ["base", "primitive", "feature", "app", "entry"]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """module -> the gateway modules it imports (``from gateway.x import y`` counts
    ``gateway.x.y`` when that is a module, else ``gateway.x``)."""
    modules = {
        module_name(path, root): path
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gateway"


def layer(module: str) -> str:
    found = [name for name, areas in LAYERS.items() if area(module) in areas]
    assert found, f"{module} is in no layer: add its area to LAYERS"
    return found[0]


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        for target in targets:
            if ORDER.index(layer(target)) > ORDER.index(layer(module)):
                found.append(f"{module} -> {target} goes up ({layer(module)} -> {layer(target)})")
            elif layer(module) == layer(target) == "feature" and area(module) != area(target):
                found.append(f"{module} -> {target}: a feature imports another feature")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:  # noqa: C901  # Tarjan, as written
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_goes_up_and_features_stay_apart() -> None:
    assert violations(import_graph(PACKAGE)) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph(PACKAGE)) == []


@pytest.fixture(name="tree")
def _tree(tmp_path: Path) -> Path:
    """A copy of the package to break on purpose."""
    copy = tmp_path / "gateway"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return copy


def test_the_check_fails_on_an_upward_import(tree: Path) -> None:
    config = tree / "config.py"
    config.write_text(config.read_text() + "\nfrom gateway.rpc.policy import MethodPolicy\n")
    assert violations(import_graph(tree)) == [
        "gateway.config -> gateway.rpc.policy goes up (base -> feature)"
    ]


def test_the_check_fails_on_a_feature_importing_another(tree: Path) -> None:
    routes = tree / "records" / "routes.py"
    routes.write_text(routes.read_text() + "\nfrom gateway.identity.routes import SIGN_IN\n")
    assert violations(import_graph(tree)) == [
        "gateway.records.routes -> gateway.identity.routes: a feature imports another feature"
    ]


def test_the_check_fails_on_a_cycle(tree: Path) -> None:
    migrate = tree / "storage" / "database.py"
    migrate.write_text(
        migrate.read_text() + "\ndef _late():\n    from gateway.storage import migrate\n"
    )
    assert ["gateway.storage.database", "gateway.storage.migrate"] in [
        [m for m in component if m.startswith("gateway.storage.")]
        for component in cycles(import_graph(tree))
    ]
