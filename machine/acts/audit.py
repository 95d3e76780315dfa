"""``kx audit verify``: the ledger's integrity and the rules, checked again over all of history.

Two passes over the events as of one moment, in ledger order. Integrity
(:mod:`ledger.chain`): positions increase, every stream's versions run 1, 2,
3... without gaps, every event's hash chains to the one before; the
append-only guard is whole and its head is at the last event. Rules, plan by
plan: every event is decoded (the ledger's one decoder) and fitted to its type
(one that does not fit is a finding, left out of the rules), put to
:meth:`Rules.check` — the very check an act makes before appending — against
the state folded from the events before it, then folded; a fact the machines
do not allow is a finding too. The read model is compared with the fold where
it was saved. At the end, the files
the evidence rests on (each PART's drop and recorded target) are hashed again,
once each: a file changed or gone since it was recorded is a finding. Events recorded
``by: import`` are history taken as it was; ``kx plan lint`` reports their
inconsistencies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from ledger.chain import Chain
from ledger.derived import readmodel
from ledger.errors import Refused
from ledger.events.mapper import Undecodable, decode
from ledger.events.models import EVENT_TYPES, load
from ledger.events.vocabulary import IMPORT
from ledger.store import GENESIS, Recorded
from machine.acts.workspace import Workspace
from machine.defaults import SCHEMA
from machine.state.fold import PlanState, fold_version
from machine.state.rehash import changes, recorded_files
from machine.state.rules import Rules

TICKS = frozenset({"CheckboxTicked", "CheckboxUnticked"})
PARALLEL_FROM = 100_000  # events from which the chain is checked in a second process while this one folds


def verify(workspace: Workspace, digests: Sequence[tuple[int, str]] = (), *,
           parallel_from: int = PARALLEL_FROM) -> dict[str, Any]:
    """``digests``: (position, hash) pairs kept outside the ledger (``kx audit digest``), each a finding unless
    the ledger still holds that event with that chain hash.

    Two passes over the events as of one moment: the chain (positions, versions, hashes), and each plan's rules
    and fold. On a long ledger the first runs in a second process, on the machine's other core, reading the same
    events (up to the same last position) through a connection of its own."""
    ledger = workspace.ledger
    plans = [PlanAudit(workspace, plan_id)
             for plan_id in (workspace.plan_ids() if workspace.plan_choice is None else [workspace.plan_id()])]
    with ledger.snapshot():  # the events, the head and the read model as of one moment
        last = ledger.digest()[0]
        with Chain.checking(ledger, last, in_parallel=last >= parallel_from) as chain:
            for plan in plans:
                plan.take_all(ledger.stored_of(plan.state.id, until=last))
        anchored = [(position, digest, ledger.hash_at(position) if position else GENESIS)
                    for position, digest in digests]
        findings = chain.result.findings + ledger.guard_findings() + [f for plan in plans for f in plan.finish()]
        head = ledger.head()
    findings[:0] = [*digest_findings(anchored, chain.result.last_position), *place_findings(ledger)]
    return {"schema": SCHEMA, "events": chain.result.events, "plans": [plan.state.id for plan in plans],
            "findings": findings, "ok": not findings, "head": {"position": head[0], "hash": head[1]} if head else None,
            "digests": [{"position": p, "hash": d, "ok": d == found} for p, d, found in anchored],
            "keyed": chain.result.keyed_summary()}


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
    with ledger.snapshot():
        return Chain.of(ledger).findings + ledger.guard_findings()


class PlanAudit:
    """One plan's fold, its rules, and the read model to compare with the fold where it was saved."""

    def __init__(self, workspace: Workspace, plan_id: str):
        config = workspace.config(plan_id)
        self.resolve = workspace.resolve
        self.state = PlanState(plan_id, timezone=config.timezone)
        self.rules = Rules(self.state, resolve=None, policy=config.evidence_policy)
        self.saved = readmodel.load(workspace.ledger.conn, plan_id, fold_version())
        self.findings: list[str] = []
        # what Rules.check said of ticks without evidence, by (type, PART, attempt, by import): ticks change no state
        # the rules read, so the answer holds until the next other event
        self._tick_verdicts: dict[tuple[str, str, str | None, bool], str | None] = {}

    def take_all(self, rows: Iterable[tuple]) -> None:
        """The plan's events as stored (:meth:`ledger.store.Ledger.stored_of`), in order: each decoded, fitted to
        its type, put to the rules against the state before it, and folded; ticks, most of a long ledger, are
        fitted without pydantic and folded on their short path, in this loop."""
        state, findings, check, verdicts = self.state, self.findings, self.rules.check, self._tick_verdicts
        mark, saved_at = state.mark, self.saved.position if self.saved else math.inf
        for position, stream, version, kind, text, recorded_at, written in rows:
            if position > saved_at:  # the fold is where the read model was saved: compare them
                findings += read_model_findings(state, self.saved)
                self.saved, saved_at = None, math.inf
            try:
                data = decode(kind, written, text)
            except Undecodable as exc:
                findings.append(f"position {position} ({kind}): {exc}")
                continue
            if kind not in TICKS:
                if problem := misfit(kind, data):
                    findings.append(f"position {position} ({kind}): {problem}")
                else:
                    self.event(Recorded(position, stream, version, kind, data, recorded_at, state.id))
                continue
            part, box, evidence = data.get("part"), data.get("box"), data.get("evidence")
            if type(part) is not str or type(box) is not int:
                findings.append(f"position {position} ({kind}): data lacks part or box, which its type needs")
                continue
            if evidence is None:
                key = (kind, part, data.get("attempt"), data.get("by") == IMPORT)
                problem = verdicts.get(key, False)
                if problem is False:
                    problem = verdicts[key] = refusal_of(check, kind, data)
            else:
                problem = refusal_of(check, kind, data)
            if problem:
                findings.append(f"position {position} ({kind} {part}): {problem}")
            mark(part, box, kind == "CheckboxTicked", position, evidence)
            state.position = position

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
        self._tick_verdicts.clear()

    def finish(self) -> list[str]:
        if self.saved is not None:
            self.findings += read_model_findings(self.state, self.saved)
        files = changes(recorded_files(self.state), self.resolve)  # once, at the end: each file read once
        return (self.findings + [f"plan {self.state.id}: {anomaly}" for anomaly in self.state.anomalies]
                + [f"plan {self.state.id}: {change}" for change in files])


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
                           plan_state, parts, state.runs(), complete=True)
            rebuilt[plan_id] = state.position
    return {"schema": SCHEMA, "rebuilt": rebuilt}
