"""The import graph of ``src/ptssnn`` (read with ``ast``, nothing imported): no cycle between
modules or between subpackages, and packages import only downwards:

    cli → use / experiments (benchmark, demo, inference, serve, export) → training →
    evaluation → models, energy → features, corpora → backbones, audio, snn → errors
    (and the standard-library-only root modules processes, jsonio)
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "ptssnn"

#: Layers from the top; a package may import its own layer's packages only if that makes
#: no cycle, and any lower layer's.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("benchmark", "demo", "serve"),
    ("inference", "export"),
    ("training",),
    ("evaluation",),
    ("energy",),
    ("models",),
    ("features", "corpora"),
    ("backbones", "audio", "snn"),
    ("errors", "processes", "jsonio"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` (annotations only; never executed)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(child) for child in ast.walk(node))
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module → ptssnn modules it imports at run time (top level or inside functions).

    ``from pkg import submodule`` depends on the submodule, not on ``pkg/__init__``.
    """
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                submodules = [f"{base}.{a.name}" for a in node.names
                              if f"{base}.{a.name}" in modules]
                if submodules and len(submodules) == len(node.names):
                    targets.update(submodules)
                else:
                    targets.add(base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ptssnn"


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Subpackage → subpackages it imports (the root ``ptssnn`` module is left out: it only
    re-exports lazily and holds the version)."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = subpackage(module)
        if source == "ptssnn":
            continue
        for target in targets:
            if subpackage(target) not in (source, "ptssnn"):
                packages.setdefault(source, set()).add(subpackage(target))
    return packages


def test_graph_is_read() -> None:
    graph = import_graph()
    assert "ptssnn.features.table" in graph["ptssnn.training.data"]  # a sanity anchor
    assert "ptssnn.models.card" in graph["ptssnn.inference.recognizer"]


def test_no_cycle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " → ".join(cycle or [])


def test_no_cycle_between_subpackages() -> None:
    cycle = find_cycle(package_graph(import_graph()))
    assert cycle is None, " → ".join(cycle or [])


def test_packages_import_downwards_only() -> None:
    rank = {name: level for level, names in enumerate(LAYERS) for name in names}
    packages = package_graph(import_graph())
    unknown = sorted(set(packages) - set(rank))
    assert not unknown, f"add {unknown} to LAYERS"
    upward = sorted((a, b) for a, targets in packages.items() for b in targets
                    if rank[b] < rank[a])
    assert not upward, f"imports against the layering: {upward}"


def test_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
