"""The read model: each plan's folded state kept in two tables, updated in the same transaction as the append.

``kx_plans`` holds a plan's own state (path, batches, reviews, the position
of the event that carries its structure) and ``kx_parts`` one row per PART
(state, ticked/total, attempts and the full folded detail). Loading state is
then O(PARTs) whatever the ledger's length: read the rows, fold only the
events after their position. The tables are a cache: rebuildable from the
events at any time (``kx audit rebuild``), and ``kx audit verify`` checks
them against a fold from scratch. Datasette and ``sqlite-utils`` can read them.

Every row carries ``fold_version``, the version of the fold that wrote it
(``machine.state.fold_version()``: the fold's own revision and the event
schema it reads). A kx whose fold version differs does not trust the rows: it
folds from scratch, and its next write saves every row again.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS kx_plans (
    plan TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    structure_position INTEGER NOT NULL,
    state TEXT NOT NULL,
    fold_version TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS kx_parts (
    plan TEXT NOT NULL,
    part TEXT NOT NULL,
    batch INTEGER NOT NULL,
    state TEXT NOT NULL,
    ticked INTEGER NOT NULL,
    total INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    attempt TEXT,
    detail TEXT NOT NULL,
    fold_version TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (plan, part)
);
"""


def ensure_in_transaction(conn: sqlite3.Connection) -> None:
    """The tables, with their ``fold_version`` columns, inside a transaction already open."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    for table in ("kx_plans", "kx_parts"):  # tables made before fold versions: their rows are of no version
        if "fold_version" not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN fold_version TEXT NOT NULL DEFAULT ''")


def load(conn: sqlite3.Connection, plan: str,
         fold_version: str) -> tuple[int, int, dict[str, Any], list[dict[str, Any]]] | None:
    """(position, structure position, plan state, part details) as last saved by a fold of ``fold_version``;
    None when there are none, or when any row was written by another fold."""
    try:
        row = conn.execute("SELECT position, structure_position, state, fold_version FROM kx_plans WHERE plan = ?",
                           (plan,)).fetchone()
    except sqlite3.OperationalError:  # an old ledger opened read-only: no read model (or no versions) yet
        return None
    if row is None or row[3] != fold_version:
        return None
    parts = []
    for detail, version in conn.execute("SELECT detail, fold_version FROM kx_parts WHERE plan = ?", (plan,)):
        if version != fold_version:
            return None
        parts.append(json.loads(detail))
    return row[0], row[1], json.loads(row[2]), parts


def save(conn: sqlite3.Connection, plan: str, fold_version: str, position: int, structure_position: int,
         state: dict[str, Any], parts: list[dict[str, Any]], *, complete: bool = False) -> None:
    """Upsert the plan row and the given PART rows (the ones that changed); ``complete``: ``parts`` are all of
    the plan's PARTs, and replace whatever rows it had (those of another fold included)."""
    if complete:
        clear(conn, plan)
    conn.execute(
        "INSERT INTO kx_plans (plan, position, structure_position, state, fold_version) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (plan) DO UPDATE SET position = excluded.position,"
        " structure_position = excluded.structure_position, state = excluded.state,"
        " fold_version = excluded.fold_version",
        (plan, position, structure_position, json.dumps(state, ensure_ascii=False, sort_keys=True), fold_version),
    )
    conn.executemany(
        "INSERT INTO kx_parts (plan, part, batch, state, ticked, total, attempts, attempt, detail, fold_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plan, part) DO UPDATE SET batch = excluded.batch,"
        " state = excluded.state, ticked = excluded.ticked, total = excluded.total, attempts = excluded.attempts,"
        " attempt = excluded.attempt, detail = excluded.detail, fold_version = excluded.fold_version",
        [(plan, p["id"], p["batch"], p["state"], p["ticked_count"], p["total"], p["attempts"], p.get("attempt"),
          json.dumps(p, ensure_ascii=False, sort_keys=True), fold_version) for p in parts],
    )


def clear(conn: sqlite3.Connection, plan: str) -> None:
    conn.execute("DELETE FROM kx_parts WHERE plan = ?", (plan,))
    conn.execute("DELETE FROM kx_plans WHERE plan = ?", (plan,))
