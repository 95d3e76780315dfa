"""``kx consolidate`` in a temporary git repository."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import FRESH, FROZEN_AT, complete


def git(project, *args):
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(project):
    git(project, "init", "-q")
    git(project, "config", "user.email", "kx@example.com")
    git(project, "config", "user.name", "kx tests")
    return project


KNOWLEDGE = {"PART-1": "00-alpha", "PART-2": "01-beta", "PART-3": "02-gamma", "PART-4": "03-delta"}


def run_small_plan(kx, project):
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            kx("start", part)
            assert complete(kx, project, part, f"{part}#1").code == 0
        assert kx("review", str(batch), "--approve", "--by", "rita", "--note", f"batch {batch} fine").code == 0


@pytest.mark.slow
def test_consolidate_waits_for_every_batch(kx, small_plan, repo):
    kx("plan", "import", "plan.md")
    result = kx("consolidate")
    assert result.code == 3 and "batch 1 is open; batch 2 is locked" in result.err


@pytest.mark.slow
def test_consolidate_commits_once_and_is_idempotent(kx, small_plan, repo, monkeypatch):
    monkeypatch.setenv("KX_NOW", FROZEN_AT)  # the Completed stamps: a slow test runs on the real clock
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
    digest = kx("audit", "digest").text.strip()  # PlanConsolidated came after: the digest is of the events before it
    anchored = next(line.split(": ")[1] for line in message.splitlines() if line.startswith("Kx-Ledger-Digest: "))
    assert int(anchored.split(":")[0]) == int(digest.split(":")[0]) - 1
    assert kx("audit", "verify", "--digest", anchored, "--digest", digest).code == 0
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
    assert f"`{anchored}`" in report and f"kx audit verify --digest {anchored}" in report
    status = kx("--json", "status").json
    assert status["consolidated"] and status["path"] == "completed/plan.md"
    again = kx("--json", "consolidate", "--commit")
    assert again.json["action"] == "unchanged" and git(repo, "rev-parse", "HEAD").strip() == commit
    assert git(repo, "status", "--porcelain") == ""
    assert kx("render", "--check").code == 0


def test_marked_blocks_are_replaced_in_place(tmp_path):
    from machine.outputs.consolidate import update_block
    from machine.plan.paths import PathGuard

    index, guard = tmp_path / "INDEX.md", PathGuard.around(tmp_path)
    update_block(guard, index, "p", ["one"])
    assert index.read_text() == "<!-- kx:begin p -->\none\n<!-- kx:end p -->\n"
    index.write_text("before\n" + index.read_text() + "after\n")
    update_block(guard, index, "p", ["two"])
    update_block(guard, index, "q", ["three"])
    assert index.read_text() == ("before\n<!-- kx:begin p -->\ntwo\n<!-- kx:end p -->\nafter\n\n"
                                 "<!-- kx:begin q -->\nthree\n<!-- kx:end q -->\n")
    before = index.read_bytes()
    update_block(guard, index, "p", ["two"])
    assert index.read_bytes() == before


@pytest.mark.slow
def test_unrelated_staged_changes_are_refused(kx, small_plan, repo):
    kx("plan", "import", "plan.md")
    run_small_plan(kx, repo)
    (repo / "other.txt").write_text("unrelated")
    git(repo, "add", "other.txt")
    result = kx("consolidate", "--commit")
    assert result.code == 3 and "unrelated staged changes (other.txt)" in result.err
    assert not kx("--json", "status").json["consolidated"]


@pytest.mark.slow
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


# --- a transaction: every check first, side effects re-runnable, PlanConsolidated last --------


def consolidations(project):
    import sqlite3

    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM events WHERE type = 'PlanConsolidated'").fetchone()[0]


def committed_plan(kx, repo):
    git(repo, "add", "plan.md", "influences")  # the plan and the knowledge already there
    git(repo, "commit", "-qm", "start")
    kx("plan", "import", "plan.md")
    run_small_plan(kx, repo)


def ignore_beta(repo):
    (repo / ".gitignore").write_text("topics/01-beta.md\n")
    return lambda: (repo / ".gitignore").unlink()


def nested_repository(repo):
    git(repo / "topics", "init", "-q")  # topics/ is another work tree: git add skips its files
    return lambda: shutil.rmtree(repo / "topics" / ".git")


@pytest.mark.slow
@pytest.mark.parametrize(("make", "why"), [(ignore_beta, "is ignored by git"),
                                           (nested_repository, "is outside the git work tree")],
                         ids=["ignored", "outside the work tree"])
def test_a_file_git_cannot_add_refuses_before_any_side_effect(kx, small_plan, repo, make, why):
    committed_plan(kx, repo)
    undo = make(repo)
    plan, status, events = small_plan.read_bytes(), git(repo, "status", "--porcelain"), consolidations(repo)
    result = kx("consolidate", "--commit")
    assert result.code == 3 and "topics/01-beta.md" in result.err and why in result.err, result.err
    assert not (repo / "INDEX.md").exists() and not (repo / "completed").exists()
    assert small_plan.read_bytes() == plan and git(repo, "status", "--porcelain") == status
    assert git(repo, "diff", "--cached", "--name-only") == "" and consolidations(repo) == events == 0
    undo()
    assert kx("consolidate", "--commit").code == 0
    assert "topics/01-beta.md" in git(repo, "show", "--name-only", "--format=", "HEAD")
    assert consolidations(repo) == 1


class Crash(BaseException):
    """The process killed at that point: nothing after it runs (not even an error handler)."""


CRASHES = [("machine.outputs.consolidate", "update_block"), ("machine.outputs.git", "move"), ("machine.outputs.git", "stage"),
           ("machine.outputs.git", "commit_staged")]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "name"), CRASHES, ids=[f"after {name}" for _, name in CRASHES])
def test_a_run_killed_between_side_effects_is_finished_by_the_next(kx, small_plan, repo, monkeypatch, module,
                                                                   name):
    import importlib

    committed_plan(kx, repo)
    where = importlib.import_module(module)
    real = getattr(where, name)

    def then_crash(*args, **kwargs):
        real(*args, **kwargs)
        raise Crash(name)

    with monkeypatch.context() as patch:
        patch.setattr(where, name, then_crash)
        with pytest.raises(Crash):
            kx("consolidate", "--commit")
    assert consolidations(repo) == 0
    result = kx("--json", "consolidate", "--commit")
    assert result.code == 0 and result.json["action"] == "consolidated", result.err
    assert consolidations(repo) == 1
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"  # the start, and one consolidation
    assert result.json["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "INDEX.md").read_text().count("<!-- kx:begin plan -->") == 1
    assert (repo / "completed" / "plan.md").exists() and not small_plan.exists()
    assert kx("--json", "consolidate", "--commit").json["action"] == "unchanged"


@pytest.mark.slow
def test_a_run_started_while_another_works_is_refused_naming_it(kx, small_plan, repo, monkeypatch):
    import os

    import machine.outputs.git
    from ledger.errors import Refused
    from machine.acts.workspace import Workspace
    from machine.outputs.consolidate import consolidate

    committed_plan(kx, repo)
    real = machine.outputs.git.commit_staged
    refusals = []

    def and_another_run(*args, **kwargs):
        other = Workspace.open(str(repo / ".kx" / "ledger.db"))
        with pytest.raises(Refused) as refused:
            consolidate(other, index=None, skill=None, completed_dir=None, commit=True, by="other")
        refusals.append(refused.value.message)
        return real(*args, **kwargs)

    monkeypatch.setattr(machine.outputs.git, "commit_staged", and_another_run)
    result = kx("--json", "consolidate", "--commit")
    assert result.code == 0 and result.json["action"] == "consolidated"
    assert refusals == [refusals[0]] and f"another kx consolidate (pid {os.getpid()}, since" in refusals[0]
    assert consolidations(repo) == 1 and git(repo, "rev-list", "--count", "HEAD").strip() == "2"


@pytest.mark.slow
def test_missing_knowledge_is_refused_unless_allowed(kx, small_plan, repo):
    committed_plan(kx, repo)
    (repo / "topics" / "01-beta.md").unlink()
    (repo / "drops" / "PART-3.md").write_text("changed\n")
    result = kx("consolidate")
    assert result.code == 3 and "PART-2: target topics/01-beta.md does not exist" in result.err
    assert "PART-3: drop drops/PART-3.md changed since it was recorded" in result.err
    assert not (repo / "INDEX.md").exists() and small_plan.exists()
    assert kx("consolidate", "--allow-missing").code == 0
    assert "topics/01-beta.md) — PART-2: Beta Topic (~100 lines) (missing)" in (repo / "INDEX.md").read_text()
    assert "- PART-2: target topics/01-beta.md does not exist" in (repo / "completed" / "plan.consolidation.md").read_text()
