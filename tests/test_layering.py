"""fastmux reads top-down: core -> reactor -> servers/http -> command line.

The import graph is read from the source with ``ast`` (imports inside
functions count: a lazy import is still a dependency, and the way a cycle
hides), so the check needs no compiled core and imports nothing.  Imports
under ``if TYPE_CHECKING:`` do not count: they name a type for annotations
(a transport's ``Reactor``, which the loop hands it) and never run.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

SOURCE = Path(__file__).resolve().parents[1] / "fastmux"

# Lowest layer first; a module may import its own layer or lower ones only.
# The package itself re-exports the reactor, and fastmux.asyncio is the
# reactor's asyncio face, so both sit with it.
LAYERS = ("core", "reactor", "servers", "cli")


def layer(module: str) -> str:
    parts = module.split(".")
    if module in ("fastmux", "fastmux.asyncio") or parts[1] == "reactor":
        return "reactor"
    if parts[1] in ("servers", "http"):
        return "servers"
    if parts[1] in ("cli", "cli_info", "__main__", "benchmarks"):
        return "cli"
    return "core"


def modules() -> Dict[str, Path]:
    found = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _names_type_checking(test: ast.AST) -> bool:
    """``TYPE_CHECKING``, ``typing.TYPE_CHECKING``, or ``... and TYPE_CHECKING``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_names_type_checking(v) for v in test.values)
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and _names_type_checking(node.test)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the fastmux modules it imports (``from pkg import mod``
    counts as ``pkg.mod`` when that is a module, else as ``pkg``)."""
    mods = modules()
    graph: Dict[str, Set[str]] = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: Set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in mods else base)
        graph[name] = {t for t in targets if t in mods and t != name}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle (as a path a -> ... -> a), or [] if there is none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_graph_is_read():
    graph = import_graph()
    # a relative import from a sub-package, and one of a package's module
    assert "fastmux.servers.kinds" in graph["fastmux.servers.supervisor"]
    assert "fastmux.selectors" in graph["fastmux.servers.supervisor"]
    assert "fastmux.reactor._fdcallbacks" in graph["fastmux.reactor.loop"]
    # ... and not what only a type checker imports
    assert "fastmux.reactor.loop" not in graph["fastmux.reactor.stream"]


def test_no_import_cycle():
    assert find_cycle(import_graph()) == []


def test_the_cycle_check_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_imports_only_go_down():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{m} ({layer(m)}) imports {t} ({layer(t)})"
              for m, targets in import_graph().items() for t in sorted(targets)
              if rank[layer(t)] > rank[layer(m)]]
    assert upward == []


def test_command_modules_are_imported_by_nothing():
    # Commands are leaves: the dispatcher loads them by name, and the
    # serving machinery (the --workers supervisor included) never needs one.
    from fastmux.cli import BENCHES, COMMANDS

    commands = {module for module, _ in [*COMMANDS.values(), *BENCHES.values()]}
    assert "fastmux.servers.cli" in commands
    importers = {m: sorted(targets & commands) for m, targets in import_graph().items() if targets & commands}
    assert importers == {}
