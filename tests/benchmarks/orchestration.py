"""Orchestration overhead: PARTs under ``kx run`` vs ``xargs -P 6`` doing the same work, batch by batch.

``measure``: the bundled plan; each PART's runner sleeps 1 s and writes its
drop to ``$KX_DROP`` (kx's wrapper records a drop its runner wrote but did not
record). ``measure_reporting``: a 3-batch, 6-PART plan whose runners sleep 2 s
and report with ``kx drop`` and ``kx tick`` as an agent does; ``xargs`` runs
the same sleeps and, for the two reports, two bare ``python -c`` inserts into
SQLite. The ratio is kx's wall time over xargs's.
"""

from __future__ import annotations

import shutil
import subprocess

from tests.benchmarks.common import FRESH_PLAN, clean_env, kx_command, row, run, scratch, timed
from tests.benchmarks.tick import FLOOR, make_floor_table

RUNNER = 'sleep 1; echo "drop of $KX_PART" > "$KX_DROP"'
BASELINE = 'sleep 1; echo "drop of $0" > "drop-$0.md"'


def measure() -> dict:
    with scratch() as folder:
        shutil.copy(FRESH_PLAN, folder / "plan.md")
        kx = kx_command()
        run([*kx, "plan", "import", "plan.md"], folder)
        (folder / ".kx" / "config.toml").write_text("[defaults]\nrequire_all_ticked = false\n")
        batches = [[f"PART-{n}" for n in range(1, 7)], [f"PART-{n}" for n in range(7, 10)]]

        def supervised():
            run([*kx, "run", "--runner", f"sh -c '{RUNNER}'", "--review", "auto"], folder)

        def xargs():
            for parts in batches:
                subprocess.run(["xargs", "-P", "6", "-n", "1", "sh", "-c", BASELINE], input="\n".join(parts).encode(),
                               cwd=folder, env=clean_env(), check=True)

        floor = timed(xargs)
        measured = timed(supervised)
    return row("orchestration: bundled plan, 1 s runners (vs xargs -P 6)", measured, floor, "s", "<= 1.15x")


REPORTING = ('sleep 2; echo "drop of $KX_PART" > "$KX_DROP"; kx drop "$KX_PART" "$KX_DROP" > /dev/null;'
             ' kx tick "$KX_PART" 1 2 > /dev/null')


def reporting_plan() -> str:
    lines = ["**Strategy**: 6 runners, 6 at a time (3 batches)", ""]
    for n in range(1, 7):
        if n % 2:
            lines.append(f"# BATCH {(n + 1) // 2}: Batch")
        lines += [f"## PART {n}: Topic {n}", f"- [ ] PART {n}: Create t/{n}.md", "**Step 1: Work**",
                  "- [ ] Do the work", f"- [ ] Create KNOWLEDGE-DROP-t{n}-2025-11-14-[TIME].md", ""]
    return "\n".join(lines)


def measure_reporting() -> dict:
    import sys

    with scratch() as folder:
        (folder / "plan.md").write_text(reporting_plan())
        kx = kx_command()
        run([*kx, "plan", "import", "plan.md"], folder)
        (folder / ".kx" / "config.toml").write_text('[defaults]\nevidence = "ticked"\n')
        make_floor_table(folder)
        baseline = f'sleep 2; {sys.executable} -c "{FLOOR}"; {sys.executable} -c "{FLOOR}"'

        def supervised():
            run([*kx, "run", "--runner", f"sh -c '{REPORTING}'", "--review", "auto"], folder)

        def xargs():
            for batch in ((1, 2), (3, 4), (5, 6)):
                subprocess.run(["xargs", "-P", "6", "-n", "1", "sh", "-c", baseline],
                               input="\n".join(map(str, batch)).encode(), cwd=folder, env=clean_env(), check=True)

        floor = timed(xargs)
        measured = timed(supervised)
    return row("orchestration: 3 batches of 2 PARTs, 2 s runners reporting with kx drop + kx tick"
               " (vs xargs -P 6, sleeps + two python -c inserts)", measured, floor, "s", "<= 1.15x")


if __name__ == "__main__":
    from tests.benchmarks.common import print_table

    print_table([measure(), measure_reporting()])
