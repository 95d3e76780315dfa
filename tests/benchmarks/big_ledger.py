"""Synthetic ledgers of any length for benchmarks: a plan of many PARTs and a long, valid history.

The history is written straight into ``events`` (with correct stream versions and hash chain, so
``kx audit verify`` holds) because making a million events through the CLI would take hours.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from ledger import clock
from ledger.store import chain_hash


def plan_text(parts: int, per_batch: int = 100, boxes: int = 10) -> str:
    lines = [f"**Strategy**: {parts} runners, 6 at a time", ""]
    for n in range(1, parts + 1):
        if (n - 1) % per_batch == 0:
            lines.append(f"# BATCH {(n - 1) // per_batch + 1}: Batch")
        lines += [f"## PART {n}: Topic {n}", f"- [ ] PART {n}: Create t/{n:04d}.md", "**Step 1: Work**"]
        lines += [f"- [ ] Section {b}: part {n} box {b}" for b in range(1, boxes + 1)]
    return "\n".join(lines) + "\n"


def make(folder: Path, events: int, parts: int = 1000, boxes: int = 10) -> Path:
    """A project in ``folder`` whose ledger holds ``events`` events (the import included)."""
    from machine.acts.importer import import_plan
    from machine.acts.workspace import Workspace

    (folder / "plan.md").write_text(plan_text(parts, per_batch=parts, boxes=boxes))  # one open batch: valid ticks
    ledger_path = folder / ".kx" / "ledger.db"
    workspace = Workspace.open(str(ledger_path), create=True)
    import_plan(lambda: workspace, folder / "plan.md", root=folder)
    workspace.ledger.close()
    conn = sqlite3.connect(ledger_path, isolation_level=None)
    position, previous = conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()
    recorded_at = clock.now_iso()
    versions: dict[str, int] = {}
    rows = []
    tick = True
    while position < events:
        for n in range(1, parts + 1):
            for b in range(1, boxes + 1):
                if position >= events:
                    break
                position += 1
                stream = f"part:plan:PART-{n}"
                versions[stream] = versions.get(stream, 0) + 1
                kind = "CheckboxTicked" if tick else "CheckboxUnticked"
                data = json.dumps({"box": b, "by": "bench", "part": f"PART-{n}", "plan": "plan",
                                   "text": f"Section {b}: part {n} box {b}"}, sort_keys=True, separators=(",", ":"))
                previous = chain_hash(previous, position, stream, versions[stream], kind, data, recorded_at)
                rows.append((position, "plan", stream, versions[stream], kind, data, recorded_at, 1, previous))
        tick = not tick
        if len(rows) > 100_000 or position >= events:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            rows = []
    conn.close()
    return ledger_path
