"""Rules hold across OS processes: the check and the append share one BEGIN IMMEDIATE."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import FROZEN_AT

pytestmark = pytest.mark.slow


def plan_text(parts: int, limit: int) -> str:
    lines = [f"**Strategy**: {parts} runners, {limit} at a time", "", "# BATCH 1: Everything"]
    for n in range(1, parts + 1):
        lines += [f"## PART {n}: Topic {n}", f"- [ ] PART {n}: Create t/{n}.md", "- [ ] one", "- [ ] two"]
    lines += ["# BATCH 2: Later", "## PART 99: Later", "- [ ] PART 99: Create t/99.md", "- [ ] one"]
    return "\n".join(lines) + "\n"


def spawn(project, *args):
    env = {**os.environ, "KX_NOW": FROZEN_AT}
    env.pop("KX_LEDGER", None)
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_twenty_processes_racing_to_start_get_exactly_six(kx, project):
    (project / "plan.md").write_text(plan_text(20, 6))
    assert kx("plan", "import", "plan.md").code == 0
    racers = [spawn(project, "--json", "start", f"PART-{n}") for n in range(1, 21)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read().decode()) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0] * 6 + [3] * 14, [err for _, _, err in results]
    assert all("limit: 6 of 6" in err for code, _, err in results if code == 3)
    assert all("database is locked" not in err for _, _, err in results)
    started = [json.loads(out)["part"] for code, out, _ in results if code == 0]
    assert sorted(kx("--json", "status").json["running"]) == sorted(started)
    events = kx("--json", "events").json["events"]
    assert sum(e["type"] == "RunnerStarted" for e in events) == 6
    assert kx("audit", "verify").code == 0


def test_concurrent_ticks_on_one_part_are_all_kept(kx, project):
    (project / "plan.md").write_text(
        "# BATCH 1: B\n## PART 1: P\n- [ ] PART 1: Create p.md\n" + "".join(f"- [ ] box {n}\n" for n in range(1, 13)))
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    tickers = [spawn(project, "tick", "PART-1", str(n), "--attempt", "PART-1#1") for n in range(1, 13)]
    assert [p.wait(timeout=120) for p in tickers] == [0] * 12
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["ticked"] == 12
    assert kx("audit", "verify").code == 0
