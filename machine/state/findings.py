"""What a person should look at in a plan's folded state, beside its states: ``kx status``'s findings."""

from __future__ import annotations

from typing import Any

from machine.plan.refs import index_of
from machine.state.fold import PlanState


def added_since_success(state: PlanState, part_id: str) -> list[str]:
    """The refs of the boxes a revision added to the PART while it was succeeded, and nobody has ticked."""
    part, structure = state.parts[part_id], state.plan.part(part_id)
    if part.state != "succeeded" or structure is None:
        return []
    return [index_of(structure, box) for box in structure.boxes
            if box.id in part.added_since_success and box.id not in part.ticked]


def findings(state: PlanState) -> list[dict[str, Any]]:
    """What a person should look at: succeeded PARTs that have boxes added since (a revision's)."""
    found = []
    for structure in state.plan.parts:
        if added := added_since_success(state, structure.id):
            fix, box_ids = f"kx reopen {structure.id} --reason ...", {box.id for box in structure.boxes}
            ticked = len(state.parts[structure.id].ticked & box_ids)
            boxes = "a box" if len(added) == 1 else f"{len(added)} boxes"
            found.append({"part": structure.id, "code": "added_since_success", "boxes": added, "fix": fix,
                          "message": f"{structure.id} succeeded but has {boxes} added since:"
                                     f" {ticked}/{len(box_ids)}; {fix}"})
    return found
