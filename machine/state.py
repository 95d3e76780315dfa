"""Fold a plan's events into its current state: the only place state comes from."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger.store import Recorded
from ledger.vocabulary import IMPORT
from machine.machines import BATCH_STATES, allows, batch_machine, part_machine
from machine.plan import Plan, part_id


SETTLED = frozenset({"succeeded", "failed"})


@dataclass
class PartState:
    id: str
    number: int
    batch: int
    state: str = "pending"
    ticked: set[int] = field(default_factory=set)
    touched: set[int] = field(default_factory=set)  # boxes any tick or untick event named
    evidence: dict[int, dict[str, Any]] = field(default_factory=dict)  # box → what its tick's evidence says
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
        data["evidence"] = {str(box): self.evidence[box] for box in sorted(self.evidence)}  # JSON keys are text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartState:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["ticked"], fields["touched"] = set(fields["ticked"]), set(fields["touched"])
        fields["evidence"] = {int(box): value for box, value in fields.get("evidence", {}).items()}
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

        loads = json.loads
        for position, stream, version, kind, recorded_at, data, part_id, box in rows:
            if data is None:
                self.mark(part_id, box, kind == "CheckboxTicked", position)
            else:
                self.apply(Recorded(position, stream, version, kind, loads(data), recorded_at, self.id))
            self.position = position
        return self

    def mark(self, part_id: str, box: int, ticked: bool, position: int,
             evidence: dict[str, Any] | None = None) -> None:
        """A tick or an untick: the one fold of both, whether the event came as a lean row or in full.

        A tick keeps its evidence (a lean row has none); an untick drops it."""
        part = self.parts.get(part_id)
        if part is None:
            self.anomalies.append(f"position {position}: {'CheckboxTicked' if ticked else 'CheckboxUnticked'}"
                                  f" names unknown {part_id}")
            return
        if ticked:
            part.ticked.add(box)
            if evidence is None:
                part.evidence.pop(box, None)
            else:
                part.evidence[box] = evidence
        else:
            part.ticked.discard(box)
            part.evidence.pop(box, None)
        part.touched.add(box)
        part.last_position = position
        self.dirty.add(part_id)

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
            self._fire(batch_machine(), batch, "import_approved")
        elif event.get("decision") == "approve":
            self._fire(batch_machine(), batch, "approve")
        else:
            self._fire(batch_machine(), batch, "reject")
            for sent in event.get("parts", []):
                if sent in self.parts:
                    self.dirty.add(sent)
                    self._fire(part_machine(), self.parts[sent], "send_back")
            self._fire(batch_machine(), batch, "reopen")
        self._sync_batches()

    def _on_RunnerStarted(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part and self._fire(part_machine(), part, "start"):
            part.attempts += 1
            part.attempt = event.get("attempt")
            part.started = {**event.data, "recorded_at": event.recorded_at, "position": event.position}
            part.reason, part.finished_at = None, None
            self._advance(self.batches.get(part.batch))

    def _on_CheckboxTicked(self, event: Recorded) -> None:
        self.mark(event.get("part"), event.get("box"), True, event.position, event.get("evidence"))

    def _on_CheckboxUnticked(self, event: Recorded) -> None:
        self.mark(event.get("part"), event.get("box"), False, event.position)

    def _on_DropRecorded(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.drops.append({**event.data, "recorded_at": event.recorded_at, "position": event.position})

    def _on_RunnerSucceeded(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            if event.get("by") == IMPORT:  # the file's own stamp, or none
                self._fire(part_machine(), part, "import_succeeded")
                part.completed_at = event.get("completed_at")
            else:
                self._fire(part_machine(), part, "succeed")
                part.finished_at = event.recorded_at
                part.completed_at = event.get("completed_at") or stamp_of(event.recorded_at, self.timezone)

    def _on_RunnerFailed(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.failures += 1
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._fire(part_machine(), part, "fail")

    def _on_RunnerLost(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            self._fire(part_machine(), part, "lose")

    def _on_PartRetried(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            self._fire(part_machine(), part, "retry")

    def _part_event(self, event: Recorded) -> PartState | None:
        part = self.parts.get(event.get("part"))
        if part is None:
            self.anomalies.append(f"position {event.position}: {event.type} names unknown {event.get('part')}")
        else:
            part.last_position = event.position
            self.dirty.add(part.id)
        return part

    def _fire(self, machine: Any, obj: Any, trigger: str) -> bool:
        """Move ``obj`` as the machine says; a recorded fact the machine does not allow is kept as an anomaly
        (``kx audit verify`` reports it) and changes nothing."""
        if not allows(machine, obj, trigger):
            self.anomalies.append(f"{obj.label}: {trigger.replace('_', ' ')} recorded while {obj.state}")
            return False
        machine.events[trigger].trigger(obj, plan=self)
        if isinstance(obj, PartState):
            self._advance(self.batches.get(obj.batch))
        return True

    # --- batch states follow their PARTs: the batch machine's "advance" and its facts -----

    def _sync_batches(self) -> None:
        for batch in self.plan.batches:
            self._advance(self.batches[batch.number])

    def _advance(self, batch: BatchState | None) -> None:
        if batch is None:
            return
        machine = batch_machine()
        for _ in BATCH_STATES:  # each advance moves one step; none moves more than a few
            if not allows(machine, batch, "advance") or not machine.events["advance"].trigger(batch, plan=self):
                break
        if batch.state == "approved":
            following = self.following(batch.number)
            if following is not None and following.state == "locked":
                self._advance(following)

    def members(self, batch: BatchState) -> list[PartState]:
        structure = self.plan.batch(batch.number)
        return [self.parts[part_id(n)] for n in (structure.parts if structure else ())]

    def all_settled(self, batch: BatchState) -> bool:
        return all(p.state in SETTLED for p in self.members(batch))

    def has_moved(self, batch: BatchState) -> bool:
        return any(p.state != "pending" or p.attempts for p in self.members(batch))

    def previous(self, number: int) -> BatchState | None:
        """The batch before batch ``number`` in plan order (None for the first)."""
        order = [b.number for b in self.plan.batches]
        index = order.index(number) if number in order else 0
        return self.batches[order[index - 1]] if index > 0 else None

    def following(self, number: int) -> BatchState | None:
        order = [b.number for b in self.plan.batches]
        index = order.index(number) if number in order else len(order)
        return self.batches[order[index + 1]] if index + 1 < len(order) else None

    def previous_approved(self, batch: BatchState) -> bool:
        before = self.previous(batch.number)
        return before is None or before.state == "approved"


_HANDLERS = {name[4:]: method for name, method in vars(PlanState).items() if name.startswith("_on_")}


def stamp_of(recorded_at: str, tz: str | None = None) -> str:
    """A ledger time as a plan's ``(Completed YYYY-MM-DD HH:MM)`` stamp."""
    from ledger.clock import parse_time

    moment = parse_time(recorded_at)
    if tz:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%Y-%m-%d %H:%M")
