"""The ledger's append-only guard: REPLACE refused, a dropped guard or a deleted tail found and refused."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ledger.events.models import CheckboxTicked
from ledger.store import Ledger, chain_hash
from tests.conftest import event_count, kx_subprocess


@pytest.fixture
def ledger(tmp_path):
    store = Ledger.open(tmp_path / ".kx" / "ledger.db", create=True)
    yield store
    store.close()


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


def tick(part="PART-1", box=1):
    return CheckboxTicked(plan="p", part=part, box=box, text="a box", by="alice")


def connect(project):
    return sqlite3.connect(project / ".kx" / "ledger.db", isolation_level=None)


def trigger_sql(conn, name):
    return conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)).fetchone()[0]


def delete_newest(project, count):
    """Delete the newest events as someone with sqlite3 would: drop the guard, delete, put the guard back."""
    with connect(project) as conn:
        guard = trigger_sql(conn, "events_no_delete")
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE position > (SELECT MAX(position) FROM events) - ?", (count,))
        conn.execute(guard)


@pytest.mark.parametrize("verb, position", [("REPLACE", None), ("INSERT OR REPLACE", None), ("REPLACE", 99)])
def test_replace_into_events_is_refused(ledger, verb, position):
    """A REPLACE deletes the row it conflicts with without firing DELETE triggers; the ledger refuses it."""
    ledger.append([tick(), tick("PART-2")])
    outside = sqlite3.connect(ledger.path, isolation_level=None)  # as sqlite3 or any tool would (no PRAGMAs)
    before = outside.execute("SELECT * FROM events ORDER BY position").fetchall()
    forged = (position or before[0][0], *before[0][1:4], "Forged", *before[0][5:])  # 99: over (stream, version)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        outside.execute(f"{verb} INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", forged)
    assert outside.execute("SELECT * FROM events ORDER BY position").fetchall() == before
    outside.close()


def test_appends_keep_the_head_beside_the_events(ledger):
    assert ledger.conn.execute("SELECT position, hash FROM kx_head").fetchone() == (0, "0" * 64)
    rows = ledger.append([tick(), tick("PART-2")])
    assert ledger.conn.execute("SELECT position, hash FROM kx_head").fetchone() == (2, rows[-1].hash)
    assert ledger.guard_findings() == []


@pytest.mark.parametrize("trigger", ["events_no_update", "events_no_delete", "events_no_replace", "events_head"])
def test_verify_reports_a_dropped_trigger(kx, plan, project, trigger):
    with connect(project) as conn:
        conn.execute(f"DROP TRIGGER {trigger}")
    result = kx("--json", "audit", "verify")
    assert result.code == 1
    assert f"append-only guard: trigger {trigger} is missing; run 'kx audit repair-guard'" in result.json["findings"]


def test_verify_reports_a_trigger_that_was_defused(kx, plan, project):
    with connect(project) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT 1; END")
    findings = kx("--json", "audit", "verify").json["findings"]
    assert findings == ["append-only guard: trigger events_no_delete was altered; run 'kx audit repair-guard'"]


def test_verify_reports_a_missing_tail(kx, plan, project):
    kx("tick", "PART-1", "1")
    kx("tick", "PART-1", "2")
    head = connect(project).execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
    delete_newest(project, 2)
    result = kx("--json", "audit", "verify")
    assert result.code == 1 and result.json["head"] == {"position": head[0], "hash": head[1]}
    assert result.json["findings"][0] == (
        f"ledger tail: the events end at position {head[0] - 2} but the head records position {head[0]}"
        f" (hash {head[1][:12]}): the newest events were deleted")


@pytest.mark.parametrize("damage", ["drop trigger", "delete tail"])
def test_writers_refuse_a_ledger_whose_guard_is_gone_and_reads_still_work(kx, plan, project, damage):
    kx("tick", "PART-1", "1")
    if damage == "drop trigger":
        with connect(project) as conn:
            conn.execute("DROP TRIGGER events_no_update")
    else:
        delete_newest(project, 1)
    before = event_count(project)
    result = kx("tick", "PART-1", "2")
    assert result.code == 2 and result.err.count("\n") == 1 and result.err.startswith("kx: error: ")
    assert "nothing was recorded" in result.err and "kx audit repair-guard" in result.err
    assert event_count(project) == before
    assert kx("status").code == 0 and kx("events").code == 0


def test_repair_guard_restores_dropped_triggers(kx, plan, project):
    with connect(project) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DROP TRIGGER events_head")
    result = kx("audit", "repair-guard")
    assert result.code == 0 and "events_no_delete" in result.text and "events_head" in result.text
    assert kx("audit", "verify").code == 0
    assert kx("tick", "PART-1", "1").code == 0
    assert kx("audit", "verify").code == 0
    assert kx("audit", "repair-guard").text.strip() == "the append-only guard is intact; nothing to repair"


def test_repair_guard_reanchors_a_deleted_tail_only_when_asked(kx, plan, project):
    kx("tick", "PART-1", "1")
    kx("tick", "PART-1", "2")
    delete_newest(project, 1)
    refused = kx("audit", "repair-guard")
    assert refused.code == 3 and "--reanchor" in refused.err and refused.err.count("\n") == 1
    assert kx("audit", "verify").code == 1
    assert kx("audit", "repair-guard", "--reanchor").code == 0
    assert kx("audit", "verify").code == 0
    assert kx("tick", "PART-1", "2").code == 0


def test_repair_guard_help_has_an_example(kx):
    assert "Example:" in kx("audit", "repair-guard", "--help").text


def test_an_older_ledger_gets_the_guard_and_head_when_opened(kx, plan, project):
    kx("tick", "PART-1", "1")
    with connect(project) as conn:  # as a ledger from before the replace guard and the head
        conn.execute("DROP TRIGGER events_no_replace")
        conn.execute("DROP TRIGGER events_head")
        conn.execute("DROP TABLE kx_head")
        conn.execute("UPDATE kx_meta SET value = '1' WHERE key = 'schema_version'")
    assert kx("status").code == 0
    assert kx("audit", "verify").code == 0
    with connect(project) as conn:
        assert conn.execute("SELECT position FROM kx_head").fetchone() == (event_count(project),)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("REPLACE INTO events SELECT * FROM events WHERE position = 1")


# --- damaged event data ----------------------------------------------------------------


def append_raw(project, type_, data_text, stream="part:plan:PART-1"):
    """An event appended behind kx's back, with a correct hash, so only its data is wrong."""
    with connect(project) as conn:
        position, previous = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
        version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM events WHERE stream = ?",
                               (stream,)).fetchone()[0]
        at = "2025-11-20T10:00:00.000000Z"
        digest = chain_hash(previous, position + 1, stream, version, type_, data_text, at)
        conn.execute("INSERT INTO events VALUES (?, 'plan', ?, ?, ?, ?, ?, 1, ?)",
                     (position + 1, stream, version, type_, data_text, at, digest))
    return position + 1


def test_verify_reports_damaged_event_data_one_line_each(kx, plan, project):
    not_json = append_raw(project, "CheckboxTicked", "{not json")
    missing = append_raw(project, "RunnerStarted", json.dumps({"plan": "plan", "part": "PART-1"}))
    wrong_type = append_raw(project, "CheckboxTicked", json.dumps(["a", "list"]))
    result = kx("--json", "audit", "verify")
    assert result.code == 1 and "Traceback" not in result.err
    findings = result.json["findings"]
    assert f"position {not_json} (CheckboxTicked): data is not JSON; the event cannot be read" in findings
    assert f"position {missing} (RunnerStarted): data lacks attempt, which its type needs" in findings
    assert f"position {wrong_type} (CheckboxTicked): data is not a JSON object; the event cannot be read" in findings
    assert all("\n" not in finding for finding in findings)
    text = kx("audit", "verify")
    assert text.code == 1 and f"position {missing} (RunnerStarted)" in text.text


@pytest.mark.slow
def test_a_writer_subprocess_refuses_with_one_line(kx, plan, project):
    with connect(project) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
    result = kx_subprocess("tick", "PART-1", "1", cwd=project)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("kx: error: the ledger lost its append-only guard (trigger events_no_delete is missing)")
