"""Many writers at once: 32 processes ticking, unticking, starting and finishing through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from tests.conftest import FROZEN_AT

pytestmark = pytest.mark.slow
WORKERS = 32


def soak_plan() -> str:
    lines = ["**Strategy**: 32 runners, 6 at a time", "# BATCH 1: Soak"]
    for n in range(1, WORKERS + 1):
        lines += [f"## PART {n}: P{n}", f"- [ ] PART {n}: Create p/{n}.md", *[f"- [ ] box {b}" for b in range(1, 5)]]
    return "\n".join(lines) + "\n"


def test_thirty_two_processes_lose_nothing_and_never_see_a_lock(kx, project):
    (project / "plan.md").write_text(soak_plan())
    kx("plan", "import", "plan.md")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KX_")}, "KX_NOW": FROZEN_AT,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [subprocess.Popen([sys.executable, "-m", "tests.soak_worker", str(i)], cwd=project, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(WORKERS)]
    records = []
    for worker in workers:
        out, err = worker.communicate(timeout=400)
        assert worker.returncode == 0, err.decode()
        records += [json.loads(line) for line in out.decode().splitlines()]
    assert not [r for r in records if "locked" in r["stderr"] or "Traceback" in r["stderr"]]
    assert {r["code"] for r in records} <= {0, 3}
    events = kx("--json", "events").json["events"]
    by_tag = Counter(e["data"].get("by") for e in events)
    for record in records:
        expected = len(record["recorded"]) if record["code"] == 0 else 0
        assert by_tag[record["tag"]] == expected, record
    starts = [r for r in records if r["args"][0] == "start" and r["code"] == 0]
    finishes = [r for r in records if r["args"][0] == "finish" and r["code"] == 0]
    assert len(starts) == len(finishes) >= 6
    assert all("limit: 6 of 6" in r["stderr"] for r in records if r["code"] == 3)
    status = kx("--json", "status").json
    parts = {p["id"]: p for p in status["batches"][0]["parts"]}
    assert sum(p["state"] == "succeeded" for p in parts.values()) == len(finishes)
    assert all(p["ticked"] == 4 for p in parts.values())
    assert kx("audit", "verify").code == 0
