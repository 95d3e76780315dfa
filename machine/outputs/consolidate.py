"""``kx consolidate``: the plan's last step (index, skill, report, move, commit), driven by the ledger.

Allowed once every batch is approved, and refused while a file the evidence
rests on (a drop, a recorded target, a succeeded PART's knowledge file) is
changed or gone, unless ``--allow-missing``, which the index block and the
report then say. INDEX.md and SKILL.md get one marked
block per plan, rewritten in place: text outside the block is kept byte for
byte, and a second run writes the same bytes. ``PlanConsolidated`` records the
paths and the commit; a second ``kx consolidate`` is a no-op.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput, Refused
from ledger.events.models import PlanConsolidated
from machine.acts.context import acting
from machine.acts.workspace import Workspace
from machine.outputs import git
from machine.outputs.packet import part_packet
from machine.outputs.plan_file import plan_guard, render_file
from machine.outputs.status import PAST
from machine.plan.model import part_id
from machine.plan.paths import RULE, PathGuard
from machine.plan.text import counted
from machine.state.fold import PlanState
from machine.state.rehash import WHAT, changes, recorded_files
from machine.state.rules import Rules


@dataclass
class Targets:
    """Where consolidation writes, every path checked by the plan's :class:`PathGuard` first."""

    index: Path
    skill: Path | None
    completed: Path
    report: Path
    plan: Path  # where the plan moves
    source: Path  # where the plan is now

    @property
    def written(self) -> list[Path]:
        """The files consolidation writes (the plan at the place it moves to)."""
        return [self.index, self.report, self.plan, *([self.skill] if self.skill else [])]


def consolidate(workspace: Workspace, *, index: Path | None, skill: Path | None, completed_dir: Path | None,
                commit: bool, by: str, allow_missing: bool = False) -> dict[str, Any]:
    """One consolidation of the plan at a time: a second one, while the first works, is refused (exit 3) naming
    it, or, once the first has recorded its work, is the no-op a consolidated plan answers with."""
    state = workspace.state()
    with one_at_a_time(workspace, state.id) as holder:
        state = workspace.state()
        if state.consolidated is not None:
            return {"plan": state.id, "action": "unchanged", **state.consolidated}
        if holder is not None:
            raise Refused(f"another kx consolidate (pid {holder.get('pid', '?')}, since {holder.get('since', '?')}) is"
                          f" consolidating plan {state.id}; wait for it (kx status says when it is done)",
                          rule="consolidate")
        return _consolidate(workspace, state, index=index, skill=skill, completed_dir=completed_dir, commit=commit,
                            by=by, allow_missing=allow_missing)


@contextmanager
def one_at_a_time(workspace: Workspace, plan_id: str) -> Iterator[dict[str, Any] | None]:
    """Hold the plan's consolidation lock (an exclusive ``flock`` on ``.kx/consolidating-PLAN.lock``, released
    when this process ends, however it ends) while the body runs: None; or, when another process holds it,
    what it wrote there (``pid``, ``since``)."""
    path = workspace.ledger.path.parent / f"consolidating-{plan_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield _holder(fd)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": clock.now_iso()}).encode(), 0)
        yield None
    finally:
        os.close(fd)


def _holder(fd: int) -> dict[str, Any]:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _consolidate(workspace: Workspace, state: PlanState, *, index: Path | None, skill: Path | None,
                 completed_dir: Path | None, commit: bool, by: str, allow_missing: bool) -> dict[str, Any]:
    """Check everything, then write, move and commit (no ledger lock held), then record ``PlanConsolidated``.

    Each side effect can be done again (an index already holding its block, a plan already moved, a
    commit already made), so that a run interrupted midway is finished by the next one.
    """
    if problem := workspace.ledger.place_problem():  # before any side effect: render would refuse midway
        raise Refused(f"not consolidated: {problem}", rule="ledger_place")
    rules = workspace.rules(state)
    rules.may_consolidate()
    guard = workspace.guard(state)
    targets = destinations(workspace, state, guard, index, skill, completed_dir)
    knowledge, drops = knowledge_files(state, guard), drop_files(workspace, state, guard)
    missing = unfit_files(workspace, state, rules)
    if missing and not allow_missing:
        raise Refused("consolidation needs every succeeded PART's knowledge file to pass the checks of finish and"
                      " every drop as recorded: " + "; ".join(missing) + "; fix the files (or have the PARTs done"
                      " again: kx reopen PART... --reason ...), or consolidate with --allow-missing",
                      rule="consolidate", details=missing)
    top = git.work_tree(guard.root)  # the plan moves with git mv there, committed or not
    files = [*knowledge.values(), *drops.values()]
    if commit:
        refuse_unless_committable(top, guard.root, targets, files)
    trailer = commit_trailer(state)
    commit_id = git.commit_with_trailer(top, trailer) if commit else None  # an interrupted run got that far
    if commit_id is None:
        digest = ledger_digest(workspace)
        write_files(workspace, state, guard, targets, knowledge, top, missing, digest)
        if commit:
            git.stage(top, [*files, *targets.written])
            commit_id = git.commit_staged(top, f"{commit_message(state, targets, knowledge, workspace)}\n\n{trailer}"
                                               f"\nKx-Ledger-Digest: {digest}")
    return record(workspace, state, targets, commit_id, by, len(existing(knowledge)), missing)


def destinations(workspace: Workspace, state: PlanState, guard: PathGuard, index: Path | None,
                 skill: Path | None, completed_dir: Path | None) -> Targets:
    """The paths to write, from options (relative to the working folder) or defaults (in the root)."""

    def checked(given: Path | None, default: Path | None = None) -> Path:
        return guard.writable(given.absolute(), name=given) if given is not None else guard.writable(default)

    source = workspace.resolve(state.path).resolve()
    completed = checked(completed_dir, guard.root / "completed")
    targets = Targets(index=checked(index, guard.root / "INDEX.md"), skill=checked(skill) if skill else None,
                      completed=completed,
                      report=guard.writable(completed / f"{source.stem}.consolidation.md"),
                      plan=guard.writable(completed / source.name, may_be_plan=True), source=source)
    if targets.plan != source and targets.plan.exists() and source.exists():
        raise Refused(f"{targets.plan} exists already; move it away or pick another --completed-dir",
                      rule="consolidate")
    return targets


def knowledge_files(state: PlanState, guard: PathGuard) -> dict[str, Path]:
    """PART → its knowledge file, for the PARTs that succeeded and name one (each inside the root)."""
    files = {}
    for structure in state.plan.parts:
        if state.parts[structure.id].state == "succeeded" and structure.header and structure.header.target:
            target = structure.header.target
            if problem := guard.problem(target, relative=True):
                raise BadInput(f"{structure.id}'s knowledge file {target} {problem}; {RULE}")
            files[structure.id] = guard.check(target)
    return files


def drop_files(workspace: Workspace, state: PlanState, guard: PathGuard) -> dict[str, Path]:
    """PART → its recorded drop (each inside the root, whatever put it in the ledger)."""
    return {part.id: guard.check(workspace.resolve(drop["path"]), name=drop["path"])
            for part in state.parts.values() if (drop := part.drop)}


def unfit_files(workspace: Workspace, state: PlanState, rules: Rules) -> list[str]:
    """``PART: what fails`` for each succeeded PART, imported ones included, whose knowledge file fails the checks of
    ``finish`` (the target there, a heading per Section box, every cited file named, its drop as recorded), or
    whose target changed since its success recorded it."""
    changed = {c.part: f"target {c.file.path} {WHAT[c.problem]}" for c in changes(recorded_files(state),
                                                                                 workspace.resolve)
               if c.file.kind == "target" and c.problem == "changed"}
    unfit = []
    for structure in state.plan.parts:
        part = state.parts[structure.id]
        problems = rules.knowledge_problems(part) if part.state == "succeeded" else []
        problems += [changed[part.id]] if part.id in changed else []
        if problems:
            unfit.append(f"{part.id}{' (imported)' if part.imported_success else ''}: {'; '.join(problems)}")
    return unfit


def refuse_unless_committable(top: Path | None, root: Path, targets: Targets, files: list[Path]) -> None:
    """Refused unless git takes every file of the commit, and nothing unrelated is staged."""
    if top is None:
        raise Refused(f"--commit needs a git work tree; {root} is not inside one", rule="consolidate")
    ours = [*files, *targets.written, targets.source]
    if unrelated := git.unrelated_staged(top, ours):
        shown = ", ".join(unrelated[:5]) + (" ..." if len(unrelated) > 5 else "")
        raise Refused(f"git has unrelated staged changes ({shown}); commit or unstage them, then consolidate",
                      rule="consolidate")
    if problems := git.unaddable(top, [path for path in ours if path != targets.source]):
        raise Refused("git cannot commit every file of the consolidation: " + "; ".join(problems)
                      + "; fix that, then consolidate again", rule="consolidate", details=problems)


def write_files(workspace: Workspace, state: PlanState, guard: PathGuard, targets: Targets,
                knowledge: dict[str, Path], top: Path | None, missing: list[str], digest: str) -> None:
    """Index, skill, plan and report, each written through the guard; each step leaves what an earlier run
    already did as it is."""
    update_block(guard, targets.index, state.id, index_block(state, knowledge, targets.index.parent, missing))
    if targets.skill:
        update_block(guard, targets.skill, state.id, skill_block(state, knowledge, targets.skill.parent))
    already_moved = targets.plan != targets.source and targets.plan.exists() and not targets.source.exists()
    if not already_moved:
        render_file(workspace)  # the plan that moves shows every tick and stamp
        if targets.plan != targets.source:
            move = partial(_move, plan_guard(workspace, state), guard)
            git.move(top, targets.source, targets.plan, move) if top else move(targets.source, targets.plan)
    guard.write(targets.report, report(workspace, state, knowledge, missing, digest).encode("utf-8"))


def record(workspace: Workspace, seen: PlanState, targets: Targets, commit_id: str | None, by: str,
           knowledge: int, missing: list[str]) -> dict[str, Any]:
    """``PlanConsolidated``, last, in a short transaction of its own: unless another run recorded it meanwhile."""
    stored = {name: workspace.store_path(getattr(targets, name)) for name in ("index", "report", "plan")}
    if targets.skill:
        stored["skill"] = workspace.store_path(targets.skill)
    with acting(workspace) as ctx:
        if ctx.state.consolidated is not None:
            return {"plan": ctx.state.id, "action": "unchanged", **ctx.state.consolidated}
        ctx.append(PlanConsolidated(plan=seen.id, paths=stored, commit=commit_id, by=by,
                                    allowed_missing=missing or None))
    return {"plan": seen.id, "action": "consolidated", "paths": stored, "commit": commit_id,
            "knowledge_files": knowledge, "missing": missing}


def ledger_digest(workspace: Workspace) -> str:
    """The ledger's head as ``kx audit digest`` prints it: kept in the commit and the report, so that a rewrite
    of the history they rest on shows (``kx audit verify --digest``)."""
    position, chain = workspace.ledger.digest()
    return f"{position}:{chain}"


def commit_trailer(state: PlanState) -> str:
    """The last line of the commit message: how a rerun knows the commit is already made."""
    return f"Kx-Consolidated: {state.id} at ledger position {state.position}"


def _move(plan_guard: PathGuard, guard: PathGuard, source: Path, destination: Path) -> None:
    """The plan file renamed into the completed folder, each end reached as every write reaches its folder."""
    with plan_guard.place(source, may_be_plan=True, make_folders=False) as old, \
            guard.place(destination, may_be_plan=True) as new:
        os.rename(old.name, new.name, src_dir_fd=old.folder, dst_dir_fd=new.folder)


def existing(knowledge: dict[str, Path]) -> dict[str, Path]:
    return {part: path for part, path in knowledge.items() if path.is_file()}


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def _first_heading(path: Path) -> str | None:
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
    except OSError:
        return None
    return None


REHEARSAL = "rehearsal: a placeholder, no knowledge"


def _how_made(state: PlanState, part: str) -> str:
    """After a file's line: how its PART came to be done, when it was not by real work."""
    known = state.parts[part]
    return f" ({REHEARSAL})" if known.rehearsed else " (imported)" if known.imported_success else ""


def _rehearsed(state: PlanState) -> list[str]:
    """A plan some of whose PARTs were rehearsed says so first, wherever its consolidation is read."""
    parts = [p.id for p in state.plan.parts if state.parts[p.id].rehearsed]
    if not parts:
        return []
    return [f"> Rehearsal: {counted(len(parts), 'PART')} ({', '.join(parts)}) succeeded by"
            " kx's rehearsal runner, which writes placeholder files; they hold no knowledge.", ""]


def index_block(state: PlanState, knowledge: dict[str, Path], base: Path, allowed: list[str] = ()) -> list[str]:
    lines = [f"## {state.plan.title or state.id}", "", *_rehearsed(state), *_allowed_missing(allowed)]
    for part, path in knowledge.items():
        title = state.plan.part(part).title
        missing = "" if path.exists() else " (missing)"
        lines.append(f"- [{_link(path, base)}]({_link(path, base)}) — {part}: {title}{missing}{_how_made(state, part)}")
    return lines


def skill_block(state: PlanState, knowledge: dict[str, Path], base: Path) -> list[str]:
    lines = [f"## {state.plan.title or state.id}", "", *_rehearsed(state),
             f"Knowledge from plan `{state.id}` ({len(existing(knowledge))} files)."]
    for batch in state.plan.batches:
        members = [part_id(n) for n in batch.parts if part_id(n) in knowledge]
        if members:
            lines += ["", f"### Batch {batch.number}: {batch.title}", ""]
            lines += [f"- `{_link(knowledge[p], base)}` — {_first_heading(knowledge[p]) or state.plan.part(p).title}"
                      f"{_how_made(state, p)}" for p in members]
    return lines


def _allowed_missing(allowed: list[str]) -> list[str]:
    """What --allow-missing let through, said where the index and the report are read."""
    if not allowed:
        return []
    return [f"> Consolidated with --allow-missing: {counted(len(allowed), 'PART')} with files changed, missing or"
            " failing the checks:", ">",
            *(f"> - {item}" for item in allowed), ""]


def update_block(guard: PathGuard, path: Path, plan_id: str, lines: list[str]) -> None:
    """Replace (or append) the plan's marked block in ``path``; every other byte stays (a link the guard does
    not follow is replaced by a file of its own)."""
    begin, end = f"<!-- kx:begin {plan_id} -->", f"<!-- kx:end {plan_id} -->"
    with guard.place(path) as place:
        text = (place.read() or b"").decode("utf-8")
        updated = _with_block(text, begin, end, lines)
        if updated != text:
            place.replace(updated.encode("utf-8"))


def _with_block(text: str, begin: str, end: str, lines: list[str]) -> str:
    newline = "\r\n" if "\r\n" in text else "\n"
    block = newline.join([begin, *lines, end])
    start, stop = text.find(begin), text.find(end)
    if start != -1 and stop > start:
        updated = text[:start] + block + text[stop + len(end) :]
    else:
        separator = "" if not text else (newline if text.endswith(("\n", "\r")) else newline * 2)
        updated = text + separator + block + newline
    return updated


def _summary(workspace: Workspace, drop: dict[str, Any] | None) -> str:
    if not drop:
        return "no drop recorded"
    try:
        lines = workspace.resolve(drop["path"]).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return f"{drop['path']} (gone)"
    body = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return " ".join(body[:4])[:300]


def _totals(state: PlanState) -> dict[str, int]:
    parts = [state.parts[p.id] for p in state.plan.parts]
    attempts = sum(p.attempts for p in parts)
    return {"parts": len(parts), "succeeded": sum(p.state == "succeeded" for p in parts),
            "failed": sum(p.state == "failed" for p in parts), "attempts": attempts,
            "failures": sum(p.failures for p in parts), "lost": sum(p.losses for p in parts),
            "retried": sum(p.retries for p in parts), "batches": len(state.plan.batches)}


def _attempt_counts(totals: dict[str, int]) -> str:
    return (f"{totals['attempts']} attempts: {totals['lost']} lost, {totals['failures']} failed,"
            f" {totals['retried']} retried")


def report(workspace: Workspace, state: PlanState, knowledge: dict[str, Path], missing: list[str],
           digest: str) -> str:
    totals = _totals(state)
    lines = [f"# Consolidation: {state.plan.title or state.id}", "",
             f"Plan `{state.id}` ({state.path}), consolidated {clock.now_iso()}.", "",
             f"Ledger digest `{digest}`: `kx audit verify --digest {digest}` checks that the ledger still holds"
             " the history this report was made from.", "",
             f"{totals['parts']} PARTs in {totals['batches']} batches: {totals['succeeded']} succeeded,"
             f" {totals['failed']} failed; {_attempt_counts(totals)}; {len(existing(knowledge))} knowledge files.",
             "", *_rehearsed(state), *_allowed_missing(missing)]
    for batch in state.plan.batches:
        lines += [f"## Batch {batch.number}: {batch.title}", ""]
        for review in state.batches[batch.number].reviews:
            note = f" — {review['note']}" if review.get("note") else ""
            lines.append(f"- {PAST[review['decision']]} by {review['by']} at {review['recorded_at']}{note}")
        lines += ["", "| PART | state | knowledge file | size | attempts | failures | duration |",
                  "|---|---|---|---|---|---|---|"]
        for number in batch.parts:
            packet = part_packet(state, part_id(number))
            path = knowledge.get(packet["part"])
            size = f"{path.stat().st_size} B" if path and path.exists() else "-"
            took = f"{packet['seconds']:.1f}s" if packet["seconds"] is not None else "-"
            shown = workspace.store_path(path) if path else "-"
            lines.append(f"| {packet['part']} | {packet['state']}{_how_made(state, packet['part'])} | {shown} | {size}"
                         f" | {packet['attempts']}"
                         f" | {packet['failures']} | {took} |")
        lines.append("")
        for number in batch.parts:
            part = state.parts[part_id(number)]
            lines.append(f"- **PART-{number}** drop: {_summary(workspace, part.drop)}")
        lines.append("")
    return "\n".join(lines)


def commit_message(state: PlanState, targets: Targets, knowledge: dict[str, Path], workspace: Workspace) -> str:
    totals = _totals(state)
    lines = [f"Consolidate {state.plan.title or state.id}", "",
             f"Plan {state.id}: {totals['parts']} PARTs in {totals['batches']} batches, {totals['succeeded']}"
             f" succeeded, {totals['failed']} failed; {_attempt_counts(totals)}.", "",
             *(line.removeprefix("> ") for line in _rehearsed(state))]
    for batch in state.plan.batches:
        review = state.batches[batch.number].last_review or {}
        lines.append(f"Batch {batch.number} ({batch.title}): {PAST.get(review.get('decision'), '?')}"
                     f" by {review.get('by', '?')}"
                     + (f" — {review['note']}" if review.get("note") else ""))
    lines += ["", "Knowledge files:"]
    lines += [f"- {workspace.store_path(path)}{_how_made(state, part)}" for part, path in existing(knowledge).items()]
    lines += ["", f"Index: {workspace.store_path(targets.index)}; report: {workspace.store_path(targets.report)};"
              f" plan moved to {workspace.store_path(targets.plan)}."]
    return "\n".join(lines)
