"""Imports go one way: between the packages (ledger < machine < runners < web < cli) and between the rooms inside
machine and runners (module level and inside functions), and no module imports itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORDER = ["ledger", "machine", "runners", "web", "cli"]
# each layer's rooms, lowest first; a room may import those before it (a module outside any room: the lowest)
ROOMS = {
    "ledger": [["errors", "clock", "secrets", "files", "locate", "logs", "writers"], ["events"], ["derived", "guard"], ["store"],
               ["chain"]],
    "machine": [["defaults"], ["plan"], ["state"], ["acts"], ["outputs"], ["app"]],
    "runners": [["protocol", "spec", "attempt_folder", "reconcile", "commands"], ["chat", "mcp", "rehearse", "local"],
                ["ray"], ["supervisor"]],
}


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def imported_packages(path: Path) -> list[tuple[int, str]]:
    return sorted({(line, name.split(".")[0]) for line, name in imports(path) if name.split(".")[0] in ORDER})


def rank(layer: str, module: str) -> int | None:
    """The room of ``module`` (``machine.plan.parser``) in its layer, as a number; None for another layer's."""
    parts = module.split(".")
    if parts[0] != layer or len(parts) < 2:
        return None
    return next((n for n, rooms in enumerate(ROOMS[layer]) if parts[1] in rooms), None)


def test_no_package_imports_one_above_it():
    upward = [f"{path.relative_to(REPO)}:{line} imports {package}"
              for layer in ORDER if (REPO / layer).is_dir() for path in sorted((REPO / layer).rglob("*.py"))
              for line, package in imported_packages(path) if ORDER.index(package) > ORDER.index(layer)]
    assert upward == []


@pytest.mark.parametrize("layer", sorted(ROOMS))
def test_no_room_imports_one_above_it(layer):
    upward = []
    for path in sorted((REPO / layer).rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        mine = rank(layer, module)
        assert mine is not None or path.name == "__init__.py", f"{module} is in no room of {layer}"
        for line, name in imports(path):
            theirs = rank(layer, name)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from runners.supervisor.reconcile import reconcile\n")
    assert imported_packages(sample) == [(2, "runners")]
    assert rank("runners", "runners.supervisor.reconcile") > rank("runners", "runners.local.wrapper")


def test_no_module_imports_itself_back_through_others():
    modules = {".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
               for layer in ORDER if (REPO / layer).is_dir() for path in (REPO / layer).rglob("*.py")}
    graph = {module: {name for _, name in imports(path) if name in modules and name != module}
             for module, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo += graph[module]
        return False

    assert sorted(m for m in graph if any(reaches(n, m) for n in graph[m])) == []
