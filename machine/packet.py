"""A batch's review packet: what a reviewer looks at before approving."""

from __future__ import annotations

from typing import Any

from ledger import clock
from machine.plan import part_id
from machine.state import PlanState


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
    }


def batch_packet(state: PlanState, number: int) -> dict[str, Any]:
    batch = state.plan.batch(number)
    return {"batch": number, "title": batch.title, "state": state.batches[number].state,
            "parts": [part_packet(state, part_id(n)) for n in dict.fromkeys(batch.parts)]}


def packet_text(packet: dict[str, Any]) -> str:
    lines = [f"Review of batch {packet['batch']}: {packet['title']}"]
    for part in packet["parts"]:
        drop = f"{part['drop']['path']} ({part['drop']['size']} bytes)" if part["drop"] else "no drop"
        took = f"{part['seconds']:.1f}s" if part["seconds"] is not None else "-"
        ticks = f"{part['total'] - len(part['unticked'])}/{part['total']} ticked"
        lines.append(f"  {part['part']:<8} {part['state']:<9} {ticks:<12} attempts {part['attempts']}"
                     f"  {took:>7}  {drop}")
        if part["failures"]:
            lines.append(f"           {part['failures']} failure(s); last: {part['reason']}")
        if part["unticked"]:
            shown = "; ".join(part["unticked"][:3]) + (" ..." if len(part["unticked"]) > 3 else "")
            lines.append(f"           unticked: {shown}")
    return "\n".join(lines)
