"""Fold a plan's events into its current state: the only place state comes from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.events import IMPORT
from ledger.store import Recorded
from machine.machines import BATCH_MACHINE, PART_MACHINE
from machine.plan import Plan

SETTLED = frozenset({"succeeded", "failed"})


@dataclass
class PartState:
    id: str
    number: int
    batch: int
    state: str = "pending"
    ticked: set[int] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)  # boxes any tick or untick event named
    attempts: int = 0
    attempt: str | None = None
    started: dict[str, Any] | None = None
    drops: list[dict[str, Any]] = field(default_factory=list)
    completed_at: str | None = None
    finished_at: str | None = None  # when the current attempt ended (succeeded, failed or lost)
    failures: int = 0
    reason: str | None = None
    last_position: int = 0

    @property
    def label(self) -> str:
        return self.id

    @property
    def drop(self) -> dict[str, Any] | None:
        """The latest drop of the current attempt (or of anyone, without attempts)."""
        mine = [d for d in self.drops if d.get("attempt") in (None, self.attempt)]
        return mine[-1] if mine else None


@dataclass
class BatchState:
    number: int
    state: str = "locked"
    reviews: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"batch {self.number}"

    @property
    def last_review(self) -> dict[str, Any] | None:
        return self.reviews[-1] if self.reviews else None


@dataclass
class PlanState:
    id: str
    path: str = ""
    root: str = ""
    source: str = ""
    sha256: str = ""
    plan: Plan = field(default_factory=Plan)
    parts: dict[str, PartState] = field(default_factory=dict)
    batches: dict[int, BatchState] = field(default_factory=dict)
    box_ids: dict[str, int] = field(default_factory=dict)
    position: int = 0
    revisions: int = 0
    consolidated: dict[str, Any] | None = None
    anomalies: list[str] = field(default_factory=list)
    timezone: str | None = None

    # --- reading -------------------------------------------------------------

    @classmethod
    def fold(cls, plan_id: str, events: Iterable[Recorded], timezone: str | None = None) -> PlanState:
        state = cls(plan_id, timezone=timezone)
        for event in events:
            state.apply(event)
        return state

    @property
    def limit(self) -> int:
        return self.plan.limit

    def running(self) -> list[PartState]:
        return [self.parts[p.id] for p in self.plan.parts if self.parts[p.id].state == "running"]

    def part(self, part_id: str) -> PartState | None:
        return self.parts.get(part_id) if self.plan.part(part_id) else None

    def batch_of(self, part: PartState) -> BatchState:
        return self.batches[part.batch]

    # --- folding --------------------------------------------------------------

    def apply(self, event: Recorded) -> None:
        handler = getattr(self, f"_on_{event.type}", None)
        if handler is not None:
            handler(event)
        self.position = event.position

    def _on_PlanImported(self, event: Recorded) -> None:
        self.path, self.root = event.get("path"), event.get("root")
        self.source, self.sha256 = event.get("source"), event.get("sha256")
        self.plan = Plan.model_validate(event.get("structure"))
        for part in self.plan.parts:
            self.parts.setdefault(part.id, PartState(part.id, part.number, part.batch))
            self.parts[part.id].batch = part.batch
            self.box_ids[part.id] = max([self.box_ids.get(part.id, 0), *(b.id for b in part.boxes)])
        for batch in self.plan.batches:
            self.batches.setdefault(batch.number, BatchState(batch.number))
        self._sync_batches()

    def _on_PlanRevised(self, event: Recorded) -> None:
        self.revisions += 1
        self._on_PlanImported(event)

    def _on_PlanConsolidated(self, event: Recorded) -> None:
        self.consolidated = event.data
        self.path = event.get("paths", {}).get("plan", self.path)  # the plan moved to completed/

    def _on_BatchReviewed(self, event: Recorded) -> None:
        batch = self.batches.get(event.get("batch"))
        if batch is None:
            return
        batch.reviews.append({**event.data, "position": event.position, "recorded_at": event.recorded_at})
        if event.get("by") == IMPORT:
            self._transition(BATCH_MACHINE, batch, "import_approved", "approved")
        elif event.get("decision") == "approve":
            self._transition(BATCH_MACHINE, batch, "approve", "approved")
        else:
            self._transition(BATCH_MACHINE, batch, "reject", "rejected")
            for part_id in event.get("parts", []):
                if part_id in self.parts:
                    self._transition(PART_MACHINE, self.parts[part_id], "send_back", "pending")
            self._transition(BATCH_MACHINE, batch, "reopen", "open")
        self._sync_batches()

    def _on_RunnerStarted(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.attempts += 1
            part.attempt = event.get("attempt")
            part.started = {**event.data, "recorded_at": event.recorded_at, "position": event.position}
            part.reason, part.finished_at = None, None
            self._transition(PART_MACHINE, part, "start", "running")

    def _on_CheckboxTicked(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.ticked.add(event.get("box"))
            part.touched.add(event.get("box"))

    def _on_CheckboxUnticked(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.ticked.discard(event.get("box"))
            part.touched.add(event.get("box"))

    def _on_DropRecorded(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.drops.append({**event.data, "recorded_at": event.recorded_at, "position": event.position})

    def _on_RunnerSucceeded(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            if event.get("by") == IMPORT:  # the file's own stamp, or none
                self._transition(PART_MACHINE, part, "import_succeeded", "succeeded")
                part.completed_at = event.get("completed_at")
            else:
                self._transition(PART_MACHINE, part, "succeed", "succeeded")
                part.finished_at = event.recorded_at
                part.completed_at = event.get("completed_at") or stamp_of(event.recorded_at, self.timezone)

    def _on_RunnerFailed(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.failures += 1
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._transition(PART_MACHINE, part, "fail", "failed")

    def _on_RunnerLost(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._transition(PART_MACHINE, part, "lose", "lost")

    def _on_PartRetried(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            self._transition(PART_MACHINE, part, "retry", "pending")

    def _part_event(self, event: Recorded) -> PartState | None:
        part = self.parts.get(event.get("part"))
        if part is None:
            self.anomalies.append(f"position {event.position}: {event.type} names unknown {event.get('part')}")
        else:
            part.last_position = event.position
        return part

    def _transition(self, machine: Any, obj: Any, trigger: str, dest: str) -> None:
        """Apply a recorded fact; one that does not fit the machine is kept as an anomaly."""
        if trigger in machine.get_triggers(obj.state):
            machine.events[trigger].trigger(obj)
        else:
            self.anomalies.append(f"{obj.label}: {trigger} recorded while {obj.state}")
            obj.state = dest
        if isinstance(obj, PartState) and obj.state in ("succeeded", "failed", "pending", "running", "lost"):
            self._sync_batch(self.batches.get(obj.batch))

    # --- batch states follow their PARTs ---------------------------------------

    def _sync_batches(self) -> None:
        for batch in self.plan.batches:
            self._sync_batch(self.batches[batch.number])

    def _sync_batch(self, batch: BatchState | None) -> None:
        if batch is None:
            return
        if batch.state == "locked" and self._previous_approved(batch.number):
            BATCH_MACHINE.events["unlock"].trigger(batch)
        parts = [self.parts[f"PART-{n}"] for n in self._part_numbers(batch.number)]
        settled = all(p.state in SETTLED for p in parts)
        moved = any(p.state != "pending" or p.attempts for p in parts)
        if batch.state in ("open", "running") and settled:
            BATCH_MACHINE.events["settle"].trigger(batch)
        elif batch.state == "open" and moved:
            BATCH_MACHINE.events["begin"].trigger(batch)
        elif batch.state == "awaiting_review" and not settled:
            BATCH_MACHINE.events["unsettle"].trigger(batch)
        if batch.state == "approved":
            following = self._following(batch.number)
            if following is not None and following.state == "locked":
                self._sync_batch(following)

    def _part_numbers(self, batch_number: int) -> tuple[int, ...]:
        batch = self.plan.batch(batch_number)
        return batch.parts if batch else ()

    def _previous_approved(self, number: int) -> bool:
        order = [b.number for b in self.plan.batches]
        index = order.index(number) if number in order else 0
        return index == 0 or self.batches[order[index - 1]].state == "approved"

    def _following(self, number: int) -> BatchState | None:
        order = [b.number for b in self.plan.batches]
        index = order.index(number) if number in order else len(order)
        return self.batches[order[index + 1]] if index + 1 < len(order) else None


def stamp_of(recorded_at: str, tz: str | None = None) -> str:
    """A ledger time as a plan's ``(Completed YYYY-MM-DD HH:MM)`` stamp."""
    from ledger.clock import parse_time

    moment = parse_time(recorded_at)
    if tz:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%Y-%m-%d %H:%M")
