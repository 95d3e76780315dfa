"""The read model: each plan's folded state kept in tables, updated in the same transaction as the append.

``kx_plans`` holds a plan's own state (path, batches, reviews, the position
of the event that carries its structure) and ``kx_parts`` one row per PART
(state, ticked/total, attempts and the full folded detail). An append writes
the rows its events changed: the PART rows of the PARTs they moved, the plan
row only when the plan's own state changed. Each row keeps the position the
state was folded to when it was written; the newest of them is where the
saved state stands (a row written earlier is unchanged since). Loading state
is then O(PARTs) whatever the ledger's length: read the rows, fold only the
events after them. The tables are a cache: rebuildable from the events at any
time (``kx audit rebuild``), and ``kx audit verify`` checks them against a fold
from scratch. Datasette and ``sqlite-utils`` can read them.

Every row carries ``fold_version``, the version of the fold that wrote it
(``machine.state.fold_version()``: the fold's own revision and the event
schema it reads). A kx whose fold version differs does not trust the rows: it
folds from scratch, and its next write saves every row again.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

TABLES: dict[str, dict[str, tuple[type, bool]]] = {  # table → column → (its type, NOT NULL); the keys first
    "kx_plans": {"plan": (str, True), "position": (int, True), "structure_position": (int, True),
                 "state": (str, True), "fold_version": (str, True)},
    "kx_parts": {"plan": (str, True), "part": (str, True), "batch": (int, True), "state": (str, True),
                 "ticked": (int, True), "total": (int, True), "attempts": (int, True), "attempt": (str, False),
                 "detail": (str, True), "fold_version": (str, True), "position": (int, True), "number": (int, False),
                 "title": (str, False), "target": (str, False), "failures": (int, False), "since": (str, False),
                 "drop_path": (str, False), "drop_size": (int, False), "drop_sha256": (str, False)},
    # one row per attempt: when it ran, how it ended (its first end, its last outcome), why it was lost
    "kx_attempts": {"plan": (str, True), "attempt": (str, True), "part": (str, True), "number": (int, False),
                    "started_at": (str, True), "ended_at": (str, False), "outcome": (str, True), "lost": (int, True),
                    "reason": (str, False), "lost_reason": (str, False), "by": (str, False),
                    "start_position": (int, True), "end_position": (int, False), "fold_version": (str, True)},
}
DEFAULTS = {"fold_version": "", "position": 0}  # what the rows of a table an older kx made get in these columns
KEYS = {"kx_plans": ("plan",), "kx_parts": ("plan", "part"), "kx_attempts": ("plan", "attempt")}
PART_COLUMNS = ("plan", "part", "number", "batch", "title", "target", "state", "ticked", "total", "attempts",
                "attempt", "failures", "since", "drop_path", "drop_size", "drop_sha256", "detail", "fold_version",
                "position")
ATTEMPT_COLUMNS = ("plan", "attempt", "part", "number", "started_at", "ended_at", "outcome", "lost", "reason",
                   "lost_reason", "by", "start_position", "end_position", "fold_version")


@dataclass
class Saved:
    """A plan's state as the read model keeps it, and where the plan's events end now."""

    position: int  # the newest row's: the events up to it are folded in
    structure_position: int
    plan_state: dict[str, Any]
    parts: list[dict[str, Any]]
    events_end: int

    @property
    def current(self) -> bool:
        return self.position >= self.events_end


def ensure_in_transaction(conn: sqlite3.Connection) -> None:
    """The tables, with every column this kx keeps (a table an older kx made gets those it lacks; its rows, of
    no fold version or another, are folded again), inside a transaction already open."""
    from sqlite_utils import Database

    db = Database(conn, recursive_triggers=False)  # (the connection's settings are kx's)
    for name, columns in TABLES.items():
        table = db[name]
        if not table.exists():
            table.create({column: kind for column, (kind, _) in columns.items()}, pk=KEYS[name],
                         not_null={column for column, (_, required) in columns.items() if required},
                         defaults={column: value for column, value in DEFAULTS.items() if column in columns})
            continue
        for column, (kind, _) in columns.items():
            if column not in table.columns_dict:
                table.add_column(column, kind, not_null_default=DEFAULTS.get(column))


def load(conn: sqlite3.Connection, plan: str, fold_version: str) -> Saved | None:
    """The plan's state as last saved by a fold of ``fold_version`` (one statement); None when there is none, or
    when any row was written by another fold."""
    try:
        rows = conn.execute(
            "SELECT NULL, position, structure_position, state, fold_version,"
            " (SELECT MAX(position) FROM events WHERE plan = ?1) FROM kx_plans WHERE plan = ?1"
            " UNION ALL SELECT part, position, NULL, detail, fold_version, NULL FROM kx_parts WHERE plan = ?1",
            (plan,)).fetchall()
    except sqlite3.OperationalError:  # an old ledger opened read-only: no read model (or no versions) yet
        return None
    plan_rows = [row for row in rows if row[0] is None]
    if len(plan_rows) != 1 or any(row[4] != fold_version for row in rows):
        return None
    _, _, structure_position, state, _, events_end = plan_rows[0]
    parts = [json.loads(row[3]) for row in rows if row[0] is not None]
    newest = max(row[1] for row in rows)
    return Saved(newest, structure_position, json.loads(state), parts, events_end or 0)


def save(conn: sqlite3.Connection, plan: str, fold_version: str, position: int, structure_position: int,
         state: dict[str, Any] | None, parts: list[dict[str, Any]], runs: list[dict[str, Any]] = (), *,
         complete: bool = False) -> None:
    """Upsert the plan row (unless ``state`` is None: unchanged), the given PART rows (the ones that changed),
    each marked folded up to ``position``, and the attempts ``runs`` (those that changed, each with its ``part``);
    ``complete``: ``parts`` and ``runs`` are all of the plan's, and replace whatever rows it had (those of another
    fold included)."""
    if complete:
        clear(conn, plan)
    if state is not None:
        conn.execute(
            "INSERT INTO kx_plans (plan, position, structure_position, state, fold_version) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (plan) DO UPDATE SET position = excluded.position,"
            " structure_position = excluded.structure_position, state = excluded.state,"
            " fold_version = excluded.fold_version",
            (plan, position, structure_position, json.dumps(state, ensure_ascii=False, sort_keys=True),
             fold_version),
        )
    if parts:
        conn.executemany(_upsert("kx_parts", PART_COLUMNS), [_part_row(plan, p, fold_version, position) for p in parts])
    if runs:
        conn.executemany(_upsert("kx_attempts", ATTEMPT_COLUMNS),
                         [tuple({**run, "plan": plan, "lost": int(run["lost"]), "fold_version": fold_version}[name]
                                for name in ATTEMPT_COLUMNS) for run in runs])


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    keys = KEYS[table]
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET"
            f" {', '.join(f'{name} = excluded.{name}' for name in columns if name not in keys)}")


def _part_row(plan: str, part: dict[str, Any], fold_version: str, position: int) -> tuple:
    drop = part.get("drop_now") or {}
    row = {"plan": plan, "part": part["id"], "number": part["number"], "batch": part["batch"],
           "title": part.get("title"), "target": part.get("target_file"), "state": part["state"],
           "ticked": part["ticked_count"], "total": part["total"], "attempts": part["attempts"],
           "attempt": part.get("attempt"), "failures": part["failures"], "since": part.get("since"),
           "drop_path": drop.get("path"), "drop_size": drop.get("size"), "drop_sha256": drop.get("sha256"),
           "detail": json.dumps(part, ensure_ascii=False, sort_keys=True), "fold_version": fold_version,
           "position": position}
    return tuple(row[name] for name in PART_COLUMNS)


def clear(conn: sqlite3.Connection, plan: str) -> None:
    for table in ("kx_attempts", "kx_parts", "kx_plans"):
        conn.execute(f"DELETE FROM {table} WHERE plan = ?", (plan,))
