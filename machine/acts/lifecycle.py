"""The acts that change a plan: start, drop, finish, fail, retry, lose, reopen, review (ticks: machine.acts.ticks).

Every act folds the plan's events, checks its rules and appends its events
inside one ``BEGIN IMMEDIATE`` transaction, so that no other process can act
between the check and the append. A refused act appends nothing.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput, Refused, Unknown
from ledger.events.models import (
    BatchReviewed,
    DropRecorded,
    PartReopened,
    PartRetried,
    RunnerFailed,
    RunnerLost,
    RunnerStarted,
    RunnerSucceeded,
    RunStarted,
)
from ledger.secrets import redact_argv, redact_text
from machine.acts.context import Act, Context, Outcome, acting, authorize, person  # noqa: F401 - re-exported
from machine.acts.queries import last_run
from machine.acts.ticks import tick  # noqa: F401 - re-exported
from machine.acts.workspace import Workspace
from machine.plan.text import one_line
from machine.state.evidence import sha256_of
from machine.state.fold import BatchState, PartState, PlanState, stamp_of
from machine.state.machines import allows, batch_machine

# --- runners ---------------------------------------------------------------------


def start(workspace: Workspace, ref: str, act: Act, **runner: Any) -> Outcome:
    if runner.get("runner"):
        runner["runner"] = redact_argv(runner["runner"])  # a key on a command line stays out of the ledger
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        attempt = f"{part.id}#{part.attempts + 1}"
        recorded = ctx.append(RunnerStarted(plan=ctx.state.id, part=part.id, attempt=attempt, by=act.by,
                                            **{k: v for k, v in runner.items() if v is not None}))
        return Outcome(part.id, recorded, f"{part.id} started as {attempt}", {"attempt": attempt})


def drop(workspace: Workspace, ref: str, file: Path, act: Act) -> Outcome:
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        authorize(ctx, part, act)
        path = drop_file(workspace, ctx.state, file)
        try:
            sha, size = sha256_of(path), path.stat().st_size
        except OSError as exc:  # deleted or replaced while it was read
            raise BadInput(f"cannot read the drop file {file} ({exc.strerror}); write it again and retry") from None
        stored = workspace.store_path(path)
        latest = part.drop
        if latest and (latest["path"], latest["sha256"], latest.get("attempt")) == (stored, sha, act.attempt):
            return Outcome(part.id, [], f"{part.id}: drop {stored} already recorded; nothing recorded",
                           {"path": stored, "sha256": sha, "size": size})
        recorded = ctx.append(DropRecorded(plan=ctx.state.id, part=part.id, path=stored, sha256=sha, size=size,
                                           attempt=act.attempt, by=act.actor))
        return Outcome(part.id, recorded, f"{part.id}: drop {stored} recorded ({size} bytes, sha256 {sha[:12]})",
                       {"path": stored, "sha256": sha, "size": size})


def drop_file(workspace: Workspace, state: PlanState, file: Path) -> Path:
    """The drop's real path, refused (exit 2) when it leaves the plan's root (even through a symlink),
    lies in kx's folder or is the plan file."""
    if not file.exists():
        raise BadInput(f"no such drop file: {file}")
    real = workspace.guard(state).check(file.absolute(), name=file)
    if not real.is_file():
        raise BadInput(f"{file} is not a regular file")
    return real


def finish(workspace: Workspace, ref: str, act: Act) -> Outcome:
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        if part.state == "succeeded" and act.attempt in (None, part.attempt):
            return Outcome(part.id, [], f"{part.id} already succeeded; nothing recorded")
        drop_seen = part.drop
        completed = stamp_of(clock.now_iso(), workspace.config().timezone)
        evidence = {"path": drop_seen["path"], "sha256": drop_seen["sha256"]} if drop_seen else None
        report = ctx.rules.evidence_report(part)
        overrides = report.overrides or None
        recorded = ctx.append(RunnerSucceeded(plan=ctx.state.id, part=part.id, attempt=act.attempt, by=act.actor,
                                              completed_at=completed, drop=evidence, target=report.target_record(),
                                              policy=ctx.rules.policy, overrides=overrides))
        counted = f"; counted without kx's check: {_overridden(overrides)}" if overrides else ""
        return Outcome(part.id, recorded, f"{part.id} succeeded (Completed {completed}){counted}",
                       {"completed_at": completed, "policy": ctx.rules.policy, "target": report.target_record(),
                        "overrides": overrides or {}})


def _overridden(overrides: dict[str, str]) -> str:
    by_kind: dict[str, list[str]] = {}
    for ref, how in overrides.items():
        by_kind.setdefault(how, []).append(ref)
    names = {"person": "a person's override", "rehearsal": "rehearsal"}
    return "; ".join(f"{names.get(how, how)} {', '.join(refs)}" for how, refs in by_kind.items())


def fail(workspace: Workspace, ref: str, reason: str, act: Act, *, exit_code: int | None = None,
         log_tail: str | None = None, last_output: str | None = None, retry: bool = True) -> Outcome:
    """``last_output``: the runner's last meaningful line (``machine.state.runner_output``), recorded redacted as the
    tail is. ``retry=False``: the failure cannot succeed unchanged, and kx run does not retry it."""
    if not reason.strip():
        raise BadInput("give the failure's reason with --reason TEXT")
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        recorded = ctx.append(RunnerFailed(plan=ctx.state.id, part=part.id, attempt=act.attempt or part.attempt,
                                           by=act.actor, reason=redact_text(reason), exit_code=exit_code,
                                           log_tail=redact_text(log_tail) if log_tail else None,
                                           last_output=redact_text(last_output) if last_output else None,
                                           retry=None if retry else False))
        unretried = "" if retry else " (kx run will not retry it)"
        return Outcome(part.id, recorded, f"{part.id} failed: {one_line(reason)}{unretried}")


def lose(workspace: Workspace, ref: str, attempt: str, reason: str, last_output: str | None = None) -> Outcome:
    """Record that ``attempt`` died without an outcome (housekeeping, no actor)."""
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        if part.attempt != attempt or part.state != "running":
            return Outcome(part.id, [], f"{attempt} is not running; nothing recorded")
        recorded = ctx.append(RunnerLost(plan=ctx.state.id, part=part.id, attempt=attempt, reason=reason,
                                         last_output=redact_text(last_output) if last_output else None))
        return Outcome(part.id, recorded, f"{attempt} lost: {reason}")


def record_run(workspace: Workspace, command: str, options: dict[str, Any], act: Act) -> Outcome:
    """``RunStarted`` with the run's options (the runner spec redacted), unless the plan's last run had the same."""
    shown = {**options, "runner": redact_spec(options["runner"])} if options.get("runner") else dict(options)
    with acting(workspace) as ctx:
        last = last_run(workspace, ctx.state.id)
        if last is not None and last["options"] == shown:
            return Outcome(ctx.state.id, [], "the run's options are recorded already")
        recorded = ctx.append(RunStarted(plan=ctx.state.id, command=command, by=act.actor, options=shown))
        return Outcome(ctx.state.id, recorded, f"{command} of {ctx.state.id} recorded")


def redact_spec(spec: str) -> str:
    """A runner spec as the ledger may keep it: a key given on its command line is hidden (``redact_argv``)."""
    argv = shlex.split(spec)
    shown = redact_argv(argv)
    return spec if shown == argv else shlex.join(shown)


def retry(workspace: Workspace, ref: str, act: Act, reason: str | None = None) -> Outcome:
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        was = part.state
        recorded = ctx.append(PartRetried(plan=ctx.state.id, part=part.id, by=act.actor, reason=reason,
                                          attempt=part.attempt))
        return Outcome(part.id, recorded, f"{part.id} was {was}; it is pending again")


def reopen(workspace: Workspace, refs: list[str], reason: str, act: Act) -> dict[str, Any]:
    """Send settled PARTs (succeeded, imported ones too, failed or lost) back to pending, their evidence cleared.

    All or none: one PART that may not reopen refuses the lot. An approved batch of theirs needs review again,
    and the batches after it that are not approved lock until it is.
    """
    if not reason.strip():
        raise BadInput("say why with --reason TEXT")
    if not refs:
        raise BadInput("name the PARTs to reopen, e.g. 'kx reopen PART-3 --reason \"no evidence\"'")
    with acting(workspace) as ctx:
        parts = list({part.id: part for part in (ctx.part(ref)[0] for ref in refs)}.values())
        events = [PartReopened(plan=ctx.state.id, part=part.id, attempt=part.attempt, by=act.actor,
                               reason=redact_text(reason), was=part.state, cleared=evidence_of(part))
                  for part in parts]
        recorded = ctx.append(*events)
        return reopened(ctx.state, parts, recorded)


def evidence_of(part: PartState) -> dict[str, Any]:
    """What clearing ``part``'s evidence forgets: its ticked boxes and its drop (a path), as the event records it."""
    drop_seen = part.drop
    return {"boxes": sorted(part.ticked), **({"drop": drop_seen["path"]} if drop_seen else {})}


def reopened(state: PlanState, parts: list[PartState], recorded: list[str]) -> dict[str, Any]:
    batches = sorted({part.batch for part in parts})
    numbers = [b.number for b in state.plan.batches]
    later = [n for n in numbers if batches and n > batches[0] and state.batches[n].state == "locked"]
    names = ", ".join(part.id for part in parts)
    message = f"{names} pending again, ticks and drops cleared; " + "; ".join(
        f"batch {n} is {state.batches[n].state.replace('_', ' ')}" for n in dict.fromkeys(batches + later))
    return {"parts": [part.id for part in parts], "recorded": recorded, "message": message,
            "batches": [{"number": n, "state": state.batches[n].state} for n in numbers]}


# --- reviews ---------------------------------------------------------------------


def review(workspace: Workspace, number: int, *, approve: bool, parts: list[str], note: str | None, act: Act,
           accept_failed: bool = False) -> Outcome:
    with acting(workspace, accept_failed=accept_failed) as ctx:
        batch = ctx.state.batches.get(number)
        structure = ctx.state.plan.batch(number)
        if batch is None or structure is None:
            known = ", ".join(str(b.number) for b in ctx.state.plan.batches)
            raise Unknown(f"no batch {number} in plan {ctx.state.id} (batches: {known})")
        if not allows(batch_machine(), batch, "approve"):
            raise Refused(_not_reviewable(ctx.state, batch), rule="review")
        members = [p.id for p in ctx.state.members(batch)]
        drops = {d["path"]: d["sha256"] for p in members if (d := ctx.state.parts[p].drop)}
        failed = ctx.rules.failed_parts(batch)
        if approve:
            event = BatchReviewed(plan=ctx.state.id, batch=number, decision="approve", by=act.actor, note=note,
                                  drops=drops, accepted_failed=failed if accept_failed else [])
        else:
            sent_back = _sent_back(ctx, parts, members, failed)
            event = BatchReviewed(plan=ctx.state.id, batch=number, decision="reject", by=act.actor, note=note,
                                  parts=sent_back, drops=drops,
                                  cleared={p: evidence_of(ctx.state.parts[p]) for p in sent_back})
        recorded = ctx.append(event)
        verb = "approved" if approve else f"rejected; {', '.join(event.parts)} pending again"
        return Outcome(f"batch {number}", recorded, f"batch {number} {verb}", {"batch": number,
                                                                                "decision": event.decision})


def _sent_back(ctx: Context, parts: list[str], members: list[str], failed: list[str]) -> list[str]:
    named = []
    for ref in parts:
        part, _ = ctx.part(ref)
        if part.id not in members:
            raise Unknown(f"{part.id} is not in this batch (its PARTs: {', '.join(members)})")
        if part.id not in named:  # '3' and 'PART-3' name one PART
            named.append(part.id)
    if not named and not failed:
        raise BadInput("nothing to send back: no PART failed; name the PARTs to redo after --reject")
    return named or failed


def _not_reviewable(state: PlanState, batch: BatchState) -> str:
    if batch.state == "approved":
        return f"batch {batch.number} is already approved"
    waiting = [p for p in state.members(batch) if p.state in ("pending", "running", "lost")]
    shown = ", ".join(f"{p.id} {p.state}" for p in waiting[:6])
    return (f"batch {batch.number} is {batch.state.replace('_', ' ')}, not awaiting review"
            + (f" ({shown})" if shown else "") + "; review it once every PART has succeeded or failed")
