from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import FRESH, SEED, SMALL_PLAN, event_count, golden, kx_subprocess


def variants():
    seed = SEED.read_bytes()
    small = SMALL_PLAN.encode()
    return {
        "seed": seed,
        "fresh": FRESH.read_bytes(),
        "seed-crlf": seed.replace(b"\n", b"\r\n"),
        "seed-bom": b"\xef\xbb\xbf" + seed,
        "seed-bom-crlf": b"\xef\xbb\xbf" + seed.replace(b"\n", b"\r\n"),
        "small-x": small.replace(b"- [ ] Section 1: Alpha", b"- [x] Section 1: Alpha"),
        "small-mixed": small.replace(b"- [ ] PART 1:", b"- [X] PART 1:").replace(b"- [ ] Section 1: Beta", b"- [\xe2\x9c\x94] Section 1: Beta   "),
        "small-no-final-newline": small.rstrip(b"\n"),
        "small-cr-only": small.replace(b"\n", b"\r"),
    }


@pytest.mark.parametrize("name", sorted(variants()))
def test_import_then_replay_is_byte_identical(kx, project, name):
    raw = variants()[name]
    (project / "plan.md").write_bytes(raw)
    assert kx("plan", "import", "plan.md").code == 0
    replayed = kx("replay")
    assert replayed.code == 0 and replayed.out == raw


@pytest.mark.slow
def test_seed_round_trip_through_a_real_process(project):
    shutil.copy(SEED, project / "plan.md")
    assert kx_subprocess("plan", "import", "plan.md", cwd=project).returncode == 0
    replay = kx_subprocess("replay", cwd=project)
    assert replay.returncode == 0 and replay.stdout == SEED.read_bytes()


def test_seed_status_json_has_the_contract_shape(kx, seed_plan):
    kx("plan", "import", "plan.md")
    status = kx("--json", "status").json
    assert status["schema"] == 1 and status["plan"] == "plan" and status["limit"] == 6
    assert status["running"] == []
    assert [(b["number"], b["state"]) for b in status["batches"]] == [(1, "approved"), (2, "awaiting_review")]
    part = status["batches"][0]["parts"][1]
    assert {k: part[k] for k in ("id", "state", "ticked", "total", "attempts")} == {
        "id": "PART-2", "state": "succeeded", "ticked": 16, "total": 16, "attempts": 0}
    assert status["declared"] == {"batches": 7, "parts": 42} and status["found"] == {"batches": 2, "parts": 9}
    golden("seed-status.json", json.dumps(status, indent=2, ensure_ascii=False) + "\n")


def test_seed_status_table(kx, seed_plan):
    kx("plan", "import", "plan.md")
    golden("seed-status.txt", kx("status").text)


def test_fresh_plan_starts_with_batch_one_open(kx, project):
    shutil.copy(FRESH, project / "plan.md")
    kx("plan", "import", "plan.md")
    status = kx("--json", "status").json
    assert [b["state"] for b in status["batches"]] == ["open", "locked"]
    assert {p["state"] for b in status["batches"] for p in b["parts"]} == {"pending"}
    assert event_count(project) == 1


def test_reimport_of_identical_bytes_is_a_noop(kx, seed_plan, project):
    kx("plan", "import", "plan.md")
    before = event_count(project)
    again = kx("--json", "plan", "import", "plan.md")
    assert again.code == 0 and again.json["action"] == "unchanged"
    assert event_count(project) == before


def test_changed_file_is_a_revision_carrying_ticks_over(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    small_plan.write_text(SMALL_PLAN.replace("- [ ] Section 2: Alpha details", "- [x] Section 2: Alpha details"))
    kx("plan", "import", "plan.md")
    edited = small_plan.read_text().replace("**Step 1: Create Knowledge File**\n- [ ] Section 1: Alpha overview",
                                "**Step 1: Create Knowledge File**\n- [ ] Section 0: Alpha history\n"
                                "- [ ] Section 1: Alpha overview", 1)
    small_plan.write_text(edited)
    result = kx("--json", "plan", "import", "plan.md").json
    assert result["action"] == "revised" and result["carried"] == 1
    replayed = kx("replay").text
    assert "- [x] Section 2: Alpha details" in replayed and "- [ ] Section 0: Alpha history" in replayed
    types = [e["type"] for e in kx("--json", "events").json["events"]]
    assert types == ["PlanImported", "PlanRevised", "CheckboxTicked", "PlanRevised"]


def test_revision_reports_ticked_boxes_that_disappeared(kx, small_plan):
    small_plan.write_text(SMALL_PLAN.replace("- [ ] Section 2: Beta details", "- [x] Section 2: Beta details"))
    kx("plan", "import", "plan.md")
    small_plan.write_text(SMALL_PLAN.replace("- [ ] Section 2: Beta details\n", ""))
    result = kx("--json", "plan", "import", "plan.md").json
    assert result["dropped"] == ["PART-2: Section 2: Beta details"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such plan file"),
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("# BATCH 1: Caf\u00e9\n## PART 1: x\n".encode("latin-1"), "not UTF-8"),
        (b"# A plan\n\nNo parts here.\n", "no PART"),
        (b"# BATCH 1: B\n## PART 1: a\n## PART 1: b\n", "PART 1 twice"),
    ],
)
def test_malformed_plans_exit_2_and_append_nothing(kx, project, small_plan, content, message):
    kx("plan", "import", "plan.md")
    before = event_count(project)
    bad = project / "bad.md"
    if content is not None:
        bad.write_bytes(content)
    result = kx("plan", "import", "bad.md")
    assert result.code == 2 and message in result.err
    assert result.err.startswith("kx: error: ") and result.err.count("\n") == 1
    assert event_count(project) == before


def test_malformed_plan_creates_no_ledger(kx, project):
    (project / "bad.md").write_bytes(b"")
    assert kx("plan", "import", "bad.md").code == 2
    assert kx("plan", "import", "missing.md").code == 2
    assert not (project / ".kx" / "ledger.db").exists()


def test_json_errors_carry_code_and_message(kx, project):
    result = kx("--json", "plan", "import", "missing.md")
    assert result.code == 2
    assert result.json == {"schema": 1, "error": {"code": 2, "message": "no such plan file: missing.md"}}


def test_no_ledger_and_not_a_ledger_exit_2(kx, project):
    assert kx("status").code == 2
    (project / "junk.db").write_bytes(b"not sqlite" * 50)
    result = kx("--ledger", "junk.db", "status")
    assert result.code == 2 and "not a kx ledger" in result.err and "Traceback" not in result.err


def test_unknown_plan_exits_4(kx, small_plan):
    kx("plan", "import", "plan.md")
    assert kx("--plan", "nope", "status").code == 4


def test_two_plans_need_plan_option(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    (project / "other.md").write_bytes(SEED.read_bytes())
    kx("plan", "import", "other.md")
    result = kx("status")
    assert result.code == 2 and "--plan" in result.err
    assert kx("--plan", "other", "--json", "status").json["plan"] == "other"
    assert [p["id"] for p in kx("--json", "plan", "list").json["plans"]] == ["plan", "other"]


def test_ledger_folder_is_git_ignored(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    assert (project / ".kx" / ".gitignore").read_text().strip().endswith("*")
    log = (project / ".kx" / "kx.log").read_text().splitlines()
    assert json.loads(log[-1])["event"] == "plan imported"


def test_ledger_is_found_from_a_subfolder_and_by_env(kx, small_plan, project, monkeypatch):
    kx("plan", "import", "plan.md")
    (project / "sub" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(project / "sub" / "deeper")
    assert kx("status").code == 0
    monkeypatch.chdir(project.parent)
    monkeypatch.setenv("KX_LEDGER", str(project / ".kx" / "ledger.db"))
    assert kx("status").code == 0


def test_replay_until_and_at(kx, small_plan, frozen_time):
    kx("plan", "import", "plan.md")
    frozen_time.tick(3600)
    small_plan.write_text(SMALL_PLAN.replace("- [ ] Section 1: Beta overview", "- [x] Section 1: Beta overview"))
    kx("plan", "import", "plan.md")
    assert kx("replay", "--until", "1").text == SMALL_PLAN
    assert kx("replay", "--at", "2025-11-20T10:30:00Z").text == SMALL_PLAN
    assert "- [x] Section 1: Beta overview" in kx("replay").text
    assert kx("replay", "--until", "0").code == 2
    assert kx("replay", "--at", "yesterday").code == 2
    kx("replay", "-o", "out.md")
    assert (small_plan.parent / "out.md").read_text() == small_plan.read_text()


def test_events_since_and_text(kx, seed_plan):
    kx("plan", "import", "plan.md")
    events = kx("--json", "events", "--since", "70").json["events"]
    assert [e["position"] for e in events] == [71, 72, 73, 74, 75]
    assert events[-1]["type"] == "BatchReviewed" and events[-1]["data"]["by"] == "import"
    lines = kx("events", "--since", "74").text.splitlines()
    assert len(lines) == 2 and lines[0].split()[:2] == ["position", "recorded_at"] and "BatchReviewed" in lines[1]


def test_lint_reports_claims_without_evidence(kx, seed_plan):
    result = kx("--json", "plan", "lint", "plan.md")
    assert result.code == 1
    messages = [f["message"] for f in result.json["findings"]]
    assert "PART-1 is ticked Completed but 16 of 16 boxes are unticked" in messages
    assert any("9 PARTs present of 42 declared" in m for m in messages)
    assert any("still has [TIME]" in m for m in messages)
    assert any("Mac Roman" in m for m in messages)
    kx("plan", "import", "plan.md")
    assert kx("plan", "lint").code == 1


def test_lint_of_a_clean_plan_passes(kx, small_plan):
    result = kx("plan", "lint", "plan.md")
    assert result.code == 0


def test_lint_reports_duplicates(kx, project):
    (project / "dup.md").write_text("# BATCH 1: B\n## PART 1: a\n- [ ] PART 1: Create a.md\n"
                                    "## PART 1: b\n- [ ] PART 1: Create a.md\n")
    result = kx("--json", "plan", "lint", "dup.md")
    assert result.code == 1
    assert any("PART 1 appears twice" in f["message"] for f in result.json["findings"])


def test_usage_errors_are_one_line_exit_2(kx, small_plan):
    result = kx("replay", "--until", "abc")
    assert result.code == 2 and result.err.startswith("kx: error: ") and result.err.count("\n") == 1
    assert kx("no-such-command").code == 2


def test_version(kx):
    result = kx("--version")
    assert result.code == 0 and "kx" in result.text


def test_lint_says_nothing_of_time_once_the_drop_is_recorded(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    assert kx("start", "PART-1").code == 0
    (project / "KNOWLEDGE-DROP-alpha-2025-11-14-1000.md").write_text("drop\n")
    assert kx("drop", "PART-1", "KNOWLEDGE-DROP-alpha-2025-11-14-1000.md", "--attempt", "PART-1#1").code == 0
    assert kx("tick", "PART-1", "Create KNOWLEDGE-DROP", "--attempt", "PART-1#1").code == 0
    assert kx("tick", "PART-2", "Create KNOWLEDGE-DROP").code == 0  # a person's tick: no drop recorded
    assert kx("render").code == 0
    for argv in (("plan", "lint"), ("plan", "lint", "plan.md")):
        times = [f["message"] for f in kx("--json", *argv).json["findings"] if f["code"] == "time"]
        assert times == ["PART-2: drop name KNOWLEDGE-DROP-beta-2025-11-14-[TIME].md still has [TIME]"], argv
