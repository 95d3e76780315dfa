"""``kx tick`` / ``kx untick``: the hottest act (about a thousand calls a plan), kept light.

Its two events are defined in :mod:`ledger.events.checkboxes`, which imports no pydantic. A tick
carries its evidence (CONTRACT section 7): what kx found for the box's kind — a Read
box's file hashed, a Search box's sources — checked by :meth:`Rules.check` with the
rest of the act's rules before anything is appended.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.errors import BadInput
from ledger.events.checkboxes import CheckboxTicked, CheckboxUnticked
from ledger.secrets import redact_text
from machine.acts.context import Act, Outcome, acting, authorize
from machine.acts.workspace import Workspace
from machine.defaults import SOURCE_LIMIT, SOURCES_PER_TICK
from machine.plan.refs import index_of, resolve_all
from machine.plan.text import bounded


def tick(workspace: Workspace, ref: str, refs: list[str], act: Act, *, ticked: bool = True,
         sources: Iterable[str] = ()) -> Outcome:
    found = clean_sources(sources)
    with acting(workspace) as ctx:
        part, structure = ctx.part(ref)
        boxes = resolve_all(structure, refs)
        rules = ctx.rules
        if ticked:
            changing = [b for b in boxes if rules.records_tick(part, b, act.attempt)]
            events = [CheckboxTicked(plan=ctx.state.id, part=part.id, box=b.id, text=b.text, attempt=act.attempt,
                                     by=act.actor, evidence=rules.tick_evidence(part, b, act.attempt, found))
                      for b in changing]
        else:
            changing = [b for b in boxes if b.id in part.ticked]
            events = [CheckboxUnticked(plan=ctx.state.id, part=part.id, box=b.id, text=b.text, attempt=act.attempt,
                                       by=act.actor) for b in changing]
        if events:
            recorded = ctx.append(*events)
        else:  # nothing to record: still refused where a recording tick would be
            authorize(ctx, part, act)
            recorded = []
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
    """The ``--source`` values as recorded: trimmed, secrets redacted, duplicates once; an empty one, one too long
    or too many are bad input."""
    sources = list(sources)
    if len(sources) > SOURCES_PER_TICK:
        raise BadInput(f"{len(sources)} sources; give at most {SOURCES_PER_TICK} a tick")
    cleaned: list[str] = []
    for source in sources:
        text = bounded("a source", source.strip(), SOURCE_LIMIT)
        if not text:
            raise BadInput("a source is empty; give the URL, DOI, arXiv id or file the search found")
        cleaned.append(redact_text(text))
    return list(dict.fromkeys(cleaned))
