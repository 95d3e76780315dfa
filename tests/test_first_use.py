"""What a new user met on first use: lint after a repair, failure lines, what kx resume does, a plan cut short."""

from __future__ import annotations

import io

import pytest

from machine.acts.workspace import Workspace
from machine.plan.text import one_line


def test_ledger_lint_after_a_repair_reads_the_repaired_file(kx, seed_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert any(f["code"] == "mojibake" for f in kx("--json", "plan", "lint").json["findings"])
    assert kx("render", "--repair").code == 0
    assert not any(f["code"] == "mojibake" for f in kx("--json", "plan", "lint").json["findings"])


def test_lint_says_the_users_plan_is_cut_short_in_part_9(kx, seed_plan):
    findings = kx("--json", "plan", "lint", "plan.md").json["findings"]
    cut = [f for f in findings if f["code"] == "truncated"]
    assert [f["line"] for f in cut] == [369] and cut[0]["message"].startswith("PART-9 ends mid-sentence")
    assert "no KNOWLEDGE DROP box" in cut[0]["message"]


def test_a_part_without_a_drop_box_is_said_but_not_as_cut_short(kx, small_plan):
    small_plan.write_text(small_plan.read_text().replace(
        "**Step 2: Create KNOWLEDGE DROP**\n- [ ] Create KNOWLEDGE-DROP-beta-2025-11-14-[TIME].md\n", ""))
    findings = {f["code"]: f for f in kx("--json", "plan", "lint", "plan.md").json["findings"]}
    assert "truncated" not in findings and findings["drop"]["message"].startswith("PART-2 has no KNOWLEDGE DROP box")


def test_failure_lines_are_cut_at_a_word_with_an_ellipsis():
    reason = "runner exited with status 1: the model server at 127.0.0.1:11434 refused every connection it was offered"
    assert one_line(reason, 60) == "runner exited with status 1: the model server at…"
    assert one_line("x" * 100, 20) == "x" * 19 + "…"  # no word to stop at: cut inside it
    assert one_line("short", 60) == "short"


@pytest.mark.slow
def test_kx_resume_says_which_review_mode_it_uses(kx, small_plan):
    from cli.progress import Progress
    from runners.supervisor.run import run_plan

    kx("plan", "import", "plan.md")
    for review, interactive, said in ((None, False, "resuming with --review wait (no terminal to ask on"),
                                      ("auto", False, "resuming with --review auto (--review given")):
        stream = io.StringIO()
        run_plan(Workspace.open(), review=review, until_batch=1, interactive=interactive, command="resume",
                 progress=Progress(stream), runner="rehearse")
        assert stream.getvalue().splitlines()[0].startswith(said), stream.getvalue()
