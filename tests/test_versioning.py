"""Derived state and events carry their versions: a read model of another fold is rebuilt, old events upcast."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ledger import store
from ledger.events import mapper as upcasting
from ledger.events import vocabulary
from ledger.events.checkboxes import CheckboxTicked
from ledger.store import Ledger
from machine.state import fold
from machine.state.fold import PlanState


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


def connect(project):
    return sqlite3.connect(project / ".kx" / "ledger.db", isolation_level=None)


def test_the_two_schema_versions_have_distinct_names():
    assert store.LEDGER_SCHEMA_VERSION >= 2 and vocabulary.EVENT_SCHEMA_VERSION == 1
    assert not hasattr(store, "SCHEMA_VERSION") and not hasattr(vocabulary, "SCHEMA_VERSION")


def test_read_model_rows_carry_the_fold_version(kx, plan, project):
    kx("tick", "PART-1", "1")
    with connect(project) as conn:
        assert conn.execute("SELECT DISTINCT fold_version FROM kx_plans").fetchall() == [(fold.fold_version(),)]
        assert conn.execute("SELECT DISTINCT fold_version FROM kx_parts").fetchall() == [(fold.fold_version(),)]


def test_a_read_model_of_another_fold_version_is_not_trusted_and_rebuilt_on_write(kx, plan, project, monkeypatch):
    kx("start", "PART-1")
    with connect(project) as conn:  # a cache that lies, but says it was written by another fold
        conn.execute("UPDATE kx_parts SET state = 'succeeded', detail = replace(detail, 'running', 'succeeded')"
                     " WHERE part = 'PART-1'")
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "succeeded"  # same fold: trusted
    monkeypatch.setattr(fold, "FOLD_REVISION", fold.FOLD_REVISION + 1)  # a kx whose fold changed
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "running"  # folded from scratch
    assert kx("audit", "verify").code == 0
    assert kx("tick", "PART-2", "1").code == 0  # a write rebuilds every row with the new version
    with connect(project) as conn:
        assert conn.execute("SELECT DISTINCT fold_version FROM kx_parts").fetchall() == [(fold.fold_version(),)]
        assert conn.execute("SELECT DISTINCT fold_version FROM kx_plans").fetchall() == [(fold.fold_version(),)]
        assert conn.execute("SELECT state FROM kx_parts WHERE part = 'PART-1'").fetchone() == ("running",)
    assert kx("audit", "verify").code == 0


def test_a_ledger_from_before_fold_versions_gets_the_column_and_a_rebuild(kx, plan, project):
    kx("start", "PART-1")
    with connect(project) as conn:  # as a ledger of schema 1: no fold_version columns
        for table in ("kx_parts", "kx_plans"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN fold_version")
        conn.execute("UPDATE kx_parts SET state = 'succeeded', detail = replace(detail, 'running', 'succeeded')"
                     " WHERE part = 'PART-1'")
        conn.execute("DROP TRIGGER events_no_replace")
        conn.execute("DROP TRIGGER events_head")
        conn.execute("DROP TABLE kx_head")
        conn.execute("UPDATE kx_meta SET value = '1' WHERE key = 'schema_version'")
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "running"
    assert kx("audit", "verify").code == 0


# --- upcasting old events ------------------------------------------------------------------


def pretend_events_moved_to_v2(monkeypatch):
    """As a kx whose events are at schema 2 would be: v1 ticks counted boxes from 0, v1 failures had no prefix."""
    monkeypatch.setattr(vocabulary, "EVENT_SCHEMA_VERSION", 2)
    monkeypatch.setattr(CheckboxTicked, "schema_version", 2)
    monkeypatch.setattr(upcasting, "STEPS", {})
    upcasting.register("CheckboxTicked", 1, lambda data: {**data, "box": data["box"] + 1})
    upcasting.register("RunnerFailed", 1, lambda data: {**data, "reason": f"v1: {data['reason']}"})


def test_old_events_are_upcast_on_read_and_in_the_lean_fold(kx, plan, project, monkeypatch):
    assert kx("start", "PART-1").code == 0
    assert kx("tick", "PART-1", "1", "--attempt", "PART-1#1").code == 0  # box id 1, written as v1
    assert kx("fail", "PART-1", "--reason", "boom", "--attempt", "PART-1#1").code == 0
    pretend_events_moved_to_v2(monkeypatch)
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    old_tick = ledger.conn.execute("SELECT position FROM events WHERE type = 'CheckboxTicked'").fetchone()[0]
    new_tick = ledger.append([CheckboxTicked(plan="plan", part="PART-2", box=1, text="a box")])[0]

    rows = {r.position: r for r in ledger.read()}
    assert rows[old_tick].data["box"] == 2  # upcast from 1
    assert rows[new_tick.position].data["box"] == 1  # already v2: left alone
    assert [r.data["reason"] for r in rows.values() if r.type == "RunnerFailed"] == ["v1: boom"]

    state = PlanState("plan").fold_rows(ledger.scan("plan"))  # the lean scan, ticks on their short path
    assert state.parts["PART-1"].ticked == {2}
    assert state.parts["PART-2"].ticked == {1}
    assert state.parts["PART-1"].reason == "v1: boom"
    stored = ledger.conn.execute("SELECT data FROM events WHERE position = ?", (old_tick,)).fetchone()[0]
    assert json.loads(stored)["box"] == 1  # the row itself never changes
    ledger.close()
    # the read model was folded from v1 events: not trusted by a kx that reads them as v2
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert (part["ticked"], part["reason"]) == (1, "v1: boom")
    assert kx("audit", "verify").code == 0  # hashes are of the stored rows, rules see the upcast ones


def test_upcasting_applies_the_steps_in_order(monkeypatch):
    monkeypatch.setattr(vocabulary, "EVENT_SCHEMA_VERSION", 3)
    monkeypatch.setattr(upcasting, "STEPS", {})
    upcasting.register("RunnerFailed", 1, lambda data: {**data, "reason": data["reason"] + " >2"})
    upcasting.register("RunnerFailed", 2, lambda data: {**data, "reason": data["reason"] + " >3"})
    assert upcasting.upcast("RunnerFailed", 1, {"reason": "x"}) == {"reason": "x >2 >3"}
    assert upcasting.upcast("RunnerFailed", 2, {"reason": "x"}) == {"reason": "x >3"}
    assert upcasting.upcast("RunnerFailed", 3, {"reason": "x"}) == {"reason": "x"}
    assert upcasting.upcast("CheckboxTicked", 1, {"box": 1}) == {"box": 1}
