"""``kx plan import``: record a plan, or a revision of it, with the history its file already shows.

Ticked boxes and ticked PART headers in the file become events recorded ``by``
``import``; a batch followed by a batch with progress counts as approved by
``import``. A revision keeps each box's stable id when its text is still there
(matched in order with difflib), so ticks carry over; of its marks, only what
changed since the file last imported counts (:mod:`machine.acts.revision`), and a
tick a person removed is recorded as their untick.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ledger import logs
from ledger.errors import BadInput, Refused
from ledger.events.models import (
    IMPORT,
    BatchReviewed,
    CheckboxTicked,
    Event,
    PlanImported,
    PlanRevised,
    RunnerSucceeded,
)
from machine.acts import revision
from machine.acts.context import Act, Context
from machine.acts.revision import Change, box_mark, header_mark
from machine.acts.ticks import tick
from machine.acts.workspace import Workspace
from machine.plan.model import Part, Plan, match_boxes
from machine.plan.parser import PlanError, parse
from machine.plan.paths import PathGuard, refuse_unsafe_paths
from machine.plan.text import read_file
from machine.state.findings import findings
from machine.state.fold import PartState, PlanState


@dataclass
class ImportResult:
    plan: str
    action: str  # "imported", "revised" or "unchanged"
    path: str
    events: int = 0
    parts: int = 0
    batches: int = 0
    carried: int = 0
    dropped: list[str] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # what a revision changed, one line each (machine.acts.revision)
    reanchored: str | None = None  # the project folder a moved ledger was made in, accepted here by this import

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def read_plan(file: Path) -> tuple[bytes, Plan]:
    raw = read_file(file)
    try:
        return raw, parse(raw, name=str(file))
    except PlanError as exc:
        raise BadInput(str(exc)) from None


def import_plan(open_workspace: Callable[[], Workspace], file: Path, *, root: Path | None = None,
                ledger: Path | None = None) -> ImportResult:
    """Read, parse and check ``file`` first, so that a bad plan leaves no ledger behind, then record it.

    ``ledger`` is where the ledger is, or will be: no path of the plan may name it.
    """
    raw, plan = read_plan(file)
    refuse_unsafe_paths(plan, PathGuard.around(root or file.parent, ledger=ledger, plan=file), str(file))
    workspace = open_workspace()
    moved_from = workspace.ledger.elsewhere()
    result = _record(workspace, file, raw, plan, root)
    if moved_from is not None:  # importing here is how a person says the project moved on purpose
        workspace.ledger.reanchor()
        result.reanchored = moved_from
    return result


def _record(workspace: Workspace, file: Path, raw: bytes, plan: Plan, root: Path | None) -> ImportResult:
    sha = hashlib.sha256(raw).hexdigest()
    stored = workspace.store_path(file)
    with workspace.ledger.transaction():
        plan_id = _existing_plan(workspace, stored)
        if plan_id is None:
            plan_id = workspace.plan_choice or _new_id(file, workspace.plan_ids())
            base = dict(plan=plan_id, path=stored, root=workspace.store_path(root or file.parent),
                        sha256=sha, source=raw.decode("utf-8"))
            events = [PlanImported(**base, structure=plan.to_dict()), *file_history(plan_id, plan, None)]
            _append(workspace, PlanState(plan_id, timezone=workspace.config(plan_id).timezone), events)
            logs.get().info("plan imported", plan=plan_id, path=stored, events=len(events))
            return ImportResult(plan_id, "imported", stored, len(events), len(plan.parts), len(plan.batches))
        state = workspace.state(plan_id=plan_id)
        if state.sha256 == sha and state.path == stored:
            return ImportResult(plan_id, "unchanged", stored, 0, len(state.plan.parts), len(state.plan.batches))
        return _revise(workspace, state, raw, plan, sha, stored, root)


def _revise(workspace: Workspace, state: PlanState, raw: bytes, plan: Plan, sha: str, stored: str,
            root: Path | None) -> ImportResult:
    if root is None:  # the revision keeps the root the plan was imported with
        guard = PathGuard.around(workspace.resolve(state.root), ledger=workspace.ledger.path,
                                 plan=workspace.resolve(stored))
        refuse_unsafe_paths(plan, guard, stored)
    plan = carry_box_ids(state.plan, plan, state.box_ids)
    carried, dropped = _carried_ticks(state, plan)
    changes = revision.changes(state, plan)
    revised = PlanRevised(
        plan=state.id, path=stored, root=workspace.store_path(root) if root else state.root, sha256=sha,
        source=raw.decode("utf-8"), structure=plan.to_dict(), previous_sha256=state.sha256,
        carried=carried, dropped=dropped,
    )
    events = [revised, *file_history(state.id, plan, state)]
    _append(workspace, state, events)  # a consolidated plan takes no revision
    unticked = _record_unticks(workspace, state.id, [c for c in changes if c.kind == "unticked"])
    changes += _added_to_successes(workspace, state.id, changes)
    logs.get().info("plan revised", plan=state.id, path=stored, carried=carried, dropped=len(dropped),
                    changes=len(changes))
    return ImportResult(state.id, "revised", stored, len(events) + unticked, len(plan.parts), len(plan.batches),
                        carried, dropped, [c.as_dict() for c in changes])


def _append(workspace: Workspace, state: PlanState, events: list[Event]) -> None:
    """Record the import's events as every act does: each asked of the rules (:meth:`Rules.check`), then appended."""
    config = workspace.config(state.id)
    Context(workspace, state, workspace.rules(state, config=config), config).append(*events)


def _record_unticks(workspace: Workspace, plan_id: str, unticks: list[Change]) -> int:
    """The ticks a person removed in the file, recorded as their ``kx untick``, under its rules, PART by PART;
    each change says what became of it. How many were recorded."""
    pinned = replace(workspace, plan_choice=plan_id)  # the ledger may hold other plans
    by_part: dict[str, list[Change]] = {}
    for change in unticks:
        by_part.setdefault(change.part, []).append(change)
    recorded = 0
    for part, group in by_part.items():
        act = Act()
        try:
            tick(pinned, part, [c.details["box"] for c in group], act, ticked=False)
        except Refused as refusal:
            for change in group:
                revision.untick_message(change, refusal=refusal.message)
            continue
        for change in group:
            revision.untick_message(change, by=act.actor)
        recorded += len(group)
    return recorded


def _added_to_successes(workspace: Workspace, plan_id: str, changes: list[Change]) -> list[Change]:
    """The findings about succeeded PARTs this revision added boxes to, as ``kx status`` shows them."""
    touched = {c.part for c in changes if c.kind in ("box_added", "box_edited")}
    return [Change("finding", f["part"], f["message"], {"code": f["code"], "boxes": f["boxes"], "fix": f["fix"]})
            for f in findings(workspace.state(plan_id=plan_id)) if f["part"] in touched]


def _existing_plan(workspace: Workspace, stored: str) -> str | None:
    if workspace.plan_choice and workspace.plan_choice in workspace.plan_ids():
        return workspace.plan_choice
    if workspace.plan_choice:
        return None
    return plan_of_file(workspace, stored)


def plan_of_file(workspace: Workspace, stored: str) -> str | None:
    """The plan of the ledger whose file is ``stored`` (a path as the ledger stores it), if one is."""
    rows = workspace.ledger.read(types=["PlanImported", "PlanRevised", "PlanConsolidated"])
    latest = {row.plan: row.get("paths", {}).get("plan") if row.type == "PlanConsolidated" else row.get("path")
              for row in rows}  # consolidation moves the plan to completed/
    return next((plan for plan, path in latest.items() if path == stored), None)


def _new_id(file: Path, taken: list[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", file.stem.lower()).strip("-") or "plan"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def file_history(plan_id: str, plan: Plan, known: PlanState | None) -> list[Event]:
    """What the file shows as done that the ledger does not know yet, as events by ``import``."""
    events: list[Event] = []
    for part in plan.parts:
        before, current = _known(known, part)
        for box in part.boxes:
            if box_mark(box, before, current) == "ticked":
                events.append(CheckboxTicked(plan=plan_id, part=part.id, box=box.id, text=box.text, by=IMPORT))
        if header_mark(part, before, current) == "succeeded":
            events.append(RunnerSucceeded(plan=plan_id, part=part.id, by=IMPORT, completed_at=part.header.stamp))
    approved = {n for n, b in (known.batches.items() if known else ()) if b.state == "approved"}
    for index, batch in enumerate(plan.batches):
        later = plan.batches[index + 1 :]
        if batch.number not in approved and any(_has_progress(plan, b.parts, known) for b in later):
            events.append(BatchReviewed(plan=plan_id, batch=batch.number, decision="approve", by=IMPORT,
                                        note="a later batch already has progress in the imported file"))
    return events


def _known(known: PlanState | None, part: Part) -> tuple[Part | None, PartState | None]:
    """The PART as the file last imported had it, and its state in the ledger (None, None: a first import)."""
    return (known.plan.part(part.id), known.parts.get(part.id)) if known else (None, None)


def _has_progress(plan: Plan, numbers: tuple[int, ...], known: PlanState | None) -> bool:
    """Whether the file shows progress in these PARTs that the ledger is to record (a revision: new in it)."""
    for part in filter(None, (plan.part(n) for n in numbers)):
        before, current = _known(known, part)
        if header_mark(part, before, current) == "succeeded" or any(
                box_mark(box, before, current) == "ticked" for box in part.boxes):
            return True
    return False


def carry_box_ids(old: Plan, new: Plan, used: dict[str, int]) -> Plan:
    """``new`` with each box keeping the id it had in ``old`` when its text is still there."""
    parts = [_carry_part(old.part(part.number), part, used.get(part.id, 0)) for part in new.parts]
    return new.with_parts(tuple(parts))


def _carry_part(old: Part | None, new: Part, used: int) -> Part:
    next_id = used + 1
    ids = {index: box.id for index, box in match_boxes(old.boxes, new.boxes).items()} if old else {}
    boxes = []
    for index, box in enumerate(new.boxes):
        if index not in ids:
            ids[index], next_id = next_id, next_id + 1
        boxes.append(replace(box, id=ids[index]))
    return replace(new, boxes=tuple(boxes))


def _carried_ticks(state: PlanState, plan: Plan) -> tuple[int, list[str]]:
    carried, dropped = 0, []
    for part_id, part_state in state.parts.items():
        new_part, old_part = plan.part(part_id), state.plan.part(part_id)
        for box_id in sorted(part_state.ticked):
            if new_part and new_part.box(box_id):
                carried += 1
            elif old_part and (box := old_part.box(box_id)):
                dropped.append(f"{part_id}: {box.text}")
    return carried, dropped
