"""Where an attempt keeps its files: ``.kx/attempts/PLAN/PART-7-1/`` (brief, log, heartbeat)."""

from __future__ import annotations

import re
from pathlib import Path

from ledger import clock
from ledger.errors import BadInput
from ledger.files import write_atomic
from machine.paths import check_plan_id

ATTEMPT = re.compile(r"PART-\d+#\d+")


def attempt_dir(ledger_path: Path, plan_id: str, attempt: str) -> Path:
    """The attempt's folder; its plan id and attempt id are checked again, whatever put them in the ledger."""
    if not ATTEMPT.fullmatch(attempt):
        raise BadInput(f"{attempt!r} is not an attempt id (PART-7#1)")
    return ledger_path.resolve().parent / "attempts" / check_plan_id(plan_id) / attempt.replace("#", "-")


def log_path(ledger_path: Path, plan_id: str, attempt: str) -> Path:
    return attempt_dir(ledger_path, plan_id, attempt) / "runner.log"


def beat(folder: Path) -> None:
    write_atomic(folder / "heartbeat", clock.now_iso().encode())


def last_beat(folder: Path) -> str | None:
    try:
        return (folder / "heartbeat").read_text().strip() or None
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
