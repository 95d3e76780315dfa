"""``kx plan import`` of a revised file: what the revision changed, a person's unticks, boxes added to done PARTs."""

from __future__ import annotations

import getpass

import pytest

from tests.conftest import SMALL_PLAN, events_of, on_a_terminal

DONE_PART_1 = SMALL_PLAN.replace("- [ ] PART 1: Create topics/00-alpha.md",
                                 "- [x] PART 1: Create topics/00-alpha.md (Completed 2025-11-14 10:00)")
for _box in ("Read influences/00-alpha.md", "Section 1: Alpha overview", "Section 2: Alpha details",
             "Section 2a: nested detail", "Create KNOWLEDGE-DROP-alpha"):
    DONE_PART_1 = DONE_PART_1.replace(f"[ ] {_box}", f"[x] {_box}")


def _import(kx, project, text):
    (project / "plan.md").write_text(text, encoding="utf-8")
    result = kx("--json", "plan", "import", "plan.md")
    assert result.code == 0, result.err
    return result.json


def _changes(result, kind=None):
    return [c for c in result["changes"] if kind is None or c["kind"] == kind]


def _parts(kx):
    return {p["id"]: p for b in kx("--json", "status").json["batches"] for p in b["parts"]}


def test_a_tick_a_person_removed_in_the_file_is_recorded_as_their_untick(kx, small_plan, project):
    _import(kx, project, DONE_PART_1)
    result = _import(kx, project, DONE_PART_1.replace("[x] Section 2: Alpha details", "[ ] Section 2: Alpha details"))
    [change] = _changes(result)
    assert change == {"kind": "unticked", "part": "PART-1", "box": "1.2", "text": "Section 2: Alpha details",
                      "recorded": True, "message": "PART-1: box 1.2 'Section 2: Alpha details' unticked in the file:"
                      f" recorded as unticked by {getpass.getuser()}"}
    untick = events_of(kx)[-1]
    assert untick["type"] == "CheckboxUnticked" and untick["data"]["by"] == getpass.getuser()
    assert (_parts(kx)["PART-1"]["ticked"], _parts(kx)["PART-1"]["total"]) == (4, 5)
    text = kx("plan", "import", "plan.md")
    assert text.code == 0 and "unchanged" in text.text
    assert kx("render", "--check").code == 0  # the file and the ledger agree
    assert kx("audit", "verify").code == 0


def test_an_untick_the_rules_refuse_is_said_and_the_tick_kept(kx, small_plan, project):
    ticked = DONE_PART_1.replace("- [ ] Section 1: Gamma overview", "- [x] Section 1: Gamma overview")
    _import(kx, project, ticked)
    assert kx("reopen", "PART-1", "--reason", "redo it").code == 0  # batch 2 locks until batch 1 is approved again
    before = len(events_of(kx))
    result = _import(kx, project, ticked.replace("- [x] Section 1: Gamma overview", "- [ ] Section 1: Gamma overview"))
    [change] = _changes(result, "unticked")
    assert change["recorded"] is False and change["part"] == "PART-3"
    assert "not recorded: gate: PART-3 is in batch 2, locked until batch 1 is approved" in change["message"]
    assert "the ledger keeps the tick" in change["message"]
    assert [e["type"] for e in events_of(kx)[before:]] == ["PlanRevised"]
    assert _parts(kx)["PART-3"]["ticked"] == 1


def test_a_stale_file_does_not_undo_what_the_ledger_did_since(kx, small_plan, project):
    _import(kx, project, DONE_PART_1)
    assert kx("reopen", "PART-1", "--reason", "no evidence").code == 0
    before = len(events_of(kx))
    result = _import(kx, project, DONE_PART_1 + "\nA note a person added.\n")  # the file still shows the old ticks
    assert [e["type"] for e in events_of(kx)[before:]] == ["PlanRevised"]
    assert _parts(kx)["PART-1"]["state"] == "pending" and _parts(kx)["PART-1"]["ticked"] == 0
    kinds = [c["kind"] for c in _changes(result)]
    assert kinds == ["kept_unticked", "kept_state"]
    assert "5 boxes ticked in the file were unticked in the ledger since; kept unticked" in result["changes"][0]["message"]
    assert "PART-1 ticked Completed in the file is pending in the ledger; kept" in result["changes"][1]["message"]


def test_ticks_the_ledger_recorded_that_the_file_does_not_show_are_kept_and_said(kx, small_plan, project):
    _import(kx, project, SMALL_PLAN)
    assert kx("tick", "PART-2", "1.1", "1.2").code == 0  # recorded, not rendered into the file
    result = _import(kx, project, SMALL_PLAN + "\nA note.\n")
    [change] = _changes(result)
    assert change["kind"] == "kept_ticked" and change["boxes"] == ["1.1", "1.2"]
    assert change["message"] == ("PART-2: 2 boxes ticked in the ledger are unticked in the file (1.1, 1.2); kept"
                                 " ('kx render' writes them; if a person unticked them: kx untick PART-2 1.1 1.2)")
    assert _parts(kx)["PART-2"]["ticked"] == 2


def test_a_revision_says_what_it_changed_one_line_each(kx, small_plan, project):
    _import(kx, project, SMALL_PLAN.replace("- [ ] Section 2: Beta details", "- [x] Section 2: Beta details"))
    revised = (SMALL_PLAN
               .replace("- [ ] Section 2: Beta details\n", "")  # removed, and it was ticked
               .replace("- [ ] Section 1: Beta overview", "- [x] Section 1: Beta overview")  # a person's tick
               .replace("- [ ] Section 1: Gamma overview", "- [ ] Section 1: Gamma overview, revised")  # edited
               .replace("- [ ] Section 1: Delta overview\n", "- [ ] Section 1: Delta overview\n- [ ] Section 2: Delta more\n")
               .replace("## PART 4: Delta Topic", "## PART 5: Epsilon Topic\n\n- [ ] PART 5: Create topics/04-e.md\n"
                        "- [ ] Section 1: Epsilon\n\n## PART 4: Delta Topic"))
    result = _import(kx, project, revised)
    lines = [c["message"] for c in _changes(result)]
    assert lines == [
        "PART-2: box 1.2 'Section 2: Beta details' removed; its tick is dropped",
        "PART-2: box 1.1 'Section 1: Beta overview' ticked in the file: recorded (by import)",
        "PART-3: box 1.1 edited: 'Section 1: Gamma overview' → 'Section 1: Gamma overview, revised'",
        "PART-5 added (batch 2, 1 box)",
        "PART-4: box 1.2 'Section 2: Delta more' added",
    ]
    assert result["dropped"] == ["PART-2: Section 2: Beta details"]
    text = kx("plan", "import", "plan.md")  # same bytes: unchanged
    assert "unchanged" in text.text
    (project / "plan.md").write_text(revised.replace("## PART 5: Epsilon Topic\n\n- [ ] PART 5: Create topics/04-e.md\n"
                                                     "- [ ] Section 1: Epsilon\n\n", ""), encoding="utf-8")
    shown = kx("plan", "import", "plan.md").text.splitlines()
    assert shown[1:] == ["PART-5 removed (it was pending)"]


@pytest.mark.slow
def test_a_box_added_to_a_succeeded_part_is_a_finding_status_shows(kx, small_plan, project):
    _import(kx, project, DONE_PART_1)
    added = DONE_PART_1.replace("- [x] Section 2a: nested detail", "- [x] Section 2a: nested detail\n"
                                "- [ ] Section 3: Alpha limits")
    result = _import(kx, project, added)
    finding = "PART-1 succeeded but has a box added since: 5/6; kx reopen PART-1 --reason ..."
    assert [c["message"] for c in _changes(result)] == ["PART-1: box 1.4 'Section 3: Alpha limits' added", finding]
    status = kx("--json", "status").json
    assert status["findings"] == [{"part": "PART-1", "code": "added_since_success", "boxes": ["1.4"],
                                   "message": finding, "fix": "kx reopen PART-1 --reason ..."}]
    part = _parts(kx)["PART-1"]
    assert (part["state"], part["ticked"], part["total"], part["added_since_success"]) == ("succeeded", 5, 6, ["1.4"])
    assert finding in kx("status").text and finding in on_a_terminal(project, "status")
    assert kx("tick", "PART-1", "1.4").code == 0  # a person's tick settles it
    assert kx("--json", "status").json["findings"] == [] and finding not in kx("status").text


def test_a_reopened_part_has_no_added_box_finding(kx, small_plan, project):
    _import(kx, project, DONE_PART_1)
    _import(kx, project, DONE_PART_1.replace("- [x] Section 2a: nested detail",
                                             "- [x] Section 2a: nested detail\n- [ ] Section 3: Alpha limits"))
    assert len(kx("--json", "status").json["findings"]) == 1
    assert kx("reopen", "PART-1", "--reason", "boxes added").code == 0
    assert kx("--json", "status").json["findings"] == []
    assert kx("audit", "verify").code == 0


def test_completed_unticked_in_the_file_is_said_not_undone(kx, small_plan, project):
    _import(kx, project, DONE_PART_1)
    result = _import(kx, project, DONE_PART_1.replace("- [x] PART 1: Create", "- [ ] PART 1: Create"))
    assert [c["message"] for c in _changes(result)] == [
        "PART-1 unticked Completed in the file is succeeded in the ledger; kept (to do it again: kx reopen PART-1"
        " --reason ...)"]
    assert _parts(kx)["PART-1"]["state"] == "succeeded"
