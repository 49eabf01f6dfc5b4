"""The shape of the code: no import circles, methods independent of one another, short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "smartft"
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """smartft modules `name` imports anywhere in its body (functions included): `from a import b`
    counts as a.b when b is a module, else as a."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


def cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start through the graph, if there is one."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_of_smartft_is_part_of_an_import_circle() -> None:
    graph = {name: imports(name) for name in MODULES}
    circles = [c for name in MODULES if (c := cycle_from(name, graph))]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_cycle_check_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycle_from("a", graph) == ["a", "b", "c", "a"]
    assert cycle_from("d", graph) is None


METHOD_MODULES = sorted(
    n for n in MODULES if n.startswith("smartft.methods.") and n != "smartft.methods.base"
)


@pytest.mark.parametrize("name", METHOD_MODULES)
def test_a_method_imports_the_protocol_and_the_library_never_another_method(name: str) -> None:
    allowed = {"smartft.methods.base"}
    wrong = {
        m
        for m in imports(name)
        if (m.startswith("smartft.methods") and m not in allowed) or m == "smartft.config"
    }
    assert not wrong, f"{name} imports {sorted(wrong)}"
    done = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, long


# the commands: what a user runs; the per-step core and the library below must import none
COMMANDS = {
    "smartft.cli",
    "smartft.inference",
    "smartft.sweep",
    "smartft.tune",
    "smartft.report",
    "smartft.bench",
    "smartft.launch",
    "smartft.recipe",
    "smartft.recipe_multitask",
    "smartft.trainer",
}


def reachable(start: str) -> set[str]:
    """Every smartft module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for found in imports(todo.pop()) - seen:
            seen.add(found)
            todo.append(found)
    return seen


@pytest.mark.parametrize("core", ["smartft.step", "smartft.losses", "smartft.modeling"])
def test_the_step_and_the_library_under_it_import_no_command(core: str) -> None:
    """The step sits low: one update of any method needs no evaluation command, sweep or CLI
    (the step once reached inference through distillation's label check)."""
    wrong = reachable(core) & COMMANDS
    assert not wrong, f"{core} reaches the command module(s) {sorted(wrong)}"
