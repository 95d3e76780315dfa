"""A refusal names the commands that are possible instead, each as it is typed: the PART and batch filled in."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from cli.main import cli
from tests.conftest import complete, event_count

SUGGESTED = re.compile(r"'(kx [^']*)'")


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


@pytest.fixture
def awaiting_review(kx, plan, project):
    """Batch 1 awaiting review: PART-1 succeeded (a person's), PART-2 failed."""
    assert complete(kx, project, "PART-1").code == 0
    assert kx("start", "PART-2").code == 0
    assert kx("fail", "PART-2", "--reason", "runner exited with status 2").code == 0
    assert kx("--json", "status").json["batches"][0]["state"] == "awaiting_review"
    return plan


def refusal(kx, project, *args: str) -> str:
    before = event_count(project)
    result = kx(*args)
    assert result.code == 3, (result.code, result.err)
    assert event_count(project) == before
    assert result.err.count("\n") == 1 and result.err.startswith("kx: error: ")
    for command in SUGGESTED.findall(result.err):
        assert_is_a_command(command)
    return result.err.removeprefix("kx: error: ").rstrip("\n")


def assert_is_a_command(line: str) -> None:
    """The suggestion parses as a kx command line (TEXT stands for the user's words)."""
    name, *args = shlex.split(line.replace("TEXT", "why"))
    assert name == "kx"
    command: click.Command = cli
    while isinstance(command, click.Group):
        word, *args = args
        assert word in command.commands, line
        command = command.commands[word]
    command.make_context(word, args)  # a usage error raises


def test_starting_a_running_part(kx, plan, project):
    assert kx("start", "PART-1").code == 0
    assert refusal(kx, project, "start", "PART-1") == (
        "PART-1 is running: 'kx start PART-1' is not possible from there"
        " (possible: 'kx finish PART-1', 'kx fail PART-1 --reason TEXT')")


def test_retrying_a_pending_part(kx, plan, project):
    assert refusal(kx, project, "retry", "PART-2") == (
        "PART-2 is pending: 'kx retry PART-2' is not possible from there"
        " (possible: 'kx start PART-2', 'kx finish PART-2')")


def test_reopening_a_pending_part(kx, plan, project):
    assert refusal(kx, project, "reopen", "PART-1", "--reason", "x") == (
        "PART-1 is pending: 'kx reopen PART-1 --reason TEXT' is not possible from there"
        " (possible: 'kx start PART-1', 'kx finish PART-1')")


def test_a_batch_awaiting_review_offers_to_send_its_parts_back(kx, awaiting_review, project):
    assert refusal(kx, project, "start", "PART-1") == (
        "PART-1 is succeeded: 'kx start PART-1' is not possible from there"
        " (possible: 'kx review 1 --reject PART-1', 'kx reopen PART-1 --reason TEXT')")
    assert refusal(kx, project, "start", "PART-2") == (
        "PART-2 is failed: 'kx start PART-2' is not possible from there"
        " (possible: 'kx finish PART-2', 'kx retry PART-2', 'kx review 1 --reject PART-2',"
        " 'kx reopen PART-2 --reason TEXT')")


def test_an_approved_batch_offers_no_review(kx, awaiting_review, project):
    assert kx("review", "1", "--approve", "--accept-failed").code == 0
    assert refusal(kx, project, "start", "PART-1") == (
        "PART-1 is succeeded: 'kx start PART-1' is not possible from there"
        " (possible: 'kx reopen PART-1 --reason TEXT')")


def test_the_suggested_commands_do_what_they_say(kx, awaiting_review, project):
    text = refusal(kx, project, "start", "PART-2")
    retry = next(c for c in SUGGESTED.findall(text) if c.startswith("kx retry"))
    assert kx(*shlex.split(retry)[1:]).code == 0
    assert kx("--json", "status").json["batches"][0]["parts"][1]["state"] == "pending"


def test_no_refusal_names_a_trigger_instead_of_a_command(kx, awaiting_review, project):
    for args in (("start", "PART-1"), ("start", "PART-2"), ("retry", "PART-1")):
        text = refusal(kx, project, *args)
        assert not re.search(r"\bsend[ _]back\b|\bsucceed\b", text), text
