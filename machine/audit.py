"""``kx audit verify``: the ledger's integrity and the rules, checked again over all of history.

Integrity: positions increase, every stream's versions run 1, 2, 3... without
gaps, every event's hash chains to the one before. Rules: each event is checked
against the state folded from the events before it — never more than the
limit running, no start behind a locked gate, no success without a recorded
drop and ticked boxes, no act by an attempt that was not current, no review of
a batch that was not awaiting review. Events recorded ``by: import`` are
history taken as it was; ``kx plan lint`` reports their inconsistencies.
"""

from __future__ import annotations

import json
from typing import Any

from ledger import readmodel
from ledger.errors import Refused
from ledger.events import IMPORT
from ledger.projections import SCHEMA
from ledger.store import GENESIS, Recorded, chain_hash
from machine.rules import Rules
from machine.state import PlanState
from machine.workspace import Workspace

ATTEMPT_ACTS = ("CheckboxTicked", "CheckboxUnticked", "DropRecorded", "RunnerSucceeded", "RunnerFailed")


def verify(workspace: Workspace) -> dict[str, Any]:
    rows = workspace.ledger.read()
    findings = integrity(rows)
    plans = workspace.plan_ids() if workspace.plan_choice is None else [workspace.plan_id()]
    for plan_id in plans:
        findings += rule_findings(workspace, plan_id, [r for r in rows if r.plan == plan_id])
    return {"schema": SCHEMA, "events": len(rows), "plans": plans, "findings": findings, "ok": not findings}


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
            readmodel.clear(workspace.ledger.conn, plan_id)
            readmodel.save(workspace.ledger.conn, plan_id, state.position, state.structure_position, plan_state, parts)
            rebuilt[plan_id] = state.position
    return {"schema": SCHEMA, "rebuilt": rebuilt}


def integrity(rows: list[Recorded]) -> list[str]:
    findings: list[str] = []
    previous, last_position = GENESIS, 0
    versions: dict[str, int] = {}
    chain_broken = False
    for row in rows:
        if row.position <= last_position:
            findings.append(f"position {row.position}: not after {last_position}")
        expected = versions.get(row.stream, 0) + 1
        if row.version != expected:
            findings.append(f"position {row.position}: stream {row.stream} jumps to version {row.version},"
                            f" expected {expected}")
        data = json.dumps(row.data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest = chain_hash(previous, row.position, row.stream, row.version, row.type, data, row.recorded_at)
        if digest != row.hash and not chain_broken:
            findings.append(f"position {row.position}: hash chain broken (the event or one before it was altered)")
            chain_broken = True
        versions[row.stream], last_position, previous = row.version, row.position, row.hash
    return findings


def rule_findings(workspace: Workspace, plan_id: str, rows: list[Recorded]) -> list[str]:
    """One pass over the plan's history: each event against the rules, and the read model where it was saved."""
    config = workspace.config(plan_id)
    state = PlanState(plan_id, timezone=config.timezone)
    rules = Rules(state, resolve=None, require_all_ticked=config.require_all_ticked)
    saved = readmodel.load(workspace.ledger.conn, plan_id)
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
        state.apply(row)
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
