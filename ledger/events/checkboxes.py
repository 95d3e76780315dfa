"""The two tick events, ``CheckboxTicked`` and ``CheckboxUnticked``: the one definition of both.

They are plain frozen dataclasses, not pydantic models, because ``kx tick`` is the
hottest command (about a thousand calls a plan) and importing pydantic would
double its start-up. They keep the interface of :class:`ledger.events.Event`
(``type``, ``stream``, ``schema_version``, ``data()``), and pydantic validates
them like the other events wherever events are loaded (``ledger.events.load``,
through a ``TypeAdapter``); ``__pydantic_config__`` forbids unknown fields there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.events.vocabulary import EVENT_SCHEMA_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckboxTicked:
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}
    schema_version: ClassVar[int] = EVENT_SCHEMA_VERSION

    plan: str
    part: str
    box: int  # the box's stable id within the PART
    text: str
    attempt: str | None = None
    by: str | None = None
    evidence: dict[str, Any] | None = None  # what kx checked when the box was ticked (CONTRACT section 7)

    def __post_init__(self) -> None:
        if not (type(self.box) is int and all(isinstance(v, str) for v in (self.plan, self.part, self.text))):
            raise TypeError("a tick event needs str plan, part and text and an int box")
        if self.evidence is not None and not isinstance(self.evidence, dict):
            raise TypeError("a tick's evidence is an object")

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def stream(self) -> str:
        return f"part:{self.plan}:{self.part}"

    def data(self) -> dict[str, Any]:
        fields = {"plan": self.plan, "part": self.part, "attempt": self.attempt, "by": self.by, "box": self.box,
                  "text": self.text, "evidence": self.evidence}
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckboxUnticked(CheckboxTicked):
    pass
