"""What every act shares: who acts, the state under the write lock, the attempt check, the outcome.

Kept free of the event models (pydantic) so that ``kx tick``, the hottest
command, imports only what it uses.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import Unknown
from machine.acts.workspace import Workspace
from machine.defaults import NAME_LIMIT
from machine.plan.model import Part, parse_part_number
from machine.plan.text import QUOTE_LIMIT, bounded, cut
from machine.state.checked_config import Settings
from machine.state.fold import PartState, PlanState
from machine.state.rules import Rules


def person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass
class Act:
    """Who acts: a runner's attempt, or a person."""

    attempt: str | None = None
    by: str | None = None

    @property
    def actor(self) -> str:
        return self.by or (None if self.attempt else person()) or self.attempt


@dataclass
class Outcome:
    part: str
    recorded: list[str] = field(default_factory=list)
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"part": self.part, "recorded": self.recorded, "message": self.message, **self.data}


@dataclass
class Context:
    workspace: Workspace
    state: PlanState
    rules: Rules
    config: Settings  # the plan's configuration, read once for the act

    def part(self, ref: str) -> tuple[PartState, Part]:
        number = parse_part_number(bounded("a PART", ref, NAME_LIMIT))
        structure = self.state.plan.part(number) if number is not None else None
        if structure is None:
            numbers = [p.number for p in self.state.plan.parts]
            raise Unknown(f"no {cut(ref, QUOTE_LIMIT)} in plan {self.state.id} (PARTs {min(numbers)}-{max(numbers)});"
                          " see 'kx status'")
        return self.state.parts[structure.id], structure

    def append(self, *events: Any) -> list[str]:
        """Ask the rules about the act's events (:meth:`Rules.check`, once each), then record them all."""
        self.check(*events)
        return self.record(*events)

    def check(self, *events: Any) -> None:
        self.rules.check_all((event.type, event.data()) for event in events)

    def record(self, *events: Any) -> list[str]:
        """Record events the rules allowed (:meth:`check`)."""
        self.workspace.record(self.state, list(events))
        return [e.type for e in events]

    @classmethod
    def of(cls, workspace: Workspace, *, accept_failed: bool = False, plan_id: str | None = None,
           config: Settings | None = None) -> Context:
        plan_id = plan_id or workspace.plan_id()
        config = config or workspace.config(plan_id)
        state = workspace.state(plan_id=plan_id, config=config)
        return cls(workspace, state, workspace.rules(state, accept_failed=accept_failed, config=config), config)


@contextmanager
def acting(workspace: Workspace, *, accept_failed: bool = False) -> Iterator[Context]:
    """State folded and rules checked under the write lock; appends commit together at the end.

    The plan's id and its config file are read before the lock is taken: other writers wait while it is held."""
    plan_id = workspace.plan_id()
    config = workspace.config(plan_id)
    with workspace.ledger.transaction():
        yield Context.of(workspace, accept_failed=accept_failed, plan_id=plan_id, config=config)


def authorize(ctx: Context, part: PartState, act: Act) -> None:
    """A plan open to acts; rule 4 for runners (their attempt must be the current one); the gate for people: what
    :meth:`Rules.check` asks of an act's events, for an act that finds nothing to record (a repeated tick or drop),
    which is refused all the same where a recording one would be."""
    ctx.rules.open_to("act", {})
    ctx.rules.may_act(part, act.attempt)
