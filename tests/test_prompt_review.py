"""``kx run --review prompt``: the reviewer names the PARTs to send back, several at once, each checked."""

from __future__ import annotations

import io

from tests.conftest import complete, events_of


def _batch_one_awaiting_review(kx, project):
    for n in (1, 2, 3):
        assert kx("start", f"PART-{n}").code == 0
        assert complete(kx, project, f"PART-{n}", f"PART-{n}#1").code == 0
    assert kx("--json", "status").json["batches"][0]["state"] == "awaiting_review"


def _review_with(answers: list[str]):
    """Batch 1's review at the prompt, answered with ``answers`` in turn: the questions asked and what was said."""
    from cli.progress import Progress
    from machine.acts.workspace import Workspace
    from runners.spec import runner_command
    from runners.supervisor.loop import RunOptions, Supervisor

    replies, asked = iter(answers), []

    def ask(question, choices):
        asked.append((question, choices))
        return next(replies)

    stream = io.StringIO()
    options = RunOptions(command=runner_command("rehearse"), review="prompt")
    workspace = Workspace.open()
    supervisor = Supervisor(workspace, options, Progress(stream), ask)
    assert supervisor._review(workspace.state(), 1) is None
    return asked, stream.getvalue()


def test_the_prompt_sends_back_several_parts_and_asks_again_on_a_bad_one(kx, project, plan3):
    _batch_one_awaiting_review(kx, project)
    asked, shown = _review_with(["reject", "PART-2 PART-9", "2 bogus", "", "part 3, 1,3"])
    questions = [q for q, _ in asked]
    assert questions[0] == "batch 1: approve / reject / quit?"
    assert len(questions) == 5 and all(q.startswith("which PARTs go back?") for q in questions[1:])
    assert asked[1][1] == []  # free text, not a choice among PARTs
    errors = [line for line in shown.splitlines() if line.startswith("kx: error: ")]
    assert len(errors) == 3
    assert "PART-9 is not in this batch (its PARTs: PART-1, PART-2, PART-3)" in errors[0]
    assert "bogus" in errors[1] and "name at least one PART" in errors[2]
    review = events_of(kx)[-1]
    assert review["type"] == "BatchReviewed" and review["data"]["decision"] == "reject"
    assert review["data"]["parts"] == ["PART-3", "PART-1"]
    states = {p["id"]: p["state"] for p in kx("--json", "status").json["batches"][0]["parts"]}
    assert states == {"PART-1": "pending", "PART-2": "succeeded", "PART-3": "pending"}


def test_the_prompt_sends_back_the_failed_parts_on_enter(kx, project, plan3):
    assert kx("start", "PART-1").code == 0 and kx("fail", "PART-1", "--reason", "broke").code == 0
    for n in (2, 3):
        assert kx("start", f"PART-{n}").code == 0
        assert complete(kx, project, f"PART-{n}", f"PART-{n}#1").code == 0
    asked, _ = _review_with(["reject", ""])
    assert "Enter: PART-1" in asked[1][0]
    assert events_of(kx)[-1]["data"]["parts"] == ["PART-1"]


def test_a_terminal_answers_free_text_when_there_are_no_choices(monkeypatch):
    import click

    from cli.progress import ask_on_terminal

    seen = {}

    def prompt(question, **kwargs):
        seen.update(kwargs, question=question)
        return "3,5"

    monkeypatch.setattr(click, "prompt", prompt)
    assert ask_on_terminal("which PARTs go back?", []) == "3,5"
    assert seen["type"] is str and seen["default"] == "" and seen["err"] is True
