"""Why a run failed, seen where a person looks: the runner's last line in run, status and history, one line per
PART; a run that stops with failures exits 1; resume reuses the run's runner; status flags PARTs that succeeded
without their ticks."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import drawn, events_of, kx_run, on_a_terminal

# --- the last meaningful line of a runner's output ------------------------------------------------


def test_the_last_meaningful_line_skips_blanks_dots_and_frames():
    from machine.state.runner_output import last_output

    assert last_output("starting\nwrote 3 files\n\n   \n") == "wrote 3 files"
    assert last_output("fetching\n....\n. . .\n45%\r80%\r100%\n") == "fetching"
    python = ('Traceback (most recent call last):\n  File "run.py", line 3, in <module>\n    main()\n'
              "ValueError: the model said no\n")
    assert last_output(python) == "ValueError: the model said no"
    node = "Error: connect ECONNREFUSED 127.0.0.1:4000\n    at TCPConnectWrap.afterConnect (net.js:1141:16)\n"
    assert last_output(node) == "Error: connect ECONNREFUSED 127.0.0.1:4000"
    java = 'Exception in thread "main" java.lang.IllegalStateException: no key\n\tat Main.main(Main.java:3)\n'
    assert last_output(java) == 'Exception in thread "main" java.lang.IllegalStateException: no key'
    assert last_output("\x1b[31mfatal:\x1b[0m no such model\x1b]0;title\x07\n") == "fatal: no such model"
    assert last_output("") is None and last_output(None) is None and last_output("...\n\n") is None


def test_stderr_is_preferred_and_the_line_is_capped():
    from machine.plan.text import one_line
    from machine.state.runner_output import last_output

    assert last_output("cleaning up\n", stderr="RuntimeError: out of tokens\n") == "RuntimeError: out of tokens"
    assert last_output("cleaning up\n", stderr="\n...\n") == "cleaning up"
    long = last_output("x" * 1000)
    assert len(long) == 200 and long.endswith("…")
    assert one_line("a\nb\tc\r\nd") == "a b c d" and one_line("abcdef", limit=4) == "abc…"


def _failed_by_a_runner(kx, project, log: str, stderr: str | None = None, code: int = 2):
    from machine.acts.workspace import Workspace
    from runners.local.wrapper import record_outcome

    assert kx("start", "PART-1").code == 0
    path = project / "runner.log"
    path.write_text(log, encoding="utf-8")
    assert record_outcome(Workspace.open(), "PART-1", "PART-1#1", code, path, stderr=stderr) == 1


def test_status_and_history_show_the_runners_last_line(kx, small_plan, project, monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-0123456789abcdef")
    assert kx("plan", "import", "plan.md").code == 0
    _failed_by_a_runner(kx, project, "reading the brief\nasking the model\n",
                        stderr="Traceback (most recent call last):\n  File \"x\", line 1\n"
                               "PermissionError: token tok-0123456789abcdef refused\n")
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["state"] == "failed" and part["reason"] == "runner exited with status 2"
    assert part["last_output"] == "PermissionError: token [redacted] refused"
    plain = kx("status").text
    line = next(line for line in plain.splitlines() if line.strip().startswith("PART-1 "))
    assert "runner exited with status 2" in line and "PermissionError: token [redacted] refused" in line
    history = kx("audit", "history", "PART-1").text
    failed = next(line for line in history.splitlines() if "RunnerFailed" in line)
    assert "PermissionError: token [redacted] refused" in failed and "tok-0123" not in history
    recorded = kx("--json", "audit", "history", "PART-1").json["events"][-1]["data"]
    assert recorded["last_output"] == "PermissionError: token [redacted] refused"


@pytest.mark.slow
def test_a_lost_attempt_shows_the_last_line_its_runner_wrote(kx, small_plan, project):
    import socket
    import subprocess

    from ledger.events.models import RunnerStarted
    from ledger.store import Ledger
    from runners.attempt_folder import attempt_dir

    assert kx("plan", "import", "plan.md").code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append([RunnerStarted(plan="plan", part="PART-1", attempt="PART-1#1", pid=dead.pid, pid_started=1.0,
                                 host=socket.gethostname())])
    folder = attempt_dir(ledger.path, "plan", "PART-1#1")
    folder.mkdir(parents=True)
    (folder / "runner.log").write_text("step 3 of 9\nwaiting for the model\n")
    ledger.close()
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["state"] == "lost" and part["last_output"] == "waiting for the model"
    assert "waiting for the model" in next(line for line in kx("status").text.splitlines() if "PART-1 " in line)
    assert "waiting for the model" in kx("audit", "history", "PART-1").text


def test_a_multi_line_reason_keeps_one_line_per_part(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    assert kx("fail", "PART-1", "--reason", "first line\nsecond line\tand a tab").code == 0
    plain = kx("status").text.splitlines()
    assert len(plain) == 2 + 2 * (2 + 2)  # header, then per batch: a blank line, its line, and one line per PART
    assert [line for line in plain if "PART-1 " in line][0].endswith("first line second line and a tab")
    view = kx("--json", "status").json
    table = drawn(view, 100).splitlines()
    assert any("first line second line and a tab" in line for line in table)
    assert all("second line" not in line or "first line" in line for line in table)
    assert all(len(line) <= 100 for line in table)
    history = kx("audit", "history", "PART-1").text.splitlines()
    assert len(history) == 1 + 3  # the title, then PlanImported, RunnerStarted, RunnerFailed


def test_run_progress_folds_a_reason_to_one_line(kx, small_plan, project):
    import io

    from cli.progress import Progress
    from machine.acts.workspace import Workspace

    assert kx("plan", "import", "plan.md").code == 0
    stream = io.StringIO()
    progress = Progress(stream)
    workspace = Workspace.open()
    progress.update(workspace.state())
    _failed_by_a_runner(kx, project, "one\ntwo\nKeyError: 'choices'\n")
    progress.update(workspace.state())
    lines = stream.getvalue().splitlines()
    assert "PART-1 failed in 0.0s: runner exited with status 2 — last output: KeyError: 'choices'" in lines


# --- real runs: a failing custom runner -------------------------------------------------------------

FAILING_RUNNER = """\
import sys
print("reading the brief", flush=True)
print("....", flush=True)
sys.stderr.write("Traceback (most recent call last):\\n  File \\"agent.py\\", line 9, in <module>\\n")
sys.stderr.write("\\x1b[31mValueError: the model refused PART\\x1b[0m\\n")
sys.stderr.flush()
print("cleaning up", flush=True)
sys.exit(2)
"""


def runner_spec(project: Path, name: str, text: str) -> str:
    (project / name).write_text(text, encoding="utf-8")
    return f"{shlex.quote(sys.executable)} {name}"


@pytest.mark.slow
@pytest.mark.real_time
def test_a_run_that_stops_with_failures_shows_why_and_exits_1(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    spec = runner_spec(project, "agent.py", FAILING_RUNNER)
    code, out, err = kx_run(project, "--json", "run", "--runner", spec, "--until-batch", "1", "--review", "auto",
                            "--retries", "0")
    summary = json.loads(out)
    assert code == 1, err
    assert summary["outcome"] == "stopped" and summary["failed"] == 2
    assert [f["part"] for f in summary["failures"]] == ["PART-1", "PART-2"]
    assert {f["last_output"] for f in summary["failures"]} == {"ValueError: the model refused PART"}
    assert "PART-1 failed" in err and "last output: ValueError: the model refused PART" in err
    code, out, err = kx_run(project, "run", "--runner", spec, "--until-batch", "1", "--review", "auto",
                            "--backoff", "0")
    assert code == 1, err
    assert "PART-1 failed (PART-1#2): runner exited with status 2 — last output: ValueError" in out  # plain too
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["last_output"] == "ValueError: the model refused PART"


# --- kx resume reuses the run's runner and options ----------------------------------------------------


@pytest.mark.real_time
@pytest.mark.slow
def test_resume_reuses_the_runner_and_options_of_the_run(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    spec = runner_spec(project, "agent.py", FAILING_RUNNER)
    code, _, err = kx_run(project, "run", "--runner", spec, "--until-batch", "1", "--review", "auto",
                          "--retries", "0", "--backoff", "0")
    assert code == 1 and "'kx resume'" in err + _
    recorded = [e for e in events_of(kx) if e["type"] == "RunStarted"]
    assert len(recorded) == 1 and recorded[0]["stream"] == "plan:plan"
    assert recorded[0]["data"]["options"] == {"runner": spec, "retries": 0, "backoff": 0.0}
    assert kx("review", "1", "--reject").code == 0
    code, _, err = kx_run(project, "resume", "--until-batch", "1", "--review", "auto")
    assert code == 1, err  # the runner again, not "no runner"
    starts = [e["data"] for e in events_of(kx) if e["type"] == "RunnerStarted"]
    assert [s["attempt"] for s in starts if s["part"] == "PART-1"] == ["PART-1#1", "PART-1#2"]  # retries 0 again
    assert starts[-1]["runner"] == starts[0]["runner"]
    assert len([e for e in events_of(kx) if e["type"] == "RunStarted"]) == 1  # the same options: not again
    assert kx("review", "1", "--reject").code == 0
    code, _, err = kx_run(project, "resume", "--until-batch", "1", "--review", "auto", "--retries", "3")
    assert code == 1, err
    attempts = [e["data"]["attempt"] for e in events_of(kx) if e["type"] == "RunnerStarted"]
    # --retries 3 given here won over the recorded 0: the rejected PART's first try and its 3 retries
    assert "PART-1#6" in attempts and "PART-1#7" not in attempts
    last = [e for e in events_of(kx) if e["type"] == "RunStarted"][-1]["data"]
    assert last["command"] == "resume" and last["options"] == {"runner": spec, "retries": 3, "backoff": 0.0}


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_a_secret_on_the_runners_command_line_is_not_recorded_nor_reused(kx, small_plan, project):
    from machine.acts.lifecycle import Act, record_run
    from machine.acts.workspace import Workspace

    assert kx("plan", "import", "plan.md").code == 0
    record_run(Workspace.open(), "run", {"runner": "agent --api-key sk-abcdefghijkl0123 --fast", "retries": 2},
               Act(by="kx run"))
    data = [e for e in events_of(kx) if e["type"] == "RunStarted"][0]["data"]
    assert "sk-abcdefghijkl0123" not in json.dumps(data) and data["options"]["retries"] == 2
    before = len(events_of(kx))
    result = kx("resume", "--review", "auto")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--runner" in result.err and "secret" in result.err
    assert len(events_of(kx)) == before


def test_resume_help_says_what_it_reuses(kx):
    text = kx("resume", "--help").text
    assert "reuses" in text and "--runner" in text and "--retries" in text and "--until-batch" in text


# --- status flags PARTs that succeeded with unticked boxes ---------------------------------------------------


@pytest.mark.slow
def test_status_flags_parts_that_succeeded_with_unticked_boxes(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    parts = {p["id"]: p for b in kx("--json", "status").json["batches"] for p in b["parts"]}
    assert parts["PART-1"]["warning"] == ("succeeded with 0/16 ticked: imported without evidence;"
                                          " see 'kx reopen PART-1'")
    assert "warning" not in parts["PART-2"]
    flagged = sorted(p for p, v in parts.items() if "warning" in v)
    assert flagged == ["PART-1", "PART-3", "PART-7", "PART-8", "PART-9"]
    shown = on_a_terminal(project, "status", env={"NO_COLOR": "1"})
    assert "! PART-1 0/16" in shown and "! PART-3 0/16" in shown and "! PART-2" not in shown
    assert "imported without evidence; see 'kx reopen PART-1 PART-3'" in shown
    assert all(len(line) <= 100 for line in shown.splitlines())
