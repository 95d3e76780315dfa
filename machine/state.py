"""Fold a plan's events into its current state: the only place state comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger import vocabulary
from ledger.store import Recorded
from ledger.vocabulary import IMPORT
from machine.machines import batch_machine, part_machine
from machine.plan import Plan


SETTLED = frozenset({"succeeded", "failed"})
FOLD_REVISION = 1  # bump when the fold below, or the state it saves (snapshot), changes


def fold_version() -> str:
    """What the read model's rows are stamped with: this fold, over events upcast to this event schema."""
    return f"{FOLD_REVISION}.{vocabulary.EVENT_SCHEMA_VERSION}"


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ticked"], data["touched"] = sorted(self.ticked), sorted(self.touched)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartState:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["ticked"], fields["touched"] = set(fields["ticked"]), set(fields["touched"])
        return cls(**fields)


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


Loader = Callable[[int], tuple[str, Plan]]  # structure position → (source, plan)


@dataclass
class PlanState:
    id: str
    path: str = ""
    root: str = ""
    sha256: str = ""
    parts: dict[str, PartState] = field(default_factory=dict)
    batches: dict[int, BatchState] = field(default_factory=dict)
    box_ids: dict[str, int] = field(default_factory=dict)
    position: int = 0
    structure_position: int = 0
    revisions: int = 0
    consolidated: dict[str, Any] | None = None
    anomalies: list[str] = field(default_factory=list)
    timezone: str | None = None
    dirty: set[str] = field(default_factory=set, repr=False, compare=False)
    _structure: tuple[str, Plan] | None = field(default=None, repr=False, compare=False)
    _loader: Loader | None = field(default=None, repr=False, compare=False)

    # --- the plan's text and structure, loaded when first needed -------------------

    @property
    def plan(self) -> Plan:
        return self._load_structure()[1]

    @property
    def source(self) -> str:
        return self._load_structure()[0]

    def _load_structure(self) -> tuple[str, Plan]:
        if self._structure is None:
            if self._loader is None or not self.structure_position:
                self._structure = ("", Plan())
            else:
                self._structure = self._loader(self.structure_position)
        return self._structure

    # --- reading -------------------------------------------------------------

    def fold_rows(self, rows: Iterable[tuple]) -> PlanState:
        """Fold :meth:`ledger.store.Ledger.scan` rows; ticks, most of a long ledger, take a short path."""
        import json

        parts, dirty, loads = self.parts, self.dirty, json.loads
        for position, stream, version, kind, recorded_at, data, part_id, box in rows:
            if data is not None:
                self.apply(Recorded(position, stream, version, kind, loads(data), recorded_at, self.id))
                continue
            part = parts.get(part_id)
            if part is None:
                self.anomalies.append(f"position {position}: {kind} names unknown {part_id}")
            else:
                if kind == "CheckboxTicked":
                    part.ticked.add(box)
                else:
                    part.ticked.discard(box)
                part.touched.add(box)
                part.last_position = position
                dirty.add(part_id)
            self.position = position
        return self

    def snapshot(self, parts: Iterable[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The plan's own state and the details of ``parts`` (default: all), as the read model keeps them."""
        plan_state = {
            "path": self.path, "root": self.root, "sha256": self.sha256, "box_ids": self.box_ids,
            "revisions": self.revisions, "consolidated": self.consolidated, "anomalies": self.anomalies,
            "batches": {str(n): {"state": b.state, "reviews": b.reviews} for n, b in self.batches.items()},
        }
        details = []
        for part_id in sorted(self.parts if parts is None else parts):
            detail = self.parts[part_id].to_dict()
            structure = self.plan.part(part_id)
            box_ids = {b.id for b in structure.boxes} if structure else set()
            detail["ticked_count"], detail["total"] = len(self.parts[part_id].ticked & box_ids), len(box_ids)
            details.append(detail)
        return plan_state, details

    @classmethod
    def restore(cls, plan_id: str, position: int, structure_position: int, plan_state: dict[str, Any],
                parts: list[dict[str, Any]], loader: Loader, timezone: str | None = None) -> PlanState:
        state = cls(plan_id, path=plan_state["path"], root=plan_state["root"], sha256=plan_state["sha256"],
                    box_ids=plan_state["box_ids"], position=position, structure_position=structure_position,
                    revisions=plan_state["revisions"], consolidated=plan_state["consolidated"],
                    anomalies=plan_state["anomalies"], timezone=timezone, _loader=loader)
        state.batches = {int(n): BatchState(int(n), b["state"], b["reviews"]) for n, b in plan_state["batches"].items()}
        state.parts = {p["id"]: PartState.from_dict(p) for p in parts}
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
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        self.position = event.position

    def _on_PlanImported(self, event: Recorded) -> None:
        self.path, self.root, self.sha256 = event.get("path"), event.get("root"), event.get("sha256")
        self.structure_position = event.position
        self._structure = (event.get("source"), Plan.from_dict(event.get("structure")))
        self.dirty.update(p.id for p in self.plan.parts)
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
            self._transition(batch_machine(), batch, "import_approved", "approved")
        elif event.get("decision") == "approve":
            self._transition(batch_machine(), batch, "approve", "approved")
        else:
            self._transition(batch_machine(), batch, "reject", "rejected")
            for part_id in event.get("parts", []):
                if part_id in self.parts:
                    self.dirty.add(part_id)
                    self._transition(part_machine(), self.parts[part_id], "send_back", "pending")
            self._transition(batch_machine(), batch, "reopen", "open")
        self._sync_batches()

    def _on_RunnerStarted(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.attempts += 1
            part.attempt = event.get("attempt")
            part.started = {**event.data, "recorded_at": event.recorded_at, "position": event.position}
            part.reason, part.finished_at = None, None
            self._transition(part_machine(), part, "start", "running")

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
                self._transition(part_machine(), part, "import_succeeded", "succeeded")
                part.completed_at = event.get("completed_at")
            else:
                self._transition(part_machine(), part, "succeed", "succeeded")
                part.finished_at = event.recorded_at
                part.completed_at = event.get("completed_at") or stamp_of(event.recorded_at, self.timezone)

    def _on_RunnerFailed(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.failures += 1
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._transition(part_machine(), part, "fail", "failed")

    def _on_RunnerLost(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._transition(part_machine(), part, "lose", "lost")

    def _on_PartRetried(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            self._transition(part_machine(), part, "retry", "pending")

    def _part_event(self, event: Recorded) -> PartState | None:
        part = self.parts.get(event.get("part"))
        if part is None:
            self.anomalies.append(f"position {event.position}: {event.type} names unknown {event.get('part')}")
        else:
            part.last_position = event.position
            self.dirty.add(part.id)
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
            batch_machine().events["unlock"].trigger(batch)
        parts = [self.parts[f"PART-{n}"] for n in self._part_numbers(batch.number)]
        settled = all(p.state in SETTLED for p in parts)
        moved = any(p.state != "pending" or p.attempts for p in parts)
        if batch.state in ("open", "running") and settled:
            batch_machine().events["settle"].trigger(batch)
        elif batch.state == "open" and moved:
            batch_machine().events["begin"].trigger(batch)
        elif batch.state == "awaiting_review" and not settled:
            batch_machine().events["unsettle"].trigger(batch)
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


_HANDLERS = {name[4:]: method for name, method in vars(PlanState).items() if name.startswith("_on_")}


def stamp_of(recorded_at: str, tz: str | None = None) -> str:
    """A ledger time as a plan's ``(Completed YYYY-MM-DD HH:MM)`` stamp."""
    from ledger.clock import parse_time

    moment = parse_time(recorded_at)
    if tz:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%Y-%m-%d %H:%M")
