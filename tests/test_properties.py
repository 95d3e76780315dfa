"""Property tests (hypothesis, derandomized and bounded by count)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.errors import KxError
from machine.plan.parser import PlanError, parse

SETTINGS = settings(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
MARKS = [" ", "x", "X", "✓", "✔", "‚úì", "‚úî"]
text_piece = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\x85\u2028\u2029"),
                     min_size=1, max_size=20).map(lambda s: s.strip() or "t")


@st.composite
def plans(draw) -> str:
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    if draw(st.booleans()):
        lines.append(f"# {draw(text_piece)}")
    if draw(st.booleans()):
        lines.append(f"**Strategy**: 9 runners, {draw(st.integers(1, 9))} at a time")
    number = 0
    for batch in range(1, draw(st.integers(1, 3)) + 1):
        lines.append(f"# BATCH {batch}: {draw(text_piece)}")
        for _ in range(draw(st.integers(1, 3))):
            number += 1
            lines.append(f"## PART {number}: {draw(text_piece)}")
            stamp = " (Completed 2025-11-16 18:56)" if draw(st.booleans()) else ""
            lines.append(f"- [{draw(st.sampled_from(MARKS))}] PART {number}: Create t/{number}.md{stamp}")
            for step in range(draw(st.integers(0, 3))):
                lines.append(f"**Step {step}: {draw(text_piece)}**")
                for _ in range(draw(st.integers(0, 4))):
                    indent = draw(st.sampled_from(["", "  ", "    "]))
                    trailing = draw(st.sampled_from(["", " ", "\t "]))
                    lines.append(f"{indent}- [{draw(st.sampled_from(MARKS))}] {draw(text_piece)}{trailing}")
                if draw(st.integers(0, 4)) == 0:
                    lines += ["```", f"- [{draw(st.sampled_from(MARKS))}] fenced {draw(text_piece)}", "```"]
                if draw(st.integers(0, 4)) == 0:
                    lines += ["", "Code:", "", f"    - [x] indented {draw(text_piece)}", ""]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return ("\ufeff" if draw(st.booleans()) else "") + text


def import_into_scratch(text: str):
    from machine.acts.importer import import_plan
    from machine.acts.workspace import Workspace

    folder = Path(tempfile.mkdtemp(prefix="kx-prop-"))
    (folder / "plan.md").write_bytes(text.encode("utf-8"))
    workspace = Workspace.open(str(folder / ".kx" / "ledger.db"), create=True)
    import_plan(lambda: workspace, folder / "plan.md", root=folder)
    return folder, workspace


@SETTINGS
@given(plans())
def test_import_then_replay_is_the_identity(text):
    from machine.app import replay

    _, workspace = import_into_scratch(text)
    assert replay(workspace).encode("utf-8") == text.encode("utf-8")
    workspace.ledger.close()


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_the_parser_raises_only_its_own_error(data):
    try:
        parse(data)
    except PlanError:
        pass


@SETTINGS
@given(st.lists(st.sampled_from(["## PART 1: x", "# BATCH 2: y", "- [ ] a", "- [x] PART 1: Create a.md", "```",
                                 "    - [ ] c", "**Step 1: s**", "", "~~~", "- [‚úì] b"]), max_size=25),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_parser_on_plan_like_noise(lines, newline):
    try:
        plan = parse(newline.join(lines))
    except PlanError:
        return
    for part in plan.parts:
        assert all(part.line <= box.line < part.end_line for box in part.boxes)


COMMANDS = st.lists(st.tuples(
    st.sampled_from(["tick", "untick", "start", "drop", "finish", "fail", "lose", "retry", "approve", "reject",
                     "reject_part", "reopen", "complete", "complete_batch"]),
    st.integers(1, 4), st.integers(1, 5)), min_size=4, max_size=24)


def run_commands(commands, after_each=None):
    """Generated acts on the small plan, refusals ignored; ``after_each(folder, workspace)`` after every one."""
    from tests.conftest import SMALL_PLAN

    folder, workspace = import_into_scratch(SMALL_PLAN)
    for name, part_number, box in commands:
        if name == "complete_batch":  # each PART of the batch completed in turn, so that reviews happen
            batch = (1, 2) if part_number <= 2 else (3, 4)
            run_commands_on(workspace, folder, [("complete", n, box) for n in batch])
            continue
        run_commands_on(workspace, folder, [(name, part_number, box)])
        if after_each:
            after_each(folder, workspace)
    return folder, workspace


def new_drop(folder, box):
    """A drop file of its own: a recorded drop is never rewritten (``kx audit verify`` would say so)."""
    path = folder / f"d-{len(list(folder.glob('d-*.md')))}.md"
    path.write_text(f"drop {box}")
    return path


def run_commands_on(workspace, folder, commands):
    from machine.acts import lifecycle as actions

    person = actions.Act(by="prop")
    for name, part_number, box in commands:
        part = f"PART-{part_number}"
        state = workspace.state().parts[part]
        runner = actions.Act(attempt=state.attempt) if state.attempt else person
        try:
            if name in ("tick", "untick"):
                actions.tick(workspace, part, [str(min(box, 2))], person, ticked=name == "tick")
            elif name == "start":
                actions.start(workspace, part, person)
            elif name == "drop":
                actions.drop(workspace, part, new_drop(folder, box), runner)
            elif name == "finish":
                actions.finish(workspace, part, runner)
            elif name == "complete":  # every box, a drop, the finish: what an attempt that succeeds does
                boxes = workspace.state().plan.part(part).boxes
                actions.tick(workspace, part, [str(n) for n in range(1, len(boxes) + 1)], runner)
                actions.drop(workspace, part, new_drop(folder, box), runner)
                actions.finish(workspace, part, runner)
            elif name == "fail":
                actions.fail(workspace, part, "boom", runner)
            elif name == "lose" and state.attempt:
                actions.lose(workspace, part, state.attempt, "gone")
            elif name == "retry":
                actions.retry(workspace, part, person)
            elif name in ("approve", "reject", "reject_part"):  # the batch awaiting review, if one does
                current = workspace.state()
                number = next((n for n, b in current.batches.items() if b.state == "awaiting_review"),
                              1 if part_number <= 2 else 2)
                members = [f"PART-{n}" for n in current.plan.batch(number).parts]
                sent = [part if part in members else members[part_number % len(members)]]
                actions.review(workspace, number, approve=name == "approve",
                               parts=sent if name == "reject_part" else [], note=None, act=person,
                               accept_failed=box > 2)
            elif name == "reopen":
                actions.reopen(workspace, [part], "again", person)
        except KxError:
            pass


@SETTINGS
@given(COMMANDS)
def test_rendering_after_each_step_equals_replaying(commands):
    from machine.app import replay
    from machine.outputs.plan_file import render_file

    def same(folder, workspace):
        render_file(workspace)
        assert (folder / "plan.md").read_bytes() == replay(workspace).encode("utf-8")

    _, workspace = run_commands(commands, same)
    workspace.ledger.close()


# histories the generator reaches only by luck: a reopening behind an approval, a rejection, retries of attempts
REOPENED_AFTER_APPROVAL = [("complete_batch", 1, 1), ("approve", 1, 1), ("start", 3, 1), ("reopen", 2, 1),
                           ("complete", 3, 2), ("start", 2, 1), ("complete", 2, 3), ("approve", 1, 1),
                           ("complete_batch", 3, 1), ("reopen", 3, 1)]
REJECTED_AND_RETRIED = [("start", 1, 1), ("drop", 1, 1), ("fail", 1, 1), ("retry", 1, 1), ("start", 1, 1),
                        ("start", 2, 1), ("lose", 2, 1), ("retry", 2, 1), ("drop", 2, 2), ("start", 2, 1),
                        ("complete_batch", 1, 1),
                        ("reject_part", 2, 1), ("drop", 2, 3), ("start", 2, 1), ("complete", 2, 1), ("approve", 1, 1)]


@SETTINGS
@given(COMMANDS)
@example(REOPENED_AFTER_APPROVAL)
@example(REJECTED_AND_RETRIED)
def test_acts_record_only_what_the_audit_accepts_and_the_sql_views_agree(commands):
    """Acts and ``kx audit verify`` ask the same rules; the ``part_states`` view derives what the fold does."""
    from ledger.derived import sql_views
    from machine.acts.audit import verify

    _, workspace = run_commands(commands)
    assert verify(workspace)["findings"] == []
    state = workspace.state()
    folded = {p.id: (p.state, len(p.ticked), p.attempts, p.attempt, (p.drop or {}).get("sha256"))
              for p in state.parts.values()}
    view = {r["part"]: (r["state"], r["ticked"], r["attempts"], r["attempt"], r["drop_sha256"])
            for r in sql_views.rows(workspace.ledger.conn, "part_states", state.id)}
    assert view == folded
    workspace.ledger.close()
