"""Single-writer append rate: kx's ledger vs raw sqlite3 vs the eventsourcing library's SQLite store.

All three append the same events one per transaction, in WAL mode, measured twice: with
``synchronous = FULL`` (kx's setting: a commit waits for the disk, which then sets the pace for all
three) and with ``synchronous = NORMAL`` (no wait for the disk: the figures compare the CPU each spends).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from tests.benchmarks.common import row, scratch


def kx_appends(folder: Path, count: int, synchronous: str) -> tuple[float, list[tuple]]:
    from ledger.events.models import CheckboxTicked
    from ledger.store import Ledger

    ledger = Ledger.open(folder / "kx.db", create=True)
    ledger.conn.execute(f"PRAGMA synchronous = {synchronous}")
    events = [CheckboxTicked(plan="bench", part=f"PART-{n % 50}", box=n % 10, text=f"box {n}", by="bench")
              for n in range(count)]
    started = time.perf_counter()
    for event in events:
        ledger.append([event])
    seconds = time.perf_counter() - started
    rows = ledger.conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    ledger.close()
    return seconds, rows


def raw_appends(folder: Path, rows: list[tuple], synchronous: str) -> float:
    """The same rows into the same table (kx's own ``events`` DDL and indexes, no triggers)."""
    with sqlite3.connect(folder / "kx.db") as kx_db:
        schema = [sql for (sql,) in kx_db.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') AND sql IS NOT NULL")]
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    for statement in schema:
        conn.execute(statement)
    started = time.perf_counter()
    for values in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


class _Synchronous:
    """``sqlite3`` as the eventsourcing library sees it, with every connection set to one durability."""

    def __init__(self, synchronous: str):
        self.synchronous = synchronous

    def __getattr__(self, name: str):
        return getattr(sqlite3, name)

    def connect(self, *args, **kwargs):
        conn = sqlite3.connect(*args, **kwargs)
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn


def eventsourcing_appends(folder: Path, rows: list[tuple], synchronous: str) -> float | None:
    try:
        import eventsourcing.sqlite as es_sqlite
        from eventsourcing.persistence import StoredEvent
    except ImportError:
        return None
    es_sqlite.sqlite3 = _Synchronous(synchronous)
    try:
        recorder = es_sqlite.SQLiteApplicationRecorder(es_sqlite.SQLiteDatastore(str(folder / "es.db")))
        return _es_appends(recorder, rows, StoredEvent)
    finally:
        es_sqlite.sqlite3 = sqlite3


def _es_appends(recorder, rows: list[tuple], stored_event) -> float:
    recorder.create_table()
    streams: dict[str, uuid.UUID] = {}
    events = [stored_event(originator_id=streams.setdefault(r[2], uuid.uuid4()), originator_version=r[3],
                          topic=r[4], state=r[5].encode()) for r in rows]
    started = time.perf_counter()
    for event in events:
        recorder.insert_events([event])
    return time.perf_counter() - started


def measure(count: int = 2000) -> list[dict]:
    results = []
    for synchronous in ("FULL", "NORMAL"):
        with scratch() as folder:
            kx_seconds, rows = kx_appends(folder, count, synchronous)
            raw_seconds = raw_appends(folder, rows, synchronous)
            es_seconds = eventsourcing_appends(folder, rows, synchronous)
        results.append(row(f"append rate, {synchronous}: kx vs raw sqlite3 (events/s)", count / kx_seconds,
                           count / raw_seconds, "/s", ">= 0.5x"))
        if es_seconds is not None:
            results.append(row(f"append rate, {synchronous}: kx vs eventsourcing SQLite (events/s)",
                               count / kx_seconds, count / es_seconds, "/s", ">= 4x"))
    return results
