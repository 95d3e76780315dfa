"""``kx run --executor ray``: attempts as Ray tasks on a local Ray instance, the ledger with the supervisor.

One Ray instance (two CPUs, loopback only) serves the module; each run is a
real ``kx run`` process connected to it with ``--ray-address``, as a
supervisor would connect to a cluster.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest

from tests.conftest import REPO
from tests.test_supervisor import batches_map, check_rules_from_events, events_of, plan3, real_env  # noqa: F401

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
    for args in (["drop", "PART-3", str(outside)], ["tick", "PART-3", "1", "--attempt", "PART-3#7"], ["status"]):
        done = subprocess.run(["kx", *args], capture_output=True, text=True)
        print(args[0], done.returncode, done.stderr.strip(), flush=True)
    Path(".kx").mkdir()
    Path(".kx", "ledger.db").write_text("a runner's file where the ledger is")
from runners.rehearse import main
sys.exit(main([]))
"""


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
    assert "drop 2 kx: error: " in log and "outside.md is outside the plan's root" in log
    assert "tick 3 kx: error: stale attempt: PART-3#7 is over" in log
    assert "status 2 kx: error: 'kx status' is not available to a runner on a Ray node" in log
    assert not (project / "outside.md").exists()
    assert "kx ray: .kx/ledger.db not written here: .kx/ledger.db is in kx's folder" in log
    assert kx("audit", "verify").code == 0


@pytest.mark.ray
def test_a_shared_root_is_used_in_place(kx, project, ray_address):
    from tests.test_supervisor import three_batch_plan

    (project / "plan.md").write_text(three_batch_plan(per_batch=2))
    assert kx("plan", "import", "plan.md").code == 0
    (project / ".kx" / "config.toml").write_text("[defaults.ray]\nshared_root = true\nnum_cpus = 0.5\n")
    code, out, err = kx_on_ray(project, ray_address, "run", "--runner", "rehearse", "--review", "auto",
                               "--until-batch", "1")
    assert code == 0, err
    log = (project / ".kx" / "attempts" / "plan" / "PART-1-1" / "runner.log").read_text()
    assert f"root {project}\n" in log
    assert kx("--json", "status").json["batches"][0]["state"] == "awaiting_review"


# --- without Ray ---------------------------------------------------------------------


def test_without_ray_the_executor_says_how_to_install_it(kx, small_plan, monkeypatch):
    assert kx("plan", "import", str(small_plan)).code == 0
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    result = kx("run", "--runner", "rehearse", "--review", "auto", "--executor", "ray")
    assert result.code == 2
    assert result.err == "kx: error: --executor ray needs Ray on this machine: pip install 'kx[ray]'\n"
    assert kx("run", "--runner", "rehearse", "--ray-address", "auto").code == 2


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
    from machine.config import load_config
    from runners.ray_executor import cluster_address, task_options

    (project / "config.toml").write_text('[defaults.ray]\nnum_gpus = 1\nresources = { agent = 1 }\naddress = "x:1"\n'
                                         '[plans.p.ray]\nnum_cpus = 4\nmemory = 1000\n')
    config = load_config(project, "p").ray
    assert task_options(config) == {"num_cpus": 4, "num_gpus": 1, "memory": 1000, "resources": {"agent": 1},
                                    "max_retries": 0, "retry_exceptions": False}
    assert cluster_address("y:2", config) == "y:2" and cluster_address(None, config) == "x:1"


def test_the_shim_turns_commands_into_requests(monkeypatch, project):
    from runners.ray_shim import Usage, request

    monkeypatch.setenv("KX_ATTEMPT", "PART-7#2")
    assert request(["--json", "tick", "PART-7", "1", "2.3"]) == (
        {"op": "tick", "part": "PART-7", "refs": ["1", "2.3"], "attempt": "PART-7#2", "by": None}, True)
    assert request(["drop", "PART-7", "d.md"])[0]["path"] == str(project / "d.md")
    assert request(["fail", "PART-7", "--reason", "no"])[0]["reason"] == "no"
    for bad in (["status"], [], ["tick", "PART-7"], ["--nope", "tick"]):
        with pytest.raises(Usage):
            request(bad)


def test_a_ray_attempt_whose_supervisor_died_is_lost(kx, small_plan):
    import socket

    from ledger.events import RunnerStarted
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
