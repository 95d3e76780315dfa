"""SQL views over the ``events`` table, for ``sqlite-utils query``, ``sqlite3`` and Datasette.

They are read models like the others: computed from ``events`` alone with
``json_extract``, never stored. The ledger creates them when it is created and
when an older ledger is opened (a meta key records the version, so the hot
path pays one lookup it already makes). A connection that may not write gets
them as ``TEMP`` views instead.

- ``plan_parts``: every PART of each plan's latest import (batch, title, target, box count)
- ``part_states``: each PART's current state, ticks, attempts, failures and drop (the evidence a rejection or a
  reopening cleared, and drops from before the latest start or retry, no longer count)
- ``attempts``: one row per ``RunnerStarted``: start, end, seconds, outcome, lost, the reasons it ended and was lost
- ``running_timeline``: every start and end in ledger order with the running count and the limit
- ``batch_reviews``: every ``BatchReviewed``: decision, reviewer, note
"""

from __future__ import annotations

import sqlite3

VERSION = "3"
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
WITH pp AS MATERIALIZED (SELECT * FROM plan_parts),
moves AS (
    SELECT plan, json_extract(data, '$.part') AS part, position, recorded_at,
           CASE type WHEN 'RunnerStarted' THEN 'running' WHEN 'RunnerSucceeded' THEN 'succeeded'
                     WHEN 'RunnerFailed' THEN 'failed' WHEN 'RunnerLost' THEN 'lost' ELSE 'pending' END AS state
    FROM events
    WHERE type IN ('RunnerStarted', 'RunnerSucceeded', 'RunnerFailed', 'RunnerLost', 'PartRetried', 'PartReopened')
    UNION ALL
    SELECT e.plan, sent.value, e.position, e.recorded_at, 'pending'
    FROM events AS e, json_each(e.data, '$.parts') AS sent
    WHERE e.type = 'BatchReviewed' AND json_extract(e.data, '$.decision') = 'reject'
),
latest AS (SELECT plan, part, state, recorded_at, max(position) FROM moves GROUP BY plan, part),
cleared AS (
    SELECT e.plan, c.key AS part, c.value AS what, e.position
    FROM events AS e, json_each(e.data, '$.cleared') AS c WHERE e.type = 'BatchReviewed'
    UNION ALL
    SELECT plan, json_extract(data, '$.part'), json_extract(data, '$.cleared'), position
    FROM events WHERE type = 'PartReopened'
),
marks AS (
    SELECT plan, part, box, type, max(position) FROM (
        SELECT plan, json_extract(data, '$.part') AS part, json_extract(data, '$.box') AS box, type, position
        FROM events WHERE type IN ('CheckboxTicked', 'CheckboxUnticked')
        UNION ALL
        SELECT c.plan, c.part, b.value, 'CheckboxUnticked', c.position
        FROM cleared AS c, json_each(c.what, '$.boxes') AS b)
    GROUP BY 1, 2, 3
),
ticked AS (
    SELECT pp.plan, pp.part, count(*) AS ticked
    FROM pp, json_each(pp.box_ids) AS id
    JOIN marks AS m ON m.plan = pp.plan AND m.part = pp.part AND m.box = id.value
    WHERE m.type = 'CheckboxTicked' GROUP BY 1, 2
),
runs AS (
    SELECT plan, json_extract(data, '$.part') AS part, count(*) AS attempts,
           json_extract(data, '$.attempt') AS attempt, max(position)
    FROM events WHERE type = 'RunnerStarted' GROUP BY 1, 2
),
failures AS (
    SELECT plan, json_extract(data, '$.part') AS part, count(*) AS failures
    FROM events WHERE type = 'RunnerFailed' GROUP BY 1, 2
),
evidence_from AS (
    SELECT plan, part, max(position) AS position FROM (
        SELECT plan, json_extract(data, '$.part') AS part, position FROM events
        WHERE type IN ('RunnerStarted', 'PartRetried')
        UNION ALL
        SELECT plan, part, position FROM cleared)
    GROUP BY 1, 2
),
drops AS (
    SELECT d.plan, json_extract(d.data, '$.part') AS part, json_extract(d.data, '$.path') AS path,
           json_extract(d.data, '$.size') AS size, json_extract(d.data, '$.sha256') AS sha256, max(d.position)
    FROM events AS d
    LEFT JOIN runs AS r ON r.plan = d.plan AND r.part = json_extract(d.data, '$.part')
    LEFT JOIN evidence_from AS f ON f.plan = d.plan AND f.part = json_extract(d.data, '$.part')
    WHERE d.type = 'DropRecorded' AND d.position > coalesce(f.position, 0)
      AND (json_extract(d.data, '$.attempt') IS NULL OR json_extract(d.data, '$.attempt') = r.attempt)
    GROUP BY 1, 2
)
SELECT pp.plan, pp.part, pp.batch, pp.title, coalesce(latest.state, 'pending') AS state,
       coalesce(ticked.ticked, 0) AS ticked, pp.total, coalesce(runs.attempts, 0) AS attempts,
       runs.attempt AS attempt, coalesce(failures.failures, 0) AS failures, latest.recorded_at AS since,
       pp.target, drops.path AS drop_path, drops.size AS drop_size, drops.sha256 AS drop_sha256
FROM pp
LEFT JOIN latest ON latest.plan = pp.plan AND latest.part = pp.part
LEFT JOIN ticked ON ticked.plan = pp.plan AND ticked.part = pp.part
LEFT JOIN runs ON runs.plan = pp.plan AND runs.part = pp.part
LEFT JOIN failures ON failures.plan = pp.plan AND failures.part = pp.part
LEFT JOIN drops ON drops.plan = pp.plan AND drops.part = pp.part
ORDER BY pp.plan, pp.number""",

    "attempts": """
WITH started AS (
    SELECT plan, stream, position, recorded_at, json_extract(data, '$.part') AS part,
           json_extract(data, '$.attempt') AS attempt, json_extract(data, '$.by') AS by
    FROM events WHERE type = 'RunnerStarted'
),
ends AS (
    SELECT e.stream, e.position, e.recorded_at, e.type, json_extract(e.data, '$.reason') AS reason,
           coalesce(json_extract(e.data, '$.attempt'),
                    (SELECT json_extract(s.data, '$.attempt') FROM events AS s
                     WHERE s.stream = e.stream AND s.type = 'RunnerStarted' AND s.position < e.position
                     ORDER BY s.position DESC LIMIT 1)) AS attempt
    FROM events AS e
    WHERE e.type IN ('RunnerSucceeded', 'RunnerFailed', 'RunnerLost')
      AND coalesce(json_extract(e.data, '$.by'), '') <> 'import'
),
first_end AS (
    SELECT stream, attempt, recorded_at, min(position) AS position, sum(type = 'RunnerLost') AS losses
    FROM ends GROUP BY stream, attempt
),
first_loss AS (
    SELECT stream, attempt, reason, min(position) FROM ends WHERE type = 'RunnerLost' GROUP BY stream, attempt
),
last_end AS (SELECT stream, attempt, type, reason, max(position) FROM ends GROUP BY stream, attempt),
pp AS MATERIALIZED (SELECT plan, part, batch FROM plan_parts)
SELECT s.plan, s.part, pp.batch, s.attempt,
       CAST(substr(s.attempt, instr(s.attempt, '#') + 1) AS INTEGER) AS number,
       s.recorded_at AS started_at, f.recorded_at AS ended_at,
       round((julianday(f.recorded_at) - julianday(s.recorded_at)) * 86400.0, 3) AS seconds,
       CASE l.type WHEN 'RunnerSucceeded' THEN 'succeeded' WHEN 'RunnerFailed' THEN 'failed'
                   WHEN 'RunnerLost' THEN 'lost' ELSE 'running' END AS outcome,
       coalesce(f.losses, 0) > 0 AS lost, l.reason AS reason, lost.reason AS lost_reason, s.by AS by,
       s.position AS start_position, f.position AS end_position
FROM started AS s
LEFT JOIN first_end AS f ON f.stream = s.stream AND f.attempt = s.attempt
LEFT JOIN last_end AS l ON l.stream = s.stream AND l.attempt = s.attempt
LEFT JOIN first_loss AS lost ON lost.stream = s.stream AND lost.attempt = s.attempt
LEFT JOIN pp ON pp.plan = s.plan AND pp.part = s.part
ORDER BY s.position""",

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
    if view not in VIEWS:
        raise ValueError(f"no view {view}")
    cursor = conn.execute(f"SELECT * FROM {view} WHERE plan = ?", (plan,))
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor]
