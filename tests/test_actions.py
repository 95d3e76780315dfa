"""The runner-facing and reviewer commands, in-process under frozen time."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from tests.conftest import FRESH, SEED, complete, event_count, golden, write, write_target


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


# --- start, limit and gate ----------------------------------------------------------


def test_start_prints_attempt_and_next_respects_free_slots(kx, plan):
    assert kx("--json", "next").json["parts"] == ["PART-1", "PART-2"]
    assert kx("--json", "start", "PART-1").json == {"schema": 1, "part": "PART-1", "attempt": "PART-1#1"}
    assert kx("--json", "next").json["parts"] == ["PART-2"]
    assert kx("start", "part 2").text.strip() == "PART-2#1"
    assert kx("--json", "next").json["parts"] == []
    assert kx("--json", "status").json["running"] == ["PART-1", "PART-2"]


def test_limit_refuses_and_appends_nothing(kx, project):
    lines = ["# BATCH 1: B", "**Strategy**: 3 runners, 2 at a time"]
    lines += [f"## PART {n}: P{n}\n- [ ] PART {n}: Create p{n}.md\n- [ ] box" for n in (1, 2, 3)]
    (project / "plan.md").write_text("\n".join(lines) + "\n")
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("start", "PART-2")
    before = event_count(project)
    result = kx("start", "PART-3")
    assert result.code == 3 and "limit: 2 of 2 PARTs are running" in result.err
    assert event_count(project) == before


def test_gate_refuses_batch_two_before_batch_one_is_approved(kx, plan, project):
    before = event_count(project)
    result = kx("start", "PART-3")
    assert result.code == 3 and "gate: PART-3 is in batch 2, locked until batch 1 is approved" in result.err
    assert kx("tick", "PART-3", "1").code == 3
    assert event_count(project) == before


def test_start_of_a_running_part_is_an_invalid_transition(kx, plan):
    kx("start", "PART-1")
    result = kx("start", "PART-1")
    assert result.code == 3 and "PART-1 is running" in result.err and "import" not in result.err


def test_unknown_part_exits_4(kx, plan):
    assert kx("start", "PART-99").code == 4
    assert kx("tick", "nonsense", "1").code == 4


# --- ticks and references -----------------------------------------------------------


def test_tick_references_and_idempotence(kx, plan, project):
    kx("start", "PART-1")
    a = ["--attempt", "PART-1#1"]
    assert "1.1 'Section 1: Alpha overview'" in kx("tick", "PART-1", "2", *a).text
    assert kx("--json", "tick", "PART-1", "1.2", "nested", *a).json["boxes"] == [3, 4]
    assert kx("--json", "tick", "PART-1", "Read INFLUENCES", *a).json["ticked"] == 4
    before = event_count(project)
    again = kx("--json", "tick", "PART-1", "2", *a)
    assert again.code == 0 and again.json["recorded"] == [] and event_count(project) == before
    assert kx("--json", "untick", "PART-1", "2", *a).json["recorded"] == ["CheckboxUnticked"]
    assert kx("--json", "untick", "PART-1", "2", *a).json["recorded"] == []


def test_exact_text_wins_over_containing_text(kx, project):
    (project / "plan.md").write_text("# BATCH 1: B\n## PART 1: P\n- [ ] PART 1: Create a.md\n"
                                     "- [ ] Section 1\n- [ ] Section 1 extended\n")
    kx("plan", "import", "plan.md")
    assert kx("--json", "tick", "PART-1", "section 1").json["boxes"] == [1]


@pytest.mark.parametrize(("ref", "message"), [
    ("Section", "matches 3 boxes of PART-1: 1.1 'Section 1: Alpha overview'; 1.2"),
    ("no such text", "no box of PART-1 contains"),
    ("9", "no box 9: PART-1 has 5 boxes"),
    ("1.7", "no box 7: step 1 of PART-1 has 3 boxes"),
    ("5.1", "PART-1 has no step 5"),
])
def test_bad_references_exit_4_and_append_nothing(kx, plan, project, ref, message):
    before = event_count(project)
    result = kx("tick", "PART-1", "1", ref)
    assert result.code == 4 and message in result.err and event_count(project) == before


def test_ambiguous_reference_lists_candidates_in_json(kx, plan):
    result = kx("--json", "tick", "PART-1", "Section")
    assert result.json["error"]["code"] == 4 and len(result.json["error"]["details"]) == 3


def test_a_person_ticks_without_attempt(kx, plan):
    result = kx("--json", "tick", "PART-2", "1", "--by", "alice")
    assert result.code == 0
    events = kx("--json", "audit", "history", "PART-2").json["events"]
    assert events[-1]["data"]["by"] == "alice" and events[-1]["attempt"] is None


# --- attempts -------------------------------------------------------------------------


def test_stale_attempts_are_refused(kx, plan, project):
    kx("start", "PART-1")
    kx("fail", "PART-1", "--reason", "crashed", "--attempt", "PART-1#1")
    kx("retry", "PART-1")
    kx("start", "PART-1")
    before = event_count(project)
    stale = kx("tick", "PART-1", "1", "--attempt", "PART-1#1")
    assert stale.code == 3 and "stale attempt: PART-1#1 is over" in stale.err
    assert kx("tick", "PART-1", "1", "--attempt", "PART-2#1").code == 3
    assert event_count(project) == before
    assert kx("tick", "PART-1", "1", "--attempt", "PART-1#2").code == 0


def test_attempt_comes_from_the_environment(kx, plan, monkeypatch):
    kx("start", "PART-1")
    monkeypatch.setenv("KX_ATTEMPT", "PART-1#1")
    kx("tick", "PART-1", "1")
    assert kx("--json", "audit", "history", "PART-1").json["events"][-1]["attempt"] == "PART-1#1"
    monkeypatch.setenv("KX_ATTEMPT", "PART-1#7")
    assert kx("tick", "PART-1", "2").code == 3


# --- drops and evidence ----------------------------------------------------------------


def test_drop_records_hash_and_size(kx, plan, project):
    write(project, "KNOWLEDGE-DROP-alpha.md", "hello\n")
    result = kx("--json", "drop", "PART-1", "KNOWLEDGE-DROP-alpha.md", "--by", "bob").json
    assert result["size"] == 6 and result["sha256"].startswith("5891b5b522d5")
    assert kx("--json", "drop", "PART-1", "KNOWLEDGE-DROP-alpha.md", "--by", "bob").json["recorded"] == []


def test_drops_outside_the_root_are_refused(kx, plan, project, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "drop.md"
    outside.write_text("x")
    (project / "link.md").symlink_to(outside)
    (project / "sub").mkdir()
    before = event_count(project)
    for path in ("../" + outside.parent.name + "/drop.md", str(outside), "link.md", "missing.md", "sub"):
        result = kx("drop", "PART-1", path)
        assert result.code == 2, path
    assert "outside the plan's root" in kx("drop", "PART-1", "link.md").err
    assert event_count(project) == before


def test_finish_lists_every_missing_piece_of_evidence(kx, plan, project):
    kx("start", "PART-1")
    a = ["--attempt", "PART-1#1"]
    result = kx("--json", "finish", "PART-1", *a)
    assert result.code == 3
    details = result.json["error"]["details"]
    assert details[0].startswith("no drop recorded") and details[1].startswith("5 of 5 boxes unticked")
    assert details[2].startswith("target topics/00-alpha.md does not exist")
    drop = write(project, "d.md", "v1")
    kx("drop", "PART-1", "d.md", *a)
    kx("tick", "PART-1", "1", "2", "3", "4", "5", *a)
    write_target(kx, project, "PART-1")
    drop.write_text("v2")
    assert "changed since it was recorded" in kx("finish", "PART-1", *a).err
    drop.unlink()
    assert "is gone" in kx("finish", "PART-1", *a).err
    drop.write_text("v1")
    assert kx("finish", "PART-1", *a).code == 0
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "succeeded"


def test_evidence_policy_can_allow_unticked_boxes(kx, plan, project):
    (project / ".kx" / "config.toml").write_text("[defaults]\nrequire_all_ticked = false\n")
    kx("start", "PART-1")
    write(project, "d.md")
    kx("drop", "PART-1", "d.md", "--attempt", "PART-1#1")
    assert kx("finish", "PART-1", "--attempt", "PART-1#1").code == 0


def test_bad_config_is_bad_input(kx, plan, project):
    (project / ".kx" / "config.toml").write_text("[defaults]\ntimezone = 'Mars/Olympus'\n")
    result = kx("status")
    assert result.code == 2 and "unknown time zone" in result.err


def test_completion_stamp_uses_the_configured_time_zone(kx, plan, project):
    (project / ".kx" / "config.toml").write_text("[plans.plan]\ntimezone = 'Europe/Berlin'\n")
    kx("start", "PART-1")
    assert complete(kx, project, "PART-1", "PART-1#1").code == 0
    assert "(Completed 2025-11-20 11:00)" in kx("replay").text


def test_a_lost_part_with_evidence_can_finish(kx, plan, project):
    from machine.acts.lifecycle import lose
    from machine.acts.workspace import Workspace

    kx("start", "PART-1")
    lose(Workspace.open(), "PART-1", "PART-1#1", "runner died")
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "lost"
    assert complete(kx, project, "PART-1", "PART-1#1").code == 0


def test_fail_and_retry(kx, plan):
    kx("start", "PART-1")
    assert kx("fail", "PART-1", "--reason", "", "--attempt", "PART-1#1").code == 2
    assert kx("fail", "PART-1", "--reason", "timeout", "--attempt", "PART-1#1").code == 0
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert (part["state"], part["reason"]) == ("failed", "timeout")
    assert kx("retry", "PART-1").code == 0
    assert kx("retry", "PART-1").code == 3  # pending cannot be retried
    assert kx("--json", "start", "PART-1").json["attempt"] == "PART-1#2"


# --- reviews ---------------------------------------------------------------------------


def test_review_flow(kx, plan, project):
    assert kx("review", "1", "--approve").code == 3  # batch 1 is open, not awaiting review
    kx("start", "PART-1")
    kx("start", "PART-2")
    complete(kx, project, "PART-1", "PART-1#1")
    kx("fail", "PART-2", "--reason", "bad answer", "--attempt", "PART-2#1")
    refused = kx("review", "1", "--approve")
    assert refused.code == 3 and "--accept-failed" in refused.err
    assert kx("review", "1", "--reject", "PART-3").code == 4
    assert kx("review", "7", "--approve").code == 4
    assert kx("review", "1").code == 2
    rejected = kx("--json", "review", "1", "--reject", "--note", "redo it", "--by", "carol")
    assert rejected.code == 0
    history = kx("--json", "audit", "history", "PART-2").json["events"]
    review = history[-1]["data"]
    assert review["decision"] == "reject" and review["parts"] == ["PART-2"] and review["by"] == "carol"
    drop_sha = hashlib.sha256((project / "drops" / "PART-1.md").read_bytes()).hexdigest()
    assert review["drops"] == {"drops/PART-1.md": drop_sha}
    kx("start", "PART-2")
    complete(kx, project, "PART-2", "PART-2#2")
    assert kx("review", "1", "--approve", "--by", "carol").code == 0
    assert kx("--json", "next").json["parts"] == ["PART-3", "PART-4"]
    assert kx("review", "1", "--approve").code == 3  # already approved


def test_reject_with_nothing_to_send_back_is_bad_input(kx, plan, project):
    for part in ("PART-1", "PART-2"):
        kx("start", part)
        complete(kx, project, part, f"{part}#1")
    assert kx("review", "1", "--reject").code == 2
    assert kx("review", "1", "--reject", "PART-2").code == 0
    assert kx("--json", "next").json["parts"] == ["PART-2"]


def test_accept_failed(kx, plan, project):
    kx("start", "PART-1")
    kx("start", "PART-2")
    complete(kx, project, "PART-1", "PART-1#1")
    kx("fail", "PART-2", "--reason", "x", "--attempt", "PART-2#1")
    assert kx("review", "1", "--approve", "--accept-failed").code == 0
    assert kx("--json", "status").json["batches"][1]["state"] == "open"


# --- render --------------------------------------------------------------------------


def test_tick_then_render_changes_exactly_one_line(kx, seed_plan, project):
    kx("plan", "import", "plan.md")
    original = seed_plan.read_bytes()
    assert kx("tick", "PART-7", "Section 1").code == 0
    assert kx("render", "--check").code == 1
    assert kx("render").code == 0
    rendered = seed_plan.read_bytes()
    changed = [(a, b) for a, b in zip(original.split(b"\n"), rendered.split(b"\n")) if a != b]
    assert changed == [(b"- [ ] Section 1: CLIP architecture (vision encoder + text encoder, contrastive)",
                        "- [‚úì] Section 1: CLIP architecture (vision encoder + text encoder, contrastive)".encode())]
    assert len(original) + len("‚úì".encode()) - 1 == len(rendered)
    assert kx("replay").out == rendered
    assert kx("render", "--check").code == 0


def test_render_keeps_human_edits_and_reports_lost_boxes(kx, plan, project):
    kx("tick", "PART-1", "2", "3")
    text = plan.read_text()
    text = text.replace("# Knowledge Expansion", "<!-- a note -->\n# Knowledge Expansion")
    text = text.replace("- [ ] Section 2: Alpha details", "- [ ] Section 2: Alpha details, reworded")
    text = text.replace("- [ ] Section 1: Beta overview", "- [x] Section 1: Beta overview\n- [ ] A new box")
    plan.write_text(text)
    result = kx("--json", "render").json
    assert result["missing"] == ["PART-1: 'Section 2: Alpha details'"]
    assert result["kept"] == ["PART-2: 'Section 1: Beta overview'"]
    after = plan.read_text()
    assert "<!-- a note -->" in after and "- [x] Section 1: Alpha overview" in after
    assert "- [ ] Section 2: Alpha details, reworded" in after  # not guessed
    assert "- [x] Section 1: Beta overview\n- [ ] A new box" in after  # the person's own marks kept
    kx("tick", "PART-2", "Section 1")
    kx("untick", "PART-2", "Section 1")
    kx("render")
    assert "- [ ] Section 1: Beta overview\n" in plan.read_text()  # an explicit untick wins


def test_render_recreates_a_missing_file(kx, plan):
    kx("tick", "PART-1", "1")
    plan.unlink()
    assert kx("render").code == 0
    assert plan.read_bytes() == kx("replay").out


def test_render_uses_the_files_glyph_and_line_endings(kx, project):
    (project / "plan.md").write_bytes(SEED.read_bytes().replace(b"\n", b"\r\n"))
    kx("plan", "import", "plan.md")
    kx("tick", "PART-8", "2")
    kx("render")
    assert "- [‚úì] Search: \"DINOv2 self-supervised vision encoder 2024\"\r\n".encode() in (project / "plan.md").read_bytes()


def test_success_writes_the_completion_stamp(kx, project):
    shutil.copy(FRESH, project / "plan.md")
    write(project, "vision-language-architectures/00-x.md")  # what PART 1's Read boxes name
    write(project, "vision-language/00-token-concatenation-sequence-augmentation.md")
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    assert complete(kx, project, "PART-1", "PART-1#1").code == 0
    kx("render")
    text = (project / "plan.md").read_text()
    assert "- [x] PART 1: Create vlm-mastery/00-early-fusion-architectures.md (Completed 2025-11-20 10:00)\n" in text


def test_a_retried_part_loses_its_stamp(kx, seed_plan):
    kx("plan", "import", "plan.md")
    kx("start", "PART-7")  # batch 2 awaits review; PART-7 was imported as succeeded
    assert kx("start", "PART-7").code == 3
    kx("review", "2", "--reject", "PART-7", "--note", "no evidence")
    kx("render")
    line = next(l for l in seed_plan.read_text().splitlines() if "PART 7: Create" in l)
    assert line == "- [ ] PART 7: Create vlm-mastery/06-clip-vision-encoder.md"


# --- brief and history ---------------------------------------------------------------


def test_brief_resolves_influential_files_and_fills_the_drop_time(kx, seed_plan, project):
    kx("plan", "import", "plan.md")
    brief = kx("--json", "brief", "PART-7").json
    assert [f["path"] for f in brief["influential_files"]] == [
        "distributed-training/02-megatron-lm-tensor-parallelism.md",
        "inference-optimization/02-triton-inference-server.md",
        "alternative-hardware/02-intel-oneapi-ml.md"]
    assert brief["drop_name"] == "KNOWLEDGE-DROP-clip-deep-2025-11-14-1000.md"
    assert brief["target"] == "vlm-mastery/06-clip-vision-encoder.md"
    assert brief["section"].startswith("## PART 7: CLIP Vision Encoder Deep Dive")
    assert brief["boxes"][0] == {"ref": "0.1", "text": "Read vision-language/ (CLIP architecture)", "ticked": False,
                                 "kind": "read", "path": "vision-language/", "evidence": None,
                                 "needs": "vision-language/ inside the plan's root, read (kx hashes it when you tick)",
                                 "command": "kx tick PART-7 0.1 once it is there"}
    assert brief["boxes"][4]["command"] == "kx tick PART-7 1.4 --source URL" and brief["evidence_policy"] == "verified"
    assert len(brief["worker_instructions"]) == 4
    text = kx("brief", "PART-7").text
    assert "File 15: alternative-hardware/02-intel-oneapi-ml.md" in text and "kx tick PART-7 REF" in text


def test_each_attempt_records_its_own_drop_even_within_the_minute(kx, plan, project, frozen_time):
    drops = []
    for number in (1, 2, 3):
        attempt = kx("start", "PART-1").text.strip()
        brief = kx("--json", "brief", "PART-1", "--attempt", attempt).json
        assert kx("--json", "brief", "PART-1", "--attempt", attempt).json["drop_path"] == brief["drop_path"]
        write(project, brief["drop_name"], f"drop of attempt {number}: Problems: none found\n")
        assert kx("drop", "PART-1", brief["drop_name"], "--attempt", attempt).code == 0
        assert kx("fail", "PART-1", "--reason", "no model", "--attempt", attempt).code == 0
        assert kx("retry", "PART-1").code == 0
        drops.append(brief["drop_name"])
        frozen_time.tick(5)  # a retry within the same minute: the same [TIME]
    assert drops == ["KNOWLEDGE-DROP-alpha-2025-11-14-1000.md", "KNOWLEDGE-DROP-alpha-2025-11-14-1000-attempt2.md",
                     "KNOWLEDGE-DROP-alpha-2025-11-14-1000-attempt3.md"]
    assert [(project / name).read_text()[:18] for name in drops] == ["drop of attempt 1:", "drop of attempt 2:",
                                                                      "drop of attempt 3:"]
    recorded = [e["data"]["path"] for e in kx("--json", "audit", "history", "PART-1").json["events"]
                if e["type"] == "DropRecorded"]
    assert recorded == drops


def test_a_drop_file_already_there_is_not_written_over_by_an_attempt(kx, plan, project):
    import os

    from ledger import clock

    kept = project / "KNOWLEDGE-DROP-alpha-2025-11-14-1000.md"
    kept.write_text("the plan's own history: Problems: none\n")
    earlier = clock.parse_time("2025-11-19T09:00:00Z").timestamp()  # before the attempt starts (time is frozen)
    os.utime(kept, (earlier, earlier))
    attempt = kx("start", "PART-1").text.strip()
    assert kx("--json", "brief", "PART-1", "--attempt", attempt).json["drop_name"] == \
        "KNOWLEDGE-DROP-alpha-2025-11-14-1000-attempt1.md"


def test_kx_check_shows_the_drop_that_counts_now(kx, plan, project):
    write(project, "drops/first.md", "first\n")
    kx("start", "PART-1")
    assert kx("drop", "PART-1", "drops/first.md", "--attempt", "PART-1#1").code == 0
    drop_box = kx("--json", "brief", "PART-1").json["boxes"][-1]["ref"]
    assert kx("tick", "PART-1", drop_box, "--attempt", "PART-1#1").code == 0
    kx("fail", "PART-1", "--reason", "x", "--attempt", "PART-1#1")
    kx("retry", "PART-1")
    kx("start", "PART-1")
    write(project, "drops/second.md", "second\n")
    assert kx("drop", "PART-1", "drops/second.md", "--attempt", "PART-1#2").code == 0
    second = kx("--json", "audit", "history", "PART-1").json["events"][-1]["data"]["sha256"]
    box = kx("--json", "check", "PART-1").json["boxes"][-1]
    assert box["why"].startswith(f"drop recorded (sha256 {second[:12]}; ticked for ")


def test_audit_history_of_a_scripted_run(kx, plan, project, frozen_time):
    def step(*args):
        frozen_time.tick(60)
        assert kx(*args).code == 0, args

    step("start", "PART-1")
    step("start", "PART-2")
    a = ["--attempt", "PART-1#1"]
    for ref in ("1", "2", "3", "4"):
        step("tick", "PART-1", ref, *a)
    write(project, "KNOWLEDGE-DROP-alpha-2025-11-14-1006.md", "alpha drop\n")
    step("drop", "PART-1", "KNOWLEDGE-DROP-alpha-2025-11-14-1006.md", *a)
    step("tick", "PART-1", "5", *a)
    write_target(kx, project, "PART-1")
    step("finish", "PART-1", *a)
    step("fail", "PART-2", "--reason", "model refused", "--attempt", "PART-2#1")
    step("review", "1", "--approve", "--accept-failed", "--note", "PART-2 later", "--by", "dana")
    result = kx("--json", "audit", "history", "PART-1").json
    assert [e["type"] for e in result["events"]] == [
        "PlanImported", "RunnerStarted", *["CheckboxTicked"] * 4, "DropRecorded", "CheckboxTicked", "RunnerSucceeded",
        "BatchReviewed"]
    assert result["events"][1] == {"position": 2, "type": "RunnerStarted", "recorded_at": "2025-11-20T10:01:00.000000Z",
                                   "attempt": "PART-1#1", "data": {"attempt": "PART-1#1", "part": "PART-1"}}
    golden("audit-history-PART-1.txt", kx("audit", "history", "PART-1").text)
    assert kx("audit", "verify").code == 0


# --- verify ----------------------------------------------------------------------------


def test_verify_finds_tampering(kx, plan, project):
    import sqlite3

    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "--attempt", "PART-1#1")
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET data = replace(data, 'PART-1#1', 'PART-1#9') WHERE position = 3")
    result = kx("--json", "audit", "verify")
    assert result.code == 1 and result.json["findings"][0].startswith("position 3: hash chain broken")


def test_verify_finds_rule_violations_appended_behind_kx(kx, plan, project):
    from ledger.events.models import RunnerStarted, RunnerSucceeded
    from ledger.store import Ledger

    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append([RunnerStarted(plan="plan", part="PART-3", attempt="PART-3#1"),
                   RunnerSucceeded(plan="plan", part="PART-3", attempt="PART-3#1")])
    findings = kx("--json", "audit", "verify").json["findings"]
    assert any("gate: PART-3 is in batch 2" in f for f in findings)
    assert any("no drop recorded" in f for f in findings)


def test_the_read_model_is_checked_and_rebuilt(kx, plan, project):
    import sqlite3

    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    assert kx("audit", "verify").code == 0
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        assert conn.execute("SELECT state, ticked, total, attempt FROM kx_parts WHERE part = 'PART-1'").fetchone() \
            == ("running", 2, 5, "PART-1#1")
        conn.execute("UPDATE kx_parts SET state = 'succeeded', detail = replace(detail, 'running', 'succeeded')"
                     " WHERE part = 'PART-1'")
    findings = kx("--json", "audit", "verify").json["findings"]
    assert findings == ["read model of plan: PART-1 differs from the events; run 'kx audit rebuild'"]
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "succeeded"  # what the cache says
    assert kx("audit", "rebuild").code == 0
    assert kx("audit", "verify").code == 0
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "running"


def test_a_ledger_without_read_model_rows_still_folds(kx, plan, project):
    import sqlite3

    kx("tick", "PART-1", "1")
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        conn.execute("DELETE FROM kx_parts")
        conn.execute("DELETE FROM kx_plans")
    assert kx("--json", "status").json["batches"][0]["parts"][0]["ticked"] == 1
    kx("tick", "PART-2", "1")  # the next write saves every PART again
    assert kx("audit", "verify").code == 0
    assert kx("--json", "status").json["batches"][0]["parts"][0]["ticked"] == 1
