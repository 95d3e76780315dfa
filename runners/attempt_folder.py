"""Where an attempt keeps its files (``.kx/attempts/PLAN/PART-7-1/``: brief, log, heartbeat, runner process, a copy
of the target as the attempt left it), and stopping the runner process it notes."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput
from ledger.files import write_atomic
from machine.plan.model import AttemptId
from machine.plan.paths import check_plan_id
from machine.plan.text import quoted
from machine.state.runner_output import last_output

TARGET_COPY = "target"  # the PART's knowledge file as the attempt left it: what the next attempt changed is a diff
TARGET_COPY_CAP = 8 * 1024 * 1024  # a larger target is not copied
STOP_GRACE_S = 5.0  # how long a runner has to leave after SIGTERM before SIGKILL
_STOP_POLL_S = 0.05


def plan_dir(ledger_path: Path, plan_id: str) -> Path:
    """The plan's folder of attempts (``.kx/attempts/PLAN/``); its plan id is checked again."""
    return ledger_path.resolve().parent / "attempts" / check_plan_id(plan_id)


def attempt_dir(ledger_path: Path, plan_id: str, attempt: str) -> Path:
    """The attempt's folder; its plan id and attempt id are checked again, whatever put them in the ledger."""
    parsed = AttemptId.parse(attempt)
    if parsed is None:
        raise BadInput(f"{quoted(attempt)} is not an attempt id (PART-7#1)")
    return plan_dir(ledger_path, plan_id) / parsed.folder


def supervisor_dir(ledger_path: Path, plan_id: str) -> Path:
    """The plan's supervisor's folder (its heartbeat), beside its attempts' folders."""
    return plan_dir(ledger_path, plan_id) / "supervisor"


def beat(folder: Path) -> None:
    write_atomic(folder / "heartbeat", clock.now_iso().encode())


class Heartbeat(threading.Thread):
    """Beats ``folder``'s heartbeat every ``every`` seconds until ``done`` is set: a wrapper's or a supervisor's."""

    def __init__(self, folder: Path, every: float):
        super().__init__(daemon=True)
        self.folder, self.every, self.done = folder, every, threading.Event()

    def beat_now_and_start(self) -> None:
        beat(self.folder)
        self.start()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                beat(self.folder)
            except OSError:
                pass


def last_beat(folder: Path) -> str | None:
    try:
        return (folder / "heartbeat").read_text().strip() or None
    except OSError:
        return None


def silent_for(folder: Path, since: str) -> float:
    """Seconds since ``folder``'s last heartbeat, or since ``since`` (a stamp) when it has none."""
    return (clock.now() - clock.parse_time(last_beat(folder) or since)).total_seconds()


def record_runner(folder: Path, pid: int) -> None:
    """Note the runner's process (the leader of its own process group), to stop it if its attempt is lost."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return  # gone already: nothing will need stopping
    known = {"pid": pid, "started": started, "host": socket.gethostname()}
    write_atomic(folder / "runner.json", json.dumps(known).encode())


def runner_of(folder: Path) -> dict[str, Any] | None:
    """The runner process noted by ``record_runner``: ``pid``, ``started`` (its start time), ``host``."""
    try:
        return json.loads((folder / "runner.json").read_text())
    except (OSError, ValueError):
        return None


def keep_target(folder: Path, target: Path | None) -> None:
    """Copy the PART's target file into the attempt's folder as it is now (the attempt has ended); nothing when
    there is no such file or it is larger than ``TARGET_COPY_CAP``."""
    try:
        if target is None or not target.is_file() or target.stat().st_size > TARGET_COPY_CAP:
            return
        write_atomic(folder / TARGET_COPY, target.read_bytes())
    except OSError:
        return  # a copy is a convenience for the reviewer: no outcome waits for it


def kept_target(folder: Path) -> bytes | None:
    """The target as the attempt in ``folder`` left it, if a copy was kept."""
    try:
        return (folder / TARGET_COPY).read_bytes()
    except OSError:
        return None


def log_tail(path: Path, lines: int = 20, max_bytes: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def last_output_of(folder: Path) -> str | None:
    """The last meaningful line in the attempt's ``runner.log`` (``machine.output.last_output``), if any."""
    return last_output(log_tail(folder / "runner.log"))


def this_process() -> dict[str, Any]:
    """This process as a lease or an attempt notes it: ``pid``, ``pid_started`` (its start time), ``host``."""
    import psutil

    me = psutil.Process()
    return {"pid": me.pid, "pid_started": me.create_time(), "host": socket.gethostname()}


def process_alive(pid: int, since: float | None) -> bool:
    """``pid`` runs and is the process that started at ``since`` (not a newer one that reused the pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return process.is_running() and abs(process.create_time() - (since or 0)) < 1.0 \
            and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def stop_runner(folder: Path) -> bool:
    """Stop the runner of the attempt in ``folder`` if it still runs on this host; whether it did.

    Its process group gets SIGTERM, then SIGKILL if it is still there after ``STOP_GRACE_S``. Only the
    very process the wrapper started (same pid, same start time) is signalled, never one that reused its pid.
    """
    known = runner_of(folder)
    if known is None or known.get("host") != socket.gethostname():
        return False
    pid, since = known["pid"], known["started"]
    if not process_alive(pid, since):
        return False
    _signal_group(pid, signal.SIGTERM)  # the runner leads its own process group
    if not _gone_within(pid, since, STOP_GRACE_S):
        _signal_group(pid, signal.SIGKILL)
        _gone_within(pid, since, 1.0)
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _gone_within(pid: int, since: float, seconds: float) -> bool:
    for _ in range(max(1, round(seconds / _STOP_POLL_S))):  # a count of sleeps: a frozen clock cannot stretch it
        if not process_alive(pid, since):
            return True
        time.sleep(_STOP_POLL_S)
    return not process_alive(pid, since)
