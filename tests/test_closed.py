"""One consolidation at a time, and a consolidated plan closed to every act until its consolidation is withdrawn."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import event_count
from tests.test_consolidate import committed_plan, repo  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow  # each makes a git repository

ACTS = [
    ["start", "PART-1"], ["tick", "PART-1", "1"], ["untick", "PART-1", "1"], ["drop", "PART-1", "INDEX.md"],
    ["finish", "PART-1"], ["fail", "PART-1", "--reason", "late"], ["retry", "PART-1"],
    ["review", "2", "--approve"], ["reopen", "PART-1", "--reason", "again"],
]


@pytest.mark.parametrize("argv", ACTS, ids=[" ".join(a[:2]) for a in ACTS])
def test_a_consolidated_plan_refuses_every_act(kx, small_plan, repo, argv):
    committed_plan(kx, repo)
    assert kx("consolidate").code == 0
    before = event_count(repo)
    refused = kx(*argv)
    assert refused.code == 3, refused.err
    assert "is consolidated" in refused.err and "--withdraw-consolidation" in refused.err
    assert event_count(repo) == before


def test_a_revision_of_a_consolidated_plan_is_refused(kx, small_plan, repo):
    committed_plan(kx, repo)
    assert kx("consolidate").code == 0
    moved = repo / "completed" / "plan.md"
    moved.write_text(moved.read_text() + "\n- [ ] a box added later\n")
    before = event_count(repo)
    assert kx("plan", "import", "completed/plan.md").code == 3 and event_count(repo) == before


def test_withdrawing_the_consolidation_reopens_and_the_next_consolidate_redoes_it(kx, small_plan, repo):
    committed_plan(kx, repo)
    assert kx("consolidate").code == 0
    assert kx("reopen", "PART-1", "--reason", "x").code == 3
    withdrawn = kx("--json", "reopen", "PART-1", "--reason", "the index missed a file", "--withdraw-consolidation")
    assert withdrawn.code == 0, withdrawn.err
    event = [e for e in kx("--json", "audit", "history", "PART-1").json["events"] if e["type"] == "PartReopened"][-1]
    assert event["data"]["withdrew_consolidation"] is True
    assert not kx("--json", "status").json["consolidated"]
    assert kx("--json", "reopen", "PART-2", "--reason", "y", "--withdraw-consolidation").code == 2  # not consolidated
    assert kx("start", "PART-1").code == 0  # open again
    assert kx("consolidate").code == 3  # batch 1 needs its review again first
    assert kx("audit", "verify").code == 0


def test_verify_finds_an_act_recorded_on_a_consolidated_plan_behind_kx(kx, small_plan, repo):
    from ledger.events.models import PartRetried
    from ledger.store import Ledger

    committed_plan(kx, repo)
    assert kx("consolidate").code == 0
    ledger = Ledger.open(repo / ".kx" / "ledger.db")
    ledger.append([PartRetried(plan="plan", part="PART-1", by="someone")])
    ledger.close()
    findings = kx("--json", "audit", "verify").json["findings"]
    assert any("is consolidated" in finding for finding in findings), findings


def test_a_second_consolidate_while_the_first_works_exits_3_naming_it(kx, small_plan, repo):
    committed_plan(kx, repo)
    lock = repo / ".kx" / "consolidating-plan.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, json.dumps({'pid': os.getpid(), 'since': 'then'}).encode())\nprint('held', flush=True)\n"
        "time.sleep(30)\n"), str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = event_count(repo)
        refused = kx("consolidate", "--commit")
        assert refused.code == 3 and f"another kx consolidate (pid {holder.pid}, since then)" in refused.err
        assert event_count(repo) == before and not (repo / "INDEX.md").exists()
    finally:
        holder.kill()
        holder.wait()
    assert kx("consolidate", "--commit").code == 0  # the lock went with its process
    assert kx("--json", "consolidate", "--commit").json["action"] == "unchanged"


def test_two_consolidations_at_once_make_one_commit(kx, small_plan, repo):
    committed_plan(kx, repo)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    runs = [subprocess.Popen([sys.executable, "-m", "cli.main", "consolidate", "--commit"], cwd=repo, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and set(codes) <= {0, 3}, results
    assert all("another kx consolidate" in err for code, err in results if code == 3)
    log = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True).stdout
    assert sum(line.startswith("Consolidate") for line in log.splitlines()) == 1
    assert not (repo / "plan.md").exists() and (repo / "completed" / "plan.md").is_file()
    assert json.loads(kx("--json", "status").text)["consolidated"]
