"""``kx tick`` / ``kx untick``: the hottest act (about a thousand calls a plan), kept light.

Its two events are defined in :mod:`ledger.ticks`, which imports no pydantic.
"""

from __future__ import annotations

from ledger.ticks import CheckboxTicked, CheckboxUnticked
from machine.acting import Act, Outcome, acting, authorize
from machine.refs import index_of, resolve_all
from machine.workspace import Workspace


def tick(workspace: Workspace, ref: str, refs: list[str], act: Act, *, ticked: bool = True) -> Outcome:
    with acting(workspace) as ctx:
        part, structure = ctx.part(ref)
        authorize(ctx, part, act)
        boxes = resolve_all(structure, refs)
        changing = [b for b in boxes if (b.id in part.ticked) != ticked]
        event = CheckboxTicked if ticked else CheckboxUnticked
        events = [event(plan=ctx.state.id, part=part.id, box=b.id, text=b.text, attempt=act.attempt, by=act.actor)
                  for b in changing]
        recorded = ctx.append(*events) if events else []
        verb = "ticked" if ticked else "unticked"
        names = [f"{index_of(structure, b)} {b.text!r}" for b in changing]
        message = f"{part.id}: {verb} {', '.join(names)}" if names else f"{part.id}: already {verb}; nothing recorded"
        done = len(part.ticked | {b.id for b in changing} if ticked else part.ticked - {b.id for b in changing})
        return Outcome(part.id, recorded, message,
                       {"boxes": [b.id for b in changing], "unchanged": [b.id for b in boxes if b not in changing],
                        "ticked": done, "total": len(structure.boxes)})
