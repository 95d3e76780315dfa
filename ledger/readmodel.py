"""The read model: each plan's folded state kept in two tables, updated in the same transaction as the append.

``kx_plans`` holds a plan's own state (path, batches, reviews, the position
of the event that carries its structure) and ``kx_parts`` one row per PART
(state, ticked/total, attempts and the full folded detail). Loading state is
then O(PARTs) whatever the ledger's length: read the rows, fold only the
events after their position. The tables are a cache: rebuildable from the
events at any time (``kx audit rebuild``), and ``kx audit verify`` checks
them against a fold from scratch. Datasette and ``sqlite-utils`` can read them.
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
    state TEXT NOT NULL
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
    PRIMARY KEY (plan, part)
);
"""


def ensure(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


def ensure_in_transaction(conn: sqlite3.Connection) -> None:
    """The tables, inside a transaction already open (``executescript`` would commit it)."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def load(conn: sqlite3.Connection, plan: str) -> tuple[int, int, dict[str, Any], list[dict[str, Any]]] | None:
    """(position, structure position, plan state, part details) as last saved, or None."""
    try:
        row = conn.execute("SELECT position, structure_position, state FROM kx_plans WHERE plan = ?",
                           (plan,)).fetchone()
    except sqlite3.OperationalError:  # an old ledger opened read-only: no read model yet
        return None
    if row is None:
        return None
    parts = [json.loads(detail) for (detail,) in conn.execute("SELECT detail FROM kx_parts WHERE plan = ?", (plan,))]
    return row[0], row[1], json.loads(row[2]), parts


def save(conn: sqlite3.Connection, plan: str, position: int, structure_position: int, state: dict[str, Any],
         parts: list[dict[str, Any]]) -> None:
    """Upsert the plan row and the given PART rows (the ones that changed)."""
    conn.execute(
        "INSERT INTO kx_plans (plan, position, structure_position, state) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (plan) DO UPDATE SET position = excluded.position,"
        " structure_position = excluded.structure_position, state = excluded.state",
        (plan, position, structure_position, json.dumps(state, ensure_ascii=False, sort_keys=True)),
    )
    conn.executemany(
        "INSERT INTO kx_parts (plan, part, batch, state, ticked, total, attempts, attempt, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (plan, part) DO UPDATE SET batch = excluded.batch,"
        " state = excluded.state, ticked = excluded.ticked, total = excluded.total, attempts = excluded.attempts,"
        " attempt = excluded.attempt, detail = excluded.detail",
        [(plan, p["id"], p["batch"], p["state"], p["ticked_count"], p["total"], p["attempts"], p.get("attempt"),
          json.dumps(p, ensure_ascii=False, sort_keys=True)) for p in parts],
    )


def clear(conn: sqlite3.Connection, plan: str) -> None:
    conn.execute("DELETE FROM kx_parts WHERE plan = ?", (plan,))
    conn.execute("DELETE FROM kx_plans WHERE plan = ?", (plan,))
