"""What an act costs the ledger, counted in SQL statements (sqlite3's trace callback on the ledger's connection)."""

from __future__ import annotations

import sqlite3

import pytest

from ledger import store

TICK_STATEMENTS = 12  # opening the ledger included; each trigger an insert fires is traced as a statement too


@pytest.fixture
def traced(monkeypatch):
    """Every statement run on a ledger connection opened from now on, as the trace callback reports it."""
    statements: list[str] = []
    connect = sqlite3.connect

    def tracing(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(store.sqlite3, "connect", tracing)
    monkeypatch.delenv("KX_LEDGER_KEY", raising=False)  # a keyed chain reads one more row
    return statements


@pytest.fixture
def running(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    assert kx("tick", "PART-1", "1", "--attempt", "PART-1#1").code == 0


def test_a_runners_tick_runs_at_most_twelve_statements(kx, running, traced):
    assert kx("tick", "PART-1", "2", "--attempt", "PART-1#1").code == 0
    assert sum(s.startswith("INSERT INTO events") for s in traced) >= 1  # it appended
    assert len(traced) <= TICK_STATEMENTS, "\n".join(traced)


def test_a_tick_writes_only_its_parts_row(kx, running, traced):
    assert kx("tick", "PART-1", "2", "--attempt", "PART-1#1").code == 0
    writes = [s for s in traced if s.startswith(("INSERT INTO kx_", "UPDATE kx_", "DELETE FROM kx_"))]
    assert len(writes) == 1 and writes[0].startswith("INSERT INTO kx_parts") and "'PART-1'" in writes[0]


def test_a_start_writes_the_plan_row_when_the_batch_moves(kx, small_plan, traced):
    assert kx("plan", "import", "plan.md").code == 0
    traced.clear()
    assert kx("start", "PART-1").code == 0  # batch 1 goes from open to running: the plan's own state changed
    assert any(s.startswith("INSERT INTO kx_plans") for s in traced)
    traced.clear()
    assert kx("start", "PART-2").code == 0  # the batch was running already
    assert not any(s.startswith("INSERT INTO kx_plans") for s in traced)


def test_finish_builds_its_evidence_report_once(kx, small_plan, project, monkeypatch):
    from machine.state.rules import Rules
    from tests.conftest import complete

    assert kx("plan", "import", "plan.md").code == 0
    built = []
    report = Rules._evidence_report
    monkeypatch.setattr(Rules, "_evidence_report", lambda self, part: built.append(part.id) or report(self, part))
    assert complete(kx, project, "PART-1").code == 0  # the act records the report's target; its check asks again
    assert built == ["PART-1"]
