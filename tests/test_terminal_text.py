"""Plan text reaches a terminal without control sequences; the ledger and ``--json`` keep it as written."""

from __future__ import annotations

import io
import re

import pytest

from tests.conftest import on_a_terminal

TITLE = "\x1b]0;pwned\x07"  # OSC: sets the terminal's window title
CLEAR_RED = "\x1b[2J\x1b[31m"  # CSI: clears the screen, then red
LINK = "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\"  # OSC 8: a hyperlink, ended by ST
PLAN = f"""# BATCH 1: Batch {TITLE}one

## PART 1: Alpha {CLEAR_RED}red\x1b[0m topic

- [ ] PART 1: Create topics/a.md

**Step 1: Create Knowledge File**
- [ ] Section 1: bell\x07 back\x08space del\x7f c1\x9b31m reset\x1bc {LINK}
- [ ] Create KNOWLEDGE-DROP-a-2025-11-14-[TIME].md
"""
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # newline and tab are text
OUR_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def assert_printable(text: str) -> None:
    assert not CONTROL.search(text), repr(text)


def test_plan_text_is_printed_without_control_sequences(kx, project):
    (project / "plan.md").write_text(PLAN, encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    kx("tick", "PART-1", "1", "--by", f"eve{TITLE}")
    kx("start", "PART-1")
    assert kx("fail", "PART-1", "--reason", f"server said {CLEAR_RED}no").code == 0
    for args in (["brief", "PART-1"], ["status"], ["audit", "history", "PART-1"], ["events"], ["plan", "list"],
                 ["plan", "lint"], ["render", "--check"]):
        result = kx(*args)
        assert result.code in (0, 1), result.err
        assert_printable(result.text)
    brief = kx("brief", "PART-1").text
    assert "Alpha red topic" in brief and "bell backspace del c1 reset link" in brief
    assert "pwned" not in brief and "evil.example" not in brief  # a sequence goes whole, its payload too
    assert "server said no" in kx("audit", "history", "PART-1").text
    refused = kx("plan", "import", f"no{TITLE}pe.md")
    assert refused.code == 2 and refused.err == "kx: error: no such plan file: nope.md\n"
    assert "\\u001b]0;pwned\\u0007" in kx("--json", "plan", "import", f"no{TITLE}pe.md").text


@pytest.mark.slow
def test_on_a_terminal_too_and_only_kx_colours_its_status(kx, project):
    (project / "plan.md").write_text(PLAN, encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    assert_printable(on_a_terminal(project, "brief", "PART-1"))
    coloured = on_a_terminal(project, "status")
    assert OUR_COLOURS.search(coloured)
    assert_printable(OUR_COLOURS.sub("", coloured))
    assert "Batch one" in coloured
    assert_printable(on_a_terminal(project, "replay"))


def test_json_and_the_stored_bytes_keep_the_text(kx, project):
    (project / "plan.md").write_text(PLAN, encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    brief = kx("--json", "brief", "PART-1")
    assert brief.json["title"] == f"Alpha {CLEAR_RED}red\x1b[0m topic"
    assert "\\u001b]0;pwned\\u0007" in kx("--json", "status").text  # escaped by JSON, not lost
    assert kx("replay").out == PLAN.encode("utf-8")  # piped: the plan's bytes, exactly


def test_a_runs_progress_lines_hold_no_control_sequences(kx, project):
    from cli.progress import Progress
    from machine.acts.workspace import Workspace

    (project / "plan.md").write_text(PLAN, encoding="utf-8")
    kx("plan", "import", "plan.md")
    stream = io.StringIO()
    progress = Progress(stream)
    workspace = Workspace.open()
    progress.update(workspace.state())
    kx("start", "PART-1")
    kx("fail", "PART-1", "--reason", f"log says {TITLE}{CLEAR_RED}boom", "--attempt", "PART-1#1")
    progress.update(workspace.state())
    assert "PART-1 failed" in stream.getvalue() and "log says boom" in stream.getvalue()
    assert_printable(stream.getvalue())


def test_bidirectional_controls_are_not_printed(kx, project):
    """A right-to-left override in a title would show 'gnp.md' as 'md.png' on a terminal: it goes, as ESC does."""
    bidi = "\u202e"
    text = PLAN.replace("## PART 1: Alpha", f"## PART 1: Alpha {bidi}gnp.exe\u2066x\u2069\u200f")
    (project / "plan.md").write_text(text.replace("Batch ", f"Batch {bidi}"), encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    for args, seen in ((["brief", "PART-1"], "Alpha gnp.exex"), (["status"], "Batch one")):
        shown = kx(*args).text
        assert seen in shown and not re.search("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", shown)
    assert bidi in kx("--json", "brief", "PART-1").json["title"]
