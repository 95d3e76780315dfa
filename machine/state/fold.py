"""Fold a plan's events into its current state: the only place state comes from."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger.clock import parse_time
from ledger.derived.readmodel import Saved
from ledger.errors import DamagedLedger
from ledger.events import vocabulary
from ledger.events.mapper import Undecodable, decode
from ledger.events.vocabulary import IMPORT
from ledger.store import Recorded
from machine.plan.model import AttemptId, Plan, part_id
from machine.state.machines import BATCH_STATES, allows, batch_machine, part_machine
from machine.state.runner_output import last_output

SETTLED = frozenset({"succeeded", "failed"})
FOLD_REVISION = 10  # bump when the fold below, or the state it saves (snapshot), changes


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
    added_since_success: set[int] = field(default_factory=set)  # boxes a revision added while it was succeeded
    evidence: dict[int, dict[str, Any]] = field(default_factory=dict)  # box → what its tick's evidence says
    attempts: int = 0
    tries: int = 0  # attempts since it was last sent back or reopened: what the retry budget counts
    attempt: str | None = None
    started: dict[str, Any] | None = None
    drops: list[dict[str, Any]] = field(default_factory=list)
    evidence_from: int = 0  # a drop recorded at or before this position is not the current attempt's evidence
    target: dict[str, Any] | None = None  # the knowledge file (path, sha256) the success recorded, if it did
    completed_at: str | None = None
    finished_at: str | None = None  # when the current attempt ended (succeeded, failed or lost)
    failures: int = 0
    losses: int = 0
    retries: int = 0
    reason: str | None = None
    retryable: bool = True  # False: its failure says it cannot succeed unchanged (RunnerFailed.retry)
    last_output: str | None = None  # the last meaningful line the current attempt's runner wrote, if known
    imported: bool = False  # its success is the imported file's history, not an attempt's
    last_position: int = 0
    since: str | None = None  # when it came to its state
    runs: list[dict[str, Any]] = field(default_factory=list)  # every attempt: when it ran, how it ended, why

    def run_of(self, attempt: str | None) -> dict[str, Any] | None:
        """The record of ``attempt`` (default: the current one)."""
        attempt = attempt or self.attempt
        return next((run for run in reversed(self.runs) if run["attempt"] == attempt), None)

    @property
    def label(self) -> str:
        return self.id

    @property
    def imported_success(self) -> bool:
        """It stands succeeded on the imported file's word: no attempt of kx earned it."""
        return self.state == "succeeded" and self.imported

    @property
    def rehearsed(self) -> bool:
        """It stands succeeded by kx's rehearsal runner, which writes placeholders, not knowledge."""
        return self.state == "succeeded" and not self.imported and bool(self.started and self.started.get("rehearsal"))

    @property
    def drop(self) -> dict[str, Any] | None:
        """The latest drop that counts: the current attempt's, or a person's recorded after the attempt started.

        A drop from before the latest start, retry, rejection or reopening does not count (evidence belongs to
        attempts)."""
        mine = [d for d in self.drops
                if d["position"] > self.evidence_from and d.get("attempt") in (None, self.attempt)]
        return mine[-1] if mine else None

    def clear(self, cleared: dict[str, Any], position: int) -> None:
        """Forget the evidence an event says it cleared: those ticks, and every drop, target and stamp so far."""
        boxes = set(cleared.get("boxes", ()))
        self.ticked -= boxes
        for box in boxes:
            self.evidence.pop(box, None)
        self.touched |= boxes  # the ledger now says "unticked": render writes it
        self.evidence_from, self.target, self.completed_at = position, None, None
        self.tries = 0  # fresh work: its retries start again

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ticked"], data["touched"] = sorted(self.ticked), sorted(self.touched)
        data["added_since_success"] = sorted(self.added_since_success)
        data["evidence"] = {str(box): self.evidence[box] for box in sorted(self.evidence)}  # JSON keys are text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartState:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["ticked"], fields["touched"] = set(fields["ticked"]), set(fields["touched"])
        fields["added_since_success"] = set(fields.get("added_since_success", ()))
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
    lease: dict[str, Any] | None = None  # the supervisor holding the plan: pid, pid_started, host, since, position
    anomalies: list[str] = field(default_factory=list)
    timezone: str | None = None
    dirty: set[str] = field(default_factory=set, repr=False, compare=False)  # PARTs changed since last saved
    plan_changed: bool = field(default=False, repr=False, compare=False)  # the plan's own state, likewise
    runs_changed: set[str] = field(default_factory=set, repr=False, compare=False)  # PARTs whose attempts changed
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
        """Fold :meth:`ledger.store.Ledger.scan` rows (upcast already); ticks, most of a long ledger, take a short
        path."""
        current = vocabulary.EVENT_SCHEMA_VERSION
        try:
            for position, stream, version, kind, recorded_at, data, part, box in rows:
                if data is None:
                    self.mark(part, box, kind == "CheckboxTicked", position)
                else:
                    self.apply(Recorded(position, stream, version, kind, decode(kind, current, data), recorded_at,
                                        self.id))
                self.position = position
        except Undecodable:
            raise DamagedLedger(position, kind) from None
        except sqlite3.OperationalError as exc:  # SQLite's json_extract of the next row
            if "malformed JSON" not in str(exc):
                raise
            raise DamagedLedger(None, None) from None
        return self

    def mark(self, part_id: str, box: int, ticked: bool, position: int,
             evidence: dict[str, Any] | None = None) -> None:
        """A tick or an untick: the one fold of both, whether the event came as a lean row or in full.

        A tick keeps its evidence (a lean row has none); an untick drops it."""
        part = self.parts.get(part_id)
        if part is None:
            self._anomaly(f"position {position}: {'CheckboxTicked' if ticked else 'CheckboxUnticked'}"
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
            "path": self.path, "root": self.root, "sha256": self.sha256,
            "box_ids": self.box_ids, "revisions": self.revisions, "consolidated": self.consolidated, "lease": self.lease,
            "anomalies": self.anomalies,
            "batches": {str(n): {"state": b.state, "reviews": b.reviews} for n, b in self.batches.items()},
        }
        details = []
        for name in sorted(self.parts if parts is None else parts):
            part = self.parts[name]
            detail = part.to_dict()
            structure = self.plan.part(name)
            box_ids = {b.id for b in structure.boxes} if structure else set()
            detail["ticked_count"], detail["total"] = len(part.ticked & box_ids), len(box_ids)
            # what the SQL view part_states shows beside: the PART's title and target, its drop as it counts now
            detail["title"] = structure.title if structure else None
            detail["target_file"] = structure.header.target if structure and structure.header else None
            detail["drop_now"] = part.drop
            details.append(detail)
        return plan_state, details

    def runs(self, parts: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every attempt of ``parts`` (default: all), each with its ``part``, in the order they started."""
        chosen = self.parts if parts is None else parts
        runs = [{**run, "part": name} for name in chosen for run in self.parts[name].runs]
        return sorted(runs, key=lambda run: run["start_position"])

    @classmethod
    def restore(cls, plan_id: str, saved: Saved, loader: Loader, timezone: str | None = None) -> PlanState:
        """The state the read model saved."""
        position, structure_position, plan_state, parts = (saved.position, saved.structure_position,
                                                           saved.plan_state, saved.parts)
        state = cls(plan_id, path=plan_state["path"], root=plan_state["root"], sha256=plan_state["sha256"],
                    box_ids=plan_state["box_ids"], position=position, structure_position=structure_position,
                    revisions=plan_state["revisions"], consolidated=plan_state["consolidated"], lease=plan_state["lease"],
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
            if event.type in PLAN_EVENTS:
                self.plan_changed = True
        self.position = event.position

    def _anomaly(self, text: str) -> None:
        self.anomalies.append(text)
        self.plan_changed = True

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
        before = {part.id: {box.id for box in part.boxes} for part in self.plan.parts}
        self._on_PlanImported(event)
        for part in self.plan.parts:
            state = self.parts[part.id]
            if state.state == "succeeded" and part.id in before:
                state.added_since_success |= {box.id for box in part.boxes} - before[part.id]

    def _on_PlanConsolidated(self, event: Recorded) -> None:
        self.consolidated = event.data
        self.path = event.get("paths", {}).get("plan", self.path)  # the plan moved to completed/

    def _on_SupervisorLeased(self, event: Recorded) -> None:
        self.lease = {"pid": event.get("pid"), "pid_started": event.get("pid_started"), "host": event.get("host"),
                      "by": event.get("by"), "since": event.recorded_at, "position": event.position}

    def _on_SupervisorReleased(self, event: Recorded) -> None:
        if self.lease and (self.lease["pid"], self.lease["host"]) == (event.get("pid"), event.get("host")):
            self.lease = None

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
                    self._fire(part_machine(), self.parts[sent], "send_back", event.recorded_at)
            for sent, cleared in (event.get("cleared") or {}).items():
                if sent in self.parts:
                    self.parts[sent].clear(cleared, event.position)
            self._fire(batch_machine(), batch, "reopen")
        self._sync_batches()

    def _on_RunnerStarted(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part and self._fire(part_machine(), part, "start", event.recorded_at):
            part.attempts += 1
            part.tries += 1
            part.attempt = event.get("attempt")
            parsed = AttemptId.parse(part.attempt or "")
            part.runs.append({"attempt": part.attempt, "number": parsed.number if parsed else None,
                              "started_at": event.recorded_at, "by": event.get("by"), "start_position": event.position,
                              "ended_at": None, "end_position": None, "outcome": "running", "lost": False,
                              "reason": None, "lost_reason": None})
            self.runs_changed.add(part.id)
            part.started = {**event.data, "recorded_at": event.recorded_at, "position": event.position}
            part.reason, part.last_output, part.finished_at = None, None, None
            part.evidence_from = event.position
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
            part.imported = event.get("by") == IMPORT
            if part.imported:  # the file's own stamp, or none
                self._fire(part_machine(), part, "import_succeeded", event.recorded_at)
                part.completed_at = event.get("completed_at")
            else:
                self._ended(part, event, "succeeded")
                self._fire(part_machine(), part, "succeed", event.recorded_at)
                part.finished_at, part.target = event.recorded_at, event.get("target")
                part.completed_at = event.get("completed_at") or stamp_of(event.recorded_at, self.timezone)

    def _on_RunnerFailed(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.failures += 1
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            part.retryable = event.get("retry") is not False
            part.last_output = event.get("last_output") or last_output(event.get("log_tail"))
            self._ended(part, event, "failed")
            self._fire(part_machine(), part, "fail", event.recorded_at)

    def _on_RunnerLost(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part:
            part.reason, part.finished_at = event.get("reason"), event.recorded_at
            part.last_output = event.get("last_output")
            self._ended(part, event, "lost")
            if self._fire(part_machine(), part, "lose", event.recorded_at):
                part.losses += 1

    def _on_PartRetried(self, event: Recorded) -> None:
        part = self._part_event(event)
        if part and self._fire(part_machine(), part, "retry", event.recorded_at):
            part.retries += 1
            part.evidence_from = event.position

    def _on_PartReopened(self, event: Recorded) -> None:
        if event.get("withdrew_consolidation"):
            self.consolidated = None  # open again; the plan stays where consolidation moved it
        part = self._part_event(event)
        if part:
            self._fire(part_machine(), part, "reopen", event.recorded_at)
            part.clear(event.get("cleared") or {}, event.position)
            self._fire(batch_machine(), self.batches[part.batch], "part_reopened")
            self._sync_batches()  # the batches after it lock until it is approved again

    def _part_event(self, event: Recorded) -> PartState | None:
        part = self.parts.get(event.get("part"))
        if part is None:
            self._anomaly(f"position {event.position}: {event.type} names unknown {event.get('part')}")
        else:
            part.last_position = event.position
            self.dirty.add(part.id)
        return part

    def _ended(self, part: PartState, event: Recorded, outcome: str) -> None:
        """An attempt's end on its record: the first end is when it ended, the last how; a loss is kept with why."""
        run = part.run_of(event.get("attempt"))
        if run is None:
            return
        if run["ended_at"] is None:
            run["ended_at"], run["end_position"] = event.recorded_at, event.position
        run["outcome"], run["reason"] = outcome, event.get("reason")
        if outcome == "lost":
            run["lost"] = True
            run["lost_reason"] = run["lost_reason"] or event.get("reason")
        self.runs_changed.add(part.id)

    def _fire(self, machine: Any, obj: Any, trigger: str, at: str | None = None) -> bool:
        """Move ``obj`` (at ``at``, for a PART) as the machine says; a recorded fact the machine does not allow is
        kept as an anomaly (``kx audit verify`` reports it) and changes nothing."""
        if not allows(machine, obj, trigger):
            self._anomaly(f"{obj.label}: {trigger.replace('_', ' ')} recorded while {obj.state}")
            return False
        machine.events[trigger].trigger(obj, plan=self)
        if isinstance(obj, BatchState):
            self.plan_changed = True
        else:
            obj.since = at
            if obj.state != "succeeded":  # boxes added to a success concern that success only
                obj.added_since_success.clear()
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
            self.plan_changed = True
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

    def following(self, number: int) -> BatchState | None:
        order = [b.number for b in self.plan.batches]
        index = order.index(number) if number in order else len(order)
        return self.batches[order[index + 1]] if index + 1 < len(order) else None

    def first_unapproved_before(self, number: int) -> BatchState | None:
        """The first batch before batch ``number`` in plan order that is not approved (None when all are)."""
        for structure in self.plan.batches:
            if structure.number == number:
                return None
            if self.batches[structure.number].state != "approved":
                return self.batches[structure.number]
        return None

    def earlier_approved(self, batch: BatchState) -> bool:
        return self.first_unapproved_before(batch.number) is None


_HANDLERS = {name[4:]: method for name, method in vars(PlanState).items() if name.startswith("_on_")}
# the events that change the plan's own state when folded (those of PARTs change it through the batch machine)
PLAN_EVENTS = frozenset({"PlanImported", "PlanRevised", "PlanConsolidated", "SupervisorLeased", "SupervisorReleased",
                         "BatchReviewed", "PartReopened"})


def stamp_of(recorded_at: str, tz: str | None = None) -> str:
    """A ledger time as a plan's ``(Completed YYYY-MM-DD HH:MM)`` stamp."""
    moment = parse_time(recorded_at)
    if tz:
        from zoneinfo import ZoneInfo

        moment = moment.astimezone(ZoneInfo(tz))
    return moment.strftime("%Y-%m-%d %H:%M")
