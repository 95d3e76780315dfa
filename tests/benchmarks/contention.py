"""Six wrappers recording their starts at once, as a batch begins: how long until the last is recorded.

Six processes forked from one that loaded kx (as the fork server forks the
wrappers) wait on a pipe; released together, each opens the ledger and records
its PART's start (``machine.acts.lifecycle.start``: fold, rules, append, under
the write lock). The floor: six such processes that each open a SQLite file in
WAL mode and commit one row under ``BEGIN IMMEDIATE`` (``synchronous=FULL``, as
the ledger). The figure is the median over the rounds of the time from the
release to the last commit.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import time
from collections.abc import Callable

from tests.benchmarks.common import FRESH_PLAN, kx_command, row, run, scratch

WRITERS = 6


def measure(rounds: int = 5) -> list[dict]:
    from runners.local.wrapper import warm_up

    warm_up()  # what the fork server loads before it forks the wrappers
    kx, floor = [], []
    for _ in range(rounds):
        with scratch() as folder:
            ledger = prepared(folder)
            kx.append(last_done([lambda n=n: record_start(ledger, n) for n in range(1, WRITERS + 1)]))
            floor_file = str(folder / "floor.db")
            with sqlite3.connect(floor_file) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("CREATE TABLE t (n INTEGER)")
            floor.append(last_done([lambda: insert_row(floor_file)] * WRITERS))
    return [row(f"{WRITERS} starts recorded at once: the last one done (vs {WRITERS} raw sqlite3 commits at once)",
                statistics.median(kx) * 1000, statistics.median(floor) * 1000, "ms", "")]


def prepared(folder) -> str:
    shutil.copy(FRESH_PLAN, folder / "plan.md")
    run([*kx_command(), "plan", "import", "plan.md"], folder)
    (folder / ".kx" / "config.toml").write_text("[defaults]\nrequire_all_ticked = false\n")
    run([*kx_command(), "status"], folder)  # the configuration checked, as kx run checks it before its wrappers
    return str(folder / ".kx" / "ledger.db")


def record_start(ledger: str, number: int) -> None:
    from machine.acts.lifecycle import Act, start
    from machine.acts.workspace import Workspace

    start(Workspace.open(ledger), f"PART-{number}", Act(by="kx run"), runner=["sh"], pid=os.getpid(),
          pid_started=0.0, host="benchmark")


def insert_row(path: str) -> None:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("COMMIT")
    conn.close()


def last_done(works: list[Callable[[], None]]) -> float:
    """Seconds from releasing ``works``, each in a process forked beforehand, until the last finished."""
    release_r, release_w = os.pipe()
    children = []
    for work in works:
        pid = os.fork()
        if pid == 0:  # the child never returns from here
            code = 1
            try:
                os.close(release_w)
                os.read(release_r, 1)
                work()
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    os.close(release_r)
    time.sleep(0.2)  # every child is waiting on the pipe
    started = time.perf_counter()
    os.write(release_w, b"x" * len(works))
    for pid in children:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError("a writer failed")
    elapsed = time.perf_counter() - started
    os.close(release_w)
    return elapsed


if __name__ == "__main__":
    from tests.benchmarks.common import print_table

    print_table(measure())
