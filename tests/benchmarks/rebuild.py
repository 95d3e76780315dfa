"""Rebuilding state from a long ledger (a fold of every event) and auditing it (the fold with every rule and the
hash chain), vs reading the same rows raw."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.benchmarks.common import row


def measure(ledger_path: Path, events: int) -> list[dict]:
    from machine.acts.audit import verify
    from machine.acts.workspace import Workspace
    from machine.state.fold import PlanState

    workspace = Workspace.open(str(ledger_path))
    started = time.perf_counter()
    state = PlanState("plan").fold_rows(workspace.ledger.scan("plan"))
    fold_seconds = time.perf_counter() - started
    assert state.position == events
    started = time.perf_counter()
    audit = verify(workspace)
    audit_seconds = time.perf_counter() - started
    assert audit["ok"] and audit["events"] == events, audit["findings"][:3]
    workspace.ledger.close()
    conn = sqlite3.connect(ledger_path)
    started = time.perf_counter()
    for _ in conn.execute("SELECT position, stream, version, type, data, recorded_at FROM events"):
        pass
    raw_seconds = time.perf_counter() - started
    conn.close()
    return [row(f"rebuild state from {events:,} events (events/s)", events / fold_seconds, events / raw_seconds,
                "/s", ">= 200,000/s"),
            row(f"kx audit verify on {events:,} events (events/s)", events / audit_seconds, events / raw_seconds,
                "/s", ">= 250,000/s")]
