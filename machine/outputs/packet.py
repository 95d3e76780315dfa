"""A batch's review packet: what a reviewer looks at before approving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import Unknown
from machine.plan.model import part_id
from machine.state.fold import PlanState
from machine.state.rehash import WHAT, changes, recorded_files


def duration(started_at: str | None, ended_at: str | None) -> float | None:
    if not started_at:
        return None
    end = clock.parse_time(ended_at) if ended_at else clock.now()
    return (end - clock.parse_time(started_at)).total_seconds()


def part_packet(state: PlanState, part_id: str) -> dict[str, Any]:
    part, structure = state.parts[part_id], state.plan.part(part_id)
    drop = part.drop
    started_at = (part.started or {}).get("recorded_at")
    return {
        "part": part_id,
        "title": structure.title,
        "state": part.state,
        "attempts": part.attempts,
        "failures": part.failures,
        "reason": part.reason,
        "drop": {"path": drop["path"], "size": drop["size"], "sha256": drop["sha256"]} if drop else None,
        "seconds": duration(started_at, part.finished_at),
        "unticked": [b.text for b in structure.boxes if b.id not in part.ticked],
        "total": len(structure.boxes),
        "imported": part.imported_success,  # done on the imported file's word
        "rehearsal": part.rehearsed,  # done by the rehearsal runner: placeholders
    }


def batch_packet(state: PlanState, number: int, resolve: Callable[[str], Path] | None = None) -> dict[str, Any]:
    """The batch's packet; with ``resolve`` (stored path → file), each PART's drop and target hashed again."""
    batch = state.plan.batch(number)
    if batch is None:
        known = ", ".join(str(b.number) for b in state.plan.batches)
        raise Unknown(f"no batch {number} in plan {state.id} (batches: {known})")
    members = [part_id(n) for n in dict.fromkeys(batch.parts)]
    changed = changes(recorded_files(state, members), resolve) if resolve else []
    parts = [part_packet(state, member) for member in members]
    for part in parts:
        part["files"] = [c.as_dict() for c in changed if c.part == part["part"]]
    return {"batch": number, "title": batch.title, "state": state.batches[number].state, "parts": parts,
            "changed": [str(c) for c in changed]}


def packet_text(packet: dict[str, Any]) -> str:
    lines = [f"Review of batch {packet['batch']}: {packet['title']}"]
    if packet.get("changed"):
        lines.append(f"  ! {len(packet['changed'])} recorded files changed or gone since they were recorded")
    for part in packet["parts"]:
        drop = f"{part['drop']['path']} ({part['drop']['size']} bytes)" if part["drop"] else "no drop"
        took = f"{part['seconds']:.1f}s" if part["seconds"] is not None else "-"
        ticks = f"{part['total'] - len(part['unticked'])}/{part['total']} ticked"
        flags = "".join(f" ({flag})" for flag in ("imported", "rehearsal") if part[flag])
        lines.append(f"  {part['part']:<8} {part['state']:<9} {ticks:<12} attempts {part['attempts']}"
                     f"  {took:>7}  {drop}{flags}")
        if part["failures"]:
            lines.append(f"           {part['failures']} failure(s); last: {part['reason']}")
        for file in part.get("files", ()):
            lines.append(f"           {file['kind']} {file['path']} {WHAT[file['problem']]}")
        if part["unticked"]:
            shown = "; ".join(part["unticked"][:3]) + (" ..." if len(part["unticked"]) > 3 else "")
            lines.append(f"           unticked: {shown}")
    return "\n".join(lines)
