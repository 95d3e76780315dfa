"""The event store: one SQLite file, one append-only ``events`` table.

Appends happen inside ``BEGIN IMMEDIATE`` (SQLite's write lock, taken up front)
so that a command can read state, check its rules and append in one atomic
step even when many processes act at once. Each stream has gap-free versions,
unique with the stream; each event carries a hash chained to the one before.
The guard (``ledger/guard.py``) keeps ``events`` append-only and its head
beside it; every append checks it. Rows keep the event schema version they
were written with and are read through the one decoder (``ledger/events/mapper.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import clock, guard, logs
from ledger.derived import readmodel, sql_views
from ledger.errors import BadInput, DamagedLedger, KxError, is_read_only
from ledger.events import vocabulary
from ledger.events.mapper import Undecodable, decode, encode, upcast_text
from ledger.locate import home_of
from ledger.writers import WriterQueue

if TYPE_CHECKING:
    from ledger.events.models import Event

LEDGER_SCHEMA_VERSION = 3  # the ledger file's tables; 2 added the replace guard, the head and fold versions;
# 3, the read model's rows written per PART (each with its position)
_TICKS = "('CheckboxTicked', 'CheckboxUnticked')"
BUSY_TIMEOUT_S = 60.0
_INT64_MAX = 2**63 - 1
GENESIS = "0" * 64
KEY_ENV = "KX_LEDGER_KEY"  # the secret that keys the chain; from the environment only, never recorded or logged
KEYED = "hmac:"  # a keyed chain hash: HMAC-SHA256 over what chain_hash covers, marked by this prefix


class Recorded:
    """An event as the ledger holds it (a plain slotted class: folds create millions of them)."""

    __slots__ = ("position", "stream", "version", "type", "data", "recorded_at", "plan", "hash")

    def __init__(self, position: int, stream: str, version: int, type: str, data: dict[str, Any],
                 recorded_at: str, plan: str = "", hash: str = ""):
        self.position, self.stream, self.version, self.type = position, stream, version, type
        self.data, self.recorded_at, self.plan, self.hash = data, recorded_at, plan, hash

    def __repr__(self) -> str:
        return f"Recorded({self.position}, {self.stream!r}, {self.version}, {self.type!r})"

    @property
    def event(self) -> Event:
        from ledger.events.models import load

        return load(self.type, self.data)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def chain_hash(previous: str, position: int, stream: str, version: int, type_: str, data: str, recorded_at: str,
               key: bytes | None = None) -> str:
    """An event's hash, chained to the one before: SHA-256 over its fields, or with ``key`` an HMAC-SHA256
    marked :data:`KEYED`, which no one without the key can recompute."""
    fields = "\x1f".join((previous, str(position), stream, str(version), type_, data, recorded_at)).encode()
    if key is None:
        return hashlib.sha256(fields).hexdigest()
    return KEYED + hmac.new(key, fields, hashlib.sha256).hexdigest()


def chain_key() -> bytes | None:
    """The key of the chain, from ``$KX_LEDGER_KEY`` (None when unset or empty)."""
    value = os.environ.get(KEY_ENV)
    return value.encode() if value else None


def _filters(plan: str | None, since: int, until: int | None, until_time: str | None, stream: str | None = None,
             types: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) that every read of the events shares."""
    where, params = ["position > ?"], [since]
    for clause, value in (("plan = ?", plan), ("stream = ?", stream), ("position <= ?", until),
                          ("recorded_at <= ?", until_time)):
        if value is not None:
            where.append(clause)
            params.append(value)
    if types:
        where.append(f"type IN ({', '.join('?' * len(types))})")
        params.extend(types)
    return " AND ".join(where), params


class Ledger:
    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn
        self.read_only = False
        self.schema = LEDGER_SCHEMA_VERSION
        self._depth = 0
        self.writers = WriterQueue(path)  # kx's writers wait their turn here before SQLite's lock
        self._key_checked_at: int | None = None  # the keyed event this process found its key fits
        self.made_in: str | None = None  # the project folder the ledger was made for (kx_meta), None: unknown

    # --- opening --------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False, read_only: bool = False) -> Ledger:
        """``read_only``: open it only to read, as a ledger file without write permission is."""
        path = Path(path)
        if not path.exists() and not create:
            raise BadInput(f"no ledger at {path}; run 'kx plan import PLAN.md' first or pass --ledger")
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        read_only = read_only or path.exists() and not path.stat().st_mode & 0o222
        target = f"file:{path.resolve()}?mode=ro" if read_only else str(path)
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False,
                               uri=read_only)
        conn.create_function("kx_upcast", 3, upcast_text, deterministic=True)
        ledger = cls(path, conn)
        ledger.read_only = read_only
        try:
            if not read_only:  # (the busy timeout is connect()'s)
                conn.execute("PRAGMA synchronous = FULL")
            ledger._prepare(create)
        except sqlite3.OperationalError as exc:
            conn.close()
            if "disk" in str(exc) or "full" in str(exc):
                raise KxError(f"cannot use the ledger {path} ({exc}); nothing was recorded — free disk space"
                              " and retry") from None
            raise BadInput(f"cannot open the ledger {path} ({exc}); check the path and its permissions") from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BadInput(f"{path} is not a kx ledger ({exc}); point --ledger at a kx ledger") from None
        except KxError:
            conn.close()
            raise
        return ledger

    def _prepare(self, create: bool) -> None:
        try:
            meta = dict(self.conn.execute(
                "SELECT key, value FROM kx_meta WHERE key IN ('schema_version', 'made_in', ?)", (sql_views.META_KEY,)))
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            if self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'").fetchone() or not create:
                raise BadInput(f"{self.path} is not a kx ledger (no kx_meta table); point --ledger at a kx ledger")
            self._create_schema()
            return
        self.schema = int(meta.get("schema_version") or 0)
        self.made_in = meta.get("made_in")
        if self.schema > LEDGER_SCHEMA_VERSION:
            raise BadInput(f"{self.path} has ledger schema {self.schema}, newer than this kx knows"
                           f" ({LEDGER_SCHEMA_VERSION}); upgrade kx")
        if self.schema < LEDGER_SCHEMA_VERSION and not self.read_only:
            self._upgrade()
        if not sql_views.is_current(meta.get(sql_views.META_KEY)):
            self._add_views()
        if self.made_in is None and not self.read_only:
            self._anchor_here(only_if_unknown=True)

    def _upgrade(self) -> None:
        """An older ledger gets what this schema keeps beside the events: the read model (with fold versions),
        the whole guard and the head, anchored at the events as they are now."""
        try:
            with self.transaction():
                if int(self.meta("schema_version") or 0) < LEDGER_SCHEMA_VERSION:  # another process may have won
                    readmodel.ensure_in_transaction(self.conn)
                    guard.install(self.conn, self._tail()[:2])
                    self.conn.execute("UPDATE kx_meta SET value = ? WHERE key = 'schema_version'",
                                      (str(LEDGER_SCHEMA_VERSION),))
        except sqlite3.OperationalError as exc:
            if not is_read_only(exc):
                raise
            return  # a ledger this process may not write is read as it is
        self.schema = LEDGER_SCHEMA_VERSION

    def _add_views(self) -> None:
        """An older ledger gets the SQL views; one this process may not write gets them for itself (TEMP)."""
        if self.read_only:
            sql_views.create(self.conn, temp=True)
            return
        try:
            with self.transaction():
                if not sql_views.is_current(self.meta(sql_views.META_KEY)):  # another process may have won
                    self._create_views()
        except sqlite3.OperationalError as exc:
            if not is_read_only(exc):
                raise
            sql_views.create(self.conn, temp=True)

    def _create_views(self) -> None:
        sql_views.create(self.conn)
        self.conn.execute("INSERT OR REPLACE INTO kx_meta (key, value) VALUES (?, ?)",
                          (sql_views.META_KEY, sql_views.VERSION))

    def _create_schema(self) -> None:
        from sqlite_utils import Database

        self.conn.execute("PRAGMA journal_mode = WAL")
        with self.transaction():
            db = Database(self.conn)
            db["kx_meta"].create({"key": str, "value": str}, pk="key")
            db["events"].create(
                {
                    "position": int, "plan": str, "stream": str, "version": int, "type": str,
                    "data": str, "recorded_at": str, "schema_version": int, "hash": str,
                },
                pk="position",
                not_null=["plan", "stream", "version", "type", "data", "recorded_at", "schema_version", "hash"],
            )
            db["events"].create_index(["stream", "version"], unique=True)
            db["events"].create_index(["plan", "position"])
            db["events"].create_index(["type"])
            guard.install(self.conn, (0, GENESIS))
            readmodel.ensure_in_transaction(self.conn)
            db["kx_meta"].insert_all([
                {"key": "schema_version", "value": str(LEDGER_SCHEMA_VERSION)},
                {"key": "created_at", "value": clock.now_iso()},
            ])
            self._create_views()
            self._anchor_here()

    # --- where the ledger belongs ------------------------------------------------

    def here(self) -> str:
        """The project folder this ledger file serves where it is now."""
        return str(home_of(self.path))

    def _anchor_here(self, *, only_if_unknown: bool = False) -> None:
        """Record the ledger's id and the project folder it serves (a ledger made before kx recorded them is
        anchored where it is first opened with write permission)."""
        verb = "INSERT OR IGNORE" if only_if_unknown else "INSERT OR REPLACE"
        try:
            with self.transaction():
                self.conn.execute(f"{verb} INTO kx_meta (key, value) VALUES ('ledger_id', ?)", (uuid.uuid4().hex,))
                self.conn.execute(f"{verb} INTO kx_meta (key, value) VALUES ('made_in', ?)", (self.here(),))
        except sqlite3.OperationalError as exc:
            if not is_read_only(exc):
                raise
            return
        self.made_in = self.meta("made_in")

    def reanchor(self) -> str | None:
        """Accept the ledger's place now as its project folder (it moved on purpose); the folder it had."""
        was = self.made_in
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO kx_meta (key, value) VALUES ('made_in', ?)", (self.here(),))
        self.made_in = self.here()
        return was

    def elsewhere(self) -> str | None:
        """The project folder the ledger was made for when it is not the one it serves now (the file was copied
        or moved), else None."""
        if self.made_in is None or self.made_in == self.here():
            return None
        return self.made_in

    def place_problem(self) -> str | None:
        """Why this ledger's history may not be another folder's plan's, as one line that says what to do."""
        made_in = self.elsewhere()
        if made_in is None:
            return None
        return (f"this ledger was made in {made_in}, not here ({self.here()}): it was copied or moved; if the"
                " project moved on purpose, run 'kx plan import PLAN.md' here to accept its new place")

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kx_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()
        self.writers.close()

    # --- writing --------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: reads inside see what no other writer can change."""
        if self.read_only:
            raise BadInput(f"the ledger {self.path} is read-only (its file has no write permission);"
                           " make it writable (chmod u+w) to record anything")
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        with self.writers.turn():
            self.conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[Ledger]:
        """A read transaction: every read inside sees the same events, while writers go on."""
        if self._depth:
            yield self
            return
        self.conn.execute("BEGIN")
        self._depth = 1
        try:
            yield self
        finally:
            self._depth = 0
            self.conn.execute("COMMIT")

    def append(self, events: Sequence[Event]) -> list[Recorded]:
        """Append events in order, atomically (callers check their rules inside the same transaction)."""
        if not events:
            return []
        with self.transaction():
            streams = list(dict.fromkeys(event.stream for event in events))
            position, previous, last_at, versions = self._positions(streams)
            key = self._chain_key(position, previous)
            recorded_at = clock.now_iso(not_before=last_at)
            rows: list[Recorded] = []
            values: list[tuple] = []
            for event in events:
                stream, data = event.stream, event.data()
                versions[stream] += 1
                position += 1
                encoded = encode(data)
                previous = chain_hash(previous, position, stream, versions[stream], event.type, encoded, recorded_at,
                                      key)
                values.append((position, event.plan, stream, versions[stream], event.type, encoded, recorded_at,
                               event.schema_version, previous))
                rows.append(Recorded(position, stream, versions[stream], event.type, data, recorded_at, event.plan,
                                     previous))
            self._insert_all(values)
            if key is not None:
                self._key_checked_at = position  # the events just hashed with it
        logs.get().debug("appended", positions=[rows[0].position, rows[-1].position],
                         types=sorted({r.type for r in rows}), streams=len(versions))
        return rows

    def _insert_all(self, values: list[tuple]) -> None:
        self.conn.executemany(
            "INSERT INTO events (position, plan, stream, version, type, data, recorded_at, schema_version, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )

    def _positions(self, streams: list[str]) -> tuple[int, str, str | None, dict[str, int]]:
        """The last position, hash and time, and each stream's version, with the guard checked: one query."""
        named = ", ".join("?" * len(streams))
        try:
            row = self.conn.execute(
                "SELECT t.position, t.hash, t.recorded_at, (SELECT json_group_object(stream, version) FROM"
                f" (SELECT stream, MAX(version) AS version FROM events WHERE stream IN ({named}) GROUP BY stream)),"
                f" {guard.STATE} FROM (SELECT 1) LEFT JOIN (SELECT position, hash, recorded_at FROM events"
                " ORDER BY position DESC LIMIT 1) AS t", streams).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            raise guard.refused(self.conn, self._tail()[:2]) from None
        position, previous, last_at, found, *guarded = row
        tail = (position or 0, previous or GENESIS)
        guard.check(self.conn, tail, *guarded)
        found = json.loads(found)
        return (*tail, last_at, {stream: found.get(stream) or 0 for stream in streams})

    def _tail(self) -> tuple[int, str, str | None]:
        """The last event's position, hash and time, as the events hold them (the tail)."""
        row = self.conn.execute(
            "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1").fetchone()
        return (row[0], row[1], row[2]) if row else (0, GENESIS, None)

    def _chain_key(self, position: int, previous: str) -> bytes | None:
        """The key new events are hashed with: ``$KX_LEDGER_KEY``'s. Once an event is keyed every later one is,
        so that a rewrite without the key shows as an unkeyed hash: a keyed ledger refuses a writer without its
        key, or with another key (the last event's hash must come out of it)."""
        key = chain_key()
        if not previous.startswith(KEYED):
            return key
        if key is None:
            raise BadInput(f"this ledger's hash chain is keyed: set {KEY_ENV} to its key to record anything;"
                           " nothing was recorded")
        if self._key_checked_at != position:
            row = self.conn.execute(
                "SELECT e.stream, e.version, e.type, e.data, e.recorded_at, (SELECT hash FROM events WHERE position"
                " < e.position ORDER BY position DESC LIMIT 1) FROM events e WHERE e.position = ?",
                (position,)).fetchone()
            stream, version, kind, data, recorded_at, before = row
            if chain_hash(before or GENESIS, position, stream, version, kind, data, recorded_at, key) != previous:
                raise BadInput(f"{KEY_ENV} is not the key this ledger's hash chain is keyed with (the last event's"
                               " hash does not come out of it); nothing was recorded")
            self._key_checked_at = position
        return key

    def digest(self) -> guard.Tail:
        """The last event's position and chain hash: what to keep outside the file (``kx audit digest``)."""
        return self._tail()[:2]

    def hash_at(self, position: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM events WHERE position = ?", (position,)).fetchone()
        return row[0] if row else None

    # --- the guard --------------------------------------------------------------

    def guard_findings(self) -> list[str]:
        """What is wrong with the append-only guard or the head (``kx audit verify``)."""
        return guard.findings(self.conn, self._tail()[:2], schema=self.schema)

    def head(self) -> guard.Tail | None:
        return guard.head(self.conn)

    def repair_guard(self, *, reanchor: bool = False) -> list[str]:
        """Restore missing or altered guard triggers and the head; what was repaired."""
        with self.transaction():
            return guard.install(self.conn, self._tail()[:2], reanchor=reanchor)

    # --- reading --------------------------------------------------------------

    def read(
        self,
        *,
        plan: str | None = None,
        since: int = 0,
        until: int | None = None,
        until_time: str | None = None,
        stream: str | None = None,
        types: Sequence[str] | None = None,
        keep_damaged: bool = False,
    ) -> list[Recorded]:
        """Events in global order, filtered; ``since`` is exclusive, ``until`` inclusive. An event whose data is
        not JSON is :class:`DamagedLedger`, or with ``keep_damaged`` shown as ``{"damaged", "raw"}``."""
        where, params = _filters(plan, since, until, until_time, stream, types)
        sql = ("SELECT position, stream, version, type, data, recorded_at, plan, hash, schema_version FROM events"
               f" WHERE {where} ORDER BY position")
        rows = self.conn.execute(sql, params).fetchall()
        try:
            return [Recorded(pos, stream_, version, type_, decode(type_, written, data), at, plan_, digest)
                    for pos, stream_, version, type_, data, at, plan_, digest, written in rows]
        except Undecodable:  # a damaged row: found again, row by row, off the fast path
            return [self._decoded(row, keep_damaged) for row in rows]

    @staticmethod
    def _decoded(row: tuple, keep_damaged: bool) -> Recorded:
        pos, stream_, version, type_, data, at, plan_, digest, written = row
        try:
            decoded = decode(type_, written, data)
        except Undecodable:
            if not keep_damaged:
                raise DamagedLedger(pos, type_) from None
            decoded = {"damaged": "the data is not a JSON object; see 'kx audit verify'", "raw": str(data)[:1000]}
        return Recorded(pos, stream_, version, type_, decoded, at, plan_, digest)

    def stored(self, until: int | None = None) -> Iterator[tuple]:
        """Every event as stored (up to ``until``), data as text, not upcast: ``(position, stream, version, type,
        data, recorded_at, hash)`` (what ``kx audit verify`` checks the chain on)."""
        return self.conn.execute(
            "SELECT position, stream, version, type, data, recorded_at, hash FROM events WHERE position <= ?"
            " ORDER BY position", (_INT64_MAX if until is None else until,))

    def stored_of(self, plan: str, until: int | None = None) -> Iterator[tuple]:
        """A plan's events as stored (up to ``until``): ``(position, stream, version, type, data, recorded_at,
        schema_version)`` (what ``kx audit verify`` puts to the rules and folds)."""
        # the table in position order, the plan's rows picked as it goes ('+plan': not through the plan's index,
        # which would add a lookup per row)
        return self.conn.execute("SELECT position, stream, version, type, data, recorded_at, schema_version"
                                 " FROM events WHERE +plan = ? AND position <= ? ORDER BY position",
                                 (plan, _INT64_MAX if until is None else until))

    def scan(self, plan: str, *, since: int = 0, until: int | None = None,
             until_time: str | None = None) -> Iterator[tuple]:
        """A plan's events as lean rows for folding: ``(position, stream, version, type, recorded_at, data, part,
        box)``. ``data`` is None for ticks and unticks that carry no evidence, whose PART and box SQLite extracts
        faster than Python parses their JSON (they are most of a long ledger); a row older than this kx's event
        schema comes with its data upcast (``kx_upcast``), ticks included, so that the fold reads that instead."""
        where, params = _filters(plan, since, until, until_time)
        try:
            return self.conn.execute(
                "SELECT position, stream, version, type, recorded_at, CASE WHEN schema_version < ?"
                f" THEN kx_upcast(type, schema_version, data) WHEN type IN {_TICKS} AND instr(data, '\"evidence\"') = 0"
                " THEN NULL ELSE data END, json_extract(data, '$.part'), json_extract(data, '$.box')"
                f" FROM events WHERE {where} ORDER BY position", [vocabulary.EVENT_SCHEMA_VERSION, *params])
        except sqlite3.OperationalError as exc:
            if "malformed JSON" not in str(exc):
                raise
            raise self.damaged(where, params) from None

    def damaged(self, where: str = "1", params: Sequence[Any] = ()) -> DamagedLedger:
        """The first event (of those ``where`` selects) whose data is not JSON, as the error that names it."""
        row = self.conn.execute(f"SELECT position, type FROM events WHERE ({where}) AND NOT json_valid(data)"
                                " ORDER BY position LIMIT 1", list(params)).fetchone()
        return DamagedLedger(*(row or (None, None)))

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def data_version(self) -> int:
        """A number that changes when another connection commits to the ledger (SQLite's ``data_version``)."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    def plan_ids(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT plan FROM events WHERE type = 'PlanImported' ORDER BY position"
        ).fetchall()
        return [row[0] for row in rows]
