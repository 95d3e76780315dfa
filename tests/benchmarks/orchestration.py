"""Orchestration overhead: the bundled plan's PARTs under ``kx run`` vs ``xargs -P 6`` doing the same work.

Each PART's runner sleeps 1 s and writes its drop to ``$KX_DROP`` (kx's
wrapper records a drop its runner wrote but did not record). ``xargs`` runs
the same sleeps-and-writes, batch by batch, six at a time. The ratio is kx's
wall time over xargs's.
"""

from __future__ import annotations

import shutil
import subprocess

from tests.benchmarks.common import FRESH_PLAN, clean_env, kx_command, row, run, scratch, timed

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


if __name__ == "__main__":
    from tests.benchmarks.common import print_table

    print_table([measure()])
