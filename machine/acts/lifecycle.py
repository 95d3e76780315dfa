"""The acts that change a plan: start, drop, finish, fail, retry, lose, reopen, review (ticks: machine.acts.ticks).

Every act folds the plan's events, checks its rules and appends its events
inside one ``BEGIN IMMEDIATE`` transaction, so that no other process can act
between the check and the append. A refused act appends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput, Unknown
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
    SupervisorLeased,
    SupervisorReleased,
)
from ledger.secrets import redact, redact_argv, redact_command, redact_text
from machine.acts.context import Act, Context, Outcome, acting, authorize, person  # noqa: F401 - re-exported
from machine.acts.queries import last_run
from machine.acts.ticks import tick  # noqa: F401 - re-exported
from machine.acts.workspace import Workspace
from machine.defaults import NAME_LIMIT, TEXT_LIMIT
from machine.plan.model import AttemptId
from machine.plan.text import bounded, one_line
from machine.state.evidence import sha256_of
from machine.state.fold import PartState, PlanState, stamp_of
from machine.state.rules import holds

# --- runners ---------------------------------------------------------------------


def start(workspace: Workspace, ref: str, act: Act, **runner: Any) -> Outcome:
    if runner.get("runner"):
        runner["runner"] = redact_argv(runner["runner"])  # a key on a command line stays out of the ledger
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        attempt = str(AttemptId(part.id, part.attempts + 1))
        recorded = ctx.append(RunnerStarted(plan=ctx.state.id, part=part.id, attempt=attempt, by=act.by,
                                            **{k: v for k, v in runner.items() if v is not None}))
        return Outcome(part.id, recorded, f"{part.id} started as {attempt}", {"attempt": attempt})


def drop(workspace: Workspace, ref: str, file: Path, act: Act) -> Outcome:
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        path = drop_file(workspace, ctx.state, file)
        try:
            sha, size = sha256_of(path), path.stat().st_size
        except OSError as exc:  # deleted or replaced while it was read
            raise BadInput(f"cannot read the drop file {file} ({exc.strerror}); write it again and retry") from None
        stored = workspace.store_path(path)
        latest = part.drop
        if latest and (latest["path"], latest["sha256"], latest.get("attempt")) == (stored, sha, act.attempt):
            authorize(ctx, part, act)
            return Outcome(part.id, [], f"{part.id}: drop {stored} already recorded; nothing recorded",
                           {"path": stored, "sha256": sha, "size": size})
        recorded = ctx.append(DropRecorded(plan=ctx.state.id, part=part.id, path=stored, sha256=sha, size=size,
                                           attempt=act.attempt, by=act.actor))
        return Outcome(part.id, recorded, f"{part.id}: drop {stored} recorded ({size} bytes, sha256 {sha[:12]})",
                       {"path": stored, "sha256": sha, "size": size})


def drop_file(workspace: Workspace, state: PlanState, file: Path) -> Path:
    """The drop's real path, refused (exit 2) when it leaves the plan's root (even through a symlink),
    lies in kx's folder or is the plan file."""
    bounded("the drop file's path", str(file), NAME_LIMIT)
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
            ctx.rules.open_to("act", {})
            return Outcome(part.id, [], f"{part.id} already succeeded; nothing recorded")
        drop_seen = part.drop
        completed = stamp_of(clock.now_iso(), ctx.config.timezone)
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
    if not bounded("the reason", reason, TEXT_LIMIT).strip():
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
    """``RunStarted`` with the run's options (secrets redacted: the runner spec's, a URL's password), unless the
    plan's last run had the same."""
    shown = {name: redact_command(value) if name == "runner" and isinstance(value, str) else redact(value, name)
             for name, value in options.items()}
    with acting(workspace) as ctx:
        last = last_run(workspace, ctx.state.id)
        if last is not None and last["options"] == shown:
            return Outcome(ctx.state.id, [], "the run's options are recorded already")
        recorded = ctx.append(RunStarted(plan=ctx.state.id, command=command, by=act.actor, options=shown))
        return Outcome(ctx.state.id, recorded, f"{command} of {ctx.state.id} recorded")


def take_lease(workspace: Workspace, me: dict[str, Any], gone: Callable[[dict[str, Any]], bool], act: Act) -> Outcome:
    """Hold the plan for the supervisor ``me`` (``pid``, ``pid_started``, ``host``): free, already its own, or
    taken over from a holder ``gone`` says is dead; else refused (exit 3) naming the holder."""
    with acting(workspace) as ctx:
        held = ctx.state.lease
        if held and (held["pid"], held["host"], held["pid_started"]) == (me["pid"], me["host"], me["pid_started"]):
            return Outcome(ctx.state.id, [], "the plan's lease is this supervisor's already")
        took_over = {k: held[k] for k in ("pid", "host", "position")} if held and gone(held) else None
        recorded = ctx.append(SupervisorLeased(plan=ctx.state.id, by=act.actor, took_over=took_over, **me))
        taken = f", taken over from pid {took_over['pid']} (gone)" if took_over else ""
        return Outcome(ctx.state.id, recorded, f"plan {ctx.state.id} leased to pid {me['pid']}{taken}")


def release_lease(workspace: Workspace, me: dict[str, Any], act: Act) -> Outcome:
    """Let the plan go, if ``me`` still holds it (another supervisor may have taken it over meanwhile)."""
    with acting(workspace) as ctx:
        if not holds(ctx.rules.may_release, me):
            return Outcome(ctx.state.id, [], "this supervisor holds no lease; nothing recorded")
        recorded = ctx.append(SupervisorReleased(plan=ctx.state.id, by=act.actor, pid=me["pid"], host=me["host"]))
        return Outcome(ctx.state.id, recorded, f"plan {ctx.state.id} released by pid {me['pid']}")


def retry(workspace: Workspace, ref: str, act: Act, reason: str | None = None) -> Outcome:
    if reason is not None:
        bounded("the reason", reason, TEXT_LIMIT)
    with acting(workspace) as ctx:
        part, _ = ctx.part(ref)
        was = part.state
        recorded = ctx.append(PartRetried(plan=ctx.state.id, part=part.id, by=act.actor, reason=reason,
                                          attempt=part.attempt))
        return Outcome(part.id, recorded, f"{part.id} was {was}; it is pending again")


def reopen(workspace: Workspace, refs: list[str], reason: str, act: Act, *,
           withdraw_consolidation: bool = False) -> dict[str, Any]:
    """Send settled PARTs (succeeded, imported ones too, failed or lost) back to pending, their evidence cleared.

    All or none: one PART that may not reopen refuses the lot. An approved batch of theirs needs review again,
    and the batches after it that are not approved lock until it is. A consolidated plan is closed: only
    ``withdraw_consolidation`` reopens it, and says so in the events.
    """
    if not bounded("the reason", reason, TEXT_LIMIT).strip():
        raise BadInput("say why with --reason TEXT")
    if not refs:
        raise BadInput("name the PARTs to reopen, e.g. 'kx reopen PART-3 --reason \"no evidence\"'")
    with acting(workspace) as ctx:
        parts = list({part.id: part for part in (ctx.part(ref)[0] for ref in refs)}.values())
        withdrawing = withdraw_consolidation and ctx.state.consolidated is not None
        if withdraw_consolidation and not withdrawing:
            raise BadInput(f"plan {ctx.state.id} is not consolidated: leave out --withdraw-consolidation")
        events = [PartReopened(plan=ctx.state.id, part=part.id, attempt=part.attempt, by=act.actor,
                               reason=redact_text(reason), was=part.state, cleared=evidence_of(part),
                               withdrew_consolidation=withdrawing or None)
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
    if note is not None:
        bounded("the note", note, TEXT_LIMIT)
    with acting(workspace, accept_failed=accept_failed) as ctx:
        batch = ctx.state.batches.get(number)
        structure = ctx.state.plan.batch(number)
        if batch is None or structure is None:
            known = ", ".join(str(b.number) for b in ctx.state.plan.batches)
            raise Unknown(f"no batch {number} in plan {ctx.state.id} (batches: {known})")
        members = [p.id for p in ctx.state.members(batch)]
        drops = {d["path"]: d["sha256"] for p in members if (d := ctx.state.parts[p].drop)}
        failed = ctx.rules.failed_parts(batch)
        if approve:
            event = BatchReviewed(plan=ctx.state.id, batch=number, decision="approve", by=act.actor, note=note,
                                  drops=drops, accepted_failed=failed if accept_failed else [])
        else:
            sent_back = _named(ctx, parts, members) or failed
            event = BatchReviewed(plan=ctx.state.id, batch=number, decision="reject", by=act.actor, note=note,
                                  parts=sent_back, drops=drops,
                                  cleared={p: evidence_of(ctx.state.parts[p]) for p in sent_back})
        ctx.check(event)
        if not approve and not event.parts:
            raise BadInput("nothing to send back: no PART failed; name the PARTs to redo after --reject")
        recorded = ctx.record(event)
        verb = "approved" if approve else f"rejected; {', '.join(event.parts)} pending again"
        return Outcome(f"batch {number}", recorded, f"batch {number} {verb}", {"batch": number,
                                                                                "decision": event.decision})


def _named(ctx: Context, parts: list[str], members: list[str]) -> list[str]:
    """The PARTs a rejection names, each once ('3' and 'PART-3' name one PART), each of the batch."""
    named = []
    for ref in parts:
        part, _ = ctx.part(ref)
        if part.id not in members:
            raise Unknown(f"{part.id} is not in this batch (its PARTs: {', '.join(members)})")
        if part.id not in named:
            named.append(part.id)
    return named
