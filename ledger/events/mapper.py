"""The one decoder of events: stored rows to event data and back, in the manner of ``eventsourcing``'s Mapper.

An event is stored as canonical JSON text (:func:`encode`: sorted keys, no
spaces, UTF-8 as is) with the ``schema_version`` it was written at; a row is
never rewritten. :func:`decode` turns a row's text back into the event's data
as this kx has it: parsed, checked to be an object, and upcast when the row is
older than :data:`ledger.events.vocabulary.EVENT_SCHEMA_VERSION` — every read
goes through it (``Ledger.read``, the lean fold scan through the SQL function
``kx_upcast``, ``kx audit verify``).

Upcasting runs one step per version, each found beside the event it changes:
a static method ``upcast_vN_vM`` (M = N + 1) on the event's class, which takes
the data of version N to version M. A type with no step for a version is
unchanged by it. Today every event is at version 1 and there are no steps;
when an event's data changes shape, bump ``EVENT_SCHEMA_VERSION`` and write the
step on its class, e.g. on ``RunnerFailed``::

    @staticmethod
    def upcast_v1_v2(data):  # one "reason" became a list of "reasons"
        return {**{k: v for k, v in data.items() if k != "reason"}, "reasons": [data["reason"]]}

The classes (pydantic models) are imported only when an older row is met:
``kx tick`` reads current rows without them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ledger.events import vocabulary


class Undecodable(ValueError):
    """A row whose data cannot be read as its event's: what is wrong, as ``kx audit verify`` says it."""


def encode(data: dict[str, Any]) -> str:
    """The text an event's data is stored (and its chain hash computed) as."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def decode(event_type: str, written: int, text: str) -> dict[str, Any]:
    """A stored row's data as this kx reads it; :class:`Undecodable` says why it cannot be."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:  # (a row whose data is not text too)
        data = _loads(text)
    if type(data) is not dict:
        raise Undecodable("data is not a JSON object; the event cannot be read")
    if written < vocabulary.EVENT_SCHEMA_VERSION:
        try:
            return upcast(event_type, written, data)
        except Exception as exc:  # noqa: BLE001 - a step meeting data it was not written for
            raise Undecodable(f"data cannot be upcast from schema {written} ({type(exc).__name__}: {exc})") from None
    return data


def _loads(text: str) -> Any:
    """What orjson refuses, as the standard library reads it (the arbiter of what kx wrote: orjson, five times
    faster, is only its fast path)."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        raise Undecodable("data is not JSON; the event cannot be read") from None


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of an event written at ``version``, taken step by step to this kx's version."""
    from ledger.events.models import EVENT_TYPES

    event = EVENT_TYPES.get(event_type)
    while version < vocabulary.EVENT_SCHEMA_VERSION:
        step = getattr(event, f"upcast_v{version}_v{version + 1}", None)
        if step is not None:
            data = step(data)
        version += 1
    return data


def upcast_text(event_type: str, version: int, text: str) -> str:
    """:func:`decode` as the SQL function ``kx_upcast`` that the lean fold scan calls on older rows: the text of
    the data upcast."""
    return json.dumps(decode(event_type, version, text), ensure_ascii=False)
