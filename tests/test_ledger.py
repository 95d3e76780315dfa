from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

import pytest

from ledger import clock
from ledger.errors import BadInput
from ledger.events.models import CheckboxTicked, RunnerStarted
from ledger.store import GENESIS, LEDGER_SCHEMA_VERSION, Ledger, chain_hash


@pytest.fixture
def ledger(tmp_path):
    store = Ledger.open(tmp_path / ".kx" / "ledger.db", create=True)
    yield store
    store.close()


def tick(part="PART-1", box=1):
    return CheckboxTicked(plan="p", part=part, box=box, text="a box", by="alice")


def test_positions_increase_and_versions_are_per_stream(ledger):
    rows = ledger.append([tick("PART-1"), tick("PART-2"), tick("PART-1", 2)])
    assert [r.position for r in rows] == [1, 2, 3]
    assert [(r.stream, r.version) for r in rows] == [("part:p:PART-1", 1), ("part:p:PART-2", 1), ("part:p:PART-1", 2)]
    assert [r.type for r in ledger.read()] == ["CheckboxTicked"] * 3
    assert [r.position for r in ledger.read(stream="part:p:PART-1")] == [1, 3]
    assert [r.position for r in ledger.read(since=1, until=2)] == [2]


def test_recorded_at_comes_from_the_frozen_clock(ledger):
    (row,) = ledger.append([tick()])
    assert row.recorded_at == "2025-11-20T10:00:00.000000Z"


def test_clock_env_reaches_subprocess_style_callers(monkeypatch):
    monkeypatch.setenv("KX_NOW", "2030-01-02T03:04:05Z")
    assert clock.now() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_events_are_append_only(ledger):
    ledger.append([tick()])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger.conn.execute("UPDATE events SET type = 'X'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger.conn.execute("DELETE FROM events")
    assert ledger.count() == 1


def test_stream_versions_are_unique(ledger):
    ledger.append([tick()])
    with pytest.raises(sqlite3.IntegrityError):
        ledger.conn.execute(
            "INSERT INTO events (position, plan, stream, version, type, data, recorded_at, schema_version, hash)"
            " VALUES (99, 'p', 'part:p:PART-1', 1, 'X', '{}', 'now', 1, 'h')"
        )


def test_a_failed_transaction_appends_nothing(ledger):
    with pytest.raises(RuntimeError):
        with ledger.transaction():
            ledger.append([tick()])
            raise RuntimeError("boom")
    assert ledger.count() == 0


def test_hashes_chain(ledger):
    rows = ledger.append([tick(), RunnerStarted(plan="p", part="PART-1", attempt="PART-1#1")])
    previous = GENESIS
    for row in ledger.read():
        import json

        data = json.dumps(row.data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        assert row.hash == chain_hash(previous, row.position, row.stream, row.version, row.type, data, row.recorded_at)
        previous = row.hash
    assert rows[-1].event.attempt == "PART-1#1"


def test_wal_and_schema(ledger):
    assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.meta("schema_version") == str(LEDGER_SCHEMA_VERSION)


def test_not_a_ledger(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(BadInput, match="not a kx ledger"):
        Ledger.open(junk)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(BadInput, match="not a kx ledger"):
        Ledger.open(other)


def test_newer_schema_is_refused(tmp_path, ledger):
    ledger.conn.execute("UPDATE kx_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(BadInput, match="newer than this kx"):
        Ledger.open(ledger.path)


def test_missing_ledger_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no ledger"):
        Ledger.open(tmp_path / "nope.db")
