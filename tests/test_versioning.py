"""Derived state and events carry their versions: a read model of another fold is rebuilt, old events upcast."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ledger import store
from ledger.events import mapper, vocabulary
from ledger.events.checkboxes import CheckboxTicked
from ledger.events.models import EVENT_TYPES, Event, RunnerFailed
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
    monkeypatch.setattr(CheckboxTicked, "upcast_v1_v2", staticmethod(lambda data: {**data, "box": data["box"] + 1}),
                        raising=False)
    monkeypatch.setattr(RunnerFailed, "upcast_v1_v2",
                        staticmethod(lambda data: {**data, "reason": f"v1: {data['reason']}"}), raising=False)


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


class Noted(Event):
    """An event only this test knows: v1 had "text", v2 "note", v3 a list of "notes"."""

    notes: list[str]

    @staticmethod
    def upcast_v1_v2(data):
        return {"plan": data["plan"], "note": data["text"]}

    @staticmethod
    def upcast_v2_v3(data):
        return {"plan": data["plan"], "notes": [data["note"]]}


@pytest.fixture
def noted(monkeypatch):
    monkeypatch.setattr(vocabulary, "EVENT_SCHEMA_VERSION", 3)
    monkeypatch.setitem(EVENT_TYPES, "Noted", Noted)


def test_the_mapper_upcasts_a_row_step_by_step_with_the_steps_beside_its_event(noted):
    v1 = mapper.encode({"plan": "p", "text": "x"})
    assert mapper.decode("Noted", 1, v1) == {"plan": "p", "notes": ["x"]}
    assert mapper.decode("Noted", 2, mapper.encode({"plan": "p", "note": "y"})) == {"plan": "p", "notes": ["y"]}
    assert mapper.decode("Noted", 3, mapper.encode({"plan": "p", "notes": ["z"]})) == {"plan": "p", "notes": ["z"]}
    assert mapper.decode("RunnerFailed", 1, '{"reason":"r"}') == {"reason": "r"}  # no step: unchanged
    assert json.loads(mapper.upcast_text("Noted", 1, v1)) == {"plan": "p", "notes": ["x"]}  # the lean scan's


def test_the_mapper_says_why_a_row_cannot_be_read(noted):
    for text, why in (("{", "not JSON"), ("[1]", "not a JSON object"),
                      ('{"plan":"p"}', "cannot be upcast from schema 1")):
        with pytest.raises(mapper.Undecodable, match=why):
            mapper.decode("Noted", 1, text)


def test_every_read_of_an_old_row_goes_through_the_mapper(noted, kx, plan, project):
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    with ledger.transaction():  # a v1 row, as the kx before would have written it
        ledger.conn.execute("INSERT INTO events (position, plan, stream, version, type, data, recorded_at,"
                            " schema_version, hash) SELECT position + 1, plan, 'plan:plan:noted', 1, 'Noted',"
                            " '{\"plan\":\"plan\",\"text\":\"x\"}', recorded_at, 1, hash FROM events"
                            " ORDER BY position DESC LIMIT 1")
    read = [r for r in ledger.read() if r.type == "Noted"]
    scanned = [row for row in ledger.scan("plan") if row[3] == "Noted"]
    assert read[0].data == {"plan": "plan", "notes": ["x"]} and read[0].event == Noted(plan="plan", notes=["x"])
    assert json.loads(scanned[0][5]) == {"plan": "plan", "notes": ["x"]}
    ledger.close()
