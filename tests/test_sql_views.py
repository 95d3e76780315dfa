"""The SQL views: created with every ledger (older ones too), computed from events, agreeing with the fold."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.derived import sql_views
from ledger.store import Ledger
from tests.conftest import REPO
from tests.simulate import simulate

VIEWS = set(sql_views.VIEWS)


@pytest.fixture(scope="module")
def midway(tmp_path_factory) -> tuple[Path, list]:
    """42 PARTs stopped in the middle of batch 4: failures, a loss, a rejection, one PART still running."""
    folder = tmp_path_factory.mktemp("midway")
    return folder, simulate(folder, 42, fail_rate=0.3, stop_at=5600)


def query(folder: Path, sql: str, *params) -> list[dict]:
    with sqlite3.connect(folder / ".kx" / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]


def views_in(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}


def test_a_new_ledger_has_the_views(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert views_in(project / ".kx" / "ledger.db") == VIEWS
    rows = query(project, "SELECT part, state, ticked, total, attempts FROM part_states")
    assert rows[0] == {"part": "PART-1", "state": "pending", "ticked": 0, "total": 5, "attempts": 0}


def test_an_older_ledger_gets_them_when_opened_and_only_once(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    path = project / ".kx" / "ledger.db"
    with sqlite3.connect(path) as conn:  # as a ledger from before the views
        for name in VIEWS:
            conn.execute(f"DROP VIEW {name}")
        conn.execute("DELETE FROM kx_meta WHERE key = ?", (sql_views.META_KEY,))
    assert views_in(path) == set()
    assert kx("start", "PART-1").code == 0
    assert views_in(path) == VIEWS
    assert query(project, "SELECT state FROM part_states WHERE part = 'PART-1'") == [{"state": "running"}]
    with sqlite3.connect(path) as conn:
        schema = conn.execute("PRAGMA schema_version").fetchone()[0]
    assert kx("status").code == 0
    with sqlite3.connect(path) as conn:  # opening again changes no schema: the meta key says they are there
        assert conn.execute("PRAGMA schema_version").fetchone()[0] == schema


def test_a_read_only_ledger_gets_them_for_itself(kx, small_plan, project, monkeypatch):
    assert kx("plan", "import", "plan.md").code == 0
    path = project / ".kx" / "ledger.db"
    with sqlite3.connect(path) as conn:
        conn.execute("DROP VIEW running_timeline")
        conn.execute("DELETE FROM kx_meta WHERE key = ?", (sql_views.META_KEY,))
    path.chmod(0o444)  # a ledger file without write permission is opened read-only
    ledger = Ledger.open(path)
    assert ledger.conn.execute("SELECT count(*) FROM running_timeline").fetchone() == (0,)
    assert ledger.conn.execute("SELECT count(*) FROM temp.sqlite_master WHERE type = 'view'").fetchone() == (5,)
    ledger.close()
    assert "running_timeline" not in views_in(path)


def test_part_states_agree_with_status(kx, midway, monkeypatch):
    folder, _ = midway
    monkeypatch.chdir(folder)
    status = kx("--json", "status").json
    expected = [{"part": p["id"], "batch": b["number"], "state": p["state"], "ticked": p["ticked"],
                 "total": p["total"], "attempts": p["attempts"], "attempt": p.get("attempt")}
                for b in status["batches"] for p in b["parts"]]
    rows = query(folder, "SELECT part, batch, state, ticked, total, attempts, attempt FROM part_states")
    assert rows == expected
    assert {r["state"] for r in rows} == {"succeeded", "running", "pending"}


def test_part_states_agree_with_status_for_imported_history(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    status = kx("--json", "status").json
    expected = [(p["id"], p["state"], p["ticked"], p["total"]) for b in status["batches"] for p in b["parts"]]
    rows = query(project, "SELECT part, state, ticked, total FROM part_states")
    assert [tuple(r.values()) for r in rows] == expected
    assert query(project, "SELECT count(*) AS n FROM attempts") == [{"n": 0}]


def test_attempts_are_what_happened(midway):
    folder, made = midway
    rows = query(folder, "SELECT part, attempt, started_at, ended_at, outcome, lost FROM attempts")
    assert rows == [{"part": a.part, "attempt": a.attempt, "started_at": a.started_at, "ended_at": a.ended_at,
                     "outcome": a.outcome, "lost": int(a.lost)} for a in made]
    outcomes = {(r["outcome"], r["lost"]) for r in rows}
    assert {("succeeded", 0), ("failed", 0), ("succeeded", 1), ("running", 0)} <= outcomes
    finished = query(folder, "SELECT seconds, started_at, ended_at FROM attempts WHERE ended_at IS NOT NULL")
    assert all(r["seconds"] > 0 for r in finished)


def test_running_timeline_counts_against_the_limit(midway):
    folder, made = midway
    rows = query(folder, "SELECT position, change, running, parallel_limit FROM running_timeline")
    assert len(rows) == 2 * len(made) - sum(a.ended_at is None for a in made)
    assert [(r["position"], r["change"], r["running"]) for r in rows] == running_counts(folder)
    assert max(r["running"] for r in rows) == 6 == rows[0]["parallel_limit"]
    assert rows[-1]["running"] == sum(a.ended_at is None for a in made) == 1


def running_counts(folder: Path) -> list[tuple[int, int, int]]:
    """(position, +1 or -1, running after it) for each start and each attempt's first end, from the raw events."""
    counts, running, current, ended = [], 0, {}, set()
    for event in query(folder, "SELECT position, type, data FROM events WHERE type IN ('RunnerStarted',"
                               " 'RunnerSucceeded', 'RunnerFailed', 'RunnerLost') ORDER BY position"):
        data = json.loads(event["data"])
        if event["type"] == "RunnerStarted":
            current[data["part"]] = data["attempt"]
            change = 1
        elif data.get("by") == "import" or (data.get("attempt") or current[data["part"]]) in ended:
            continue
        else:
            ended.add(data.get("attempt") or current[data["part"]])
            change = -1
        running += change
        counts.append((event["position"], change, running))
    return counts


def test_batch_reviews(midway):
    folder, _ = midway
    rows = query(folder, "SELECT batch, decision, by, parts_sent_back FROM batch_reviews")
    assert [(r["batch"], r["decision"]) for r in rows] == [(1, "approve"), (2, "reject"), (2, "approve"),
                                                            (3, "approve")]
    assert json.loads(rows[1]["parts_sent_back"]) == ["PART-7"]


def readme_queries() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Questions in SQL"):]
    return re.findall(r'^sqlite-utils query \.kx/ledger\.db "(.+)"$', section, re.MULTILINE)


@pytest.mark.slow
def test_the_readme_queries_run_and_answer(midway):
    folder, made = midway
    queries = readme_queries()
    assert len(queries) == 3
    tool = Path(sys.executable).parent / "sqlite-utils"
    answers = []
    for sql in queries:
        done = subprocess.run([str(tool), "query", ".kx/ledger.db", sql], cwd=folder, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout))
    not_done, troubled, peak = answers
    states = query(folder, "SELECT part, state FROM part_states WHERE state != 'succeeded'")
    assert [(r["part"], r["state"]) for r in not_done] == [(r["part"], r["state"]) for r in states]
    assert not_done[0] == {"part": "PART-19", "state": "running", "ticks": "0/5", "attempts": 2}
    assert sorted(r["attempt"] for r in troubled) == sorted(a.attempt for a in made
                                                            if a.outcome in ("failed", "lost") or a.lost)
    assert troubled == sorted(troubled, key=lambda r: -r["seconds"])
    assert peak == [{"plan": "plan", "peak": 6, "parallel_limit": 6, "starts": len(made)}]


def test_a_lost_attempt_finished_later_keeps_why_it_was_lost(midway):
    folder, made = midway
    lost = [a.attempt for a in made if a.lost]
    rows = query(folder, "SELECT attempt, outcome, reason, lost_reason FROM attempts WHERE lost")
    assert [r["attempt"] for r in rows] == lost and lost
    assert {(r["outcome"], r["lost_reason"]) for r in rows} >= {("succeeded", "no heartbeat for 61s (lease 60s)")}
    assert all(r["lost_reason"] == "no heartbeat for 61s (lease 60s)" for r in rows)
    assert query(folder, "SELECT count(*) AS n FROM attempts WHERE NOT lost AND lost_reason IS NOT NULL") == [{"n": 0}]


def test_views_of_an_older_version_are_recreated(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    path = project / ".kx" / "ledger.db"
    with sqlite3.connect(path) as conn:  # as a ledger whose views an earlier kx made, without lost_reason
        conn.execute("DROP VIEW running_timeline")
        conn.execute("DROP VIEW attempts")
        conn.execute("CREATE VIEW attempts AS SELECT plan, 1 AS reason FROM events")
        conn.execute("UPDATE kx_meta SET value = '2' WHERE key = ?", (sql_views.META_KEY,))
    assert kx("status").code == 0
    assert "lost_reason" in [r["name"] for r in query(project, "PRAGMA table_info(attempts)")]
    assert query(project, "SELECT value FROM kx_meta WHERE key = ?", sql_views.META_KEY) == [
        {"value": sql_views.VERSION}]
