"""The wrapper around one attempt, forked by ``kx run``'s fork server, or ``python -m runners.local.wrapper ... -- COMMAND``.

It runs in its own session, so it outlives a supervisor that is killed or
interrupted. It records the start (the limit and gate are checked then), stops
the runners of the PART's earlier attempts that still run on this machine,
writes the brief, makes the folders of its target and drop, runs the runner
(the leader of its own process group, noted in ``runner.json``) with its
output to the attempt's log (stderr through a pipe, to keep its last line
apart), keeps a heartbeat, and when the runner exits keeps a copy of the
target in the attempt's folder (the next attempt's changes are a diff) and
records the outcome itself: ``RunnerSucceeded`` when the runner exits 0 and the
evidence holds, else ``RunnerFailed`` with the exit code, the log's last lines
and the runner's last meaningful line. Exit status: 0 succeeded, 1 failed,
3 start refused.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ledger.errors import KxError, Refused
from ledger.secrets import redact_text
from machine.acts.lifecycle import Act, drop, fail, finish, start
from machine.acts.queries import brief, brief_markdown
from machine.acts.workspace import Workspace
from machine.defaults import LEASE_S, SUPERVISOR
from machine.plan.model import AttemptId
from machine.plan.paths import PathGuard
from machine.state.evidence import locate
from machine.state.fold import PlanState
from machine.state.runner_output import last_output
from runners.attempt_folder import (
    Heartbeat,
    attempt_dir,
    keep_target,
    log_tail,
    record_runner,
    stop_runner,
    this_process,
)
from runners.protocol import mcp_config, runner_environment
from runners.spec import is_rehearsal

STDERR_DRAIN_S = 2.0  # how long the runner's stderr may stay open after it exited (held by a child it left)


def runner_env(workspace: Workspace, view: dict, brief_path: Path) -> dict[str, str]:
    return runner_environment(str(workspace.ledger.path.resolve()), view, brief_path,
                              [str(Path(sys.executable).parent)])  # `kx` is this installation's


def run_attempt(workspace: Workspace, part: str, command: list[str], lease: float) -> int:
    try:
        started = start(workspace, part, Act(by=SUPERVISOR), runner=command, **this_process(),
                        rehearsal=is_rehearsal(command) or None)
    except Refused as refusal:
        print(f"kx attempt: {refusal.message}", file=sys.stderr)
        return 3
    attempt = started.data["attempt"]
    folder = attempt_dir(workspace.ledger.path, workspace.plan_id(), attempt)
    folder.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(folder, max(0.5, lease / 3))  # from the first moment: a long brief must not look dead
    heartbeat.beat_now_and_start()
    try:
        stop_earlier_runners(workspace, part, attempt)
        view = write_brief(workspace, folder, part, attempt)
        env = runner_env(workspace, view, folder / "brief.md")
        (folder / "mcp.json").write_text(json.dumps(mcp_config(env["KX_LEDGER"], view), indent=2), encoding="utf-8")
        make_folders(workspace, view)
        if not still_current(workspace, part, attempt):
            print(f"kx attempt: {attempt} is no longer current; its runner is not started", file=sys.stderr)
            return 1
        code, stderr = _run_runner(command, {**env, "KX_MCP": str(folder / "mcp.json")}, Path(view["root"]), folder)
    finally:
        heartbeat.done.set()
    return record_outcome(workspace, part, attempt, code, folder / "runner.log", view["drop_path"], stderr=stderr)


def still_current(workspace: Workspace, part: str, attempt: str) -> bool:
    """Whether ``attempt`` still runs as its PART's current attempt (it may have been found lost meanwhile: a lost
    attempt may still record what it did, but no runner starts for it)."""
    known = workspace.state().parts[part]
    return known.attempt == attempt and known.state == "running"


def make_folders(workspace: Workspace, view: dict) -> None:
    """The folders the runner writes its target and drop in ($KX_TARGET, $KX_DROP), inside the plan's root only."""
    guard = PathGuard.around(view["root"], ledger=workspace.ledger.path, plan=view["plan_path"])  # the brief's
    for path in (view["target_path"], view["drop_path"]):
        guard.make_parent(path)


def stop_earlier_runners(workspace: Workspace, part: str, attempt: str) -> None:
    """The PART's earlier attempts are superseded: their runners must not write beside this one's."""
    plan_id = workspace.plan_id()
    for earlier in AttemptId.parse(attempt).earlier():
        stop_runner(attempt_dir(workspace.ledger.path, plan_id, str(earlier)))


def write_brief(workspace: Workspace, folder: Path, part: str, attempt: str) -> dict:
    """The attempt's brief in its folder (``brief.md``, ``brief.json``); and the brief."""
    view = brief(workspace, part, attempt)
    (folder / "brief.md").write_text(brief_markdown(view) + "\n", encoding="utf-8")
    (folder / "brief.json").write_text(json.dumps(view, ensure_ascii=False, indent=2), encoding="utf-8")
    return view


def _run_runner(command: list[str], env: dict[str, str], cwd: Path, folder: Path) -> tuple[int, str]:
    """The runner's exit code and the end of what it wrote to stderr (which goes to its log as well)."""
    with open(folder / "runner.log", "ab") as log:
        try:
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, process_group=0)
        except OSError as exc:
            log.write(f"kx: cannot start runner {redact_text(command[0])!r}: {exc.strerror}\n".encode())
            return 127, ""
        record_runner(folder, process.pid)
        stderr = StderrTee(process.stderr, log.fileno())
        stderr.start()

        def forward(signum, _frame):
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                pass

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        code = process.wait()
        stderr.join(timeout=STDERR_DRAIN_S)  # a child the runner left behind may hold its stderr open
    return code, stderr.tail()


class StderrTee(threading.Thread):
    """The runner's stderr copied into its log (appended, beside its stdout), its last few KB kept.

    It writes through a descriptor of its own: the log may be closed while a child the runner left still writes."""

    KEEP = 4000

    def __init__(self, pipe, log_fd: int):
        super().__init__(daemon=True)
        self.pipe, self.log_fd, self.kept = pipe, os.dup(log_fd), bytearray()

    def run(self) -> None:
        try:
            while chunk := os.read(self.pipe.fileno(), 65536):
                try:
                    os.write(self.log_fd, chunk)
                except OSError:
                    pass
                self.kept = (self.kept + chunk)[-self.KEEP:]
        finally:
            os.close(self.log_fd)

    def tail(self) -> str:
        return bytes(self.kept).decode("utf-8", "replace")


def record_outcome(workspace: Workspace, part: str, attempt: str, code: int, log: Path,
                   drop_path: str | None = None, stderr: str | None = None) -> int:
    """The outcome, unless the runner already reported one or the attempt is no longer current.

    ``stderr``: the end of what the runner wrote there, if it was kept apart; its last line is preferred."""
    state = workspace.state()
    current = state.parts[part]
    if current.attempt == attempt:
        keep_target(log.parent, target_file(workspace, state, part))
    if not workspace.rules(state).is_current(current, attempt):
        return 0 if current.state == "succeeded" and current.attempt == attempt else 1
    act = Act(attempt=attempt)
    tail = log_tail(log) or None
    if code == 0:
        try:
            if drop_path and current.drop is None and Path(drop_path).is_file():
                drop(workspace, part, Path(drop_path), act)  # the runner wrote $KX_DROP but did not record it
            finish(workspace, part, act)
            return 0
        except Refused as refusal:
            reason = "runner exited 0 without the evidence: " + "; ".join(refusal.details or [refusal.message])
    elif code < 0:
        reason = f"runner killed by signal {-code} ({signal.Signals(-code).name})"
    else:
        reason = f"runner exited with status {code}"
    try:
        fail(workspace, part, reason, act, exit_code=code, log_tail=tail, last_output=last_output(tail, stderr))
    except Refused:
        pass  # someone else settled the attempt meanwhile
    return 1


def target_file(workspace: Workspace, state: PlanState, part: str) -> Path | None:
    """The PART's target file (its header's ``Create PATH``) where the path guard allows it, if it exists."""
    structure = state.plan.part(part)
    target = structure.header.target if structure and structure.header else None
    return locate(workspace.guard(state), target)[0] if target else None


def warm_up() -> None:
    """Load, once in the fork server, what every wrapper needs; the wrappers forked from it inherit it."""
    import psutil  # noqa: F401 - the wrapper records its process start time

    from ledger.events import models as events
    from machine.acts import queries  # noqa: F401 - the brief
    from machine.state import config  # noqa: F401 - the plan's config and the brief
    from machine.state.machines import batch_machine, part_machine

    part_machine(), batch_machine()
    for model in (events.RunnerStarted, events.DropRecorded, events.RunnerSucceeded, events.RunnerFailed,
                  config.PlanConfig, config.ConfigFile):
        model.model_rebuild(force=True)


def attempt_on(ledger: str, plan: str, part: str, command: list[str], lease: float) -> int:
    """``run_attempt`` on the ledger and plan named; a kx error is said on stderr and is the exit status."""
    try:
        return run_attempt(Workspace.open(ledger, plan), part, command, lease)
    except KxError as exc:
        print(f"kx attempt: {exc.message}", file=sys.stderr)
        return exc.code


def wrapper(ledger: str, plan: str, part: str, command: list[str], lease: float, errors: str) -> int:
    """A wrapper's life in the child the fork server forked: its own session, its output to ``errors``."""
    os.setsid()
    fd = os.open(errors, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        return attempt_on(ledger, plan, part, command, lease)
    except BaseException:  # noqa: BLE001 - report it in the wrappers' log
        import traceback

        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.local.wrapper")
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--part", required=True)
    parser.add_argument("--lease", type=float, default=LEASE_S)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return attempt_on(args.ledger, args.plan, args.part, command, args.lease)


if __name__ == "__main__":
    sys.exit(main())
