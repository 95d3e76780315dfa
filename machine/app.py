"""One function per read-side command; the CLI parses arguments, calls one of these, prints."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput, KxError
from ledger.files import write_atomic
from ledger.store import Recorded
from machine.acts.context import Context
from machine.acts.importer import plan_of_file
from machine.acts.workspace import Workspace
from machine.defaults import SCHEMA
from machine.outputs.plan_file import as_rendered
from machine.outputs.report import build
from machine.outputs.status import plan_summary
from machine.plan.lint import Finding, lint_text
from machine.plan.marks import render
from machine.plan.parser import PlanError
from machine.plan.paths import PathGuard
from machine.plan.text import PlanTextError, decode, read_file
from machine.state.fold import PlanState
from machine.state.rules import Rules


def list_plans(workspace: Workspace) -> dict[str, Any]:
    plans = [plan_summary(workspace.state(plan_id=plan_id)) for plan_id in workspace.plan_ids()]
    return {"schema": SCHEMA, "plans": plans}


def report(workspace: Workspace, output: Path | None = None) -> dict[str, Any]:
    """Write the plan's HTML report (default: ``.kx/report-PLAN.html`` beside the ledger); its path and size."""
    with workspace.ledger.snapshot():
        state = workspace.state()
        data = build(workspace.ledger, state).encode("utf-8")
    if output is None:
        output = workspace.ledger.path.parent / f"report-{re.sub(r'[^A-Za-z0-9._-]+', '-', state.id)}.html"
        write_atomic(output, data)  # kx's own folder
    else:
        output = write_output(workspace, output, data, state)
    real = output.resolve()
    shown = os.path.relpath(real) if real.is_relative_to(Path.cwd()) else str(real)
    return {"output": shown, "bytes": len(data)}


def write_output(workspace: Workspace, output: Path, data: bytes, state: PlanState | None = None) -> Path:
    """A command's ``-o`` file, written atomically through the plan's guard: inside the plan's root, out of
    ``.kx/``, neither the plan nor the ledger, in a folder that exists, never through a link; its path."""
    guard = workspace.guard(state or workspace.state())
    real = guard.writable(output.absolute(), name=output)
    if not real.parent.is_dir():
        raise BadInput(f"no folder {output.parent} for {output.name}; create it or pass another -o")
    return guard.write(output.absolute(), data, name=output)


def replay(workspace: Workspace, until: int | None = None, at: str | None = None) -> str:
    """The plan's markdown rebuilt from events alone, as it was at ``until`` / ``at``."""
    if until is not None and at is not None:
        raise BadInput("give --until or --at, not both")
    until_time = None
    if at is not None:
        try:
            until_time = clock.iso(clock.parse_time(at))
        except ValueError:
            raise BadInput(f"--at {at!r} is not an ISO-8601 time (e.g. 2025-11-16T18:56:00Z)") from None
    state = workspace.state(until=until, until_time=until_time)
    if not state.source:
        raise BadInput("the plan did not exist yet at that point; pick a later --until or --at")
    return render(state.source, state.plan, state.parts)


def events(workspace: Workspace, since: int = 0) -> list[Recorded]:
    plan = workspace.plan_id() if workspace.plan_choice else None
    return workspace.ledger.read(plan=plan, since=since, keep_damaged=True)  # the raw stream shows a damaged row


def event_view(event: Recorded) -> dict[str, Any]:
    return {
        "position": event.position, "plan": event.plan, "stream": event.stream, "version": event.version,
        "type": event.type, "recorded_at": event.recorded_at, "data": event.data,
    }


def lint(workspace: Workspace | None, file: Path | None, *, ledger: Path | None = None) -> list[Finding]:
    """Lint a plan file (its paths against its folder and ``ledger``), or the ledger's plan as ``kx render`` would
    write it (the file's text with the ledger's marks; its paths against its recorded root), with its history:
    imported successes whose knowledge files fail the checks of ``finish`` among it."""
    if file is not None:
        raw = read_file(file)
        guard = PathGuard.around(file.parent, ledger=ledger, plan=file)
        try:
            return lint_text(decode(raw, str(file)), str(file), guard, _drops_recorded_for(file, ledger))
        except (PlanTextError, PlanError) as exc:
            raise BadInput(str(exc)) from None
    if workspace is None:
        raise BadInput("give a plan FILE, or run inside a project with a ledger")
    ctx = Context.of(workspace)
    state = ctx.state
    text = as_rendered(workspace, state)
    return (lint_text(text, state.path, ctx.rules.guard(), drops_recorded(state))
            + _history_findings(state) + _imported_findings(state, ctx.rules))


def _imported_findings(state: PlanState, rules: Rules) -> list[Finding]:
    """Each PART the import took as Completed whose knowledge file fails the checks of ``finish``."""
    findings = []
    for structure in state.plan.parts:
        part = state.parts[structure.id]
        if part.imported_success and (problems := rules.knowledge_problems(part)):
            findings.append(Finding("error", "imported", f"{part.id} was imported as Completed but its knowledge"
                                    f" file fails the checks of finish: {'; '.join(problems)}",
                                    structure.header.line + 1 if structure.header else structure.line + 1,
                                    fix=f"kx reopen {part.id} --reason ..."))
    return findings


def drops_recorded(state: PlanState) -> set[str]:
    return {part.id for part in state.parts.values() if part.drops}


def _drops_recorded_for(file: Path, ledger: Path | None) -> set[str]:
    """The PARTs whose drop the ledger recorded, when ``file`` is a plan it holds; a file lints without a ledger."""
    if ledger is None or not ledger.is_file():
        return set()
    try:
        workspace = Workspace.open(str(ledger))
        plan_id = plan_of_file(workspace, workspace.store_path(file))
        return drops_recorded(workspace.state(plan_id=plan_id)) if plan_id else set()
    except (KxError, sqlite3.Error):  # not a kx ledger, or not readable: the file's own findings stand
        return set()


def _history_findings(state: PlanState) -> list[Finding]:
    findings = []
    for batch in state.plan.batches:
        if state.batches[batch.number].state != "approved":
            continue
        open_parts = [p.id for p in state.members(state.batches[batch.number]) if p.state != "succeeded"]
        if open_parts:
            findings.append(Finding("warning", "history", f"batch {batch.number} is approved while"
                                    f" {', '.join(open_parts)} have not succeeded"))
    return findings + [Finding("warning", "history", anomaly) for anomaly in state.anomalies]
