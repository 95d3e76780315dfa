"""The append-only guard of ``events``: triggers that refuse all but new rows, and a head kept beside them.

- ``events_no_update``, ``events_no_delete``: an UPDATE or DELETE aborts.
- ``events_no_replace``: an insert over an existing position or (stream, version)
  aborts. ``REPLACE`` (``INSERT OR REPLACE``) would otherwise delete the row it
  conflicts with without firing DELETE triggers (SQLite fires them only with
  ``recursive_triggers`` on, which a plain ``sqlite3`` session does not set).
- ``events_head``: every insert moves the head (``kx_head``: the last position
  and its hash) in the same transaction. Deleting the newest events leaves the
  head behind, so the loss shows even though what is left chains correctly.

Writers check the guard in every append transaction and refuse a ledger whose
guard is gone; reads never depend on it.
"""

from __future__ import annotations

import json
import sqlite3

from ledger.errors import BadInput, Refused

HEAD = "kx_head"
REPAIR = "kx audit repair-guard"

TRIGGERS: dict[str, str] = {
    "events_no_update": "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN"
                        " SELECT RAISE(ABORT, 'kx ledger events are append-only: UPDATE refused'); END",
    "events_no_delete": "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN"
                        " SELECT RAISE(ABORT, 'kx ledger events are append-only: DELETE refused'); END",
    "events_no_replace": "CREATE TRIGGER events_no_replace BEFORE INSERT ON events"
                         " WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)"
                         " OR EXISTS (SELECT 1 FROM events WHERE stream = NEW.stream AND version = NEW.version)"
                         " BEGIN SELECT RAISE(ABORT, 'kx ledger events are append-only:"
                         " an insert over an existing event (REPLACE) refused'); END",
    "events_head": f"CREATE TRIGGER events_head AFTER INSERT ON events BEGIN"
                   f" UPDATE {HEAD} SET position = NEW.position, hash = NEW.hash WHERE position < NEW.position; END",
}
SINCE_SCHEMA_1 = ("events_no_update", "events_no_delete")  # what a ledger of schema 1 already had

Tail = tuple[int, str]  # the last event's position and hash, (0, GENESIS) for none
# what a writer reads of the guard, as columns of the query that finds where the events end: the head and the
# triggers (``{name: sql}``)
STATE = (f"(SELECT position FROM {HEAD}), (SELECT hash FROM {HEAD}), (SELECT json_group_object(name, sql)"
         " FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events')")


def _normal(sql: str | None) -> str:
    return " ".join((sql or "").split())


def damaged_triggers(conn: sqlite3.Connection,
                     names: tuple[str, ...] = tuple(TRIGGERS)) -> list[tuple[str, str]]:
    """(trigger, "is missing" or "was altered") for each guard trigger that is not as kx made it."""
    found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"))
    return _damaged(found, names)


def _damaged(found: dict[str, str], names: tuple[str, ...] = tuple(TRIGGERS)) -> list[tuple[str, str]]:
    return [(name, "is missing" if name not in found else "was altered") for name in names
            if _normal(found.get(name)) != _normal(TRIGGERS[name])]


def head(conn: sqlite3.Connection) -> Tail | None:
    """The head as appends left it; None when its table or row is gone."""
    try:
        row = conn.execute(f"SELECT position, hash FROM {HEAD}").fetchone()
    except sqlite3.OperationalError:
        return None
    return (row[0], row[1]) if row else None


def events_gone(recorded: Tail | None, tail: Tail) -> bool:
    """Whether the head records an event the events no longer end with (the newest deleted or replaced)."""
    return recorded is not None and recorded[0] >= tail[0] and recorded != tail


def tail_problem(recorded: Tail | None, tail: Tail) -> str | None:
    """What the head says is wrong with the events' tail, or None."""
    if recorded is None:
        return f"the head table {HEAD} is missing"
    (head_position, head_hash), (position, digest) = recorded, tail
    if head_position > position:
        return (f"the events end at position {position} but the head records position {head_position}"
                f" (hash {head_hash[:12]}): the newest events were deleted")
    if head_position == position and head_hash != digest:
        return (f"the event at position {position} is not the one the head records (hash {head_hash[:12]}):"
                " the newest events were replaced")
    if head_position < position:
        return (f"the head records position {head_position} but the events go on to {position}:"
                " the head stopped moving")
    return None


def check(conn: sqlite3.Connection, tail: Tail, head_position: int | None, head_hash: str | None,
          triggers: str) -> None:
    """The writers' check, inside the append transaction, of the guard as :data:`STATE` read it: raise
    :class:`BadInput` (saying how to restore the guard) unless the head is at the events' tail and every trigger
    is as kx made it."""
    if (head_position, head_hash) != tail or _damaged(json.loads(triggers)):
        raise refused(conn, tail)


def refused(conn: sqlite3.Connection, tail: Tail) -> BadInput:
    return BadInput(refusal(conn, tail) or f"the ledger's append-only guard is not whole; run '{REPAIR}'")


def refusal(conn: sqlite3.Connection, tail: Tail) -> str | None:
    """Why a writer must not append to this ledger (one line that says how to restore it), or None."""
    broken = damaged_triggers(conn)
    if broken:
        name, state = broken[0]
        return (f"the ledger lost its append-only guard (trigger {name} {state}); nothing was recorded —"
                f" see 'kx audit verify', then restore the guard with '{REPAIR}'")
    recorded = head(conn)
    problem = tail_problem(recorded, tail)
    if problem is None:
        return None
    if events_gone(recorded, tail):
        return (f"the ledger's newest events are gone ({problem}); nothing was recorded — restore the ledger"
                f" from a backup, or accept the loss with '{REPAIR} --reanchor'")
    return f"the ledger's head is not at its events ({problem}); nothing was recorded — run '{REPAIR}'"


def findings(conn: sqlite3.Connection, tail: Tail, *, schema: int) -> list[str]:
    """``kx audit verify``'s lines about the guard; a ledger of schema 1 (read-only, not upgraded) has no head."""
    names = tuple(TRIGGERS) if schema >= 2 else SINCE_SCHEMA_1
    lines = [f"append-only guard: trigger {name} {state}; run '{REPAIR}'"
             for name, state in damaged_triggers(conn, names)]
    problem = tail_problem(head(conn), tail) if schema >= 2 else None
    if problem is not None:
        lines.append(f"ledger tail: {problem}")
    return lines


def install(conn: sqlite3.Connection, tail: Tail, *, reanchor: bool = False) -> list[str]:
    """Create what is missing or altered, inside the caller's transaction; returns what was repaired.

    A head ahead of the events (the newest deleted or replaced) is moved back to them only with ``reanchor``;
    without it nothing changes."""
    recorded = head(conn)
    if events_gone(recorded, tail) and not reanchor:
        raise Refused(f"the ledger's newest events are gone ({tail_problem(recorded, tail)}); restore the ledger"
                      f" from a backup, or pass --reanchor to accept the loss and anchor the head at position"
                      f" {tail[0]}")
    repaired = []
    for name, state in damaged_triggers(conn):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(TRIGGERS[name])
        repaired.append(f"trigger {name} {'created' if state == 'is missing' else 'restored'}")
    if recorded is None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {HEAD} (id INTEGER PRIMARY KEY CHECK (id = 1),"
                     " position INTEGER NOT NULL, hash TEXT NOT NULL)")
        conn.execute(f"DELETE FROM {HEAD}")
        conn.execute(f"INSERT INTO {HEAD} (id, position, hash) VALUES (1, ?, ?)", tail)
        repaired.append(f"head set at position {tail[0]}")
    elif recorded != tail:
        conn.execute(f"UPDATE {HEAD} SET position = ?, hash = ?", tail)
        repaired.append(f"head moved from position {recorded[0]} to {tail[0]}")
    return repaired
