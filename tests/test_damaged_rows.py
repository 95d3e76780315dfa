"""A row whose data is not JSON (written past kx, with sqlite3): named by position, never an unexpected failure."""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import event_count


@pytest.fixture
def damaged(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        conn.execute("INSERT INTO events (plan, stream, version, type, data, recorded_at, schema_version, hash)"
                     " SELECT plan, stream || '-x', 1, 'CheckboxTicked', '{not json', recorded_at, schema_version, 'x'"
                     " FROM events ORDER BY position DESC LIMIT 1")
        return conn.execute("SELECT MAX(position) FROM events").fetchone()[0]


MESSAGE = "the ledger holds a damaged event at position {}: its data is not JSON"


@pytest.mark.parametrize("args", [["status"], ["--json", "status"], ["audit", "history", "PART-1"], ["next"],
                                  ["tick", "PART-1", "1"], ["brief", "PART-1"], ["render", "--check"]])
def test_commands_that_fold_name_the_damaged_event_and_append_nothing(kx, damaged, project, args):
    before = event_count(project)
    result = kx(*args)
    assert result.code == 2, (result.out, result.err)
    assert MESSAGE.format(f"{damaged} (CheckboxTicked)") in result.err and "unexpected" not in result.err
    assert event_count(project) == before


def test_the_raw_stream_shows_the_damaged_row(kx, damaged):
    table = kx("events")
    assert table.code == 0 and '"raw": "{not json"' in table.text.splitlines()[-1]
    rows = kx("--json", "events").json["events"]
    assert rows[-1]["position"] == damaged and rows[-1]["data"]["raw"] == "{not json"


def test_verify_reports_it_as_a_finding(kx, damaged):
    result = kx("audit", "verify")
    assert result.code == 1 and f"position {damaged} (CheckboxTicked): data is not JSON" in result.text
