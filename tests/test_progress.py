from __future__ import annotations

import io

from machine.workspace import Workspace
from runners.progress import Progress


def watching(kx, live):
    """A Progress that has seen the imported plan, its stream and the workspace it reads."""
    kx("plan", "import", "plan.md")
    stream = io.StringIO()
    progress = Progress(stream, live=live)
    workspace = Workspace.open()
    progress.update(workspace.state())
    return progress, stream, workspace


def test_live_lines_per_running_part_and_plain_messages(kx, small_plan):
    progress, stream, workspace = watching(kx, live=True)
    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    progress.update(workspace.state())
    out = stream.getvalue()
    assert "PART-1 started as PART-1#1\n" in out
    assert "▸ PART-1#1       2/5   ticks" in out
    progress.update(workspace.state())
    assert "\x1b[1F\x1b[J" in stream.getvalue()  # the live block is redrawn in place


def test_plain_mode_has_no_escape_codes(kx, small_plan):
    progress, stream, workspace = watching(kx, live=False)
    kx("start", "PART-1")
    progress.update(workspace.state())
    assert stream.getvalue() == "PART-1 started as PART-1#1\nbatch 1 running\n"
