"""``kx audit verify``: the ledger's integrity and the rules, checked again over all of history.

Integrity: positions increase, every stream's versions run 1, 2, 3... without
gaps, every event's hash chains to the one before, the append-only guard is
whole and its head is at the last event, and every event's data fits its type
(one that does not is a finding, left out of the rules). Rules: each event is
checked against the state folded from the events before it — never more than the
limit running, no start behind a locked gate, no success without a recorded
drop and ticked boxes, no act by an attempt that was not current, no review of
a batch that was not awaiting review. Events recorded ``by: import`` are
history taken as it was; ``kx plan lint`` reports their inconsistencies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from ledger import readmodel
from ledger.errors import Refused
from ledger.events import EVENT_TYPES, IMPORT
from ledger.projections import SCHEMA
from ledger.store import GENESIS, Recorded, chain_hash
from ledger.upcasting import upcast
from machine.rules import Rules
from machine.state import PlanState, fold_version
from machine.workspace import Workspace

ATTEMPT_ACTS = ("CheckboxTicked", "CheckboxUnticked", "DropRecorded", "RunnerSucceeded", "RunnerFailed")


def verify(workspace: Workspace) -> dict[str, Any]:
    ledger = workspace.ledger
    with ledger.snapshot():  # the events, the head and the read model as of one moment
        rows, findings = checked(ledger.stored())
        findings += ledger.guard_findings()
        plans = workspace.plan_ids() if workspace.plan_choice is None else [workspace.plan_id()]
        for plan_id in plans:
            findings += rule_findings(workspace, plan_id, [r for r in rows if r.plan == plan_id])
        head = ledger.head()
    return {"schema": SCHEMA, "events": ledger.count(), "plans": plans, "findings": findings, "ok": not findings,
            "head": {"position": head[0], "hash": head[1]} if head else None}


def repair_guard(workspace: Workspace, *, reanchor: bool = False) -> dict[str, Any]:
    """Restore the append-only guard; anchoring the head back over deleted events also rebuilds the read model
    (it may hold state folded from them)."""
    repaired = workspace.ledger.repair_guard(reanchor=reanchor)
    if reanchor and repaired:
        rebuild(workspace)
    return {"schema": SCHEMA, "repaired": repaired}


def read_model_findings(state: PlanState, saved: tuple) -> list[str]:
    """The read model must equal the fold (``state``) up to the position it was saved at."""
    _, _, plan_state, parts = saved
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


class Chain:
    """Positions, stream versions and the hash chain, checked row by row on the rows as stored (their text)."""

    def __init__(self) -> None:
        self.previous, self.last_position, self.broken = GENESIS, 0, False
        self.versions: dict[str, int] = {}

    def check(self, stored: tuple) -> list[str]:
        position, stream, version, type_, data, recorded_at, _plan, digest, _written = stored
        findings = []
        if position <= self.last_position:
            findings.append(f"position {position}: not after {self.last_position}")
        expected = self.versions.get(stream, 0) + 1
        if version != expected:
            findings.append(f"position {position}: stream {stream} jumps to version {version}, expected {expected}")
        if not self.broken and chain_hash(self.previous, position, stream, version, type_, data,
                                          recorded_at) != digest:
            findings.append(f"position {position}: hash chain broken (the event or one before it was altered)")
            self.broken = True
        self.versions[stream], self.last_position, self.previous = version, position, digest
        return findings


def integrity(stored: Iterable[tuple]) -> list[str]:
    chain = Chain()
    return [finding for row in stored for finding in chain.check(row)]


def checked(stored: Iterable[tuple]) -> tuple[list[Recorded], list[str]]:
    """One pass over the rows as stored (``Ledger.stored``): the chain, then each row's data as the rules read it
    (upcast); a row whose data cannot be read is one finding, and left out."""
    chain, rows, findings = Chain(), [], []
    for row in stored:
        findings += chain.check(row)
        position, stream, version, type_, text, recorded_at, plan, digest, written = row
        data, problem = _decode(type_, written, text)
        if problem is None:
            rows.append(Recorded(position, stream, version, type_, data, recorded_at, plan, digest))
        else:
            findings.append(f"position {position} ({type_}): {problem}")
    return rows, findings


def _decode(type_: str, written: int, text: str) -> tuple[dict[str, Any], str | None]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}, "data is not JSON; the event cannot be read"
    if not isinstance(data, dict):
        return {}, "data is not a JSON object; the event cannot be read"
    try:
        data = upcast(type_, written, data)
    except Exception as exc:  # noqa: BLE001 - a step meeting data it was not written for
        return {}, f"data cannot be upcast from schema {written} ({type(exc).__name__}: {exc})"
    return data, _misfit(type_, data)


def _misfit(type_: str, data: dict[str, Any]) -> str | None:
    """What the data lacks or gets wrong for its event type, or None (a type this kx does not know is skipped,
    as the fold skips it)."""
    model = EVENT_TYPES.get(type_)
    if model is None:
        return None
    try:
        model.model_validate(data)
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


def rule_findings(workspace: Workspace, plan_id: str, rows: list[Recorded]) -> list[str]:
    """One pass over the plan's history: each event against the rules, and the read model where it was saved."""
    config = workspace.config(plan_id)
    state = PlanState(plan_id, timezone=config.timezone)
    rules = Rules(state, resolve=None, require_all_ticked=config.require_all_ticked)
    saved = readmodel.load(workspace.ledger.conn, plan_id, fold_version())
    findings: list[str] = []
    for row in rows:
        if saved is not None and row.position > saved[0]:
            findings += read_model_findings(state, saved)
            saved = None
        if row.get("by") != IMPORT:
            problem = _check(state, rules, row)
            if problem:
                findings.append(f"position {row.position} ({row.type} {row.get('part') or row.get('batch')}):"
                                f" {problem}")
        try:
            state.apply(row)
        except Exception as exc:  # noqa: BLE001 - data that fits its type yet not the plan (a bad structure)
            findings.append(f"position {row.position} ({row.type}): the fold cannot apply it"
                            f" ({type(exc).__name__}: {exc})")
    if saved is not None:
        findings += read_model_findings(state, saved)
    return findings + [f"plan {plan_id}: {anomaly}" for anomaly in state.anomalies]


def _check(state: PlanState, rules: Rules, row: Recorded) -> str | None:
    part = state.parts.get(row.get("part")) if row.get("part") else None
    try:
        if row.type == "RunnerStarted" and part:
            if part.state != "pending":
                return f"started while {part.state}"
            rules.may_start(part)
        elif row.type in ATTEMPT_ACTS and part and row.get("attempt"):
            if row.get("attempt") != part.attempt or part.state not in ("running", "lost"):
                return f"stale attempt {row.get('attempt')} (current {part.attempt}, {part.state})"
        elif row.type in ATTEMPT_ACTS and part:
            rules.gate(part)
        if row.type == "RunnerSucceeded" and part:
            rules.may_succeed(part)
        elif row.type == "BatchReviewed":
            batch = state.batches.get(row.get("batch"))
            if batch and batch.state != "awaiting_review":
                return f"batch reviewed while {batch.state}"
    except Refused as refusal:
        return refusal.message
    return None
