"""Drops and targets are hashed when recorded and again at review, `kx audit verify` and `kx consolidate`."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

from tests.conftest import complete, event_count, write

TARGETS = {"PART-1": "topics/00-alpha.md", "PART-2": "topics/01-beta.md", "PART-3": "topics/02-gamma.md",
           "PART-4": "topics/03-delta.md"}


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


def run_batch(kx, project, batch, parts, approve=True):
    for part in parts:
        kx("start", part)
        write(project, TARGETS[part], f"# {part}\n")
        assert complete(kx, project, part, f"{part}#1").code == 0
    if approve:
        assert kx("review", str(batch), "--approve", "--by", "rita").code == 0


def run_all(kx, project):
    run_batch(kx, project, 1, ("PART-1", "PART-2"))
    run_batch(kx, project, 2, ("PART-3", "PART-4"))


def findings(kx) -> list[str]:
    result = kx("--json", "audit", "verify")
    assert result.code == (1 if result.json["findings"] else 0)
    return result.json["findings"]


@dataclass
class Raw:
    """An event as a newer kx may write it (a RunnerSucceeded with its target's hash), appended behind kx."""

    type: str
    plan: str
    stream: str
    payload: dict = field(default_factory=dict)
    schema_version: int = 1

    def data(self) -> dict:
        return self.payload


# --- kx audit verify -------------------------------------------------------------------------------


def test_verify_finds_each_drop_changed_or_gone_since_it_was_recorded(kx, plan, project):
    run_batch(kx, project, 1, ("PART-1", "PART-2"), approve=False)
    assert findings(kx) == []
    (project / "drops" / "PART-1.md").write_text("edited afterwards\n")
    (project / "drops" / "PART-2.md").unlink()
    assert findings(kx) == ["plan plan: PART-1: drop drops/PART-1.md changed since it was recorded",
                            "plan plan: PART-2: drop drops/PART-2.md is gone"]


def test_verify_finds_a_target_changed_since_its_success_recorded_it(kx, plan, project):
    kx("start", "PART-1")
    assert complete(kx, project, "PART-1", "PART-1#1").code == 0  # its success records the target's hash
    assert findings(kx) == []
    (project / "topics" / "00-alpha.md").write_text("# Alpha, rewritten by hand\n")
    assert findings(kx) == ["plan plan: PART-1: target topics/00-alpha.md changed since it was recorded"]


def test_verify_does_not_check_a_drop_that_was_cleared(kx, plan, project):
    run_batch(kx, project, 1, ("PART-1", "PART-2"), approve=False)
    assert kx("review", "1", "--reject", "PART-1").code == 0
    (project / "drops" / "PART-1.md").unlink()
    assert findings(kx) == []


# --- the review packet ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_review_packet_shows_files_changed_or_gone(kx, plan, project):
    from cli.progress import Progress
    from machine.acts.workspace import Workspace
    from runners.supervisor.loop import RunOptions, Supervisor

    run_batch(kx, project, 1, ("PART-1", "PART-2"), approve=False)
    (project / "drops" / "PART-1.md").write_text("edited afterwards\n")
    (project / "drops" / "PART-2.md").unlink()
    stream = io.StringIO()
    options = RunOptions(command=["true"], review="prompt")
    result = Supervisor(Workspace.open(), options, Progress(stream), lambda q, c: "quit").run()
    assert result.outcome == "stopped"
    shown = stream.getvalue()
    assert "drop drops/PART-1.md changed since it was recorded" in shown
    assert "drop drops/PART-2.md is gone" in shown


def test_the_packet_lists_changed_files_per_part(kx, plan, project):
    from machine.acts.workspace import Workspace
    from machine.outputs.packet import batch_packet

    run_batch(kx, project, 1, ("PART-1", "PART-2"), approve=False)
    (project / "drops" / "PART-2.md").unlink()
    workspace = Workspace.open()
    packet = batch_packet(workspace.state(), 1, workspace.resolve)
    assert [p["files"] for p in packet["parts"]] == [
        [], [{"kind": "drop", "path": "drops/PART-2.md", "problem": "gone"}]]
    assert batch_packet(workspace.state(), 1)["parts"][1]["files"] == []  # without files to look at: unchecked


# --- kx consolidate ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_consolidation_refuses_files_changed_or_gone_unless_allowed(kx, plan, project):
    run_all(kx, project)
    (project / "drops" / "PART-1.md").write_text("edited afterwards\n")
    (project / "topics" / "01-beta.md").unlink()
    before = event_count(project)
    refused = kx("consolidate")
    assert refused.code == 3 and refused.err.count("\n") == 1
    assert "drops/PART-1.md changed since it was recorded" in refused.err
    assert "topics/01-beta.md" in refused.err and "--allow-missing" in refused.err
    assert event_count(project) == before
    assert not (project / "INDEX.md").exists() and (project / "plan.md").exists()

    result = kx("--json", "consolidate", "--allow-missing")
    assert result.code == 0, result.err
    assert result.json["knowledge_files"] == 3 and len(result.json["missing"]) == 2
    index = (project / "INDEX.md").read_text()
    assert "--allow-missing" in index and "drops/PART-1.md changed since it was recorded" in index
    assert "- [topics/01-beta.md](topics/01-beta.md) — PART-2: Beta Topic (~100 lines) (missing)" in index
    report = (project / "completed" / "plan.consolidation.md").read_text()
    assert "--allow-missing" in report and "topics/01-beta.md" in report
    consolidated = kx("--json", "events").json["events"][-1]
    assert consolidated["type"] == "PlanConsolidated" and len(consolidated["data"]["allowed_missing"]) == 2


@pytest.mark.slow
def test_consolidation_counts_files_that_exist_and_every_lost_failed_and_retried_attempt(kx, plan, project):
    from machine.acts.lifecycle import lose
    from machine.acts.workspace import Workspace

    kx("start", "PART-1")
    kx("fail", "PART-1", "--reason", "timeout", "--attempt", "PART-1#1")
    kx("retry", "PART-1")
    kx("start", "PART-2")
    lose(Workspace.open(), "PART-2", "PART-2#1", "runner died")
    kx("retry", "PART-2")
    for part in ("PART-1", "PART-2"):
        kx("start", part)
        assert complete(kx, project, part, f"{part}#2").code == 0
        write(project, TARGETS[part], f"# {part}\n")
    assert kx("review", "1", "--approve").code == 0
    run_batch(kx, project, 2, ("PART-3", "PART-4"))
    (project / TARGETS["PART-4"]).unlink()
    result = kx("consolidate", "--allow-missing")
    assert result.code == 0, result.err
    assert "consolidated 3 knowledge files" in result.text
    report = (project / "completed" / "plan.consolidation.md").read_text()
    assert "6 attempts: 1 lost, 1 failed, 2 retried" in report
