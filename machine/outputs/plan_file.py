"""``kx render``: the plan file's marks and stamps set from the ledger, every other byte kept.

The file may have been edited by a person since the ledger last saw it. Its
boxes are matched to the ledger's by text, in order; a matched box gets the
ledger's mark, a box the ledger does not know keeps the mark it has, and a
ticked box of the ledger that the file no longer has is reported, not guessed.
A box a person ticked in the file that the ledger has never ticked or unticked
keeps its tick (reported, so that it can be recorded): render never removes a
mark that only a person wrote. New ticks take the glyph the file uses most; with
``repair`` (``kx render --repair``) the file's mojibake is mended first
(:mod:`machine.plan.mojibake`), its ``‚úì`` ticks becoming ``✓``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import BadInput, Refused
from ledger.files import write_atomic
from machine.acts.workspace import Workspace
from machine.plan.marks import render
from machine.plan.model import Plan, match_boxes
from machine.plan.mojibake import repair as mend_mojibake
from machine.plan.parser import PlanError, parse
from machine.plan.text import PlanTextError, decode, read_file, split_lines
from machine.state.fold import PlanState


@dataclass
class FileMarks:
    state: str
    ticked: set[int] = field(default_factory=set)
    completed_at: str | None = None


def render_file(workspace: Workspace, *, check: bool = False, repair: bool = False) -> dict[str, Any]:
    """Write the file's marks and stamps from the ledger (``check``: only say whether it is out of date);
    ``repair`` also mends its mojibake, and new ticks then take the mended glyph. A ledger copied or moved from
    another project folder is refused: its history is not this folder's plan's."""
    if problem := workspace.ledger.place_problem():
        raise Refused(f"not rendered: {problem}", rule="ledger_place")
    state = workspace.state()
    path = workspace.resolve(state.path)
    if path.exists() and not path.is_file():
        raise BadInput(f"cannot render into {path}: it is not a file; move it away and kx render writes the plan afresh")
    current = _read_plan_text(path) if path.exists() else None
    mending = mend_mojibake(current if current is not None else state.source) if repair else None
    if mending is not None:  # columns move where runs shrink: the mended text is parsed afresh
        wanted, missing, kept = _render_over(state, mending.text, str(path))
    elif current is not None:
        wanted, missing, kept = _render_over(state, current, str(path))
    else:
        wanted, missing, kept = render(state.source, state.plan, state.parts), [], []
    changed = wanted != current
    if changed and not check:
        write_atomic(path, wanted.encode("utf-8"))
    return {
        "path": state.path,
        "changed": changed,
        "written": changed and not check,
        "lines": _changed_lines(current, wanted),
        "missing": missing,
        "kept": kept,
        "repaired": _mended_runs(mending.counts) if mending else [],
    }


def _read_plan_text(path: Path) -> str:
    raw = read_file(path)
    try:
        return decode(raw, str(path))
    except PlanTextError as exc:
        raise BadInput(f"cannot render into {path}: {exc}") from None


def _render_over(state: PlanState, text: str, name: str) -> tuple[str, list[str], list[str]]:
    """``text`` (the file's) with the ledger's marks and stamps, and the ticks it could not place or kept."""
    try:
        on_disk = parse(text, name)
    except PlanError as exc:
        raise BadInput(f"cannot render into {name}: {exc}") from None
    marks, missing, kept = file_marks(state, on_disk)
    return render(text, on_disk, marks), missing, kept


def _mended_runs(counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return [{"from": before, "to": after, "count": count} for (before, after), count in ordered]


def file_marks(state: PlanState, on_disk: Plan) -> tuple[dict[str, FileMarks], list[str], list[str]]:
    """For each PART of the file: the marks the ledger wants, in the file's own box ids."""
    marks: dict[str, FileMarks] = {}
    missing: list[str] = []
    kept: list[str] = []
    for part in on_disk.parts:
        known, structure = state.parts.get(part.id), state.plan.part(part.id)
        if known is None or structure is None:
            continue
        matched = match_boxes(structure.boxes, part.boxes)
        ticked = set()
        for index, box in enumerate(part.boxes):
            ledger_box = matched.get(index)
            if ledger_box is not None and ledger_box.id in known.ticked:
                ticked.add(box.id)
            elif box.ticked and (ledger_box is None or ledger_box.id not in known.touched):
                ticked.add(box.id)
                if ledger_box is not None:
                    kept.append(f"{part.id}: {box.text!r}")
        marks[part.id] = FileMarks(known.state, ticked, known.completed_at)
        found = {b.id for b in matched.values()}
        missing += [f"{part.id}: {b.text!r}" for b in structure.boxes if b.id in known.ticked and b.id not in found]
    on_disk_parts = {p.id for p in on_disk.parts}
    missing += [f"{p.id}: the whole PART" for p in state.plan.parts
                if p.id not in on_disk_parts and (state.parts[p.id].ticked or state.parts[p.id].state == "succeeded")]
    return marks, missing, kept


def _changed_lines(before: str | None, after: str) -> int:
    if before is None:
        return after.count("\n") + 1

    old, new = split_lines(before), split_lines(after)
    return sum(a != b for a, b in zip(old, new)) + abs(len(old) - len(new))
