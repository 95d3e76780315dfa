"""Checkbox references, scoped to one PART (CONTRACT section 1).

``3`` is the PART's third box (header excluded), ``2.4`` the fourth box of
step 2, any other text the one box whose text contains it (case-insensitive;
a box whose whole text equals it wins over boxes that merely contain it).
"""

from __future__ import annotations

import re

from ledger.errors import Unknown
from machine.defaults import NAME_LIMIT
from machine.plan.model import Box, Part
from machine.plan.text import bounded, quoted

_STEP_REF = re.compile(r"^(\d+)\.(\d+)$")


def resolve(part: Part, ref: str) -> Box:
    ref = bounded("a box reference", ref, NAME_LIMIT).strip()
    if ref.isdigit():
        return _nth(part, list(part.boxes), int(ref), f"{part.id} has {len(part.boxes)} boxes")
    if step_ref := _STEP_REF.match(ref):
        step, index = int(step_ref[1]), int(step_ref[2])
        boxes = [b for b in part.boxes if b.step == step]
        if not any(s.number == step for s in part.steps):
            steps = ", ".join(str(s.number) for s in part.steps) or "none"
            raise Unknown(f"{part.id} has no step {step} (steps: {steps})")
        return _nth(part, boxes, index, f"step {step} of {part.id} has {len(boxes)} boxes")
    return _by_text(part, ref)


def resolve_all(part: Part, refs: list[str]) -> list[Box]:
    """Every ref resolved, or :class:`Unknown` before anything is done; duplicates collapse."""
    boxes = [resolve(part, ref) for ref in refs]
    return list({b.id: b for b in boxes}.values())


def _nth(part: Part, boxes: list[Box], index: int, size: str) -> Box:
    if not 1 <= index <= len(boxes):
        raise Unknown(f"no box {index}: {size}; see 'kx brief {part.id}'")
    return boxes[index - 1]


def _by_text(part: Part, ref: str) -> Box:
    needle = ref.casefold()
    exact = [b for b in part.boxes if b.text.casefold() == needle]
    matches = exact or [b for b in part.boxes if needle in b.text.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise Unknown(f"no box of {part.id} contains {quoted(ref)}; see 'kx brief {part.id}' for its boxes")
    candidates = [f"{index_of(part, b)} {b.text!r}" for b in matches]
    raise Unknown(
        f"{quoted(ref)} matches {len(matches)} boxes of {part.id}: {'; '.join(candidates)}; give a number or more text",
        details=candidates,
    )


def index_of(part: Part, box: Box) -> str:
    """How a box is referred to: ``step.n`` when it has a step, else its number in the PART."""
    return part.ref(box)
