"""The modules of bridge/ import each other without a cycle and without taking private names.

The imports are read from the source with ``ast`` (every ``import`` / ``from ... import`` statement,
also those inside functions; not those under ``if TYPE_CHECKING:``, which never run), so nothing is
imported to check them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = ROOT / "bridge"
#: What each package may import of the others (the layers of the README's Architecture section).
ALLOWED = {"engine": set(), "cnn": {"engine"}, "gnn": {"engine"}, "bridge": {"engine", "cnn", "gnn"}}


def module_files(package: Path) -> dict[str, Path]:
    """``{"bridge.x": path}`` of the package's modules (subpackages included)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package.name, *parts))] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """``(target module, imported name, line)`` of every import in a module; name ``""`` for ``import x``."""
    is_package = path.name == "__init__.py"
    out = []
    tree = ast.parse(path.read_text(), filename=str(path))
    # imports under ``if TYPE_CHECKING:`` never run: they cannot make a cycle or load anything
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # ``from . import x`` with x a module imports that module
                out.append((sub, "", node.lineno) if sub in known else (target, alias.name, node.lineno))
    return out


def import_graph(package: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Edges between the package's modules, and the private names one module takes from another."""
    files = module_files(package)
    known = set(files)
    graph: dict[str, set[str]] = {m: set() for m in files}
    private = []
    for name, path in files.items():
        for target, imported, line in imports(name, path, known):
            if target in known and target != name:
                graph[name].add(target)
            if imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{path.name}:{line} imports {imported} from {target}")
    return graph, private


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (found := visit(t)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_bridge_has_no_import_cycle():
    graph, _ = import_graph(BRIDGE)
    # the graph is really read: the module table of segmentation uses the torch SLIC, convert both
    assert "bridge.slic" in graph["bridge.segmentation"]
    assert {"bridge.segmentation", "bridge.checks", "bridge.edges"} <= graph["bridge.convert"]
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph) or [])}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_modules_take_no_private_names(package):
    _, private = import_graph(ROOT / package)
    assert private == [], (
        "cross-module private imports (make the name public where it belongs):\n" + "\n".join(private)
    )


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_keep_their_layers(package):
    """engine imports none of the others; cnn and gnn only engine (never each other); bridge all three."""
    files = module_files(ROOT / package)
    used = {
        target.split(".")[0]
        for name, path in files.items()
        for target, _, _ in imports(name, path, set(files))
        if target.split(".")[0] in ALLOWED
    }
    assert used - {package} <= ALLOWED[package], (
        f"{package} imports {sorted(used - {package} - ALLOWED[package])}"
    )


@pytest.fixture
def fake_package(tmp_path):
    pkg = tmp_path / "bridge"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import helper\n")
    (pkg / "b.py").write_text("def f():\n    from .c import _secret\n")
    (pkg / "c.py").write_text("from bridge import a\nimport numpy\n")
    return pkg


def test_checker_finds_a_cycle_and_a_private_import(fake_package):
    graph, private = import_graph(fake_package)
    assert graph == {
        "bridge": set(),
        "bridge.a": {"bridge.b"},
        "bridge.b": {"bridge.c"},
        "bridge.c": {"bridge.a"},
    }
    assert find_cycle(graph) == ["bridge.a", "bridge.b", "bridge.c", "bridge.a"]
    assert private == ["b.py:2 imports _secret from bridge.c"]
    (fake_package / "c.py").write_text("import numpy\n")
    assert find_cycle(import_graph(fake_package)[0]) is None
