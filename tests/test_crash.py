"""``kx run`` killed from outside, with real processes: no outcome is lost, no runner of a lost attempt lives on.

Each wrapper records its own outcome, so a supervisor SIGKILLed at any moment
loses nothing; a wrapper killed under its runner leaves a lost attempt whose
runner kx stops (SIGTERM, then SIGKILL after a grace period) before a retry
can run beside it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import closing

import psutil
import pytest

from runners.attempt_folder import process_alive
from tests.conftest import kx_run, real_env, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.real_time]

OUTCOMES = ("RunnerSucceeded", "RunnerFailed", "RunnerLost")

# A runner that works a while, then writes its target and drop and reports them with `kx`.
# A first attempt sleeps FIRST seconds, a retry RETRY seconds.
RUNNER = """\
case "$KX_ATTEMPT" in *"#1") sleep {first};; *) sleep {retry};; esac
mkdir -p "$(dirname "$KX_TARGET")"; printf '# %s\\n' "$KX_PART" > "$KX_TARGET"
echo "drop of $KX_ATTEMPT" > "$KX_DROP"
kx drop "$KX_PART" "$KX_DROP" >/dev/null
kx tick "$KX_PART" 1 2 >/dev/null
"""


def one_batch_plan(parts: int) -> str:
    lines = ["# Knowledge Expansion: crash", "", f"**Strategy**: {parts} runners, {parts} at a time (1 batch)", "",
             "# BATCH 1: Crash", ""]
    for n in range(1, parts + 1):
        lines += [f"## PART {n}: Topic {n}", "", f"- [ ] PART {n}: Create out/{n}.md", "", "**Step 1: Work**",
                  "- [ ] Do the work", "", "**Step 2: Create KNOWLEDGE DROP**",
                  f"- [ ] Create KNOWLEDGE-DROP-crash-{n}-2025-11-14-[TIME].md", ""]
    return "\n".join(lines)


@pytest.fixture
def tag(monkeypatch):
    """A mark in the environment of every process a test starts, to find the ones still alive."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("CRASH_TEST_TAG", value)
    return value


def alive_with(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get("CRASH_TEST_TAG") == tag \
                    and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def kx_cli(project, *args: str) -> subprocess.CompletedProcess:
    """``kx`` in a process of its own: this test's process must hold no connection to the ledger (one held
    would keep SQLite's shared-memory lock taken for everybody, and hide a wrapper that lost its own)."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=project, env=real_env(),
                          capture_output=True, text=True, timeout=60)


def make_plan(project, parts: int, first: float, retry: float = 0.2) -> str:
    """Import a one-batch plan of ``parts`` PARTs; the runner command."""
    (project / "plan.md").write_text(one_batch_plan(parts))
    assert kx_cli(project, "plan", "import", "plan.md").returncode == 0
    (project / "runner.sh").write_text(RUNNER.format(first=first, retry=retry))
    return f"bash {project / 'runner.sh'}"


def ledger_events(project) -> list[tuple[str, dict]]:
    with closing(sqlite3.connect(f"file:{project / '.kx' / 'ledger.db'}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT type, data FROM events ORDER BY position").fetchall()
    return [(kind, json.loads(data)) for kind, data in rows]


def of_type(project, *kinds: str) -> list[dict]:
    return [data for kind, data in ledger_events(project) if kind in kinds]


def runner_of(project, attempt: str) -> tuple[int, float]:
    """The runner process of ``attempt`` (pid, start time), once its wrapper has started it."""
    folder = project / ".kx" / "attempts" / "plan" / attempt.replace("#", "-")
    wait_until(lambda: (folder / "runner.json").exists(), timeout=30)
    known = json.loads((folder / "runner.json").read_text())
    return known["pid"], known["started"]


def run_completes(project, runner: str, command: str = "resume") -> None:
    code, _, err = kx_run(project, command, "--runner", runner, "--review", "auto", "--backoff", "0.1", timeout=60)
    assert code == 0, err
    successes = Counter(d["part"] for d in of_type(project, "RunnerSucceeded"))
    parts = {d["part"] for d in of_type(project, "RunnerStarted")}
    assert successes == Counter({part: 1 for part in parts})
    assert kx_cli(project, "audit", "verify").returncode == 0


def attempt_files(project, name: str) -> list:
    return list((project / ".kx" / "attempts").glob(f"plan/PART-*-1/{name}"))


# Moments told by files alone: a test that reads the ledger while the supervisor lives holds SQLite's locks for a
# moment, which can hide what the supervisor's death does to wrappers that share its locks.
MOMENTS = {
    "as the wrappers are asked for": lambda project: (project / ".kx" / "attempts" / "plan").exists(),
    "while every runner runs": lambda project: len(attempt_files(project, "runner.log")) == 3,
    "as the first runner finishes": lambda project: (project / "out" / "1.md").exists(),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_every_wrapper_records_its_outcome_after_the_supervisor_is_killed(project, tag, moment):
    runner = make_plan(project, 3, first=0.5, retry=0.5)
    supervisor = kx_run(project, "run", "--runner", runner, "--review", "auto", wait=False)
    wait_until(lambda: MOMENTS[moment](project), timeout=30)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    wait_until(lambda: not alive_with(tag), timeout=30)  # the wrappers and their runners, and the fork server
    started = {d["attempt"] for d in of_type(project, "RunnerStarted")}
    outcomes = {d["attempt"]: kind for kind, d in ledger_events(project) if kind in OUTCOMES}
    assert outcomes == {attempt: "RunnerSucceeded" for attempt in started}
    run_completes(project, runner)
    assert not of_type(project, "RunnerLost", "RunnerFailed")
    assert {d["part"] for d in of_type(project, "RunnerSucceeded")} == {"PART-1", "PART-2", "PART-3"}


def kill_wrappers_under_running_runners(project, parts: int) -> dict[str, tuple[int, float]]:
    """SIGKILL every wrapper (not its runner) once all ``parts`` runners run; the orphaned runners."""
    wait_until(lambda: len(of_type(project, "RunnerStarted")) == parts, timeout=30)
    started = of_type(project, "RunnerStarted")
    runners = {d["attempt"]: runner_of(project, d["attempt"]) for d in started}
    for d in started:
        os.kill(d["pid"], signal.SIGKILL)
    assert all(process_alive(*known) for known in runners.values())
    return runners


def assert_lost_then_retried(project, runners: dict[str, tuple[int, float]]) -> None:
    """Each killed attempt is lost, its runner stopped before it reported anything more, its retry succeeded."""
    assert not any(process_alive(*known) for known in runners.values())
    events = ledger_events(project)
    for attempt in runners:
        lost_at = next(i for i, (kind, d) in enumerate(events) if kind == "RunnerLost" and d["attempt"] == attempt)
        assert not [kind for kind, d in events[lost_at + 1:] if d.get("by") == attempt]  # its runner's acts
    retried = {d["attempt"] for d in of_type(project, "RunnerSucceeded")}
    assert retried == {attempt.replace("#1", "#2") for attempt in runners}


def test_a_wrapper_killed_alone_is_lost_and_its_runner_stopped(project, tag):
    runner = make_plan(project, 1, first=60)
    supervisor = kx_run(project, "run", "--runner", runner, "--review", "auto", "--backoff", "0.1", wait=False)
    runners = kill_wrappers_under_running_runners(project, 1)
    out, err = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, err
    assert_lost_then_retried(project, runners)
    assert kx_cli(project, "audit", "verify").returncode == 0


def test_supervisor_and_wrappers_killed_then_resumed(project, tag):
    runner = make_plan(project, 2, first=60)
    supervisor = kx_run(project, "run", "--runner", runner, "--review", "auto", wait=False)
    wait_until(lambda: len(of_type(project, "RunnerStarted")) == 2, timeout=30)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    runners = kill_wrappers_under_running_runners(project, 2)
    run_completes(project, runner)
    assert_lost_then_retried(project, runners)


def in_process_plan(kx, project) -> None:
    """A one-PART plan, imported by this test's process (for tests without a supervisor to kill)."""
    (project / "plan.md").write_text(one_batch_plan(1))
    assert kx("plan", "import", "plan.md").code == 0


def start_wrapper(project, part: str, script: str) -> subprocess.Popen:
    """An attempt's wrapper started by hand, as ``kx run`` starts it, with a runner running ``script``."""
    (project / f"{part}.sh").write_text(script)
    command = [sys.executable, "-m", "runners.local.wrapper", "--ledger", str(project / ".kx" / "ledger.db"),
               "--plan", "plan", "--part", part, "--", "bash", str(project / f"{part}.sh")]
    return subprocess.Popen(command, cwd=project, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("runner", ["sleep 60", "trap '' TERM; sleep 60"], ids=["plain", "ignoring SIGTERM"])
def test_the_runner_of_a_lost_attempt_is_stopped_within_the_grace_period(kx, project, monkeypatch, runner):
    monkeypatch.setattr("runners.attempt_folder.STOP_GRACE_S", 2.0)
    in_process_plan(kx, project)
    wrapper = start_wrapper(project, "PART-1", runner)
    known = runner_of(project, "PART-1#1")
    wrapper.kill()
    wrapper.wait()
    assert process_alive(*known)
    started = time.monotonic()
    status = kx("--json", "status").json  # reconciles: records the attempt lost and stops its runner
    took = time.monotonic() - started
    assert status["batches"][0]["parts"][0]["state"] == "lost"
    assert not process_alive(*known)
    assert took < 2.0 if runner == "sleep 60" else 2.0 <= took < 5.0  # SIGTERM was enough, or SIGKILL came


def test_the_runner_of_a_superseded_attempt_is_stopped_before_its_retry_runs(kx, project):
    in_process_plan(kx, project)
    old = start_wrapper(project, "PART-1", "sleep 60")
    known = runner_of(project, "PART-1#1")
    assert kx("fail", "PART-1", "--reason", "stuck", "--by", "erin").code == 0
    assert kx("retry", "PART-1").code == 0
    assert process_alive(*known)  # its wrapper lives on: the attempt is not lost, only superseded
    new = start_wrapper(project, "PART-1", RUNNER.format(first=0, retry=0))
    assert new.wait(timeout=30) == 0
    assert not process_alive(*known)
    assert old.wait(timeout=10) == 1  # its runner was stopped; the attempt is no longer its to settle
    assert [d["attempt"] for d in of_type(project, "RunnerSucceeded")] == ["PART-1#2"]
    assert kx("audit", "verify").code == 0
