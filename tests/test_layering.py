"""The package layering, read from the source (``ast``, so imports under
``TYPE_CHECKING`` and inside functions count too):

- no module imports another package's private module (``deployer._client`` from
  ``receiver/``): what crosses a package boundary is public;
- the receiver's module-level imports have no cycle (the shared types of the routes are in
  the leaf ``receiver/context.py``);
- ``sf_metadata/`` imports neither ``deployer/`` nor ``receiver/``; ``deployer/`` does not
  import ``receiver/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sf_metadata", "deployer", "receiver")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if module_level_only:
        for statement in tree.body:
            nodes.append(statement)
            if isinstance(statement, ast.If):  # if TYPE_CHECKING: ...
                nodes.extend(statement.body)
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else None
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = (package or _module_name(path)).split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


def test_no_module_imports_another_packages_private_module() -> None:
    offenders = []
    for name, path in _modules().items():
        for imported in _imports(path, module_level_only=False):
            parts = imported.split(".")
            if parts[0] == name.split(".")[0]:
                continue
            if any(part.startswith("_") and part != "__init__" for part in parts[1:]):
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_the_layers_point_down() -> None:
    allowed = {"sf_metadata": {"sf_metadata"}, "deployer": {"sf_metadata", "deployer"}}
    offenders = []
    for name, path in _modules().items():
        top = name.split(".")[0]
        if top not in allowed:
            continue
        for imported in _imports(path, module_level_only=False):
            if imported.split(".")[0] not in allowed[top]:
                offenders.append(f"{name} imports {imported}")
    assert offenders == []


def test_receiver_module_imports_have_no_cycle() -> None:
    modules = _modules()
    graph = {
        name: {
            imported
            for imported in _imports(path, module_level_only=True)
            if imported in modules and imported != name
        }
        for name, path in modules.items()
        if name.startswith("receiver")
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
