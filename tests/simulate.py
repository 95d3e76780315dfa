"""A run simulated straight into a ledger, fast: for reports and SQL views at 42 and 1,000 PARTs.

The events are the ones ``kx run`` records, under the same rules (the limit, the
gates, the evidence), recorded as acts record them (the read model kept) in one transaction with time
taken from ``$KX_NOW``: a first attempt fails now and then, an attempt is lost
now and then (and retried), one lost attempt is finished by a person, one batch
is rejected once. It returns what it did, to compare the projections with.
"""

from __future__ import annotations

import heapq
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ledger import clock
from ledger.events.models import (
    BatchReviewed,
    CheckboxTicked,
    DropRecorded,
    PartRetried,
    RunnerFailed,
    RunnerLost,
    RunnerStarted,
    RunnerSucceeded,
)
from machine.acts.workspace import Workspace

START = datetime(2025, 11, 20, 8, 0, tzinfo=timezone.utc)


def plan_text(parts: int, per_batch: int = 6, limit: int = 6, title: str = "Simulated Plan") -> str:
    batches = (parts + per_batch - 1) // per_batch
    lines = [f"# Knowledge Expansion: {title}", "",
             f"**Strategy**: {parts} runners, {limit} at a time ({batches} batches)", ""]
    for batch in range(1, batches + 1):
        first, last = (batch - 1) * per_batch + 1, min(parts, batch * per_batch)
        lines.append(f"- **Batch {batch}**: PARTs {first}-{last} (Batch {batch} topics)")
    for batch in range(1, batches + 1):
        lines += ["", f"# BATCH {batch}: Batch {batch} topics", ""]
        for n in range((batch - 1) * per_batch + 1, min(parts, batch * per_batch) + 1):
            lines += [f"## PART {n}: Topic {n} <b>&amp; friends</b>", "", f"- [ ] PART {n}: Create topics/{n:04d}.md",
                      "", "**Step 1: Research**", "- [ ] Search one", "- [ ] Search two",
                      "**Step 2: Create Knowledge File**", "- [ ] Section 1: Overview", "- [ ] Section 2: Details",
                      "**Step 3: Create KNOWLEDGE DROP**",
                      f"- [ ] Create KNOWLEDGE-DROP-topic-{n}-2025-11-20-[TIME].md", ""]
    return "\n".join(lines)


@dataclass
class Attempt:
    part: str
    attempt: str
    started_at: str
    ended_at: str | None = None
    outcome: str = "running"
    lost: bool = False


@contextmanager
def _time_from_env():
    before = os.environ.get(clock.FROZEN_ENV)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(clock.FROZEN_ENV, None)
        else:
            os.environ[clock.FROZEN_ENV] = before


class Simulation:
    def __init__(self, workspace: Workspace, seed: int, fail_rate: float, lose_rate: float):
        self.ws, self.rng = workspace, random.Random(seed)
        self.fail_rate, self.lose_rate = fail_rate, lose_rate
        self.state = workspace.state()
        self.plan = self.state.id
        self.queue: list[tuple[float, int, str, tuple]] = []
        self.seq = 0
        self.attempts: dict[str, Attempt] = {}
        self.counts: dict[str, int] = {}
        self.person_finished = False
        self.ticked: dict[str, set[int]] = {}

    def at(self, seconds: float, action: str, *args) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (seconds, self.seq, action, args))

    def append(self, seconds: float, *events) -> str:
        moment = clock.iso(START + timedelta(seconds=seconds))
        os.environ[clock.FROZEN_ENV] = moment
        self.ws.record(self.state, list(events))  # the read model kept as kx keeps it
        return moment

    # --- a batch, slot by slot ------------------------------------------------------------

    def run(self, stop_at: float | None, reject_batch: int | None) -> list[Attempt]:
        now = 0.0
        for batch in self.state.plan.batches:
            now = self.run_batch([f"PART-{n}" for n in batch.parts], now, stop_at)
            if now is None:
                break
            now += self.rng.uniform(60, 300)
            if stop_at is not None and now > stop_at:
                break
            if batch.number == reject_batch:
                sent = f"PART-{batch.parts[0]}"
                self.append(now, BatchReviewed(plan=self.plan, batch=batch.number, decision="reject", by="erin",
                                               note=f"{sent} cites nothing <script>alert(1)</script>", parts=[sent]))
                now = self.run_batch([sent], now + 5, stop_at)
                if now is None:
                    break
                now += 30
            self.append(now, BatchReviewed(plan=self.plan, batch=batch.number, decision="approve",
                                           by="auto" if batch.number % 2 else "erin",
                                           note=None if batch.number % 3 else f"batch {batch.number} reads well"))
        return list(self.attempts.values())

    def run_batch(self, parts: list[str], now: float, stop_at: float | None) -> float | None:
        waiting, running = list(parts), set()
        self.at(now, "fill")
        while self.queue:
            seconds, _, action, args = heapq.heappop(self.queue)
            if stop_at is not None and seconds > stop_at:
                self.queue.clear()
                return None
            now = seconds
            if action == "fill":
                while waiting and len(running) < self.state.limit:
                    part = waiting.pop(0)
                    running.add(part)
                    self.start(part, now)
            elif action == "progress":
                self.progress(now, *args)
            elif action == "end":
                part, outcome = args
                self.end(part, outcome, now)
                running.discard(part)
                if outcome in ("failed", "lost"):
                    self.at(now + 2, "retry", part)
                self.at(now, "fill")
            elif action == "retry":
                self.append(now, PartRetried(plan=self.plan, part=args[0], reason="retry"))
                waiting.insert(0, args[0])
                self.at(now, "fill")
        return now

    def start(self, part: str, now: float) -> None:
        self.counts[part] = self.counts.get(part, 0) + 1
        attempt = f"{part}#{self.counts[part]}"
        at = self.append(now, RunnerStarted(plan=self.plan, part=part, attempt=attempt, runner=["rehearse"]))
        self.attempts[attempt] = Attempt(part, attempt, at)
        took = self.rng.uniform(90, 900)
        roll = self.rng.random()
        first = self.counts[part] == 1
        outcome = "failed" if first and roll < self.fail_rate else \
            "lost" if first and roll < self.fail_rate + self.lose_rate else "succeeded"
        if outcome == "lost" and not self.person_finished:
            outcome = "lost+finished"
            self.person_finished = True
        if outcome != "failed":
            self.at(now + took * 0.8, "progress", part, attempt)
        self.at(now + took, "end", part, outcome)

    def progress(self, now: float, part: str, attempt: str) -> None:
        structure = self.state.plan.part(part)
        done = self.ticked.setdefault(part, set())
        ticks = [CheckboxTicked(plan=self.plan, part=part, box=b.id, text=b.text, attempt=attempt, by=attempt)
                 for b in structure.boxes if b.id not in done]
        done.update(b.id for b in structure.boxes)
        drop = DropRecorded(plan=self.plan, part=part, path=f"KNOWLEDGE-DROP-{part}.md", attempt=attempt, by=attempt,
                            sha256=f"{structure.number:064x}", size=400 + structure.number)
        self.append(now, *ticks, drop)

    def end(self, part: str, outcome: str, now: float) -> None:
        attempt = f"{part}#{self.counts[part]}"
        record = self.attempts[attempt]
        if outcome == "succeeded":
            record.ended_at = self.append(now, RunnerSucceeded(plan=self.plan, part=part, attempt=attempt, by=attempt))
        elif outcome == "failed":
            record.ended_at = self.append(now, RunnerFailed(plan=self.plan, part=part, attempt=attempt, by=attempt,
                                                            reason="runner exited 1", exit_code=1))
        else:
            record.ended_at = self.append(now, RunnerLost(plan=self.plan, part=part, attempt=attempt,
                                                          reason="no heartbeat for 61s (lease 60s)"))
            record.lost = True
            if outcome == "lost+finished":  # its evidence was complete: a person finishes it
                self.append(now + 1, RunnerSucceeded(plan=self.plan, part=part, by="erin"))
                record.outcome = "succeeded"
                return
        record.outcome = outcome.split("+")[0]


def simulate(folder: Path, parts: int, *, per_batch: int = 6, limit: int = 6, seed: int = 7,
             fail_rate: float = 0.08, lose_rate: float = 0.03, stop_at: float | None = None,
             reject_batch: int | None = 2) -> list[Attempt]:
    """Import a plan of ``parts`` PARTs in ``folder`` and record a run of it; the attempts made."""
    from machine.acts.importer import import_plan

    plan = folder / "plan.md"
    plan.write_text(plan_text(parts, per_batch, limit), encoding="utf-8")
    with _time_from_env():
        os.environ[clock.FROZEN_ENV] = clock.iso(START - timedelta(minutes=5))
        import_plan(lambda: Workspace.open(str(folder / ".kx" / "ledger.db"), create=True), plan)
        workspace = Workspace.open(str(folder / ".kx" / "ledger.db"))
        workspace.ledger.conn.execute("PRAGMA synchronous = OFF")
        with workspace.ledger.transaction():
            attempts = Simulation(workspace, seed, fail_rate, lose_rate).run(stop_at, reject_batch)
        workspace.ledger.close()
    return attempts
