"""What each page shows, built from the queries the command line uses: ``kx status``'s view for the dashboard,
``kx check`` and ``kx audit history`` for a PART, the review packet for a batch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ledger.errors import BadInput
from machine.acts.context import Context
from machine.acts.queries import check, history
from machine.acts.workspace import Workspace
from machine.outputs.packet import batch_packet, duration
from machine.plan.paths import PathGuard
from machine.state.evidence import locate
from machine.state.fold import PartState, PlanState
from machine.state.machines import allows, part_machine
from machine.state.rehash import changes, recorded_files
from machine.state.rules import Rules
from runners.attempt_folder import attempt_dir, kept_target, last_output_of
from web import knowledge
from web.site import Site

ENDS = {"RunnerSucceeded": "succeeded", "RunnerFailed": "failed", "RunnerLost": "lost"}


# --- the dashboard ---------------------------------------------------------------------


def dashboard(site: Site) -> dict[str, Any]:
    view = site.status()
    workspace, state = site.workspace(), site.state()
    batches = []
    for batch in view["batches"]:
        parts = [{**part, "imported": state.parts[part["id"]].imported} for part in batch["parts"]]
        batches.append({**batch, "parts": parts, "succeeded": sum(p["state"] == "succeeded" for p in parts),
                        "ticked": sum(p["ticked"] for p in parts), "boxes": sum(p["total"] for p in parts)})
    every = [part for batch in batches for part in batch["parts"]]
    reviewing = [b["number"] for b in batches if b["state"] == "awaiting_review"]
    rules = workspace.rules(state)
    return {
        "status": view,
        "batches": batches,
        "running": [running(state, part, rules) for part in state.running()],
        "failures": [part for part in every if part["state"] in ("failed", "lost")],
        "imported": [part["id"] for part in every if part["imported"]],
        "reviewing": reviewing,
        "changed": [str(c) for c in changes(recorded_files(state, members(state, reviewing)), workspace.resolve)],
        "consolidated": state.consolidated,
    }


def running(state: PlanState, part: PartState, rules: Rules) -> dict[str, Any]:
    return {"id": part.id, "attempt": part.attempt, "title": state.plan.part(part.id).title,
            "seconds": duration((part.started or {}).get("recorded_at"), None), "rehearsal": rules.rehearsing(part)}


def members(state: PlanState, numbers: list[int]) -> list[str]:
    return [part.id for number in numbers for part in state.members(state.batches[number])]


# --- a PART ----------------------------------------------------------------------------


def part_page(workspace: Workspace, ref: str) -> dict[str, Any]:
    with workspace.ledger.snapshot():  # one fold of the plan for the check, the history and the page
        ctx = Context.of(workspace)
        checked = check(workspace, ref, ctx=ctx)
        story = history(workspace, ref, ctx=ctx)
    state = ctx.state
    part, structure = state.parts[checked["part"]], state.plan.part(checked["part"])
    guard = workspace.guard(state)
    target = structure.header.target if structure.header else None
    found, _ = locate(guard, target) if target else (None, None)
    data = found.read_bytes() if found and found.is_file() else None
    boxes = [box_row(verdict, part.evidence.get(box.id)) for verdict, box in zip(checked["boxes"], structure.boxes)]
    marks = mark_headings(boxes)
    attempts = attempts_of(workspace.ledger.path, state.id, story["events"])
    files = served_files(workspace, state, guard)
    return {
        "part": part, "title": structure.title, "batch": structure.batch, "check": checked, "boxes": boxes,
        "target": {**checked["target"], "path": target, "link": link_to(files, guard.root, found)},
        "knowledge": knowledge.render(knowledge.decoded(data), marks) if data is not None else None,
        "drop": drop_of(workspace, guard, part.drop, checked["drop"], files),
        "attempts": attempts,
        "since_last": changed_since(attempts, data),
        "events": story["events"],
        "reopenable": allows(part_machine(), part, "reopen"),  # as `kx reopen` asks
        "rehearsal": ctx.rules.rehearsing(part),  # its results are labelled as such
    }


def box_row(verdict: dict[str, Any], evidence: dict[str, Any] | None) -> dict[str, Any]:
    """A box as the page shows it: the verdict of ``kx check``, and what its tick's evidence recorded."""
    evidence = evidence or {}
    return {**verdict, "evidence": evidence,
            "sources": [(source, knowledge.web_address(source)) for source in evidence.get("sources", ())]}


def mark_headings(boxes: list[dict[str, Any]]) -> dict[int, str]:
    """Line → the reference of the Section box whose verdict names the heading on it (``kx check``'s)."""
    return {box["line"]: box["ref"] for box in boxes if box["kind"] == "section" and box["ok"] and box.get("line")}


def drop_of(workspace: Workspace, guard: PathGuard, drop: dict[str, Any] | None, verdict: dict[str, Any],
            files: dict[str, Path]) -> dict[str, Any] | None:
    if drop is None:
        return None
    path = workspace.resolve(drop["path"])
    data = read_guarded(guard, path)
    return {**drop, "verdict": verdict, "link": link_to(files, guard.root, path),
            "html": knowledge.render(knowledge.decoded(data)) if data is not None else None}


def read_guarded(guard: PathGuard, path: Path) -> bytes | None:
    """A file's bytes, when the path guard allows it (a drop swapped for a link out of the root is not read)."""
    try:
        real = guard.check(path)
        return real.read_bytes() if real.is_file() else None
    except (BadInput, OSError):
        return None


def attempts_of(ledger_path: Path, plan_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every attempt in a PART's history: its outcome, duration and last output, and the target it left."""
    attempts: dict[str, dict[str, Any]] = {}
    latest = None
    for event in events:
        data = event["data"]
        if event["type"] == "RunnerStarted":
            latest = event["attempt"]
            attempts[latest] = {"attempt": latest, "started_at": event["recorded_at"], "ended_at": None,
                                "outcome": "running", "by": data.get("by"), "rehearsal": bool(data.get("rehearsal"))}
        elif event["type"] in ENDS and (event["attempt"] or latest) in attempts:  # a person's finish: the latest
            attempts[event["attempt"] or latest].update(
                outcome=ENDS[event["type"]], ended_at=event["recorded_at"], reason=data.get("reason"),
                last_output=data.get("last_output"))
    previous = None
    for entry in attempts.values():
        folder = attempt_dir(ledger_path, plan_id, entry["attempt"])
        entry["seconds"] = duration(entry["started_at"], entry["ended_at"])
        entry["last_output"] = entry.get("last_output") or last_output_of(folder)
        entry["copy"] = kept_target(folder)
        if entry["copy"] is not None and previous is not None:
            entry["diff"] = knowledge.diff(previous["copy"], entry["copy"], previous["attempt"], entry["attempt"])
            entry["after"] = previous["attempt"]
        previous = entry if entry["copy"] is not None else previous
    return list(attempts.values())


def changed_since(attempts: list[dict[str, Any]], now: bytes | None) -> dict[str, Any] | None:
    """How the knowledge file (its bytes ``now``; None: not there) differs from the copy the last attempt left,
    if it does."""
    last = next((a for a in reversed(attempts) if a["copy"] is not None), None)
    if last is None:
        return None
    now = now or b""
    if now == last["copy"]:
        return None
    return {"after": last["attempt"], "diff": knowledge.diff(last["copy"], now, last["attempt"], "now")}


# --- a batch's review ------------------------------------------------------------------


def review_page(site: Site, number: int) -> dict[str, Any]:
    workspace, state = site.workspace(), site.reconciled()
    packet = batch_packet(state, number, workspace.resolve)
    guard, rules = workspace.guard(state), workspace.rules(state)
    files = served_files(workspace, state, guard)
    for entry in packet["parts"]:
        structure, part = state.plan.part(entry["part"]), state.parts[entry["part"]]
        target = structure.header.target if structure.header else None
        found, _ = locate(guard, target) if target else (None, None)
        entry.update(target=target, target_link=link_to(files, guard.root, found), imported=part.imported,
                     rehearsal=rules.rehearsing(part), drop_view=drop_of(workspace, guard, part.drop, {}, files))
    batch = state.batches[number]
    return {"packet": packet, "state": batch.state, "reviewable": batch.state == "awaiting_review",
            "failed": rules.failed_parts(batch), "reviews": batch.reviews,
            "members": [p.id for p in state.members(batch)]}


# --- files -----------------------------------------------------------------------------


def served_files(workspace: Workspace, state: PlanState, guard: PathGuard) -> dict[str, Path]:
    """The files ``/files/PATH`` serves: every PART's target and every drop the ledger recorded, by their path
    under the plan's root (``guard``'s, the plan's); the guard still has the last word when one is read."""
    root = guard.root
    named = [root / p.header.target for p in state.plan.parts if p.header and p.header.target]
    for part in state.parts.values():
        named += [workspace.resolve(d["path"]) for d in part.drops]
        if part.target and part.target.get("path"):
            named.append(root / part.target["path"])
    served = {}
    for path in named:
        if (name := name_under(root, path)) is not None:
            served[name] = path
    return served


def name_under(root: Path, path: Path) -> str | None:
    """``path``'s name under ``root`` (``topics/a.md``), or None outside it."""
    relative = os.path.relpath(os.path.normpath(path), root)
    return None if relative == ".." or relative.startswith("../") else Path(relative).as_posix()


def link_to(files: dict[str, Path], root: Path, path: Path | None) -> str | None:
    """``/files/NAME`` for a file that is served and exists now; None otherwise."""
    name = name_under(root, path) if path is not None else None
    return f"/files/{quote(name)}" if name in files and files[name].is_file() else None
