"""Free text is bounded where it enters, CLI and MCP alike, and errors quote little of what they were given."""

from __future__ import annotations

import re
import subprocess
import sys

import anyio
import pytest

from tests.conftest import event_count
from tests.test_mcp import kx_mcp, refused, session

BIG = "x" * 1_000_000  # a megabyte of one word: what a runaway agent sends
A = ["--attempt", "PART-1#1"]


def longest_run(text: str) -> int:
    return max((len(run) for run in re.findall(r"\w+", text)), default=0)


@pytest.fixture
def started(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    (project / "drop.md").write_text("drop\n")
    return project


OVER_THE_BOUNDS = [
    ("a reason over 4 KiB", ["fail", "PART-1", "--reason", "r" * 4097, *A], "the reason is 4,097 bytes"),
    ("a reopen reason", ["reopen", "PART-2", "--reason", BIG], "the reason is 1,000,000 bytes"),
    ("a review note", ["review", "1", "--approve", "--note", "n" * 5000], "the note is 5,000 bytes"),
    ("a source over 2 KiB", ["tick", "PART-1", "1", "--source", "https://e.org/" + "s" * 2100, *A],
     "a source is 2,114 bytes"),
    ("101 sources", ["tick", "PART-1", "1", *[f"--source=https://e.org/{n}" for n in range(101)], *A],
     "101 sources; give at most 100"),
    ("a PART of a megabyte", ["tick", BIG, "1", *A], "a PART is 1,000,000 bytes"),
    ("a box reference of a megabyte", ["tick", "PART-1", BIG, *A], "a box reference is 1,000,000 bytes"),
    ("a path of a megabyte", ["drop", "PART-1", BIG, *A], "a path is 1,000,000 bytes"),
]


@pytest.mark.parametrize(("name", "argv", "said"), OVER_THE_BOUNDS, ids=[row[0] for row in OVER_THE_BOUNDS])
def test_text_over_its_bound_is_bad_input_that_appends_nothing(kx, started, name, argv, said):
    before = event_count(started)
    result = kx(*argv)
    assert result.code == 2 and said in result.err, result.err[:300]
    assert longest_run(result.err) <= 80 and len(result.err) < 600
    assert event_count(started) == before
    assert BIG not in (started / ".kx" / "kx.log").read_text()


def test_within_the_bounds_is_taken(kx, started):
    assert kx("tick", "PART-1", "1", *[f"--source=https://e.org/{n}" for n in range(100)], *A).code == 0
    assert kx("fail", "PART-1", "--reason", "r" * 4096, *A).code == 0


def test_unknown_references_quote_at_most_80_characters(kx, started):
    for argv in (["tick", "PART-1", "y" * 900, *A], ["tick", "PART-" + "9" * 900, "1", *A],
                 ["events", "--since", "7" * 900]):
        result = kx(*argv)
        assert result.code in (2, 4) and longest_run(result.err) <= 80, result.err[:300]


def test_the_stale_attempt_message_never_says_over_and_current_at_once(kx, started):
    assert kx("fail", "PART-1", "--reason", "no model", *A).code == 0
    ended = kx("tick", "PART-1", "1", *A)
    assert ended.code == 3 and "PART-1#1 has ended (PART-1 is failed)" in ended.err and "current" not in ended.err
    assert kx("retry", "PART-1").code == 0 and kx("start", "PART-1").code == 0
    over = kx("tick", "PART-1", "1", *A)
    assert over.code == 3 and "PART-1#1 is over (PART-1 is running; PART-1#2 is its current attempt)" in over.err


@pytest.mark.slow
@pytest.mark.real_time
def test_mcp_bounds_are_the_clis_and_refusals_name_tool_arguments(kx, started):
    before = event_count(started)

    async def work():
        async with session(kx_mcp(started, "--attempt", "PART-1#1")) as client:
            return [await refused(client, "tick", part="PART-1", refs=["1"],
                                  sources=[f"https://e.org/{n}" for n in range(101)]),
                    await refused(client, "fail", part="PART-1", reason="r" * 5000),
                    await refused(client, "tick", part="PART-1", refs=["z" * 2000]),
                    await refused(client, "tick", part="PART-1", refs=["2.1"])]

    errors = anyio.run(work)
    assert [e.split(":")[0] for e in errors] == ["exit 2", "exit 2", "exit 2", "exit 3"], errors
    assert "101 sources; give at most 100" in errors[0] and "the reason is 5,000 bytes" in errors[1]
    assert all(longest_run(e) <= 80 for e in errors)
    assert "drop (part: PART-1, path: FILE), then tick (part: PART-1, refs: [2.1])" in errors[3]
    assert "--" not in errors[3]
    assert event_count(started) == before


@pytest.mark.slow
@pytest.mark.real_time
def test_kx_mcp_refuses_an_attempt_the_plan_never_started(kx, started):
    command = [sys.executable, "-m", "cli.main", "mcp", "--attempt", "PART-1#9"]
    result = subprocess.run(command, cwd=started, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.strip() == ("kx: error: no attempt 'PART-1#9' in plan plan (PART-1 has 1 attempt);"
                                     " see 'kx status'")
