"""What a revised plan file changed, against the file the ledger last saw and against the ledger itself.

A revision is a person's edit of the file. What it changed is read from two
files: the one last imported and the new one (PARTs and boxes added, removed
or edited; ticks added or removed). A tick the new file shows that the old one
did not is the person's, recorded ``by: import``; a tick the old file showed
that the new one does not is the person's untick, recorded through the rules of
``kx untick``. Where the file and the ledger disagree without an edit of the
file (the ledger ticked a box since, or cleared it, and the file was not
rendered), the ledger's state is kept and the disagreement said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from machine.plan.model import Box, Part, Plan, align_boxes
from machine.plan.refs import index_of
from machine.state.fold import PartState, PlanState


@dataclass
class Change:
    kind: str
    part: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "part": self.part, **self.details, "message": self.message}


# --- one box, one header: what the new file says against the old file and the ledger -----------


def box_mark(box: Box, before: Part | None, current: PartState | None) -> str | None:
    """"ticked": a tick new in the file (to record); "unticked": a tick the file lost (a person's untick);
    "kept_ticked" / "kept_unticked": the ledger's mark differs and the file's did not change; None: they agree."""
    in_ledger = current is not None and box.id in current.ticked
    old = before.box(box.id) if before else None
    was_ticked = old is not None and old.ticked
    if box.ticked and not in_ledger:
        undone_since = was_ticked and current is not None and box.id in current.touched
        return "kept_unticked" if undone_since else "ticked"
    if not box.ticked and in_ledger:
        return "unticked" if was_ticked else "kept_ticked"
    return None


def header_mark(part: Part, before: Part | None, current: PartState | None) -> str | None:
    """"succeeded": ticked Completed anew in the file (to record); "kept_state": ticked in the old file already,
    and the ledger moved the PART on since; "completed_unticked": a person unticked a success (kx reopen's to
    undo, which clears its evidence: said, not done); None otherwise."""
    ticked = part.header is not None and part.header.ticked
    was_ticked = before is not None and before.header is not None and before.header.ticked
    succeeded = current is not None and current.state == "succeeded"
    if ticked and not succeeded:
        return "kept_state" if was_ticked and current is not None else "succeeded"
    if not ticked and was_ticked and succeeded:
        return "completed_unticked"
    return None


# --- the whole revision ------------------------------------------------------------------------


def changes(state: PlanState, new: Plan) -> list[Change]:
    """One change per edit, in the new file's order, then the PARTs it no longer has; ``new`` carries box ids."""
    old = state.plan
    found: list[Change] = []
    for part in new.parts:
        before, current = old.part(part.id), state.parts.get(part.id)
        if before is None or current is None:
            found.append(_part_added(part))
            continue
        found += _box_edits(part.id, before, part, current)
        found += _marks(part, before, current)
    kept = {part.id for part in new.parts}
    found += [_part_removed(part, state.parts[part.id]) for part in old.parts if part.id not in kept]
    return found


def _part_removed(part: Part, current: PartState) -> Change:
    ticks = len(current.ticked & {box.id for box in part.boxes})
    lost = f"; its {ticks} tick{'s are' if ticks > 1 else ' is'} dropped" if ticks else ""
    return Change("part_removed", part.id, f"{part.id} removed (it was {current.state}{lost})")


def _part_added(part: Part) -> Change:
    ticked = sum(box.ticked for box in part.boxes)
    boxes = f"{len(part.boxes)} box" + ("" if len(part.boxes) == 1 else "es")
    recorded = f", {ticked} ticked: recorded (by import)" if ticked else ""
    done = "; ticked Completed: recorded as succeeded (by import)" if part.header and part.header.ticked else ""
    return Change("part_added", part.id, f"{part.id} added (batch {part.batch}, {boxes}{recorded}){done}")


def _ticked_too(box: Box) -> str:
    return ", ticked in the file: recorded (by import)" if box.ticked else ""


def _box_edits(part_id: str, before: Part, after: Part, current: PartState) -> list[Change]:
    """Boxes removed, edited (a box replaced by one other) and added, as difflib aligns the two lists."""
    found = []
    for tag, i1, i2, j1, j2 in align_boxes(before.boxes, after.boxes).get_opcodes():
        if tag == "equal":
            continue
        gone, new = list(before.boxes[i1:i2]), list(after.boxes[j1:j2])
        paired = min(len(gone), len(new)) if tag == "replace" else 0
        for old_box, new_box in zip(gone[:paired], new[:paired]):
            lost = "; its tick is not carried over" if old_box.id in current.ticked else ""
            found.append(Change("box_edited", part_id, f"{part_id}: box {index_of(after, new_box)} edited:"
                                f" {old_box.text!r} → {new_box.text!r}{lost}{_ticked_too(new_box)}",
                                {"box": index_of(after, new_box), "text": new_box.text, "was": old_box.text}))
        for old_box in gone[paired:]:
            lost = "; its tick is dropped" if old_box.id in current.ticked else ""
            found.append(Change("box_removed", part_id, f"{part_id}: box {index_of(before, old_box)}"
                                f" {old_box.text!r} removed{lost}", {"box": index_of(before, old_box),
                                                                    "text": old_box.text}))
        for new_box in new[paired:]:
            found.append(Change("box_added", part_id, f"{part_id}: box {index_of(after, new_box)} {new_box.text!r}"
                                f" added{_ticked_too(new_box)}", {"box": index_of(after, new_box), "text": new_box.text}))
    return found


def _marks(part: Part, before: Part, current: PartState) -> list[Change]:
    found: list[Change] = []
    kept: dict[str, list[str]] = {"kept_ticked": [], "kept_unticked": []}
    for box in part.boxes:
        mark, ref = box_mark(box, before, current), index_of(part, box)
        if mark == "ticked" and before.box(box.id) is not None:  # a new box's tick is its addition's
            found.append(Change("ticked", part.id, f"{part.id}: box {ref} {box.text!r} ticked in the file:"
                                " recorded (by import)", {"box": ref, "text": box.text}))
        elif mark == "unticked":  # its message says what the rules made of it, once asked (untick_results)
            found.append(Change("unticked", part.id, "", {"box": ref, "text": box.text}))
        elif mark in kept:
            kept[mark].append(ref)
    if refs := kept["kept_ticked"]:
        found.append(Change("kept_ticked", part.id, _kept_ticked(part.id, refs), {"boxes": refs}))
    if refs := kept["kept_unticked"]:
        found.append(Change("kept_unticked", part.id, _kept_unticked(part.id, refs), {"boxes": refs}))
    header = header_mark(part, before, current)
    if header == "succeeded":
        found.append(Change("succeeded", part.id, f"{part.id} ticked Completed in the file: recorded as succeeded"
                            " (by import)"))
    elif header == "completed_unticked":
        found.append(Change(header, part.id, f"{part.id} unticked Completed in the file is succeeded in the ledger;"
                            f" kept (to do it again: kx reopen {part.id} --reason ...)"))
    elif header == "kept_state":
        found.append(Change("kept_state", part.id, f"{part.id} ticked Completed in the file is {current.state} in"
                            " the ledger; kept ('kx render' writes it)", {"state": current.state}))
    return found


def _kept_ticked(part_id: str, refs: list[str]) -> str:
    some = f"{len(refs)} boxes ticked in the ledger are" if len(refs) > 1 else "1 box ticked in the ledger is"
    them = "them" if len(refs) > 1 else "it"
    return (f"{part_id}: {some} unticked in the file ({', '.join(refs)}); kept ('kx render' writes {them};"
            f" if a person unticked {them}: kx untick {part_id} {' '.join(refs)})")


def _kept_unticked(part_id: str, refs: list[str]) -> str:
    some = f"{len(refs)} boxes ticked in the file were" if len(refs) > 1 else "1 box ticked in the file was"
    them = "them" if len(refs) > 1 else "it"
    return (f"{part_id}: {some} unticked in the ledger since; kept unticked ({', '.join(refs)}; 'kx render' writes"
            f" {them}; to tick {them} again: kx tick {part_id} {' '.join(refs)})")


def untick_message(change: Change, by: str | None = None, refusal: str | None = None) -> None:
    """Say in ``change`` (a person's untick) what became of it: recorded by ``by``, or refused for ``refusal``."""
    said = f"{change.part}: box {change.details['box']} {change.details['text']!r} unticked in the file"
    change.details["recorded"] = refusal is None
    if refusal is None:
        change.message = f"{said}: recorded as unticked by {by}"
    else:
        change.details["reason"] = refusal
        change.message = f"{said}: not recorded: {refusal}; the ledger keeps the tick ('kx render' writes it back)"
