"""``kx run``'s live view on a terminal: a pure rendering of a progress snapshot, and the view end to end."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest
from rich.console import Console

from cli.live import AttemptRow, BatchRow, LiveView, Snapshot, render, snapshot
from cli.progress import Progress
from cli.run_view import progress_for, wants_live
from machine.acts.workspace import Workspace
from tests.conftest import SMALL_PLAN, SMALL_PLAN_SOURCES, golden, kx_run, real_env

SNAPSHOT = Snapshot(
    batches=(BatchRow(1, "Foundations", "approved", 2, 2), BatchRow(2, "Follow-ups", "running", 1, 3),
             BatchRow(3, "Later", "locked", 0, 4)),
    running=(AttemptRow("PART-4#2", 1, 3, 12.0), AttemptRow("PART-5#1", 0, 5, 185.4)),
    last_event="PART-3 succeeded in 4.2s",
)


def recorded(renderable, width: int = 80) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_view_of_a_snapshot_is_a_bar_per_batch_the_running_attempts_and_the_last_event():
    golden("live-view.txt", recorded(render(SNAPSHOT)))


def test_a_narrow_terminal_cuts_the_last_event_rather_than_adding_lines():
    text = recorded(render(Snapshot(SNAPSHOT.batches, (), "PART-3 failed: " + "a long reason " * 20)), width=60)
    assert text.splitlines()[-1].startswith("last: PART-3 failed: a long reason")
    assert len(text.splitlines()) == len(SNAPSHOT.batches) + 1


def test_the_snapshot_comes_from_the_state_and_elapsed_time_from_the_clock(kx, small_plan, frozen_time):
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    frozen_time.tick(12)
    view = snapshot(Workspace.open().state(), "PART-1 started as PART-1#1")
    assert view == Snapshot(
        batches=(BatchRow(1, "Foundations", "running", 0, 2), BatchRow(2, "Follow-ups", "locked", 0, 2)),
        running=(AttemptRow("PART-1#1", 2, 5, 12.0),),
        last_event="PART-1 started as PART-1#1",
    )


def terminal_console() -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(file=stream, force_terminal=True, width=80, color_system=None), stream


def test_the_live_view_says_the_plain_lines_above_itself_and_leaves_its_last_view(kx, small_plan):
    kx("plan", "import", "plan.md")
    workspace = Workspace.open()
    console, stream = terminal_console()
    with LiveView(console) as view:
        view.update(workspace.state())
        kx("start", "PART-1")
        view.update(workspace.state())
    out = stream.getvalue()
    assert "PART-1 started as PART-1#1\n" in out and "batch 1 running\n" in out  # the plain mode's lines
    assert out.count("\x1b[?25l") == out.count("\x1b[?25h") >= 1  # the cursor is shown again
    final = out[out.rindex("\x1b[?25h"):]
    assert "PART-1#1" in final and "last: batch 1 running" in final


def test_an_error_or_ctrl_c_inside_the_view_ends_it_and_shows_the_cursor(kx, small_plan):
    kx("plan", "import", "plan.md")
    console, stream = terminal_console()
    with pytest.raises(KeyboardInterrupt):
        with LiveView(console) as view:
            view.update(Workspace.open().state())
            raise KeyboardInterrupt
    assert not view.display.is_started
    assert cursor_shown_at_the_end(stream.getvalue())


def test_a_ctrl_c_is_only_counted_in_the_signal_handler(kx, small_plan):
    """The handler prints nothing: a print or log line (the first imports structlog) it cut into would be
    entered again from inside itself; the supervisor's loop says it stops."""
    from runners.supervisor.loop import RunOptions, Supervisor

    kx("plan", "import", "plan.md")
    said = []
    progress = Progress(io.StringIO())
    progress.say = said.append
    supervisor = Supervisor(Workspace.open(), RunOptions(command=["true"]), progress)
    supervisor._interrupt(signal.SIGINT, None)
    assert supervisor.interrupted == 1 and said == []
    with pytest.raises(KeyboardInterrupt):
        supervisor._interrupt(signal.SIGINT, None)


def test_a_question_is_asked_with_the_view_put_away(kx, small_plan):
    kx("plan", "import", "plan.md")
    console, _ = terminal_console()
    seen = []
    with LiveView(console) as view:
        view.update(Workspace.open().state())
        ask = view.pausing(lambda question, choices: seen.append(view.display.is_started) or choices[0])
        assert ask("batch 1: approve / quit?", ["approve", "quit"]) == "approve"
        assert view.display.is_started
    assert seen == [False]


def test_plain_lines_when_piped_with_json_verbose_plain_no_color_or_a_dumb_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert wants_live(plain=False, as_json=False)
    assert not wants_live(plain=True, as_json=False)
    assert not wants_live(plain=False, as_json=True)
    assert not wants_live(plain=False, as_json=False, verbose=True)
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_live(plain=False, as_json=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_live(plain=False, as_json=False)
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert not wants_live(plain=False, as_json=False)


def test_without_the_view_the_progress_is_the_plain_one():
    with progress_for(plain=True, as_json=False) as (progress, ask):
        assert type(progress) is Progress
        from cli.progress import ask_on_terminal

        assert ask is ask_on_terminal


def loaded_rich(folder, *commands: list[str]) -> tuple[list[int], bool]:
    """The exit codes of ``commands`` run in one fresh, piped interpreter in ``folder``, and whether rich got loaded."""
    probe = ("import sys; from cli.errors import run_guarded; from cli.main import cli;"
             f" codes = [run_guarded(cli, args) for args in {list(commands)!r}];"
             " print(codes, 'rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True)
    codes, loaded = out.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    return json.loads(codes), loaded == "True"


@pytest.mark.slow
def test_other_commands_do_not_import_rich(kx, small_plan):
    kx("plan", "import", "plan.md")
    assert loaded_rich(small_plan.parent, ["tick", "PART-1", "1"], ["status"], ["--help"]) == ([0, 0, 0], False)


@pytest.mark.slow
def test_a_piped_run_does_not_import_rich(kx, small_plan):
    """Neither the plain progress nor kx.log's lines (structlog's console renderer would load it) need rich."""
    kx("plan", "import", "plan.md")
    run = ["run", "--runner", "true", "--retries", "0", "--review", "auto", "--until-batch", "1"]
    assert loaded_rich(small_plan.parent, run)[1] is False
    assert "batch 1" in (small_plan.parent / ".kx" / "kx.log").read_text()


# --- end to end, on pseudo-terminals ----------------------------------------------------

def run_args(sleep: float = 0) -> tuple[str, ...]:
    """A quick run of batch 1 whose runner fails (after ``sleep`` seconds): the view, not the work, is tested."""
    return ("run", "--runner", f"sh -c 'sleep {sleep}; exit 2'", "--retries", "0", "--review", "auto",
            "--until-batch", "1")


PLAIN_LINE = re.compile(r"PART-\d+ started as PART-\d+#\d+$|PART-\d+ failed in \d+\.\ds: .+$|batch \d+ [a-z ]+$")


def small_project(folder):
    """SMALL_PLAN imported in ``folder``, with the files it names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.md").write_text(SMALL_PLAN, encoding="utf-8")
    for source in SMALL_PLAN_SOURCES:
        (folder / source).parent.mkdir(parents=True, exist_ok=True)
        (folder / source).write_text(f"# {source}\n\nexisting knowledge\n", encoding="utf-8")
    assert kx_run(folder, "plan", "import", "plan.md")[0] == 0
    return folder


def cursor_shown_at_the_end(err: str) -> bool:
    return err.count("\x1b[?25l") == err.count("\x1b[?25h") and err.rfind("\x1b[?25h") > err.rfind("\x1b[?25l")


def on_terminals(project, *args: str, env: dict | None = None, interrupt_when: bytes | None = None):
    """``kx ARGS`` with stdout and stderr on pseudo-terminals of their own, as a person runs it: exit code, stdout,
    stderr. With ``interrupt_when``: one SIGINT (a Ctrl-C) once stderr shows it."""
    terminals = {name: pty.openpty() for name in ("out", "err")}
    for master, _ in terminals.values():
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    environment = {**real_env(), "TERM": "xterm", "COLUMNS": "100", **(env or {})}
    environment.pop("NO_COLOR", None) if "NO_COLOR" not in (env or {}) else None
    process = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=project, env=environment,
                               stdin=subprocess.DEVNULL, stdout=terminals["out"][1], stderr=terminals["err"][1],
                               start_new_session=True)
    for _, slave in terminals.values():
        os.close(slave)
    seen = {name: b"" for name in terminals}
    open_ends = {master: name for name, (master, _) in terminals.items()}
    deadline = time.monotonic() + 120
    try:
        while open_ends:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select(list(open_ends), [], [], 0.5)
            for master in ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed
                    chunk = b""
                if not chunk:
                    os.close(master)
                    del open_ends[master]
                    continue
                seen[open_ends[master]] += chunk
                if interrupt_when is not None and interrupt_when in seen["err"]:
                    process.send_signal(signal.SIGINT)
                    interrupt_when = None
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return code, *(seen[name].decode("utf-8").replace("\r\n", "\n") for name in ("out", "err"))


@pytest.mark.slow
@pytest.mark.real_time
def test_on_a_terminal_the_view_shows_and_piped_the_lines_are_plain(tmp_path):
    code, out, err = on_terminals(small_project(tmp_path / "tty"), *run_args())
    assert "━" in err and "\x1b[?25l" in err and cursor_shown_at_the_end(err), err  # bars redrawn, cursor back
    assert re.search(r"batch 1 .*2/2", err[err.rindex("\x1b[?25l"):]), err  # the last view: batch 1 settled

    piped = kx_run(small_project(tmp_path / "piped"), *run_args())
    assert piped[:2] == (code, out) and "\x1b" not in piped[1] + piped[2]  # the same exit and summary line
    assert piped[2] and all(PLAIN_LINE.match(line) for line in piped[2].splitlines()), piped[2]


@pytest.mark.slow
@pytest.mark.real_time
def test_plain_on_a_terminal_and_a_ctrl_c_leave_the_terminal_as_it_was(tmp_path):
    project = small_project(tmp_path)
    code, out, err = on_terminals(project, *run_args(), "--plain")
    assert "\x1b" not in out + err and all(PLAIN_LINE.match(line) for line in err.splitlines()), err

    assert kx_run(project, "reopen", "PART-1", "PART-2", "--reason", "again")[0] == 0
    code, out, err = on_terminals(project, *run_args(sleep=2), interrupt_when=b"started as")
    assert code == 130, err
    assert "stopping: no new runners" in err and cursor_shown_at_the_end(err)
    assert out.splitlines()[0] == "interrupted; 'kx resume' continues"  # then the batch's failures, one line each
    assert all(line.startswith("  PART-") for line in out.splitlines()[1:])
