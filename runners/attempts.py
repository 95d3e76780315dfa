"""Where an attempt keeps its files: ``.kx/attempts/PLAN/PART-7-1/`` (brief, log, heartbeat, runner process)."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from ledger import clock
from ledger.errors import BadInput
from ledger.files import write_atomic
from machine.output import last_output
from machine.paths import check_plan_id

ATTEMPT = re.compile(r"PART-\d+#\d+")


def attempt_dir(ledger_path: Path, plan_id: str, attempt: str) -> Path:
    """The attempt's folder; its plan id and attempt id are checked again, whatever put them in the ledger."""
    if not ATTEMPT.fullmatch(attempt):
        raise BadInput(f"{attempt!r} is not an attempt id (PART-7#1)")
    return ledger_path.resolve().parent / "attempts" / check_plan_id(plan_id) / attempt.replace("#", "-")


def beat(folder: Path) -> None:
    write_atomic(folder / "heartbeat", clock.now_iso().encode())


def last_beat(folder: Path) -> str | None:
    try:
        return (folder / "heartbeat").read_text().strip() or None
    except OSError:
        return None


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
