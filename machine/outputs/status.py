"""Read models built from folded state: what ``status`` and ``plan list`` show."""

from __future__ import annotations

from typing import Any

from machine.defaults import SCHEMA
from machine.plan.model import part_id
from machine.state.findings import added_since_success, findings
from machine.state.fold import PartState, PlanState

PAST = {"approve": "approved", "reject": "rejected"}
IMPORTED_NOTE = "imported without evidence"


def part_view(state: PlanState, part_id: str) -> dict[str, Any]:
    part, structure = state.parts[part_id], state.plan.part(part_id)
    box_ids = {b.id for b in structure.boxes}
    view = {
        "id": part.id,
        "title": structure.title,
        "state": part.state,
        "ticked": len(part.ticked & box_ids),
        "total": len(box_ids),
        "attempts": part.attempts,
    }
    if part.attempt:
        view["attempt"] = part.attempt
    if part.completed_at:
        view["completed_at"] = part.completed_at
    if structure.header and structure.header.target:
        view["target"] = structure.header.target
    if part.reason and part.state in ("failed", "lost"):
        view["reason"] = part.reason
    if added := added_since_success(state, part_id):
        view["added_since_success"] = added
    if part.last_output and part.state in ("failed", "lost"):
        view["last_output"] = part.last_output
    if part.imported_success:
        view["imported"] = True
    if part.rehearsed:
        view["rehearsal"] = True
    if part.state == "succeeded" and view["ticked"] < view["total"]:
        view["warning"] = unticked_warning(part, view["ticked"], view["total"])
    return view


def unticked_warning(part: PartState, ticked: int, total: int) -> str:
    """What a succeeded PART with unticked boxes needs said (imported: its success holds no evidence for them)."""
    advice = f": {IMPORTED_NOTE}; see 'kx reopen {part.id}'" if part.imported else ""
    return f"succeeded with {ticked}/{total} ticked{advice}"


def status_view(state: PlanState) -> dict[str, Any]:
    plan = state.plan
    batches = []
    for batch in plan.batches:
        batch_state = state.batches[batch.number]
        entry: dict[str, Any] = {
            "number": batch.number,
            "title": batch.title,
            "state": batch_state.state,
            "parts": [part_view(state, part_id(n)) for n in dict.fromkeys(batch.parts)],
        }
        if batch_state.last_review:
            review = batch_state.last_review
            entry["review"] = {k: review.get(k) for k in ("decision", "by", "note", "recorded_at") if review.get(k)}
        batches.append(entry)
    return {
        "schema": SCHEMA,
        "plan": state.id,
        "title": plan.title,
        "path": state.path,
        "limit": state.limit,
        "running": [p.id for p in state.running()],
        "batches": batches,
        "declared": {"batches": len(plan.declared), "parts": len(plan.declared_parts)},
        "found": {"batches": len(plan.batches), "parts": len(plan.parts)},
        "position": state.position,
        "consolidated": state.consolidated is not None,
        "supervisor": {k: state.lease[k] for k in ("pid", "host", "since")} if state.lease else None,
        "findings": findings(state),
    }


def plan_summary(state: PlanState) -> dict[str, Any]:
    parts = list(state.parts[p.id] for p in state.plan.parts)
    return {
        "id": state.id,
        "title": state.plan.title,
        "path": state.path,
        "parts": len(parts),
        "succeeded": sum(p.state == "succeeded" for p in parts),
        "batches": len(state.plan.batches),
        "revisions": state.revisions,
        "consolidated": state.consolidated is not None,
    }
