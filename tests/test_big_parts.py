"""A PART of tens of thousands of boxes: resolved in linear time, and its attempt neither lost nor run stale."""

from __future__ import annotations

import pytest

from machine.acts.workspace import Workspace
from machine.plan.parser import parse
from runners.local import wrapper

BOXES = 20_000


def big_plan(boxes: int = BOXES) -> str:
    lines = ["# BATCH 1: Big", "", "## PART 1: Many boxes", "", "- [ ] PART 1: Create out/big.md", "",
             "**Step 1: Work**"]
    lines += [f"- [ ] Section {n}: topic number {n}" for n in range(1, boxes + 1)]
    return "\n".join(lines) + "\n"


def test_every_box_of_a_big_part_has_its_ref_once():
    part = parse(big_plan()).parts[0]
    refs = [part.ref(box) for box in part.boxes]
    assert refs[:2] == ["1.1", "1.2"] and refs[-1] == f"1.{BOXES}" and len(set(refs)) == BOXES
    assert part.box(BOXES) is part.boxes[-1]


def test_brief_and_check_of_a_big_part_name_every_box(kx, project):
    (project / "plan.md").write_text(big_plan())
    assert kx("plan", "import", "plan.md").code == 0
    assert len(kx("--json", "brief", "PART-1").json["boxes"]) == BOXES
    boxes = kx("--json", "check", "PART-1").json["boxes"]
    assert len(boxes) == BOXES and boxes[-1]["ref"] == f"1.{BOXES}"


@pytest.fixture
def attempt_folders(kx, small_plan, project, monkeypatch):
    """The wrapper's brief writing, watched: what the attempt's folder held when the brief was written."""
    assert kx("plan", "import", "plan.md").code == 0
    seen = {}
    real = wrapper.write_brief

    def watched(workspace, folder, part, attempt):
        seen["heartbeat"] = (folder / "heartbeat").is_file()
        seen.get("then", lambda: None)()
        return real(workspace, folder, part, attempt)

    monkeypatch.setattr(wrapper, "write_brief", watched)
    return seen


@pytest.mark.slow
def test_the_wrapper_beats_from_its_first_moment(attempt_folders, project):
    assert wrapper.run_attempt(Workspace.open(), "PART-1", ["true"], 60.0) == 1  # no evidence: failed
    assert attempt_folders["heartbeat"]  # already there while the brief was written


def test_a_runner_is_never_started_for_an_attempt_found_lost(attempt_folders, kx, project):
    from machine.acts.lifecycle import lose

    attempt_folders["then"] = lambda: lose(Workspace.open(), "PART-1", "PART-1#1", "no heartbeat (test)")
    marker = project / "ran"
    code = wrapper.run_attempt(Workspace.open(), "PART-1", ["touch", str(marker)], 60.0)
    assert code == 1 and not marker.exists()
    events = [e["type"] for e in kx("--json", "audit", "history", "PART-1").json["events"]]
    assert events[-2:] == ["RunnerStarted", "RunnerLost"]
