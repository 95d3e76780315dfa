"""What a run shows while it goes: a live line per running PART on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

from ledger import logs
from machine.state import PlanState
from machine.output import reason_line
from machine.text import printable
from machine.packet import duration


class Progress:
    def __init__(self, stream: TextIO | None = None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.drawn = 0
        self.seen: dict[str, tuple[str, str | None]] = {}

    def say(self, message: str) -> None:
        self._clear()
        print(printable(message), file=self.stream, flush=True)  # reasons and notes are others' text
        logs.get().info("run", message=message)

    def update(self, state: PlanState) -> None:
        for message in self._changes(state):
            self.say(message)
        if self.live:
            self._draw(state)

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

    def _draw(self, state: PlanState) -> None:
        self._clear()
        lines = []
        for part in state.running():
            total = len(state.plan.part(part.id).boxes)
            took = duration((part.started or {}).get("recorded_at"), None) or 0.0
            lines.append(f"  ▸ {part.attempt:<12} {len(part.ticked):>3}/{total:<3} ticks  {took:6.0f}s")
        if lines:
            print("\n".join(lines), file=self.stream, flush=True)
        self.drawn = len(lines)

    def _clear(self) -> None:
        if self.live and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")
            self.stream.flush()
            self.drawn = 0
