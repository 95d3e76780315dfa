"""The packages import one way only: ledger < machine < runners < cli (module level and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORDER = ["ledger", "machine", "runners", "cli"]


def imported_packages(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, name.split(".")[0]) for line, name in found if name.split(".")[0] in ORDER]


def test_no_package_imports_one_above_it():
    upward = [f"{path.relative_to(REPO)}:{line} imports {package}"
              for layer in ORDER for path in sorted((REPO / layer).rglob("*.py"))
              for line, package in imported_packages(path) if ORDER.index(package) > ORDER.index(layer)]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from runners.reconcile import reconcile\n")
    assert imported_packages(sample) == [(2, "runners")]
