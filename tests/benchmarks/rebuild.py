"""Rebuilding state from a long ledger (a fold of every event) vs reading the same rows raw."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.benchmarks.common import row


def measure(ledger_path: Path, events: int) -> list[dict]:
    from machine.state import PlanState
    from machine.workspace import Workspace

    workspace = Workspace.open(str(ledger_path))
    started = time.perf_counter()
    state = PlanState("plan").fold_rows(workspace.ledger.scan("plan"))
    fold_seconds = time.perf_counter() - started
    workspace.ledger.close()
    assert state.position == events
    conn = sqlite3.connect(ledger_path)
    started = time.perf_counter()
    for _ in conn.execute("SELECT position, stream, version, type, data, recorded_at FROM events"):
        pass
    raw_seconds = time.perf_counter() - started
    conn.close()
    return [row(f"rebuild state from {events:,} events (events/s)", events / fold_seconds, events / raw_seconds,
                "/s", ">= 200,000/s")]
