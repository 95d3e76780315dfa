"""``kx run`` waits on what changes: it sleeps while runners work, wakes when one ends or another process appends,
and its fork server is forked from it when it holds no SQLite connection (kx is loaded once per run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_while_its_runners_work_the_supervisor_sleeps(kx, small_plan):
    from machine.acts.workspace import Workspace
    from runners.supervisor.loop import LogOnly, RunOptions, Supervisor

    assert kx("plan", "import", "plan.md").code == 0
    turns = []

    class Counted(Supervisor):
        def _reap(self):  # the first thing of each turn
            turns.append(1)
            super()._reap()

    options = RunOptions(command=["sh", "-c", "sleep 1.5"], retries=0, review="auto", until_batch=1)
    result = Counted(Workspace.open(), options, LogOnly()).run()
    assert result.summary["failed"] == 2  # both ran 1.5 s, then exited without their evidence
    assert len(turns) <= 10  # a turn per change (starts, outcomes, exits, a reconcile), not one per 20 ms


def test_another_process_s_append_changes_the_ledger_s_data_version(kx, small_plan):
    from machine.acts.workspace import Workspace

    assert kx("plan", "import", "plan.md").code == 0
    ledger = Workspace.open().ledger
    seen = ledger.data_version()
    assert kx("start", "PART-1").code == 0  # its own connection
    assert ledger.data_version() != seen


FORKS = """
import sqlite3, sys, threading
from runners.local.forkserver import may_fork

fresh = may_fork()
connection = sqlite3.connect(sys.argv[1])
connection.execute("CREATE TABLE t (x)")
holding = may_fork()
connection.close()
thread = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True)
thread.start()
threaded = may_fork()
print(fresh, holding, threaded)
"""


def test_a_fork_server_is_forked_only_from_a_process_without_sqlite_or_threads(tmp_path):
    done = subprocess.run([sys.executable, "-c", FORKS, str(tmp_path / "x.db")], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["True", "False", "False"], done.stderr


SERVED = """
from runners.local.forkserver import ForkedServer, ForkServer

with ForkServer() as server:
    assert isinstance(server.process, ForkedServer)  # a fresh process: the server is forked from it
    server.process.kill()
    server.process.wait(5)
    server.read()
    print(server.fileno())
"""


def test_a_fork_server_that_died_is_not_waited_on():
    done = subprocess.run([sys.executable, "-c", SERVED], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["None"], done.stderr  # its end was read: the loop selects on it no more
