from __future__ import annotations

import io

from cli.progress import Progress
from machine.acts.workspace import Workspace


def watching(kx):
    """A Progress that has seen the imported plan, its stream and the workspace it reads."""
    kx("plan", "import", "plan.md")
    stream = io.StringIO()
    progress = Progress(stream)
    workspace = Workspace.open()
    progress.update(workspace.state())
    return progress, stream, workspace


def test_plain_mode_has_no_escape_codes(kx, small_plan):
    progress, stream, workspace = watching(kx)
    kx("start", "PART-1")
    progress.update(workspace.state())
    assert stream.getvalue() == "PART-1 started as PART-1#1\nbatch 1 running\n"
