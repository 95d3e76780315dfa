"""The benchmarks still run (at small sizes). They measure; they assert no timing."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.real_time]


def test_the_benchmark_suite_runs_quickly_end_to_end(capfd):  # fd-level: the MCP client hands its stderr to a child
    from tests.benchmarks.common import print_table
    from tests.benchmarks.run import all_rows

    rows = all_rows(quick=True)
    print_table(rows)
    names = [r["benchmark"] for r in rows]
    assert any(n.startswith("append rate, FULL: kx vs raw sqlite3") for n in names)
    assert any(n.startswith("kx tick latency") for n in names)
    assert any(n.startswith("tick through a kx mcp session") for n in names)
    assert any(n.startswith("rebuild state") for n in names)
    assert any(n.startswith("kx status on") for n in names)
    assert any(n.startswith("kx serve dashboard vs kx --json status") for n in names)
    assert any(n.startswith("kx brief of a PART of") for n in names)
    assert any(n.startswith("6 starts recorded at once") for n in names)
    assert any(n.startswith("orchestration") for n in names)
    assert any(n.startswith("kx run waiting") for n in names)
    assert all(r["kx"] > 0 and r["floor"] > 0 for r in rows)
    assert "ratio" in capfd.readouterr().out
