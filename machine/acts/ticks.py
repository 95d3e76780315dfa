"""``kx tick`` / ``kx untick``: the hottest act (about a thousand calls a plan), kept light.

Its two events are defined in :mod:`ledger.events.checkboxes`, which imports no pydantic. A tick
carries its evidence (CONTRACT section 7): what kx found for the box's kind — a Read
box's file hashed, a Search box's sources — checked by :meth:`Rules.may_tick` before
anything is appended.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.errors import BadInput, Refused
from ledger.events.checkboxes import CheckboxTicked, CheckboxUnticked
from ledger.secrets import redact_text
from machine.acts.context import Act, Outcome, acting, authorize
from machine.acts.workspace import Workspace
from machine.plan.refs import index_of, resolve_all

SOURCE_LIMIT = 2_000  # characters of one --source


def tick(workspace: Workspace, ref: str, refs: list[str], act: Act, *, ticked: bool = True,
         sources: Iterable[str] = ()) -> Outcome:
    found = clean_sources(sources)
    with acting(workspace) as ctx:
        part, structure = ctx.part(ref)
        authorize(ctx, part, act)
        boxes = resolve_all(structure, refs)
        rules = ctx.rules
        if ticked:
            changing = [b for b in boxes if rules.records_tick(part, b, act.attempt)]
            events = [CheckboxTicked(plan=ctx.state.id, part=part.id, box=b.id, text=b.text, attempt=act.attempt,
                                     by=act.actor, evidence=rules.tick_evidence(part, b, act.attempt, found))
                      for b in changing]
            missing = [problem for e in events if (problem := rules.tick_problem(part, e.data()))]
            if missing:
                raise Refused("evidence: " + "; ".join(missing), rule="evidence", details=missing)
        else:
            changing = [b for b in boxes if b.id in part.ticked]
            events = [CheckboxUnticked(plan=ctx.state.id, part=part.id, box=b.id, text=b.text, attempt=act.attempt,
                                       by=act.actor) for b in changing]
        recorded = ctx.append(*events) if events else []
        verb = "ticked" if ticked else "unticked"
        names = [f"{index_of(structure, b)} {b.text!r}" for b in changing]
        message = f"{part.id}: {verb} {', '.join(names)}" if names else f"{part.id}: already {verb}; nothing recorded"
        done = len(part.ticked | {b.id for b in changing} if ticked else part.ticked - {b.id for b in changing})
        data = {"boxes": [b.id for b in changing], "unchanged": [b.id for b in boxes if b not in changing],
                "ticked": done, "total": len(structure.boxes)}
        if ticked:
            data["evidence"] = {str(e.box): e.evidence for e in events}
        return Outcome(part.id, recorded, message, data)


def clean_sources(sources: Iterable[str]) -> list[str]:
    """The ``--source`` values as recorded: trimmed, secrets redacted, duplicates once; an empty one is bad input."""
    cleaned: list[str] = []
    for source in sources:
        text = source.strip()
        if not text:
            raise BadInput("a --source is empty; give the URL or text the search found")
        if len(text) > SOURCE_LIMIT:
            raise BadInput(f"a --source is {len(text)} characters; give at most {SOURCE_LIMIT} (a URL or a short text)")
        cleaned.append(redact_text(text))
    return list(dict.fromkeys(cleaned))
