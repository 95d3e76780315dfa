"""``kx consolidate`` in a temporary git repository."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import FRESH
from tests.test_actions import complete


def git(project, *args):
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(project):
    git(project, "init", "-q")
    git(project, "config", "user.email", "kx@example.com")
    git(project, "config", "user.name", "kx tests")
    return project


def run_small_plan(kx, project):
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            kx("start", part)
            assert complete(kx, project, part, f"{part}#1").code == 0
            (project / "topics").mkdir(exist_ok=True)
            (project / "topics" / f"{int(part[5:]) - 1:02d}-x.md").write_text(f"# {part}\n")
        assert kx("review", str(batch), "--approve", "--by", "rita", "--note", f"batch {batch} fine").code == 0


def test_consolidate_waits_for_every_batch(kx, small_plan, repo):
    kx("plan", "import", "plan.md")
    result = kx("consolidate")
    assert result.code == 3 and "batch 1 is open; batch 2 is locked" in result.err


def test_consolidate_commits_once_and_is_idempotent(kx, small_plan, repo):
    (repo / "INDEX.md").write_text("# My index\r\n\r\nkept as written\r\n")
    git(repo, "add", "plan.md", "INDEX.md", "influences")  # the knowledge already there
    git(repo, "commit", "-qm", "start")
    kx("plan", "import", "plan.md")
    for n, name in ((1, "00-alpha"), (2, "01-beta"), (3, "02-gamma"), (4, "03-delta")):
        (repo / "topics").mkdir(exist_ok=True)
        (repo / "topics" / f"{name}.md").write_text(f"# Knowledge {n}\n")
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            kx("start", part)
            assert complete(kx, repo, part, f"{part}#1").code == 0
        assert kx("review", str(batch), "--approve", "--by", "rita", "--note", f"batch {batch} fine").code == 0
    result = kx("--json", "consolidate", "--commit", "--skill", "SKILL.md")
    assert result.code == 0, result.err
    commit = result.json["commit"]
    assert git(repo, "rev-parse", "HEAD").strip() == commit
    message = git(repo, "log", "-1", "--format=%B")
    assert "4 PARTs in 2 batches, 4 succeeded, 0 failed" in message and "approved by rita" in message
    files = git(repo, "show", "--name-status", "--format=", "HEAD")
    assert "R100\tplan.md\tcompleted/plan.md" not in files  # the plan was rendered before it moved
    assert "completed/plan.md" in files and "topics/00-alpha.md" in files and "drops/PART-1.md" in files
    index = (repo / "INDEX.md").read_bytes()
    assert index.startswith(b"# My index\r\n\r\nkept as written\r\n")
    assert b"- [topics/00-alpha.md](topics/00-alpha.md) \xe2\x80\x94 PART-1: Alpha Topic (~100 lines)\r\n" in index
    assert "Knowledge 1" in (repo / "SKILL.md").read_text()
    moved = (repo / "completed" / "plan.md").read_text()
    assert "- [x] PART 1: Create topics/00-alpha.md (Completed 2025-11-20 10:00)" in moved
    assert not (repo / "plan.md").exists()
    report = (repo / "completed" / "plan.consolidation.md").read_text()
    size = (repo / "topics" / "00-alpha.md").stat().st_size  # its "# Knowledge 1" and the headings of its sections
    assert f"| PART-1 | succeeded | topics/00-alpha.md | {size} B | 1 | 0 |" in report and "drop of PART-1" in report
    status = kx("--json", "status").json
    assert status["consolidated"] and status["path"] == "completed/plan.md"
    again = kx("--json", "consolidate", "--commit")
    assert again.json["action"] == "unchanged" and git(repo, "rev-parse", "HEAD").strip() == commit
    assert git(repo, "status", "--porcelain") == ""
    assert kx("render", "--check").code == 0


def test_marked_blocks_are_replaced_in_place(tmp_path):
    from machine.consolidate import update_block

    index = tmp_path / "INDEX.md"
    update_block(index, "p", ["one"])
    assert index.read_text() == "<!-- kx:begin p -->\none\n<!-- kx:end p -->\n"
    index.write_text("before\n" + index.read_text() + "after\n")
    update_block(index, "p", ["two"])
    update_block(index, "q", ["three"])
    assert index.read_text() == ("before\n<!-- kx:begin p -->\ntwo\n<!-- kx:end p -->\nafter\n\n"
                                 "<!-- kx:begin q -->\nthree\n<!-- kx:end q -->\n")
    before = index.read_bytes()
    update_block(index, "p", ["two"])
    assert index.read_bytes() == before


def test_unrelated_staged_changes_are_refused(kx, small_plan, repo):
    kx("plan", "import", "plan.md")
    run_small_plan(kx, repo)
    (repo / "other.txt").write_text("unrelated")
    git(repo, "add", "other.txt")
    result = kx("consolidate", "--commit")
    assert result.code == 3 and "unrelated staged changes (other.txt)" in result.err
    assert not kx("--json", "status").json["consolidated"]


def test_commit_needs_a_work_tree(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    run_small_plan(kx, project)
    assert kx("consolidate", "--commit").code == 3
    assert kx("consolidate").code == 0  # without --commit a plain folder is fine
    assert (project / "completed" / "plan.md").exists()


@pytest.mark.slow
def test_bundled_plan_after_a_rehearsal_run(kx, repo):
    shutil.copy(FRESH, repo / "plan.md")
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    kx("plan", "import", "plan.md")
    env_run = subprocess.run([sys.executable, "-m", "cli.main", "run", "--runner", "rehearse", "--review", "auto"],
                             cwd=repo, capture_output=True, timeout=300)
    assert env_run.returncode == 0, env_run.stderr.decode()
    assert kx("consolidate", "--commit").code == 0
    index = (repo / "INDEX.md").read_text()
    assert all(f"vlm-mastery/0{n}-" in index for n in range(9))
    assert (repo / "completed" / "plan.md").exists()
    assert "9 PARTs in 2 batches, 9 succeeded" in git(repo, "log", "-1", "--format=%B")
    head = git(repo, "rev-parse", "HEAD")
    assert kx("consolidate", "--commit").code == 0 and git(repo, "rev-parse", "HEAD") == head
