"""The two tick events, built without pydantic for ``kx tick``'s start-up time.

:class:`TickEvent` carries exactly what :class:`ledger.events.CheckboxTicked`
(or ``CheckboxUnticked``) would: the same type, stream, schema version and
data. ``tests/test_ticks.py`` holds the two to each other for generated input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.vocabulary import EVENT_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class TickEvent:
    type: str
    plan: str
    part: str
    box: int
    text: str
    attempt: str | None = None
    by: str | None = None
    schema_version: int = EVENT_SCHEMA_VERSION

    @property
    def stream(self) -> str:
        return f"part:{self.plan}:{self.part}"

    def data(self) -> dict[str, Any]:
        fields = {"plan": self.plan, "part": self.part, "attempt": self.attempt, "by": self.by, "box": self.box,
                  "text": self.text}
        return {k: v for k, v in fields.items() if v is not None}


def tick_event(ticked: bool, *, plan: str, part: str, box: int, text: str, attempt: str | None,
               by: str | None) -> TickEvent:
    if not (isinstance(box, int) and all(isinstance(v, str) for v in (plan, part, text))):
        raise TypeError("a tick event needs str plan, part and text and an int box")
    return TickEvent("CheckboxTicked" if ticked else "CheckboxUnticked", plan, part, box, text, attempt, by)
