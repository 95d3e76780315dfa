"""SQL views over the ledger, for ``sqlite-utils query``, ``sqlite3`` and Datasette.

``part_states`` and ``attempts`` are thin projections of the read model's
tables (``kx_parts``, ``kx_attempts``), which the fold keeps in the same
transaction as each append: PART state and the drop rules have one home, the
fold. The others read ``events`` with ``json_extract``: the plan's structure,
the reviews, and the running count over the attempts. The ledger creates them when it is created and
when an older ledger is opened (a meta key records the version, so the hot
path pays one lookup it already makes). A connection that may not write gets
them as ``TEMP`` views instead.

- ``plan_parts``: every PART of each plan's latest import (batch, title, target, box count)
- ``part_states``: each PART's current state, ticks, attempts, failures and the drop that counts now
- ``attempts``: one row per attempt: start, first end, seconds, last outcome, lost, the reasons it ended and was lost
- ``running_timeline``: every start and end in ledger order with the running count and the limit
- ``batch_reviews``: every ``BatchReviewed``: decision, reviewer, note
"""

from __future__ import annotations

import sqlite3

VERSION = "4"  # 4: part_states and attempts project the read model's tables
META_KEY = "views_version"

_LATEST_PLAN = """
    e.type IN ('PlanImported', 'PlanRevised')
    AND e.position = (SELECT max(l.position) FROM events AS l
                      WHERE l.plan = e.plan AND l.type IN ('PlanImported', 'PlanRevised'))"""

VIEWS: dict[str, str] = {
    "plan_parts": f"""
SELECT e.plan AS plan,
       'PART-' || json_extract(p.value, '$.number') AS part,
       json_extract(p.value, '$.number') AS number,
       json_extract(p.value, '$.batch') AS batch,
       json_extract(p.value, '$.title') AS title,
       json_extract(p.value, '$.header.target') AS target,
       json_array_length(p.value, '$.boxes') AS total,
       (SELECT json_group_array(json_extract(b.value, '$.id')) FROM json_each(p.value, '$.boxes') AS b) AS box_ids
FROM events AS e, json_each(e.data, '$.structure.parts') AS p
WHERE {_LATEST_PLAN}""",

    "part_states": """
SELECT plan, part, batch, title, state, ticked, total, attempts, attempt, failures, since, target,
       drop_path, drop_size, drop_sha256
FROM kx_parts
ORDER BY plan, number""",

    "attempts": """
SELECT a.plan, a.part, p.batch, a.attempt, a.number, a.started_at, a.ended_at,
       round((julianday(a.ended_at) - julianday(a.started_at)) * 86400.0, 3) AS seconds,
       a.outcome, a.lost, a.reason, a.lost_reason, a.by, a.start_position, a.end_position
FROM kx_attempts AS a LEFT JOIN kx_parts AS p ON p.plan = a.plan AND p.part = a.part
ORDER BY a.start_position""",

    "running_timeline": f"""
WITH a AS MATERIALIZED (SELECT * FROM attempts),
changes AS (
    SELECT plan, start_position AS position, started_at AS recorded_at, part, attempt, 1 AS change FROM a
    UNION ALL
    SELECT plan, end_position, ended_at, part, attempt, -1 FROM a WHERE end_position IS NOT NULL
),
limits AS MATERIALIZED (SELECT e.plan, json_extract(e.data, '$.structure.limit') AS parallel_limit FROM events AS e
           WHERE {_LATEST_PLAN})
SELECT c.plan, c.position, c.recorded_at, c.part, c.attempt, c.change,
       sum(c.change) OVER (PARTITION BY c.plan ORDER BY c.position ROWS UNBOUNDED PRECEDING) AS running,
       limits.parallel_limit
FROM changes AS c LEFT JOIN limits ON limits.plan = c.plan
ORDER BY c.plan, c.position""",

    "batch_reviews": """
SELECT plan, json_extract(data, '$.batch') AS batch, position, recorded_at,
       json_extract(data, '$.decision') AS decision, json_extract(data, '$.by') AS by,
       json_extract(data, '$.note') AS note, json_extract(data, '$.parts') AS parts_sent_back,
       json_extract(data, '$.accepted_failed') AS accepted_failed
FROM events WHERE type = 'BatchReviewed'
ORDER BY position""",
}


def create(conn: sqlite3.Connection, *, temp: bool = False) -> None:
    """(Re)create the views; the caller holds the write transaction (or ``temp``)."""
    schema, kind = ("temp", "TEMP VIEW") if temp else ("main", "VIEW")
    for name in reversed(VIEWS):  # dependants first
        conn.execute(f"DROP VIEW IF EXISTS {schema}.{name}")
    for name, sql in VIEWS.items():
        conn.execute(f"CREATE {kind} IF NOT EXISTS {name} AS{sql}")


def is_current(version: str | None) -> bool:
    """Whether a ledger whose meta says ``version`` needs no (re)creation; a newer kx's views are left alone."""
    return version is not None and int(version) >= int(VERSION)


def rows(conn: sqlite3.Connection, view: str, plan: str) -> list[dict]:
    """A view's rows for one plan, as dicts."""
    from sqlite_utils import Database

    if view not in VIEWS:
        raise ValueError(f"no view {view}")
    return list(Database(conn, recursive_triggers=False).query(f"SELECT * FROM {view} WHERE plan = ?", [plan]))
