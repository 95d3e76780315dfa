"""What a waiting ``kx run`` costs: the CPU seconds of a run whose one runner works ``seconds`` (the supervisor, its
fork server, the wrapper and the runner, from start to exit) vs a ``python -c`` that sleeps as long."""

from __future__ import annotations

import resource
import sys

from tests.benchmarks.common import kx_command, row, run, scratch

PLAN = """**Strategy**: 1 runner, 1 at a time (1 batch)

# BATCH 1: One

## PART 1: Topic

- [ ] PART 1: Create t/1.md

**Step 1: Work**
- [ ] Do the work
"""


def cpu_seconds(command: list[str], cwd) -> float:
    """User and system CPU of ``command`` and every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run(command, cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure(seconds: float = 10) -> list[dict]:
    with scratch() as folder:
        (folder / "plan.md").write_text(PLAN)
        kx = kx_command()
        run([*kx, "plan", "import", "plan.md"], folder)
        (folder / ".kx" / "config.toml").write_text("[defaults]\nrequire_all_ticked = false\n")
        runner = f"sh -c 'sleep {seconds}; echo done > \"$KX_DROP\"'"
        measured = cpu_seconds([*kx, "run", "--runner", runner, "--review", "auto"], folder)
        floor = cpu_seconds([sys.executable, "-c", f"import time; time.sleep({seconds})"], folder)
    return [row(f"kx run waiting {seconds:g} s on one runner, CPU", measured, floor, "s", "<= 0.4 s")]


if __name__ == "__main__":
    from tests.benchmarks.common import print_table

    print_table(measure())
