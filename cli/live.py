"""``kx run``'s live view on a terminal: a bar per batch, the running attempts with their elapsed time, the last event.

The view is a :class:`cli.progress.Progress` like the plain one: the supervisor calls the same ``say`` and
``update``, the plain lines are said above the view, and the view is drawn from the state the supervisor folded
anyway, so it reads nothing of its own. Only a run drawing to a terminal imports this module (and rich): see :func:`cli.run_view.progress_for`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cli.progress import Ask, Progress
from cli.terminal import BATCH_STYLES
from ledger import logs
from machine.outputs.packet import duration
from machine.plan.text import printable
from machine.state.fold import SETTLED, PlanState

REFRESH_S = 0.1  # the supervisor reports every few milliseconds; a person needs no more than this
BAR_WIDTH = 30

@dataclass(frozen=True)
class BatchRow:
    number: int
    title: str
    state: str
    settled: int
    total: int


@dataclass(frozen=True)
class AttemptRow:
    attempt: str
    ticked: int
    total: int
    elapsed: float


@dataclass(frozen=True)
class Snapshot:
    batches: tuple[BatchRow, ...]
    running: tuple[AttemptRow, ...]
    last_event: str | None


def snapshot(state: PlanState, last_event: str | None) -> Snapshot:
    """What the view shows of ``state``; elapsed times from the ledger's start stamps to the clock's now."""
    batches = []
    for structure in state.plan.batches:
        members = state.members(state.batches[structure.number])
        batches.append(BatchRow(structure.number, structure.title, state.batches[structure.number].state,
                                sum(part.state in SETTLED for part in members), len(members)))
    running = []
    for part in state.running():
        boxes = {box.id for box in state.plan.part(part.id).boxes}
        elapsed = duration((part.started or {}).get("recorded_at"), None) or 0.0
        running.append(AttemptRow(part.attempt, len(part.ticked & boxes), len(boxes), elapsed))
    return Snapshot(tuple(batches), tuple(running), last_event)


def render(view: Snapshot) -> RenderableType:
    """The view of a snapshot: one line per batch, one per running attempt, the last event (cut to the width)."""
    batches = Table.grid(padding=(0, 1), expand=True)
    for justify in ("left", "left", "right", "left"):
        batches.add_column(justify=justify, no_wrap=True)
    batches.add_column(no_wrap=True, ratio=1)  # the title alone gives way to a narrow terminal
    for batch in view.batches:
        style = BATCH_STYLES.get(batch.state, "")
        bar = ProgressBar(total=max(batch.total, 1), completed=batch.settled, width=BAR_WIDTH,
                          complete_style=style or "bar.complete", finished_style=style or "bar.finished")
        batches.add_row(f"batch {batch.number}", bar, f"{batch.settled}/{batch.total}",
                        Text(batch.state.replace("_", " "), style=style),
                        Text(printable(batch.title), style="dim", overflow="ellipsis"))
    lines: list[RenderableType] = [batches]
    if view.running:
        running = Table.grid(padding=(0, 1))
        for justify in ("left", "left", "right", "right"):
            running.add_column(justify=justify, no_wrap=True)
        for number, attempt in enumerate(view.running):
            running.add_row("running" if number == 0 else "", attempt.attempt,
                            f"{attempt.ticked}/{attempt.total} ticks", elapsed(attempt.elapsed))
        lines.append(running)
    if view.last_event:
        lines.append(Text(f"last: {view.last_event}", no_wrap=True, overflow="ellipsis"))
    return Group(*lines)


def elapsed(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class LiveView(Progress):
    """The live view on ``console``: started at the first state, put away for questions, left drawn at the end."""

    def __init__(self, console: Console):
        super().__init__(console.file)
        self.console = console
        # drawn at the supervisor's reports, not from a thread of its own; sys.stdout and sys.stderr are not
        # redirected (a runner's kx call from a Ray node, run in this process, writes into its own buffers)
        self.display = Live(console=console, auto_refresh=False, transient=True, redirect_stdout=False,
                            redirect_stderr=False)
        self.state: PlanState | None = None
        self.last_event: str | None = None
        self.next_draw = 0.0

    def say(self, message: str) -> None:
        shown = printable(message)  # reasons and notes are others' text
        self.last_event = " ".join(shown.split())
        self.console.print(Text(shown), soft_wrap=True)
        logs.get().info("run", message=message)
        self._draw_now()

    def update(self, state: PlanState) -> None:
        self.state = state
        super().update(state)  # says what changed, as the plain mode does
        if time.monotonic() >= self.next_draw:
            self._draw_now()

    def _draw_now(self) -> None:
        if self.state is None:
            return
        self.next_draw = time.monotonic() + REFRESH_S
        self.display.update(self._view())
        if not self.display.is_started:
            self.display.start()
        self.display.refresh()

    def _view(self) -> RenderableType:
        return render(snapshot(self.state, self.last_event))

    def pausing(self, ask: Ask) -> Ask:
        """``ask`` with the view put away while a person answers (a prompt under a redrawn view would be lost)."""

        def asked(question: str, choices: list[str]) -> str:
            started = self.display.is_started
            self.display.stop()
            try:
                return ask(question, choices)
            finally:
                if started:
                    self.display.start()
                    self.display.refresh()

        return asked

    def close(self) -> None:
        """Put the view away (the cursor shown again) and print its last state once, where it stays."""
        if not self.display.is_started:
            return
        self.display.stop()
        self.console.print(self._view())

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
