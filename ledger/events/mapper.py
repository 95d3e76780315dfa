"""Events written by an older kx, read as this kx writes them: upcasting, in the style of ``eventsourcing``'s Mapper.

A row keeps the ``schema_version`` it was written with and is never rewritten.
Reading a row older than :data:`ledger.vocabulary.EVENT_SCHEMA_VERSION` passes
its data through one step per version, in order: the step registered for
``(type, 1)`` takes a v1 event's data to v2, the one for ``(type, 2)`` takes
it on to v3, and so on; a type with no step for a version is unchanged by it.
Every read goes through :func:`upcast` (``Ledger.read`` in Python, the lean
fold scan through the same function registered in SQLite).

Today every event is v1 and there are no steps. When an event's data changes
shape: bump ``EVENT_SCHEMA_VERSION`` and register the step here, e.g.::

    def upcast_v1_v2(data):  # RunnerFailed: one "reason" became a list of "reasons"
        reasons = [data["reason"]]
        return {**{k: v for k, v in data.items() if k != "reason"}, "reasons": reasons}

    register("RunnerFailed", 1, upcast_v1_v2)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ledger.events import vocabulary

Step = Callable[[dict[str, Any]], dict[str, Any]]
STEPS: dict[tuple[str, int], Step] = {}  # (event type, version it reads) → its data at the next version


def register(event_type: str, from_version: int, step: Step) -> None:
    STEPS[(event_type, from_version)] = step


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of an event written at ``version``, as this kx's current version has it."""
    while version < vocabulary.EVENT_SCHEMA_VERSION:
        step = STEPS.get((event_type, version))
        if step is not None:
            data = step(data)
        version += 1
    return data


def upcast_text(event_type: str, version: int, text: str) -> str:
    """:func:`upcast` on JSON text: the SQL function ``kx_upcast`` that the lean fold scan calls."""
    return json.dumps(upcast(event_type, version, json.loads(text)), ensure_ascii=False)
