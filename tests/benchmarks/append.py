"""Single-writer append rate: kx's ledger vs raw sqlite3 vs the eventsourcing library's SQLite store.

All three append the same events one per transaction, in WAL mode with ``synchronous = FULL``.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from tests.benchmarks.common import row, scratch

SCHEMA = ("CREATE TABLE events (position INTEGER PRIMARY KEY, plan TEXT NOT NULL, stream TEXT NOT NULL,"
          " version INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, recorded_at TEXT NOT NULL,"
          " schema_version INTEGER NOT NULL, hash TEXT NOT NULL)")


def kx_appends(folder: Path, count: int) -> tuple[float, list[tuple]]:
    from ledger.events import CheckboxTicked
    from ledger.store import Ledger

    ledger = Ledger.open(folder / "kx.db", create=True)
    events = [CheckboxTicked(plan="bench", part=f"PART-{n % 50}", box=n % 10, text=f"box {n}", by="bench")
              for n in range(count)]
    started = time.perf_counter()
    for event in events:
        ledger.append([event])
    seconds = time.perf_counter() - started
    rows = ledger.conn.execute("SELECT * FROM events ORDER BY position").fetchall()
    ledger.close()
    return seconds, rows


def raw_appends(folder: Path, rows: list[tuple]) -> float:
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(SCHEMA)
    conn.execute("CREATE UNIQUE INDEX stream_version ON events (stream, version)")
    started = time.perf_counter()
    for values in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def eventsourcing_appends(folder: Path, rows: list[tuple]) -> float | None:
    try:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
    except ImportError:
        return None
    recorder = SQLiteApplicationRecorder(SQLiteDatastore(str(folder / "es.db")))
    recorder.create_table()
    streams: dict[str, uuid.UUID] = {}
    events = [StoredEvent(originator_id=streams.setdefault(r[2], uuid.uuid4()), originator_version=r[3],
                          topic=r[4], state=r[5].encode()) for r in rows]
    started = time.perf_counter()
    for event in events:
        recorder.insert_events([event])
    return time.perf_counter() - started


def measure(count: int = 2000) -> list[dict]:
    with scratch() as folder:
        kx_seconds, rows = kx_appends(folder, count)
        raw_seconds = raw_appends(folder, rows)
        es_seconds = eventsourcing_appends(folder, rows)
    results = [row("append rate: kx vs raw sqlite3 (events/s)", count / kx_seconds, count / raw_seconds, "/s",
                   ">= 0.5x")]
    if es_seconds is not None:
        results.append(row("append rate: kx vs eventsourcing SQLite (events/s)", count / kx_seconds,
                           count / es_seconds, "/s", ">= 4x"))
    return results
