"""Work the import recorded as done is marked as such, and checked like any other (CONTRACT section 7)."""

from __future__ import annotations

import pytest

from tests.conftest import complete, event_count

GARBAGE = b"garbage\n"  # 8 bytes standing for PART-2's knowledge file


def user_plan_with_garbage(kx, project):
    assert kx("plan", "import", "plan.md").code == 0
    (project / "vlm-mastery").mkdir()
    (project / "vlm-mastery" / "01-mid-fusion-architectures.md").write_bytes(GARBAGE)


def test_status_marks_every_success_the_import_recorded(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    status = kx("--json", "status").json
    parts = {p["id"]: p for batch in status["batches"] for p in batch["parts"]}
    assert {part for part, view in parts.items() if view.get("imported")} == {f"PART-{n}" for n in range(1, 10)}
    assert kx("reopen", "PART-1", "PART-3", "PART-7", "PART-8", "PART-9", "--reason", "no evidence").code == 0
    status = kx("--json", "status").json
    assert [p["id"] for b in status["batches"] for p in b["parts"] if p.get("imported")] == [
        "PART-2", "PART-4", "PART-5", "PART-6"]
    text = kx("status").text
    assert "imported: PART-2, PART-4, PART-5, PART-6 succeeded on the imported file's word" in text
    assert "  PART-2  succeeded  16/16  attempts 0  imported" in text


@pytest.mark.slow
def test_consolidate_checks_imported_knowledge_files_and_refuses_garbage(kx, seed_plan, project):
    user_plan_with_garbage(kx, project)
    assert kx("review", "2", "--approve").code == 0
    before = event_count(project)
    refused = kx("consolidate")
    assert refused.code == 3
    assert ("PART-2 (imported): vlm-mastery/01-mid-fusion-architectures.md has no heading for 8 of 8 Section boxes"
            in refused.err)
    assert "does not name File 2, File 6, File 9" in refused.err and "--allow-missing" in refused.err
    assert event_count(project) == before and not (project / "INDEX.md").exists()
    allowed = kx("--json", "consolidate", "--allow-missing")
    assert allowed.code == 0 and any(m.startswith("PART-2 (imported)") for m in allowed.json["missing"])
    index = (project / "INDEX.md").read_text()
    assert "Consolidated with --allow-missing: 9 PARTs with files changed, missing or failing the checks" in index


def test_check_without_a_part_checks_every_part(kx, seed_plan, project):
    user_plan_with_garbage(kx, project)
    result = kx("--json", "check")
    assert result.code == 1 and not result.json["ok"]
    part_2 = result.json["parts"][1]
    assert (part_2["part"], part_2["state"], part_2["imported"], part_2["ok"]) == ("PART-2", "succeeded", True, False)
    assert part_2["missing"][0].startswith("vlm-mastery/01-mid-fusion-architectures.md has no heading for 8")
    assert "PART-2  succeeded (imported)  MISSING  vlm-mastery/01-mid-fusion" in kx("check").text
    assert kx("check", "--attempt", "PART-1#1").code == 2


def test_check_of_every_part_passes_once_every_part_holds(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            attempt = kx("start", part).text.strip()
            assert complete(kx, project, part, attempt).code == 0
        assert kx("check").code == (0 if batch == 2 else 1)
        assert kx("review", str(batch), "--approve").code == 0
    assert kx("--json", "check").json["ok"]
    (project / "topics" / "00-alpha.md").write_text("# Alpha\n")
    assert "PART-1  succeeded  MISSING  topics/00-alpha.md has no heading for 3 of 3" in kx("check").text


def test_lint_reports_imported_successes_whose_files_fail_with_the_reopen_command(kx, seed_plan, project):
    user_plan_with_garbage(kx, project)
    findings = [f for f in kx("--json", "plan", "lint").json["findings"] if f["code"] == "imported"]
    assert [f["fix"] for f in findings] == [f"kx reopen PART-{n} --reason ..." for n in range(1, 10)]
    assert findings[1]["level"] == "error" and "PART-2 was imported as Completed but its knowledge file" in \
        findings[1]["message"]
