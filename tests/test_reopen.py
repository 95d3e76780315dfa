"""Evidence belongs to attempts: rejections and `kx reopen` clear it by events, retries need their own drop."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import complete, event_count, write, write_target

UNPROVEN = ("PART-1", "PART-3", "PART-7", "PART-8", "PART-9")  # the seed's PARTs stamped Completed, no box ticked


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


def parts_of(kx) -> dict[str, dict]:
    return {p["id"]: p for b in kx("--json", "status").json["batches"] for p in b["parts"]}


def batch_states(kx) -> list[str]:
    return [b["state"] for b in kx("--json", "status").json["batches"]]


def last_event(kx, part: str, kind: str) -> dict:
    return [e for e in kx("--json", "audit", "history", part).json["events"] if e["type"] == kind][-1]


def all_refs(kx, part: str) -> list[str]:
    return [str(i) for i in range(1, len(kx("--json", "brief", part).json["boxes"]) + 1)]


def work_refs(kx, part: str) -> list[str]:
    """Every box but the drop box (whose tick needs the attempt's drop recorded first)."""
    boxes = kx("--json", "brief", part).json["boxes"]
    return [str(i) for i, box in enumerate(boxes, 1) if box["kind"] != "drop"]


# --- a rejection clears what the attempt earned ---------------------------------------------


def test_a_rejected_part_earns_every_tick_and_its_drop_again(kx, plan, project):
    for part in ("PART-1", "PART-2"):
        kx("start", part)
        assert complete(kx, project, part, f"{part}#1").code == 0
    assert kx("review", "1", "--reject", "PART-1", "--note", "too thin").code == 0
    review = last_event(kx, "PART-1", "BatchReviewed")["data"]
    assert list(review["cleared"]) == ["PART-1"]
    assert len(review["cleared"]["PART-1"]["boxes"]) == 5 and review["cleared"]["PART-1"]["drop"] == "drops/PART-1.md"
    assert "cleared" in kx("audit", "history", "PART-1").text
    assert (parts_of(kx)["PART-1"]["state"], parts_of(kx)["PART-1"]["ticked"]) == ("pending", 0)
    assert parts_of(kx)["PART-2"]["ticked"] == 3  # the PART not sent back keeps its evidence
    assert kx("render").code == 0
    text = plan.read_text()
    assert "- [ ] Section 1: Alpha overview" in text and "- [x] Section 1: Beta overview" in text

    assert kx("--json", "start", "PART-1").json["attempt"] == "PART-1#2"
    assert parts_of(kx)["PART-1"]["ticked"] == 0
    brief = kx("--json", "brief", "PART-1", "--attempt", "PART-1#2").json
    assert [box["evidence"] for box in brief["boxes"]] == [None] * 5  # the cleared attempt's evidence is gone
    write(project, "drops/PART-1.md", "a better drop\n")
    assert kx("drop", "PART-1", "drops/PART-1.md", "--attempt", "PART-1#2").code == 0
    refused = kx("finish", "PART-1", "--attempt", "PART-1#2")
    assert refused.code == 3 and "5 of 5 boxes unticked" in refused.err  # a new drop alone is not enough
    assert kx("tick", "PART-1", *all_refs(kx, "PART-1"), "--attempt", "PART-1#2").code == 0
    assert kx("finish", "PART-1", "--attempt", "PART-1#2").code == 0
    assert kx("audit", "verify").code == 0


def test_a_rejected_part_needs_a_drop_of_its_next_attempt(kx, plan, project):
    for part in ("PART-1", "PART-2"):
        kx("start", part)
        assert complete(kx, project, part, f"{part}#1").code == 0
    assert kx("review", "1", "--reject", "PART-2").code == 0
    kx("start", "PART-2")
    assert kx("tick", "PART-2", *work_refs(kx, "PART-2"), "--attempt", "PART-2#2").code == 0
    refused = kx("finish", "PART-2", "--attempt", "PART-2#2")
    assert refused.code == 3 and "no drop recorded" in refused.err


# --- a retry keeps the ticks, not the drop ------------------------------------------------------


def test_a_retry_after_a_failure_keeps_the_ticks_but_needs_a_drop_of_the_new_attempt(kx, plan, project):
    kx("start", "PART-1")
    write(project, "drops/PART-1.md")
    assert kx("drop", "PART-1", "drops/PART-1.md", "--attempt", "PART-1#1").code == 0
    assert kx("tick", "PART-1", *all_refs(kx, "PART-1"), "--attempt", "PART-1#1").code == 0
    assert kx("fail", "PART-1", "--reason", "timeout", "--attempt", "PART-1#1").code == 0
    assert kx("retry", "PART-1").code == 0
    assert kx("drop", "PART-1", "drops/PART-1.md", "--by", "rita").code == 0  # a person's, before the attempt
    kx("start", "PART-1")
    assert parts_of(kx)["PART-1"]["ticked"] == 5
    refused = kx("finish", "PART-1", "--attempt", "PART-1#2")
    assert refused.code == 3 and "no drop recorded" in refused.err
    assert kx("drop", "PART-1", "drops/PART-1.md", "--attempt", "PART-1#2").code == 0
    write_target(kx, project, "PART-1")
    assert kx("finish", "PART-1", "--attempt", "PART-1#2").code == 0


def test_a_retry_after_a_lost_attempt_needs_a_drop_of_the_new_attempt(kx, plan, project):
    from machine.acts.lifecycle import lose
    from machine.acts.workspace import Workspace

    kx("start", "PART-2")
    write(project, "drops/PART-2.md")
    assert kx("drop", "PART-2", "drops/PART-2.md", "--attempt", "PART-2#1").code == 0
    assert kx("tick", "PART-2", *all_refs(kx, "PART-2"), "--attempt", "PART-2#1").code == 0
    lose(Workspace.open(), "PART-2", "PART-2#1", "runner died")
    assert kx("retry", "PART-2").code == 0
    refused = kx("finish", "PART-2", "--by", "rita")  # pending after the retry: the lost attempt's drop is gone
    assert refused.code == 3 and "no drop recorded" in refused.err
    kx("start", "PART-2")
    refused = kx("finish", "PART-2", "--attempt", "PART-2#2")
    assert refused.code == 3 and "no drop recorded" in refused.err and "unticked" not in refused.err
    assert kx("drop", "PART-2", "drops/PART-2.md").code == 0  # a person's drop after the attempt started counts
    write_target(kx, project, "PART-2")
    assert kx("finish", "PART-2", "--attempt", "PART-2#2").code == 0


# --- kx reopen -----------------------------------------------------------------------------------


def test_reopen_help_has_an_example(kx):
    result = kx("reopen", "--help")
    assert result.code == 0 and "Example:" in result.text and "kx reopen PART-" in result.text


def test_reopening_a_part_of_an_approved_batch_sends_it_back_to_review_and_locks_the_next(kx, plan, project):
    for part in ("PART-1", "PART-2"):
        kx("start", part)
        assert complete(kx, project, part, f"{part}#1").code == 0
    assert kx("review", "1", "--approve").code == 0
    kx("start", "PART-3")
    assert batch_states(kx) == ["approved", "running"]

    result = kx("--json", "reopen", "PART-2", "--reason", "the drop cites nothing", "--by", "rita")
    assert result.code == 0, result.err
    assert result.json["parts"] == ["PART-2"] and result.json["recorded"] == ["PartReopened"]
    reopened = last_event(kx, "PART-2", "PartReopened")["data"]
    assert reopened["reason"] == "the drop cites nothing" and reopened["by"] == "rita"
    assert len(reopened["cleared"]["boxes"]) == 3 and reopened["cleared"]["drop"] == "drops/PART-2.md"
    assert (parts_of(kx)["PART-2"]["state"], parts_of(kx)["PART-2"]["ticked"]) == ("pending", 0)
    assert batch_states(kx) == ["running", "locked"]
    refused = kx("start", "PART-4")
    assert refused.code == 3 and "gate" in refused.err and "batch 1" in refused.err
    assert kx("--json", "next").json["parts"] == ["PART-2"]
    assert complete(kx, project, "PART-3", "PART-3#1").code == 0  # the attempt already running may finish
    assert kx("review", "2", "--approve").code == 3

    kx("start", "PART-2")
    assert complete(kx, project, "PART-2", "PART-2#2").code == 0
    assert batch_states(kx) == ["awaiting_review", "locked"]
    assert kx("review", "1", "--approve").code == 0
    assert batch_states(kx) == ["approved", "running"]
    assert kx("--json", "next").json["parts"] == ["PART-4"]
    assert kx("audit", "verify").code == 0


def test_a_later_batch_already_approved_stays_approved(kx, plan, project):
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            kx("start", part)
            assert complete(kx, project, part, f"{part}#1").code == 0
        assert kx("review", str(batch), "--approve").code == 0
    assert kx("reopen", "PART-1", "--reason", "redo").code == 0
    assert batch_states(kx) == ["running", "approved"]
    assert kx("--json", "next").json["parts"] == ["PART-1"]


def test_reopen_of_failed_and_lost_parts(kx, plan, project):
    from machine.acts.lifecycle import lose
    from machine.acts.workspace import Workspace

    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    kx("fail", "PART-1", "--reason", "bad", "--attempt", "PART-1#1")
    kx("start", "PART-2")
    lose(Workspace.open(), "PART-2", "PART-2#1", "runner died")
    assert kx("reopen", "PART-1", "PART-2", "--reason", "start over").code == 0
    parts = parts_of(kx)
    assert [(parts[p]["state"], parts[p]["ticked"]) for p in ("PART-1", "PART-2")] == [("pending", 0), ("pending", 0)]
    assert last_event(kx, "PART-1", "PartReopened")["data"]["was"] == "failed"
    assert kx("tick", "PART-2", "1", "--attempt", "PART-2#1").code == 3  # the lost attempt is over
    assert kx("--json", "start", "PART-2").json["attempt"] == "PART-2#2"
    assert kx("audit", "verify").code == 0


def test_reopen_refusals_name_what_is_possible_and_append_nothing(kx, plan, project):
    refused = kx("reopen", "PART-1", "--reason", "x")
    assert refused.code == 3 and refused.err.count("\n") == 1
    assert "PART-1 is pending" in refused.err and "possible: 'kx start PART-1', 'kx finish PART-1'" in refused.err
    kx("start", "PART-1")
    refused = kx("reopen", "PART-1", "--reason", "x")
    assert refused.code == 3 and "PART-1 is running" in refused.err and "'kx finish PART-1'" in refused.err
    assert complete(kx, project, "PART-2").code == 0  # a person's success
    before = event_count(project)
    assert kx("reopen", "PART-2", "PART-1", "--reason", "x").code == 3  # one refused: none reopened
    assert kx("reopen", "PART-2", "PART-99", "--reason", "x").code == 4
    assert kx("reopen", "PART-2").code == 2
    assert kx("reopen", "PART-2", "--reason", "  ").code == 2
    error = kx("--json", "reopen", "PART-1", "--reason", "x").json["error"]
    assert error["code"] == 3 and "PART-1 is running" in error["message"]
    assert event_count(project) == before
    assert parts_of(kx)["PART-2"]["state"] == "succeeded"


# --- the user's plan: imported claims without evidence ----------------------------------------------


def fixes(findings: list[dict], code: str = "evidence") -> list[str]:
    return [f["fix"] for f in findings if f.get("fix") and f["code"] == code]


def test_lint_suggests_reopen_for_exactly_the_parts_completed_without_evidence(kx, seed_plan):
    wanted = [f"kx reopen {p} --reason ..." for p in UNPROVEN]
    assert fixes(kx("--json", "plan", "lint", "plan.md").json["findings"]) == wanted
    assert "kx reopen PART-7 --reason ..." in kx("plan", "lint", "plan.md").text
    assert kx("plan", "import", "plan.md").code == 0
    assert fixes(kx("--json", "plan", "lint").json["findings"]) == wanted
    # and, in a folder without the knowledge files, every imported success fails the checks of finish
    assert fixes(kx("--json", "plan", "lint").json["findings"], "imported") == [
        f"kx reopen PART-{n} --reason ..." for n in range(1, 10)]


def reopen_unproven(kx):
    result = kx("--json", "reopen", *UNPROVEN, "--reason", "no evidence")
    assert result.code == 0, result.err
    return result


def test_imported_claims_without_evidence_are_reopened(kx, seed_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert batch_states(kx) == ["approved", "awaiting_review"]
    result = reopen_unproven(kx)
    assert result.json["parts"] == list(UNPROVEN)
    parts = parts_of(kx)
    assert {p for p, v in parts.items() if v["state"] == "pending"} == set(UNPROVEN)
    assert all(parts[p]["state"] == "succeeded" and parts[p]["ticked"] == 16 for p in ("PART-2", "PART-4", "PART-5",
                                                                                        "PART-6"))
    assert batch_states(kx) == ["running", "locked"]  # batch 1 needs review again; batch 2 waits for it
    assert kx("--json", "next").json["parts"] == ["PART-1", "PART-3"]
    refused = kx("start", "PART-7")
    assert refused.code == 3 and "locked until batch 1 is approved" in refused.err
    assert fixes(kx("--json", "plan", "lint").json["findings"]) == []
    assert kx("render").code == 0
    header = next(line for line in seed_plan.read_text().splitlines() if "PART 1: Create" in line)
    assert header == "- [ ] PART 1: Create vlm-mastery/00-early-fusion-architectures.md"
    assert kx("audit", "verify").code == 0


def test_an_imported_part_with_ticks_reopens_unticked(kx, seed_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("reopen", "PART-2", "--reason", "check it again").code == 0
    assert parts_of(kx)["PART-2"]["ticked"] == 0
    assert len(last_event(kx, "PART-2", "PartReopened")["data"]["cleared"]["boxes"]) == 16
    kx("render")
    part_2 = seed_plan.read_text().split("## PART 2:")[1].split("## PART 3:")[0]
    assert "- [ ] " in part_2 and "‚úì" not in part_2


@pytest.mark.slow
@pytest.mark.real_time
def test_reopened_imported_parts_run_again(kx, seed_plan):
    assert kx("plan", "import", "plan.md").code == 0
    reopen_unproven(kx)
    run = subprocess.run([sys.executable, "-m", "cli.main", "run", "--runner", "rehearse", "--review", "auto"],
                         cwd=seed_plan.parent, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    parts = parts_of(kx)
    assert all(p["state"] == "succeeded" for p in parts.values())
    assert [parts[p]["attempts"] for p in sorted(parts)] == [1, 0, 1, 0, 0, 0, 1, 1, 1]
    assert batch_states(kx) == ["approved", "approved"]
    assert kx("audit", "verify").code == 0
    assert kx("consolidate").code == 3  # the four PARTs the import approved have no files in this folder
    done = kx("consolidate", "--allow-missing")
    assert done.code == 0 and "consolidated 5 knowledge files" in done.text


def test_a_read_model_saved_by_an_older_fold_is_folded_afresh(kx, plan, project):
    import sqlite3

    from machine.state.fold import fold_version

    kx("start", "PART-1")
    assert complete(kx, project, "PART-1", "PART-1#1").code == 0
    ledger = project / ".kx" / "ledger.db"
    with sqlite3.connect(ledger) as conn:  # as an older kx's fold saved it: another version, no evidence_from
        conn.execute("UPDATE kx_plans SET fold_version = '1.1'")
        conn.execute("UPDATE kx_parts SET fold_version = '1.1', detail = json_remove(detail, '$.evidence_from')")
    assert parts_of(kx)["PART-1"]["state"] == "succeeded"
    assert kx("audit", "verify").code == 0
    assert kx("start", "PART-2").code == 0
    with sqlite3.connect(ledger) as conn:
        assert conn.execute("SELECT DISTINCT fold_version FROM kx_parts").fetchall() == [(fold_version(),)]
