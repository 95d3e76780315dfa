"""``kx audit verify``: the ledger's integrity and the rules, checked again over all of history.

One pass over every event, in ledger order. Integrity: positions increase,
every stream's versions run 1, 2, 3... without gaps, every event's hash chains
to the one before. Rules: each event is put to :meth:`Rules.check` — the very
check an act makes before appending — against the state folded from the events
before it, then folded; a fact the machines do not allow is a finding too. The
read model is compared with the fold where it was saved. Events recorded
``by: import`` are history taken as it was; ``kx plan lint`` reports their
inconsistencies.
"""

from __future__ import annotations

import json
from typing import Any

from ledger import readmodel
from ledger.errors import Refused
from machine.projections import SCHEMA
from ledger.store import GENESIS, Recorded, chain_hash
from ledger.vocabulary import IMPORT
from machine.rules import Rules
from machine.state import PlanState
from machine.workspace import Workspace

TICKS = frozenset({"CheckboxTicked", "CheckboxUnticked"})


def verify(workspace: Workspace) -> dict[str, Any]:
    plans = workspace.plan_ids() if workspace.plan_choice is None else [workspace.plan_id()]
    audit = Audit(workspace, plans)
    with workspace.ledger.snapshot():
        for row in workspace.ledger.scan_all():
            audit.take(row)
    findings = audit.finish()
    return {"schema": SCHEMA, "events": audit.events, "plans": plans, "findings": findings, "ok": not findings}


def integrity(ledger) -> list[str]:
    """The integrity findings alone (positions, versions, hash chain), for a ledger of any plans."""
    audit = Audit(None, [])
    with ledger.snapshot():
        for row in ledger.scan_all():
            audit.take(row)
    return audit.finish()


class PlanAudit:
    """One plan's fold, its rules, and the read model to compare with the fold where it was saved."""

    def __init__(self, workspace: Workspace, plan_id: str):
        config = workspace.config(plan_id)
        self.state = PlanState(plan_id, timezone=config.timezone)
        self.rules = Rules(self.state, resolve=None, policy=config.evidence_policy)
        self.saved = readmodel.load(workspace.ledger.conn, plan_id)
        self.findings: list[str] = []
        self._act_problems: dict[tuple[str, str | None], str | None] = {}

    def compare_if_saved_before(self, position: int) -> None:
        if self.saved is not None and position > self.saved[0]:
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
        self.state.apply(row)
        self._act_problems.clear()

    def finish(self) -> list[str]:
        if self.saved is not None:
            self.findings += read_model_findings(self.state, self.saved)
        return self.findings + [f"plan {self.state.id}: {anomaly}" for anomaly in self.state.anomalies]


class Audit:
    def __init__(self, workspace: Workspace | None, plans: list[str]):
        self.plans = {plan_id: PlanAudit(workspace, plan_id) for plan_id in plans}
        self.findings: list[str] = []
        self.previous, self.last_position, self.events = GENESIS, 0, 0
        self.versions: dict[str, int] = {}
        self.chain_broken = False

    def take(self, row: tuple) -> None:
        position, plan_id, stream, version, kind, recorded_at, data, digest, part, box, attempt, by = row
        self.events += 1
        # integrity: positions increase, versions run without gaps, the hash chains
        if position <= self.last_position:
            self.findings.append(f"position {position}: not after {self.last_position}")
        expected = self.versions.get(stream, 0) + 1
        if version != expected:
            self.findings.append(f"position {position}: stream {stream} jumps to version {version},"
                                 f" expected {expected}")
        if not self.chain_broken and chain_hash(self.previous, position, stream, version, kind, data,
                                                recorded_at) != digest:
            self.findings.append(f"position {position}: hash chain broken (the event or one before it was altered)")
            self.chain_broken = True
        self.versions[stream], self.last_position, self.previous = version, position, digest
        # the rules, against the plan's state before the event
        plan = self.plans.get(plan_id)
        if plan is None:
            return
        if plan.saved is not None:
            plan.compare_if_saved_before(position)
        if kind in TICKS:
            plan.tick(position, kind, part, box, attempt, by, self.tick_data(position, kind, data))
            return
        try:
            loaded = json.loads(data)
        except ValueError:
            self.findings.append(f"position {position}: {kind} data is not JSON; the event is damaged")
            return
        plan.event(Recorded(position, stream, version, kind, loaded, recorded_at, plan_id, digest))

    def tick_data(self, position: int, kind: str, data: str) -> dict[str, Any] | None:
        """A tick's data when it carries evidence (the others need no JSON parsing: SQLite extracted their fields)."""
        if '"evidence"' not in data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            self.findings.append(f"position {position}: {kind} data is not JSON; the event is damaged")
            return None

    def finish(self) -> list[str]:
        return self.findings + [f for plan in self.plans.values() for f in plan.finish()]


def refusal_of(check, *args) -> str | None:
    """What a rule's check refuses, or None."""
    try:
        check(*args)
    except Refused as refusal:
        return refusal.message
    return None


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
