"""``kx brief`` and ``kx check`` of one PART with 20,000 boxes, against ``python -c`` reading the same plan file."""

from __future__ import annotations

import statistics
import subprocess
import sys

from tests.benchmarks.common import clean_env, kx_command, row, run, scratch, timed

FLOOR = "import pathlib; pathlib.Path('plan.md').read_text()"


def big_plan(boxes: int) -> str:
    lines = ["# BATCH 1: Big", "", "## PART 1: Many boxes", "", "- [ ] PART 1: Create out/big.md", "",
             "**Step 1: Work**", *(f"- [ ] Section {n}: topic number {n}" for n in range(1, boxes + 1))]
    return "\n".join(lines) + "\n"


def measure(boxes: int = 20_000, rounds: int = 5) -> list[dict]:
    with scratch() as folder:
        (folder / "plan.md").write_text(big_plan(boxes))
        kx, env = kx_command(), clean_env()
        run([*kx, "plan", "import", "plan.md"], folder)
        times = {"brief": [], "check": [], "floor": []}
        for _ in range(rounds):
            for verb in ("brief", "check"):
                times[verb].append(timed(subprocess.run, [*kx, "--json", verb, "PART-1"], cwd=folder, env=env,
                                         capture_output=True))
            times["floor"].append(timed(subprocess.run, [sys.executable, "-c", FLOOR], cwd=folder, env=env,
                                        check=True))
    floor = statistics.median(times["floor"]) * 1000
    return [row(f"kx brief of a PART of {boxes:,} boxes vs python -c", statistics.median(times["brief"]) * 1000,
                floor, "ms", "< 1 s"),
            row(f"kx check of a PART of {boxes:,} boxes vs python -c", statistics.median(times["check"]) * 1000,
                floor, "ms", "< 1 s")]
