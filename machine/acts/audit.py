"""``kx audit verify``: the ledger's integrity and the rules, checked again over all of history.

One pass over every event, in ledger order. Integrity: positions increase,
every stream's versions run 1, 2, 3... without gaps, every event's hash chains
to the one before, the append-only guard is whole and its head is at the last
event, and every event's data fits its type (one that does not is a finding,
left out of the rules). Rules: each event is put to :meth:`Rules.check` — the very
check an act makes before appending — against the state folded from the events
before it, then folded; a fact the machines do not allow is a finding too. The
read model is compared with the fold where it was saved. At the end, the files
the evidence rests on (each PART's drop and recorded target) are hashed again,
once each: a file changed or gone since it was recorded is a finding. Events recorded
``by: import`` are history taken as it was; ``kx plan lint`` reports their
inconsistencies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ledger.derived import readmodel
from ledger.errors import Refused
from ledger.events import vocabulary
from ledger.events.mapper import upcast
from ledger.events.models import EVENT_TYPES, load
from ledger.events.vocabulary import IMPORT
from ledger.store import GENESIS, KEY_ENV, KEYED, Recorded, chain_hash, chain_key
from machine.acts.workspace import Workspace
from machine.defaults import SCHEMA
from machine.state.fold import PlanState, fold_version
from machine.state.rehash import changes, recorded_files
from machine.state.rules import Rules

TICKS = frozenset({"CheckboxTicked", "CheckboxUnticked"})


def verify(workspace: Workspace, digests: Sequence[tuple[int, str]] = ()) -> dict[str, Any]:
    """``digests``: (position, hash) pairs kept outside the ledger (``kx audit digest``), each a finding unless
    the ledger still holds that event with that chain hash."""
    ledger = workspace.ledger
    plans = workspace.plan_ids() if workspace.plan_choice is None else [workspace.plan_id()]
    audit = Audit(workspace, plans)
    with ledger.snapshot():  # the events, the head and the read model as of one moment
        for row in ledger.stored():
            audit.take(row)
        anchored = [(position, digest, ledger.hash_at(position) if position else GENESIS)
                    for position, digest in digests]
        findings = audit.finish(ledger.guard_findings())
        head = ledger.head()
    findings[:0] = [*digest_findings(anchored, audit.last_position), *place_findings(ledger)]
    return {"schema": SCHEMA, "events": audit.events, "plans": plans, "findings": findings, "ok": not findings,
            "head": {"position": head[0], "hash": head[1]} if head else None,
            "digests": [{"position": p, "hash": d, "ok": d == found} for p, d, found in anchored],
            "keyed": audit.keyed_summary()}


def digest_findings(anchored: list[tuple[int, str, str | None]], last: int) -> list[str]:
    findings = []
    for position, digest, found in anchored:
        shown = f"digest {position}:{digest[:12]}"
        if found is None:
            findings.append(f"{shown}: the ledger ends at position {last}, before it: events were removed, or this"
                            " is another ledger")
        elif found != digest:
            findings.append(f"{shown}: the event at position {position} has hash {found[:12]}, not the digest's:"
                            " history up to it was rewritten, or this is another ledger")
    return findings


def place_findings(ledger) -> list[str]:
    """A ledger made for another project folder (copied or moved here): its history is not this plan's."""
    problem = ledger.place_problem()
    return [problem] if problem else []


def repair_guard(workspace: Workspace, *, reanchor: bool = False) -> dict[str, Any]:
    """Restore the append-only guard; anchoring the head back over deleted events also rebuilds the read model
    (it may hold state folded from them)."""
    repaired = workspace.ledger.repair_guard(reanchor=reanchor)
    if reanchor and repaired:
        rebuild(workspace)
    return {"schema": SCHEMA, "repaired": repaired}


def integrity(ledger) -> list[str]:
    """The integrity findings alone (positions, versions, hash chain, the guard), for a ledger of any plans."""
    audit = Audit(None, [])
    with ledger.snapshot():
        for row in ledger.stored():
            audit.take(row)
        return audit.finish(ledger.guard_findings())


class PlanAudit:
    """One plan's fold, its rules, and the read model to compare with the fold where it was saved."""

    def __init__(self, workspace: Workspace, plan_id: str):
        config = workspace.config(plan_id)
        self.resolve = workspace.resolve
        self.state = PlanState(plan_id, timezone=config.timezone)
        self.rules = Rules(self.state, resolve=None, policy=config.evidence_policy)
        self.saved = readmodel.load(workspace.ledger.conn, plan_id, fold_version())
        self.findings: list[str] = []
        self._act_problems: dict[tuple[str, str | None], str | None] = {}

    def compare_if_saved_before(self, position: int) -> None:
        if self.saved is not None and position > self.saved.position:
            self.findings += read_model_findings(self.state, self.saved)
            self.saved = None

    def tick(self, position: int, kind: str, part_id: str, box: int, attempt: str | None, by: str | None,
             data: dict[str, Any] | None = None) -> None:
        """A tick or untick, checked as :meth:`Rules.check` would (``data``: the tick's, when it has evidence)."""
        if by != IMPORT:
            problem = self._act_problems.get((part_id, attempt), False)
            if problem is False:  # ticks change no state the rule reads: ask once until the next other event
                part = self.state.parts.get(part_id)
                problem = None if part is None else refusal_of(self.rules.may_act, part, attempt)
                self._act_problems[(part_id, attempt)] = problem
            if not problem and data is not None and kind == "CheckboxTicked" and part_id in self.state.parts:
                problem = self.rules.tick_problem(self.state.parts[part_id], data)
            if problem:
                self.findings.append(f"position {position} ({kind} {part_id}): {problem}")
        self.state.mark(part_id, box, kind == "CheckboxTicked", position, data.get("evidence") if data else None)
        self.state.position = position

    def event(self, row: Recorded) -> None:
        problem = refusal_of(self.rules.check, row.type, row.data)
        if problem:
            self.findings.append(f"position {row.position} ({row.type} {row.get('part') or row.get('batch')}):"
                                 f" {problem}")
        try:
            self.state.apply(row)
        except Exception as exc:  # noqa: BLE001 - data that fits its type yet not the plan (a bad structure)
            self.findings.append(f"position {row.position} ({row.type}): the fold cannot apply it"
                                 f" ({type(exc).__name__}: {exc})")
        self._act_problems.clear()

    def finish(self) -> list[str]:
        if self.saved is not None:
            self.findings += read_model_findings(self.state, self.saved)
        files = changes(recorded_files(self.state), self.resolve)  # once, at the end: each file read once
        return (self.findings + [f"plan {self.state.id}: {anomaly}" for anomaly in self.state.anomalies]
                + [f"plan {self.state.id}: {change}" for change in files])


class Audit:
    def __init__(self, workspace: Workspace | None, plans: list[str]):
        self.plans = {plan_id: PlanAudit(workspace, plan_id) for plan_id in plans}
        self.findings: list[str] = []
        self.previous, self.last_position, self.events = GENESIS, 0, 0
        self.versions: dict[str, int] = {}
        self.chain_broken = False
        self.key = chain_key()
        self.keyed_from: int | None = None  # the first keyed event: every later one must be keyed too
        self.keyed = 0

    def take(self, row: tuple) -> None:
        position, stream, version, kind, text, recorded_at, plan_id, digest, written = row
        self.events += 1
        # integrity: positions increase, versions run without gaps, the hash chains over the stored text
        if position <= self.last_position:
            self.findings.append(f"position {position}: not after {self.last_position}")
        expected = self.versions.get(stream, 0) + 1
        if version != expected:
            self.findings.append(f"position {position}: stream {stream} jumps to version {version},"
                                 f" expected {expected}")
        if not self.chain_broken:
            if chain_hash(self.previous, position, stream, version, kind, text, recorded_at) != digest:
                self.keyed_link(position, stream, version, kind, text, recorded_at, digest)
            elif self.keyed_from is not None:
                self.findings.append(f"position {position}: hash not keyed after keyed events from position"
                                     f" {self.keyed_from}: the event was written or rewritten without {KEY_ENV}")
                self.chain_broken = True
        self.versions[stream], self.last_position, self.previous = version, position, digest
        # the rules, against the plan's state before the event
        plan = self.plans.get(plan_id)
        if plan is None:
            return
        if plan.saved is not None:
            plan.compare_if_saved_before(position)
        data, problem = decode(kind, written, text, validate=kind not in TICKS)
        if problem is None and kind in TICKS:
            problem = tick_misfit(data)  # ticks, most of a long ledger, are checked without pydantic
            if problem is None:
                plan.tick(position, kind, data["part"], data["box"], data.get("attempt"), data.get("by"),
                          data if "evidence" in data else None)
                return
        if problem is not None:
            self.findings.append(f"position {position} ({kind}): {problem}")
            return
        plan.event(Recorded(position, stream, version, kind, data, recorded_at, plan_id, digest))

    def keyed_link(self, position: int, stream: str, version: int, kind: str, text: str, recorded_at: str,
                   digest: str) -> None:
        """An event whose hash is not the plain one: a keyed link (checked with the key, counted without it), or
        a break in the chain."""
        if digest.startswith(KEYED):
            if self.keyed_from is None:
                self.keyed_from = position
            self.keyed += 1
            if self.key is None or chain_hash(self.previous, position, stream, version, kind, text, recorded_at,
                                              self.key) == digest:
                return
        other_key = ", or the chain was keyed with another key" if digest.startswith(KEYED) else ""
        self.findings.append(f"position {position}: hash chain broken (the event or one before it was altered"
                             f"{other_key})")
        self.chain_broken = True

    def keyed_summary(self) -> dict[str, Any] | None:
        """Where the keyed chain starts, how many keyed events there are, whether their keys were checked."""
        if self.keyed_from is None:
            return None
        return {"from": self.keyed_from, "events": self.keyed, "checked": self.key is not None}

    def finish(self, guard_findings: list[str]) -> list[str]:
        """The integrity findings, the guard's, then each plan's rules and read model."""
        return self.findings + guard_findings + [f for plan in self.plans.values() for f in plan.finish()]


def decode(kind: str, written: int, text: str, *, validate: bool = True) -> tuple[dict[str, Any], str | None]:
    """An event's data as the rules read it (upcast), or what makes it unreadable (``validate``: or unfit for
    its type)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}, "data is not JSON; the event cannot be read"
    if not isinstance(data, dict):
        return {}, "data is not a JSON object; the event cannot be read"
    if written != vocabulary.EVENT_SCHEMA_VERSION:
        try:
            data = upcast(kind, written, data)
        except Exception as exc:  # noqa: BLE001 - a step meeting data it was not written for
            return {}, f"data cannot be upcast from schema {written} ({type(exc).__name__}: {exc})"
    return data, misfit(kind, data) if validate else None


def tick_misfit(data: dict[str, Any]) -> str | None:
    """What a tick's data lacks for the fold (its model is checked in full when loaded elsewhere)."""
    if type(data.get("part")) is not str or type(data.get("box")) is not int:
        return "data lacks part or box, which its type needs"
    return None


def misfit(kind: str, data: dict[str, Any]) -> str | None:
    """What the data lacks or gets wrong for its event type, or None (a type this kx does not know is skipped,
    as the fold skips it)."""
    if kind not in EVENT_TYPES:
        return None
    try:
        load(kind, data)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if e["type"] != "extra_forbidden"]  # a field added later: harmless
        missing = [_field(e) for e in errors if e["type"] == "missing"]
        if missing:
            return f"data lacks {', '.join(missing)}, which its type needs"
        if errors:
            return f"data does not fit its type ({_field(errors[0])}: {errors[0]['msg']})"
    return None


def _field(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error["loc"])


def refusal_of(check, *args) -> str | None:
    """What a rule's check refuses, or None."""
    try:
        check(*args)
    except Refused as refusal:
        return refusal.message
    return None


def read_model_findings(state: PlanState, saved: tuple) -> list[str]:
    """The read model must equal the fold (``state``) up to the position it was saved at."""
    plan_state, parts = saved.plan_state, saved.parts
    fresh_plan, fresh_parts = state.snapshot()
    findings = [f"read model of {state.id}: {key} differs from the events; run 'kx audit rebuild'"
                for key in sorted(fresh_plan) if json.dumps(fresh_plan[key], sort_keys=True)
                != json.dumps(plan_state.get(key), sort_keys=True)]
    stored = {p["id"]: p for p in parts}
    for part in fresh_parts:
        if json.dumps(part, sort_keys=True) != json.dumps(stored.get(part["id"]), sort_keys=True):
            findings.append(f"read model of {state.id}: {part['id']} differs from the events; run 'kx audit rebuild'")
    return findings


def rebuild(workspace: Workspace) -> dict[str, Any]:
    """Rewrite the read model of every plan from a fold of its events."""
    rebuilt = {}
    with workspace.ledger.transaction():
        for plan_id in workspace.plan_ids():
            state = PlanState(plan_id, timezone=workspace.config(plan_id).timezone)
            state.fold_rows(workspace.ledger.scan(plan_id))
            plan_state, parts = state.snapshot()
            readmodel.save(workspace.ledger.conn, plan_id, fold_version(), state.position, state.structure_position,
                           plan_state, parts, complete=True)
            rebuilt[plan_id] = state.position
    return {"schema": SCHEMA, "rebuilt": rebuilt}
