"""Questions about a plan that change nothing: what may start, what a runner needs, who did what."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput, Refused
from ledger.events.models import batch_stream, part_stream, plan_stream
from machine.acts.context import Context
from machine.acts.workspace import Workspace
from machine.defaults import SCHEMA
from machine.plan.marks import render
from machine.plan.model import AttemptId, Box, Part
from machine.plan.refs import index_of
from machine.plan.text import quoted, split_lines
from machine.state.evidence import how_to
from machine.state.fold import PartState, stamp_of
from machine.state.machines import allows, not_possible, part_machine

PLAN_DETAILS_HIDDEN = ("source", "structure", "plan")


def next_parts(workspace: Workspace) -> dict[str, Any]:
    state = workspace.state()
    return {"schema": SCHEMA, "parts": workspace.rules(state).startable(), "running": len(state.running()),
            "limit": state.limit}


def brief(workspace: Workspace, ref: str, attempt: str | None = None) -> dict[str, Any]:
    return _brief(Context.of(workspace), ref, attempt)


def _brief(ctx: Context, ref: str, attempt: str | None) -> dict[str, Any]:
    state, workspace = ctx.state, ctx.workspace
    part, structure = ctx.part(ref)
    text = render(state.source, state.plan, state.parts)
    section = "".join(split_lines(text)[structure.line : structure.end_line]).rstrip() + "\n"
    root, config = workspace.resolve(state.root), ctx.config
    drop_name = attempt_drop_name(workspace, root, part, structure, attempt or part.attempt, config.timezone)
    target = structure.header.target if structure.header else None
    files = state.plan.influential_files
    return {
        "schema": SCHEMA,
        "plan": state.id,
        "plan_title": state.plan.title,
        "part": part.id,
        "title": structure.title,
        "batch": structure.batch,
        "state": part.state,
        "attempt": attempt or part.attempt,
        "root": str(root),
        "plan_path": str(workspace.resolve(state.path)),
        "target": target,
        "target_path": str(root / target) if target else None,
        "drop_name": drop_name,
        "drop_path": str(root / drop_name) if drop_name else None,
        "influential_files": [{"number": n, "path": files.get(n)} for n in structure.influenced_by],
        "worker_instructions": list(state.plan.worker_instructions),
        "evidence_policy": ctx.rules.policy,
        "search_command": config.search_command,
        "context_tokens": config.context_tokens,
        "boxes": [_box_view(ctx, part, structure, b, target) for b in structure.boxes],
        "section": section,
    }


def _box_view(ctx: Context, part: PartState, structure: Part, box: Box, target: str | None) -> dict[str, Any]:
    """A box as a runner needs it: its reference, kind and arguments, what its evidence is, and the command."""
    ref, kind = index_of(structure, box), ctx.rules.kind(box.text)
    needs, command = how_to(kind, part.id, ref, target, ctx.state.plan.influential_files)
    return {"ref": ref, "text": box.text, "ticked": box.id in part.ticked, "kind": kind.kind, **kind.arguments(),
            "needs": needs, "command": command,
            "evidence": part.evidence.get(box.id) if box.id in part.ticked else None}


def check(workspace: Workspace, ref: str, attempt: str | None = None, *, ctx: Context | None = None) -> dict[str, Any]:
    """``kx check PART``: whether each piece of the PART's evidence holds now, and whether ``finish`` would succeed.
    ``ctx``: the plan as the caller folded it already (default: folded here)."""
    ctx = ctx or Context.of(workspace)
    part, _ = ctx.part(ref)
    report = ctx.rules.evidence_report(part)
    blocked = [] if part.state == "succeeded" and attempt in (None, part.attempt) else _blocked(ctx, part, attempt)
    return {"schema": SCHEMA, **report.as_dict(), "state": part.state, "attempt": attempt or part.attempt,
            "ok": not report.missing and not blocked, "blocked": blocked}


def check_all(workspace: Workspace) -> dict[str, Any]:
    """``kx check`` without a PART: every PART, in plan order. A succeeded one holds when its knowledge file passes
    the checks of ``finish`` that need no tick (imported work included); any other when ``finish`` would succeed."""
    ctx = Context.of(workspace)
    parts = []
    for structure in ctx.state.plan.parts:
        part = ctx.state.parts[structure.id]
        if part.state == "succeeded":
            missing = ctx.rules.knowledge_problems(part)
        else:
            missing = ctx.rules.evidence_report(part).missing + _blocked(ctx, part, None)
        parts.append({"part": part.id, "state": part.state, "ok": not missing, "missing": missing,
                      **({"imported": True} if part.imported_success else {}),
                      **({"rehearsal": True} if part.rehearsed else {})})
    return {"schema": SCHEMA, "plan": ctx.state.id, "policy": ctx.rules.policy, "ok": all(p["ok"] for p in parts),
            "parts": parts}


def _blocked(ctx: Context, part: PartState, attempt: str | None) -> list[str]:
    """What stops ``finish`` apart from the evidence: a stale attempt, a locked batch, the PART's state."""
    machine = part_machine()
    problems = [] if allows(machine, part, "succeed") else [not_possible(machine, part, "succeed", ctx.state)]
    try:
        ctx.rules.may_act(part, attempt)
    except Refused as refusal:
        problems.append(refusal.message)
    return problems


def _default_drop_name(structure) -> str:
    """For a PART whose plan names no drop: KNOWLEDGE-DROP-<target or title>-<date>-[TIME].md."""
    base = structure.header.target.rsplit("/", 1)[-1].rsplit(".", 1)[0] if structure.header and structure.header.target \
        else structure.title
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-") or structure.id.lower()
    return f"KNOWLEDGE-DROP-{slug}-{clock.now().strftime('%Y-%m-%d')}-[TIME].md"


def attempt_drop_name(workspace: Workspace, root: Path, part: PartState, structure: Part, attempt: str | None,
                      timezone: str | None) -> str:
    """The drop file's name for ``attempt``: the plan's name with ``[TIME]`` filled from the attempt's start (now,
    without one), made distinct (``-attempt2``) when an earlier attempt of the PART recorded a drop of that name,
    or a file of that name was there before the attempt started (an earlier attempt's that was never recorded, or
    the drop of the plan's own history): every attempt's drop stays on disk and in history."""
    started = part.started if part.started and part.started.get("attempt") == attempt else None
    moment = started["recorded_at"] if started else clock.now_iso()
    name = (structure.drop_name or _default_drop_name(structure)).replace(
        "[TIME]", stamp_of(moment, timezone)[-5:].replace(":", ""))
    earlier = {drop["path"] for drop in part.drops if drop.get("attempt") != attempt}
    if started and (workspace.store_path(root / name) in earlier or _made_before(root / name, moment)):
        stem, dot, suffix = name.rpartition(".")
        number = AttemptId.parse(attempt).number
        name = f"{stem}-attempt{number}{dot}{suffix}" if dot else f"{name}-attempt{number}"
    return name


def _made_before(path: Path, moment: str) -> bool:
    """Whether a file is at ``path``, last written before ``moment`` (a ledger time)."""
    try:
        return path.stat().st_mtime < clock.parse_time(moment).timestamp()
    except OSError:
        return False


def known_attempt(workspace: Workspace, attempt: str) -> str:
    """``attempt`` if the plan started it (current or over), else bad input (exit 2) naming the PART's attempts."""
    parsed, state = AttemptId.parse(attempt), workspace.state()
    part = state.part(parsed.part) if parsed else None
    if parsed is None or part is None or parsed.number > part.attempts:
        known = f"{part.id} has {part.attempts} attempt{'s' if part.attempts != 1 else ''}" if part else \
            "attempt ids are PART-7#1, as 'kx start' prints them"
        raise BadInput(f"no attempt {quoted(attempt)} in plan {state.id} ({known}); see 'kx status'")
    return attempt


def history(workspace: Workspace, ref: str, *, ctx: Context | None = None) -> dict[str, Any]:
    ctx = ctx or Context.of(workspace)
    part, structure = ctx.part(ref)
    plan_id, ledger = ctx.state.id, workspace.ledger
    rows = [
        *ledger.read(stream=part_stream(plan_id, part.id)),
        *ledger.read(stream=batch_stream(plan_id, structure.batch)),
        *ledger.read(stream=plan_stream(plan_id), types=["PlanImported", "PlanRevised"]),
    ]
    events = []
    for row in sorted(rows, key=lambda r: r.position):
        data = {k: v for k, v in row.data.items() if k not in PLAN_DETAILS_HIDDEN}
        events.append({"position": row.position, "type": row.type, "recorded_at": row.recorded_at,
                       "attempt": row.get("attempt"), "data": data})
    return {"schema": SCHEMA, "part": part.id, "title": structure.title, "batch": structure.batch,
            "state": part.state, "events": events}


def last_run(workspace: Workspace, plan_id: str | None = None) -> dict[str, Any] | None:
    """The data of the plan's last ``RunStarted`` (``command``, ``options``), or None."""
    runs = workspace.ledger.read(stream=plan_stream(plan_id or workspace.plan_id()), types=["RunStarted"])
    return runs[-1].data if runs else None


def brief_markdown(view: dict[str, Any]) -> str:
    lines = [f"# Brief: {view['part']} — {view['title']}", "",
             f"- plan: {view['plan_title'] or view['plan']} (batch {view['batch']})",
             f"- state: {view['state']}" + (f", attempt {view['attempt']}" if view["attempt"] else ""),
             f"- target file: {view['target_path'] or 'not named in the plan'}",
             f"- drop file: {view['drop_path'] or 'not named in the plan'}"]
    if view["influential_files"]:
        lines += ["", "## Influential files: read them and cite them", ""]
        lines += [f"- File {f['number']}: {f['path'] or '(not in the plan list)'}" for f in view["influential_files"]]
    if view["worker_instructions"]:
        lines += ["", "## Worker instructions", "", *view["worker_instructions"]]
    part = view["part"]
    lines += ["", "## Reporting", "",
              f"- tick each box as you finish it: `kx tick {part} REF` (REF: a number, step.n, or text); kx checks"
              f" its evidence then (policy: {view['evidence_policy']}), and again at the end",
              f"- a Search box with what the search found: `kx tick {part} REF --source URL` (repeat --source)",
              f"- record the drop when written: `kx drop {part} {view['drop_path'] or 'FILE'}`, then tick its box",
              f"- `kx check {part}` says what is still missing; exit 0 when you believe you are done",
              "", "## Boxes", ""]
    for box in view["boxes"]:
        lines.append(f"- [{'x' if box['ticked'] else ' '}] {box['ref']}: {box['text']}")
        lines.append(f"  - {box['kind']}: needs {box['needs']}; do: {box['command']}")
    lines += ["", "## The PART as the plan writes it", "", view["section"].rstrip()]
    return "\n".join(lines)
