"""``kx run --executor ray``: attempts as Ray tasks on a local Ray instance, the ledger with the supervisor.

One Ray instance (two CPUs, loopback only) serves the module; each run is a
real ``kx run`` process connected to it with ``--ray-address``, as a
supervisor would connect to a cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest

from tests.conftest import REPO, batches_map, check_rules_from_events, events_of, real_env

# Loopback only (Ray otherwise advertises the machine's outward address), no token, no usage statistics.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    pytest.importorskip("ray")
    folder = tmp_path_factory.mktemp("ray")
    log = folder / "cluster.log"
    # The tasks' folders (one stays behind when its worker is killed) in the test's; Ray's own where it keeps them.
    env = {**os.environ, **RAY_ENV, "TMPDIR": str(folder), "RAY_TMPDIR": tempfile.gettempdir()}
    with open(log, "wb") as errors:
        cluster = subprocess.Popen([sys.executable, "-m", "tests.ray_cluster"], cwd=REPO, env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                                   start_new_session=True)
    address = cluster.stdout.readline().decode().strip()
    assert address, log.read_text()
    yield address
    cluster.stdin.close()
    cluster.wait(timeout=60)


def kx_on_ray(project, address, *args, timeout=120):
    command = [sys.executable, "-m", "cli.main", *args, "--executor", "ray", "--ray-address", address]
    done = subprocess.run(command, cwd=project, env={**real_env(), **RAY_ENV}, capture_output=True, timeout=timeout)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def history(kx, part):
    return kx("--json", "audit", "history", part).json["events"]


@pytest.mark.slow
@pytest.mark.ray
def test_a_plan_runs_on_ray_under_every_rule(kx, project, plan3, ray_address):
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", "rehearse", "--review", "auto")
    assert code == 0, err
    assert "every batch is approved" in out
    events = events_of(kx)
    assert check_rules_from_events(events, 2, batches_map(plan3)) == 2
    successes = Counter(e["data"]["part"] for e in events if e["type"] == "RunnerSucceeded")
    assert successes == Counter({f"PART-{n}": 1 for n in range(1, 10)})
    assert kx("audit", "verify").code == 0
    starts = [e["data"] for e in events if e["type"] == "RunnerStarted"]
    assert all(s["executor"] == "ray" and "pid" not in s and s["owner_pid"] for s in starts)
    for n in range(1, 10):  # written on a node, in a folder of its own; here since it came back
        assert (project / "topics" / f"{n:02d}.md").read_text().startswith(f"# Topic {n}")
        log = (project / ".kx" / "attempts" / "plan" / f"PART-{n}-1" / "runner.log").read_text()
        assert f"kx ray: PART-{n}#1 on node" in log and f"root {project}" not in log and f"done PART-{n}#1" in log
    drops = [e for e in events if e["type"] == "DropRecorded"]
    assert len(drops) == 9
    for drop in drops:  # hashed here on arrival, recorded by the attempt while it ran
        assert drop["data"]["attempt"] == f"{drop['data']['part']}#1"
        assert hashlib.sha256((project / drop["data"]["path"]).read_bytes()).hexdigest() == drop["data"]["sha256"]


RUNNER = """\
import os, signal, subprocess, sys, time
from pathlib import Path

attempt = os.environ["KX_ATTEMPT"]
if attempt == "PART-1#1":  # the Ray worker running this task dies
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)
if attempt == "PART-2#1":
    os._exit(3)
if attempt == "PART-3#1":
    outside = Path.cwd().parent / "outside.md"
    outside.write_text("not in the root")
    for args in (["drop", "PART-3", str(outside)], ["tick", "PART-3", "1", "--attempt", "PART-3#7"],
                 ["review", "1", "--approve"]):
        done = subprocess.run(["kx", *args], capture_output=True, text=True)
        print(args[0], done.returncode, len(done.stderr.splitlines()), done.stderr.strip(), flush=True)
    Path(".kx").mkdir()
    Path(".kx", "ledger.db").write_text("a runner's file where the ledger is")
from runners.rehearse import main
sys.exit(main([]))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_a_dead_task_is_lost_a_failed_runner_failed_and_both_retried(kx, project, plan3, ray_address):
    (project / "runner.py").write_text(RUNNER)
    runner = shlex.join([sys.executable, str(project / "runner.py")])
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", runner, "--review", "auto",
                               "--until-batch", "1", "--backoff", "0.1")
    assert code == 0, err
    assert "stopped at the gate: batch 1 awaits review" in out
    lost = history(kx, "PART-1")
    assert [e["type"] for e in lost if e["type"].startswith(("Runner", "Part"))] == [
        "RunnerStarted", "RunnerLost", "PartRetried", "RunnerStarted", "RunnerSucceeded"]
    assert "its Ray task ended without an outcome" in lost[2]["data"]["reason"]
    failed = history(kx, "PART-2")
    assert [e["type"] for e in failed if e["type"].startswith(("Runner", "Part"))] == [
        "RunnerStarted", "RunnerFailed", "PartRetried", "RunnerStarted", "RunnerSucceeded"]
    assert next(e for e in failed if e["type"] == "RunnerFailed")["data"]["exit_code"] == 3
    log = (project / ".kx" / "attempts" / "plan" / "PART-3-1" / "runner.log").read_text()
    assert "drop 2 1 kx: error: " in log and "outside.md is outside the plan's root" in log
    assert "tick 3 1 kx: error: stale attempt: PART-3#7 is over" in log
    assert "review 2 1 kx: error: 'kx review' is not available to a runner on a Ray node" in log
    assert not (project / "outside.md").exists()
    assert "kx ray: .kx/ledger.db not written here: .kx/ledger.db is in kx's folder" in log
    assert kx("audit", "verify").code == 0


@pytest.mark.slow
@pytest.mark.ray
def test_a_shared_root_is_used_in_place(kx, project, ray_address):
    from tests.conftest import three_batch_plan

    (project / "plan.md").write_text(three_batch_plan(per_batch=2))
    assert kx("plan", "import", "plan.md").code == 0
    (project / ".kx" / "config.toml").write_text("[defaults.ray]\nshared_root = true\nnum_cpus = 0.5\n")
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", "rehearse", "--review", "auto",
                               "--until-batch", "1")
    assert code == 0, err
    log = (project / ".kx" / "attempts" / "plan" / "PART-1-1" / "runner.log").read_text()
    assert f"root {project}\n" in log
    assert kx("--json", "status").json["batches"][0]["state"] == "awaiting_review"


CALLS = """\
import json, os, subprocess, sys
from pathlib import Path

part = os.environ["KX_PART"]


def kx(*args):
    done = subprocess.run(["kx", *args], capture_output=True, text=True)
    print(json.dumps({"args": " ".join(args), "code": done.returncode, "out": done.stdout, "err": done.stderr}), flush=True)


kx("tick", part, "1", "-h")  # options the shim never knew: the supervisor's CLI answers
kx("--version")
kx("--json", "status")
kx("next")
kx("--json", "brief", part)
kx("review", "1", "--approve")
kx("--json", "review", "1", "--approve")
Path("1").write_text("a file named like the first box")
kx("tick", part, "1")  # a box, not that file
Path("notes").mkdir()
Path("notes", "early.md").write_text("an early drop")
os.chdir("notes")
kx("drop", part, "early.md")  # relative to the runner's folder on the node
os.chdir("..")
Path(".kx").mkdir()
Path(".kx", "x.md").write_text("not for kx's folder")
kx("drop", part, ".kx/x.md")
from runners.rehearse import main
sys.exit(main([]))
"""


def one_part(kx, project):
    from tests.conftest import three_batch_plan

    (project / "plan.md").write_text(three_batch_plan(per_batch=1))
    assert kx("plan", "import", "plan.md").code == 0


def calls_in(log: str) -> dict[str, dict]:
    return {call["args"]: call for call in map(json.loads, (line for line in log.splitlines() if line.startswith('{"args"')))}


@pytest.mark.slow
@pytest.mark.ray
def test_a_runner_on_a_node_has_the_cli_s_own_options_and_commands(kx, project, ray_address):
    one_part(kx, project)
    (project / "runner.py").write_text(CALLS)
    runner = shlex.join([sys.executable, str(project / "runner.py")])
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", runner, "--review", "auto", "--until-batch", "1",
                               "--retries", "0")
    assert code == 0, err
    log = (project / ".kx" / "attempts" / "plan" / "PART-1-1" / "runner.log").read_text()
    calls = calls_in(log)
    node_root = log.splitlines()[0].rsplit(" root ", 1)[1]
    assert calls["tick PART-1 1 -h"]["code"] == 0 and calls["tick PART-1 1 -h"]["out"].startswith("Usage: kx tick")
    assert calls["--version"]["out"] == "kx, version 0.1.0\n"
    assert json.loads(calls["--json status"]["out"])["running"] == ["PART-1"]
    assert calls["next"]["code"] == 0
    brief = json.loads(calls["--json brief PART-1"]["out"])
    assert brief["attempt"] == "PART-1#1" and brief["root"] == node_root != str(project)
    assert brief["target_path"] == f"{node_root}/topics/01.md"
    refused = calls["review 1 --approve"]
    assert (refused["code"], refused["out"]) == (2, "")
    assert refused["err"] == ("kx: error: 'kx review' is not available to a runner on a Ray node (only tick, untick,"
                              " drop, finish, fail, brief, status, next)\n")
    assert json.loads(calls["--json review 1 --approve"]["out"])["error"]["code"] == 2
    assert calls["tick PART-1 1"]["code"] == 0, calls["tick PART-1 1"]
    assert calls["drop PART-1 early.md"]["code"] == 0, calls["drop PART-1 early.md"]
    events = history(kx, "PART-1")
    early = next(e for e in events if e["type"] == "DropRecorded")
    assert (early["data"]["path"], early["data"]["attempt"]) == ("notes/early.md", "PART-1#1")
    assert (project / "notes" / "early.md").read_text() == "an early drop"
    assert calls["drop PART-1 .kx/x.md"]["code"] == 2 and "is in kx's folder" in calls["drop PART-1 .kx/x.md"]["err"]
    assert not (project / ".kx" / "x.md").exists()
    assert events[-1]["type"] == "RunnerSucceeded"
    assert kx("audit", "verify").code == 0


REAL_KX = """\
import os, shutil, sys

os.environ["PATH"] = {folder!r} + os.pathsep + os.environ["PATH"]
os.environ["KX_LEDGER"] = os.path.join(os.getcwd(), "no", "ledger.db")  # nothing on a node opens a ledger
print("kx is", shutil.which("kx"), flush=True)
from runners.rehearse import main
sys.exit(main([]))
"""


@pytest.mark.slow
@pytest.mark.ray
def test_the_real_kx_called_by_its_path_on_a_node_reaches_the_supervisor(kx, project, ray_address, tmp_path_factory):
    one_part(kx, project)
    folder = tmp_path_factory.mktemp("bin")
    script = folder / "kx"  # the console script as pip writes it: cli.main's main
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom cli.main import main\nsys.exit(main())\n")
    script.chmod(0o755)
    (project / "runner.py").write_text(REAL_KX.format(folder=str(folder)))
    runner = shlex.join([sys.executable, str(project / "runner.py")])
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", runner, "--review", "auto", "--until-batch", "1",
                               "--retries", "0")
    assert code == 0, err
    log = (project / ".kx" / "attempts" / "plan" / "PART-1-1" / "runner.log").read_text()
    assert f"kx is {script}\n" in log and "kx: error" not in log
    events = history(kx, "PART-1")
    assert [e["type"] for e in events if e["type"].startswith("Runner")] == ["RunnerStarted", "RunnerSucceeded"]
    drop = next(e for e in events if e["type"] == "DropRecorded")
    assert drop["data"]["attempt"] == "PART-1#1"
    assert hashlib.sha256((project / drop["data"]["path"]).read_bytes()).hexdigest() == drop["data"]["sha256"]


# --- without Ray ---------------------------------------------------------------------


@pytest.mark.slow
def test_without_ray_the_executor_says_how_to_install_it(kx, small_plan, monkeypatch):
    assert kx("plan", "import", str(small_plan)).code == 0
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    result = kx("run", "--runner", "rehearse", "--review", "auto", "--executor", "ray")
    assert result.code == 2
    assert result.err == "kx: error: --executor ray needs Ray on this machine: pip install 'kx[ray]'\n"
    assert kx("run", "--runner", "rehearse", "--ray-address", "auto").code == 2


@pytest.mark.slow
def test_an_address_that_does_not_answer_is_refused_at_once(kx, small_plan):
    import socket

    from tests.conftest import kx_subprocess

    pytest.importorskip("ray")
    assert kx("plan", "import", str(small_plan)).code == 0
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    done = kx_subprocess("run", "--runner", "rehearse", "--review", "auto", "--executor", "ray", "--ray-address",
                         f"127.0.0.1:{port}", cwd=small_plan.parent)
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"kx: error: cannot reach the Ray cluster at 127.0.0.1:{port} (")


def test_task_resources_come_from_the_plan_config(project):
    from machine.state.config import load_config
    from runners.ray.executor import cluster_address, task_options

    (project / "config.toml").write_text('[defaults.ray]\nnum_gpus = 1\nresources = { agent = 1 }\naddress = "x:1"\n'
                                         '[plans.p.ray]\nnum_cpus = 4\nmemory = 1000\n')
    config = load_config(project, "p").ray
    assert task_options(config) == {"num_cpus": 4, "num_gpus": 1, "memory": 1000, "resources": {"agent": 1},
                                    "max_retries": 0, "retry_exceptions": False}
    assert cluster_address("y:2", config) == "y:2" and cluster_address(None, config) == "x:1"


def test_the_shim_forwards_the_command_line_as_it_is(monkeypatch, project):
    from runners.ray.shim import request

    monkeypatch.setenv("KX_ATTEMPT", "PART-7#2")
    monkeypatch.setenv("KX_RAY_SOCKET", "/tmp/kx.sock")
    for argv in (["--json", "tick", "PART-7", "1", "2.3"], ["tick", "PART-7", "-h"], ["plan", "import"], [], ["--nope"]):
        message = request(argv)
        assert message == {"op": "kx", "argv": argv, "cwd": str(project), "env": message["env"]}
        assert message["env"]["KX_ATTEMPT"] == "PART-7#2" and all(name.startswith("KX_") for name in message["env"])


def test_a_runner_call_runs_the_cli_here_on_the_supervisor_s_ledger(kx, small_plan, project):
    """What ``kx run --executor ray`` does with a runner's ``kx`` from a node: the real CLI, in this process."""
    from cli.main import run_for_runner
    from machine.acts.workspace import Workspace

    assert kx("plan", "import", str(small_plan)).code == 0
    assert kx("start", "PART-1").code == 0
    (project / "d.md").write_text("drop")
    asked = []

    class Call:  # as runners.ray_executor.NodeCall: the ledger is the one given, whatever --ledger says
        workspace = Workspace.open(str(project / ".kx" / "ledger.db"))
        env = {"KX_ATTEMPT": "PART-1#1", "KX_LEDGER": str(project / "nowhere.db")}

        def __init__(self, *argv):
            self.argv = list(argv)

        def admit(self, command):
            asked.append(command)

        def here(self, path):
            asked.append(path)
            return str(project / path)

    code, out, err = run_for_runner(Call("--ledger", "nowhere.db", "--json", "tick", "PART-1", "1"))
    assert (code, err) == (0, "") and json.loads(out)["part"] == "PART-1"
    code, out, err = run_for_runner(Call("drop", "PART-1", "d.md"))
    assert (code, err) == (0, "") and "PART-1: drop d.md recorded" in out
    assert asked == ["nowhere.db", "tick", "drop", "d.md"]  # only path arguments are taken for paths on the node
    assert [e["data"].get("attempt") for e in history(kx, "PART-1")[-2:]] == ["PART-1#1", "PART-1#1"]
    code, out, err = run_for_runner(Call("tick", "PART-1", "-h"))
    assert code == 0 and out.startswith("Usage: kx tick") and not err
    assert "KX_ATTEMPT" not in os.environ


@pytest.mark.slow
def test_a_ray_attempt_whose_supervisor_died_is_lost(kx, small_plan):
    import socket

    from ledger.events.models import RunnerStarted
    from ledger.store import Ledger

    assert kx("plan", "import", str(small_plan)).code == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Ledger.open(small_plan.parent / ".kx" / "ledger.db").append([RunnerStarted(
        plan="plan", part="PART-1", attempt="PART-1#1", executor="ray", owner_pid=dead.pid,
        owner_started=time.time() - 5, host=socket.gethostname())])
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "lost"
    reason = history(kx, "PART-1")[-1]["data"]["reason"]
    assert reason == f"its supervisor (pid {dead.pid}), which held its Ray task, is gone"
