"""One supervisor per plan: a second kx run is refused at once naming the first; a dead one's lease is taken over."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ledger.events.models import SupervisorLeased
from ledger.store import Ledger
from tests.conftest import wait_until

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def kx_process(project, *args):
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=project, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def events_of(kx, kind):
    return [e for e in kx("--json", "events").json["events"] if e["type"] == kind]


@pytest.mark.slow
def test_a_second_kx_run_is_refused_at_once_naming_the_first(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    first = kx_process(project, "run", "--runner", "rehearse --sleep 3", "--review", "auto")
    try:
        wait_until(lambda: events_of(kx, "SupervisorLeased"), timeout=60)
        second = kx_process(project, "resume", "--runner", "rehearse", "--review", "auto")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        assert f"a supervisor, pid {first.pid} on" in err and "runs plan plan; 'kx status' to watch it" in err
        assert first.poll() is None  # refused while the first still works, not after waiting for its runners
        assert kx("--json", "status").json["supervisor"]["pid"] == first.pid
    finally:
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert [e["data"]["pid"] for e in events_of(kx, "SupervisorReleased")] == [first.pid]
    assert kx("--json", "status").json["supervisor"] is None
    assert kx("audit", "verify").code == 0


@pytest.mark.slow
def test_the_lease_of_a_supervisor_gone_is_taken_over(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    import socket

    ledger.append([SupervisorLeased(plan="plan", by="kx run", pid=int(dead.stdout), pid_started=time.time() - 5,
                                    host=socket.gethostname())])
    ledger.close()
    import io

    from cli.progress import Progress
    from machine.acts.workspace import Workspace
    from runners.supervisor.run import run_plan

    result = run_plan(Workspace.open(), review="auto", until_batch=1, interactive=False, runner="rehearse",
                      progress=Progress(io.StringIO()))
    assert result.code == 0, result.message
    leases = events_of(kx, "SupervisorLeased")
    assert leases[-1]["data"]["took_over"]["pid"] == int(dead.stdout)
    assert kx("audit", "verify").code == 0


def test_verify_finds_a_lease_taken_from_a_holder_behind_kx(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    for pid in (101, 202):
        ledger.append([SupervisorLeased(plan="plan", by="kx run", pid=pid, pid_started=1.0, host="elsewhere")])
    ledger.close()
    findings = kx("--json", "audit", "verify").json["findings"]
    assert any("a supervisor, pid 101 on elsewhere" in finding for finding in findings), findings
