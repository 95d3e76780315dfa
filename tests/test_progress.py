from __future__ import annotations

import io

from machine.workspace import Workspace
from runners.progress import Progress


def test_live_lines_per_running_part_and_plain_messages(kx, small_plan):
    kx("plan", "import", "plan.md")
    stream = io.StringIO()
    progress = Progress(stream, live=True)
    workspace = Workspace.open()
    progress.update(workspace.state())
    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    progress.update(workspace.state())
    out = stream.getvalue()
    assert "PART-1 started as PART-1#1\n" in out
    assert "▸ PART-1#1       2/5   ticks" in out
    progress.update(workspace.state())
    assert "\x1b[1F\x1b[J" in stream.getvalue()  # the live block is redrawn in place


def test_plain_mode_has_no_escape_codes(kx, small_plan):
    kx("plan", "import", "plan.md")
    stream = io.StringIO()
    progress = Progress(stream, live=False)
    workspace = Workspace.open()
    progress.update(workspace.state())
    kx("start", "PART-1")
    progress.update(workspace.state())
    assert stream.getvalue() == "PART-1 started as PART-1#1\nbatch 1 running\n"
