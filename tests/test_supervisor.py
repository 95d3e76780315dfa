"""``kx run`` end to end, with real processes: rules from the events, crashes, resumes."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from tests.conftest import (
    batches_map,
    check_rules_from_events,
    events_of,
    kill_group,
    kx_run,
    run_until_first_start,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_a_three_batch_run_keeps_every_rule(kx, project, plan3):
    code, out, err = kx_run(project, "run", "--runner", "rehearse --sleep 0.4", "--review", "auto")
    assert code == 0, err
    assert "every batch is approved" in out and "PART-9 succeeded" in err
    events = events_of(kx)
    assert check_rules_from_events(events, 2, batches_map(plan3)) == 2
    successes = Counter(e["data"]["part"] for e in events if e["type"] == "RunnerSucceeded")
    assert successes == Counter({f"PART-{n}": 1 for n in range(1, 10)})
    assert kx("audit", "verify").code == 0
    for n in range(1, 10):
        assert (project / "topics" / f"{n:02d}.md").read_text().startswith(f"# Topic {n}")
    status = kx("--json", "status").json
    assert all(p["ticked"] == p["total"] == 5 for b in status["batches"] for p in b["parts"])
    logs = list((project / ".kx" / "attempts" / "plan").glob("PART-*-1/runner.log"))
    assert len(logs) == 9 and "done PART-" in logs[0].read_text()
    again = kx_run(project, "run", "--runner", "rehearse", "--review", "auto")
    assert again[0] == 0 and len(events_of(kx)) == len(events)  # nothing left to do


def test_failures_are_retried_and_an_exhausted_one_stops_auto_review(kx, project, plan3):
    code, out, err = kx_run(project, "--json", "run", "--runner", "rehearse --fail PART-2 --fail-attempts 5",
                            "--review", "auto", "--backoff", "0.1")
    summary = json.loads(out)
    assert code == 1 and summary["outcome"] == "needs_review"
    assert "batch 1 has failed PARTs after retries (PART-2)" in summary["message"]
    history = kx("--json", "audit", "history", "PART-2").json["events"]
    assert [e["type"] for e in history].count("RunnerStarted") == 2
    assert "rehearsal failure injected" in history[-1]["data"]["log_tail"]
    assert kx("review", "1", "--approve", "--accept-failed").code == 0
    code, _, err = kx_run(project, "run", "--runner", "rehearse", "--review", "auto", "--until-batch", "2")
    assert code == 0 and "stopped at the gate: batch 2 awaits review" in err + _
    assert kx("--json", "status").json["batches"][2]["state"] == "locked"


def test_a_part_sent_back_by_review_gets_its_retries_again(kx, project, plan3):
    failing = ["--runner", "rehearse --fail PART-2 --fail-attempts 9", "--backoff", "0.05", "--until-batch", "1"]
    assert kx_run(project, "run", *failing, "--review", "auto")[0] == 1  # PART-2#1, then its one retry #2
    assert kx("review", "1", "--reject", "PART-2").code == 0
    code, out, err = kx_run(project, "run", *failing, "--review", "auto")
    assert code == 1, err
    starts = [e["data"]["attempt"] for e in events_of(kx) if e["type"] == "RunnerStarted" and e["data"]["part"] == "PART-2"]
    assert starts == ["PART-2#1", "PART-2#2", "PART-2#3", "PART-2#4"]  # the rejection gave it a fresh retry
    retried = [e["data"]["reason"] for e in events_of(kx) if e["type"] == "PartRetried"]
    assert retried == ["retry 1 of 1", "retry 1 of 1"]


def test_a_retry_after_one_failure_succeeds(kx, project, plan3):
    code, _, err = kx_run(project, "run", "--runner", "rehearse --fail PART-4", "--review", "auto", "--backoff", "0.1")
    assert code == 0, err
    starts = [e["data"]["attempt"] for e in events_of(kx) if e["type"] == "RunnerStarted"]
    assert "PART-4#2" in starts and len(starts) == 10


def test_wait_review_waits_for_a_review_from_another_terminal(kx, project, plan3):
    process = kx_run(project, "run", "--runner", "rehearse", "--review", "wait", "--until-batch", "2", wait=False)
    said = stderr_until(process, "awaits review: run 'kx review 1 --approve'")  # said, then it waits
    assert process.poll() is None and "BatchReviewed" not in [e["type"] for e in events_of(kx)]
    assert kx("review", "1", "--approve", "--by", "erin").code == 0
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, said + err.decode()
    events = events_of(kx)
    review = next(e for e in events if e["type"] == "BatchReviewed")
    assert review["data"]["by"] == "erin"
    then = [e["data"]["part"] for e in events if e["type"] == "RunnerStarted" and e["position"] > review["position"]]
    assert then and {batches_map(plan3)[part] for part in then} == {2}  # the same run went on after the review


def stderr_until(process: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """What ``process`` wrote on stderr up to ``text``, read as it comes; it fails if the process ends first."""
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {text!r} within {timeout}s: {seen.decode()}"
        chunk = os.read(process.stderr.fileno(), 65536)
        assert chunk, f"the process ended without saying {text!r}: {seen.decode()}"
        seen += chunk
    return seen.decode()


def test_no_runner_is_bad_input(kx, plan3):
    result = kx("run", "--review", "auto")
    assert result.code == 2 and "--runner" in result.err






def test_supervisor_killed_at_random_moments_then_resumed(kx, project, plan3):
    chance = random.Random(20251120)
    for moment in [chance.uniform(0.5, 4.0) for _ in range(3)]:
        process = kx_run(project, "run", "--runner", "rehearse --sleep 0.5", "--review", "auto", wait=False)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait()
    code, _, err = kx_run(project, "resume", "--runner", "rehearse --sleep 0.5", "--review", "auto")
    assert code == 0, err
    events = events_of(kx)
    successes = Counter(e["data"]["part"] for e in events if e["type"] == "RunnerSucceeded")
    assert successes == Counter({f"PART-{n}": 1 for n in range(1, 10)})
    status = kx("--json", "status").json
    assert all(p["ticked"] == p["total"] for b in status["batches"] for p in b["parts"])
    check_rules_from_events(events, 2, batches_map(plan3))
    assert kx("audit", "verify").code == 0




def test_a_killed_runner_is_failed_and_retried(kx, project, plan3):
    process, started = run_until_first_start(kx, project)
    wrapper = started["data"]["pid"]
    import psutil

    wait_until(lambda: psutil.Process(wrapper).children())
    runner = psutil.Process(wrapper).children()[0]
    runner.kill()
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    part = started["data"]["part"]
    history = kx("--json", "audit", "history", part).json["events"]
    failed = next(e for e in history if e["type"] == "RunnerFailed")
    assert "killed by signal 9" in failed["data"]["reason"]
    assert [e["type"] for e in history].count("RunnerSucceeded") == 1
    assert kx("audit", "verify").code == 0


def test_a_killed_wrapper_is_lost_and_retried(kx, project, plan3):
    from runners.attempt_folder import process_alive

    process, started = run_until_first_start(kx, project)
    noted = project / ".kx" / "attempts" / "plan" / started["data"]["attempt"].replace("#", "-") / "runner.json"
    wait_until(noted.exists)
    runner = json.loads(noted.read_text())
    assert os.getpgid(runner["pid"]) == runner["pid"] != os.getpgid(started["data"]["pid"])
    kill_group(started["data"]["pid"])  # the wrapper's session; its runner leads a process group of its own
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    history = kx("--json", "audit", "history", started["data"]["part"]).json["events"]
    kinds = [e["type"] for e in history]
    assert "RunnerLost" in kinds and kinds.count("RunnerSucceeded") == 1
    lost = next(e for e in history if e["type"] == "RunnerLost")
    assert "is gone" in lost["data"]["reason"]
    assert not process_alive(runner["pid"], runner["started"])  # stopped once its attempt was lost
    assert kx("audit", "verify").code == 0


def test_status_reconciles_a_dead_wrapper(kx, project, plan3):
    import socket

    from ledger.events.models import RunnerStarted
    from ledger.store import Ledger

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append([RunnerStarted(plan="plan", part="PART-1", attempt="PART-1#1", pid=dead.pid,
                                 pid_started=time.time() - 5, host=socket.gethostname())])
    status = kx("--json", "status").json
    assert status["batches"][0]["parts"][0]["state"] == "lost"
    assert kx("audit", "verify").code == 0


def test_prompt_review_shows_the_packet_and_acts_on_the_answers(kx, project, plan3, capsys):
    import io

    from cli.progress import Progress
    from machine.acts.workspace import Workspace
    from runners.spec import runner_command
    from runners.supervisor.loop import RunOptions, Supervisor

    asked = []

    def ask(question, choices):
        asked.append((question, choices))
        return "approve" if len(asked) == 1 else "quit"

    stream = io.StringIO()
    options = RunOptions(command=runner_command("rehearse"), review="prompt")
    result = Supervisor(Workspace.open(), options, Progress(stream), ask).run()
    assert result.code == 0 and result.outcome == "stopped"
    assert asked == [("batch 1: approve / reject / quit?", ["approve", "reject", "quit"]),
                     ("batch 2: approve / reject / quit?", ["approve", "reject", "quit"])]
    shown = stream.getvalue()
    assert "Review of batch 1" in shown and "KNOWLEDGE-DROP-topic-1-2025-11-14-" in shown
    states = [b["state"] for b in kx("--json", "status").json["batches"]]
    assert states == ["approved", "awaiting_review", "locked"]
