"""What a run shows while it goes, as plain lines: what changed since the supervisor's last look.

``cli.live`` draws the live view on a terminal over these same lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

import click

from ledger import logs
from machine.outputs.packet import duration
from machine.plan.text import printable
from machine.state.fold import PlanState
from machine.state.runner_output import reason_line

Ask = Callable[[str, list[str]], str]


class Progress:
    """A :class:`runners.supervisor.loop.Reporter` that says each change on ``stream`` (stderr) and in the log."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.seen: dict[str, tuple[str, str | None]] = {}

    def say(self, message: str) -> None:
        print(printable(message), file=self.stream, flush=True)  # reasons and notes are others' text
        logs.get().info("run", message=message)

    def update(self, state: PlanState) -> None:
        for message in self._changes(state):
            self.say(message)

    def _changes(self, state: PlanState) -> list[str]:
        messages = []
        for structure in state.plan.parts:
            part = state.parts[structure.id]
            now = (part.state, part.attempt)
            before = self.seen.get(part.id)
            self.seen[part.id] = now
            if before is None or before == now:
                continue
            took = duration((part.started or {}).get("recorded_at"), part.finished_at)
            timing = f" in {took:.1f}s" if took is not None else ""
            if part.state == "running":
                messages.append(f"{part.id} started as {part.attempt}")
            elif part.state == "succeeded":
                messages.append(f"{part.id} succeeded{timing}")
            elif part.state in ("failed", "lost"):
                messages.append(f"{part.id} {part.state}{timing}: {reason_line(part.reason, part.last_output)}")
            elif part.state == "pending":
                messages.append(f"{part.id} pending again")
        for number, batch in state.batches.items():
            key = f"batch {number}"
            before = self.seen.get(key)
            self.seen[key] = (batch.state, None)
            if before is not None and before[0] != batch.state:
                messages.append(f"batch {number} {batch.state.replace('_', ' ')}")
        return messages


def ask_on_terminal(question: str, choices: list[str]) -> str:
    """One of ``choices``, or free text (Enter: empty) when there are none."""
    if not choices:
        return click.prompt(question, type=str, default="", show_default=False, err=True)
    return click.prompt(question, type=click.Choice(choices), err=True)
