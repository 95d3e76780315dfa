"""kx's writes at their edges (CONTRACT section 8): a person editing the plan while ``kx render`` works, folders
swapped for links mid-write, links at the name, and the temporary files of a killed writer."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from machine.outputs import plan_file
from machine.plan.paths import PathGuard
from runners.protocol import write
from tests.conftest import FRESH, SMALL_PLAN, wait_until
from tests.test_consolidate import run_small_plan

# --- kx render and a person's edits --------------------------------------------------------------

PERSON_LINES = 160
ROUNDS = 400  # tick/render rounds at most: many more than the appends take


@pytest.mark.slow
def test_render_keeps_every_line_a_person_appends_while_kx_ticks_and_renders(kx, project):
    """A person's shell appends a line every 20 ms (``echo ... >> plan.md``, another process) while kx ticks and
    renders in this one."""
    plan = project / "plan.md"
    shutil.copy(FRESH, plan)
    assert kx("plan", "import", "plan.md").code == 0
    lines = [f"person line {n}\n" for n in range(PERSON_LINES)]
    script = ("import sys, time\nfor n in range(int(sys.argv[2])):\n"
              "    with open(sys.argv[1], 'a', encoding='utf-8') as f:\n        f.write(f'person line {n}\\n')\n"
              "    time.sleep(0.02)\n")
    appender = subprocess.Popen([sys.executable, "-c", script, str(plan), str(PERSON_LINES)])
    renders = []
    for _ in range(ROUNDS):
        if appender.poll() is not None:
            break
        for act in ("tick", "untick"):
            assert kx(act, "PART-1", "1").code == 0
            renders.append(kx("--json", "render"))
    appender.wait()
    text = plan.read_text(encoding="utf-8")
    assert [line for line in lines if text.count(line) != 1] == []  # each line kept, once
    assert {r.code for r in renders} <= {0, 3}
    assert all("keeps changing" in r.err for r in renders if r.code == 3)
    assert kx("tick", "PART-1", "1").code == 0 and kx("render").code == 0  # once the edits pause, render writes
    after = plan.read_text(encoding="utf-8")
    assert kx("render", "--check").code == 0 and all(after.count(line) == 1 for line in lines)


def until_rendered(kx, small_plan) -> bytes:
    """SMALL_PLAN imported, its first box ticked in the ledger: the plan file is out of date."""
    assert kx("plan", "import", "plan.md").code == 0 and kx("tick", "PART-1", "1").code == 0
    return small_plan.read_bytes()


def test_an_edit_before_the_rename_is_merged_and_one_after_it_is_carried_over(kx, small_plan, monkeypatch):
    until_rendered(kx, small_plan)
    holder = open(small_plan, "ab")  # a writer that opened the file before render replaced it, as '>>' does
    real = plan_file.Seen.still_at
    asked = []

    def person_edits(seen, place):
        asked.append(place.name)
        if len(asked) == 1:
            with open(small_plan, "ab") as handle:
                handle.write(b"an edit render read too late\n")
        kept = real(seen, place)
        if len(asked) == 2:
            holder.write(b"an edit into the file being replaced\n")
            holder.flush()
        return kept

    monkeypatch.setattr(plan_file.Seen, "still_at", person_edits)
    result = kx("--json", "render")
    holder.close()
    assert result.code == 0 and result.json["written"] and len(asked) == 2
    text = small_plan.read_text()
    assert text.endswith("an edit render read too late\nan edit into the file being replaced\n")
    assert text.count("- [x] Read influences/00-alpha.md") == 1  # the ledger's tick, written
    assert not list(small_plan.parent.glob(".plan.md.*"))


def test_render_gives_up_writing_nothing_when_the_file_keeps_changing(kx, small_plan, monkeypatch):
    before = until_rendered(kx, small_plan)
    real = plan_file.Seen.still_at

    def always_edited(seen, place):
        with open(small_plan, "ab") as handle:
            handle.write(b"one more edit\n")
        return real(seen, place)

    monkeypatch.setattr(plan_file.Seen, "still_at", always_edited)
    result = kx("render")
    assert result.code == 3 and "keeps changing" in result.err and "nothing was written" in result.err
    assert small_plan.read_bytes() == before + b"one more edit\n" * plan_file.RENDER_TRIES
    assert not list(small_plan.parent.glob(".plan.md.*"))


def test_a_plan_kept_outside_the_root_it_was_imported_with_is_still_rendered(kx, small_plan, project):
    (project / "knowledge").mkdir()
    assert kx("plan", "import", "plan.md", "--root", "knowledge").code == 0
    assert kx("tick", "PART-1", "2").code == 0
    assert kx("render").code == 0 and "- [x] Section 1: Alpha overview" in small_plan.read_text()


# --- writes through links --------------------------------------------------------------------------


@pytest.fixture
def runner_brief(kx, small_plan, project, monkeypatch) -> dict:
    """What a runner writes with: the brief's root and plan, ``$KX_LEDGER``."""
    assert kx("plan", "import", "plan.md").code == 0
    monkeypatch.setenv("KX_LEDGER", str(project / ".kx" / "ledger.db"))
    (project / "out").mkdir()
    return {"root": str(project), "plan_path": str(small_plan)}


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outside")


def is_a_ledger(path: Path) -> bool:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] > 0


def park(folder: Path, where: Path) -> None:
    """``folder`` swapped for a symlink to ``where``, as fast as a person's script does it."""
    parked = folder.with_name(folder.name + ".real")
    os.rename(folder, parked)
    for _ in range(100):  # the writer may make the folder again in between: take it away
        try:
            os.symlink(where, folder)
            return
        except FileExistsError:
            shutil.rmtree(folder, ignore_errors=True)
    raise AssertionError(f"{folder} kept coming back")


def unpark(folder: Path) -> None:
    parked = folder.with_name(folder.name + ".real")
    for _ in range(100):
        if folder.is_symlink():
            folder.unlink()
        try:
            os.rename(parked, folder)
            return
        except OSError:  # the writer made the folder again and wrote in it
            shutil.rmtree(folder, ignore_errors=True)
    raise AssertionError(f"{parked} could not go back")


WRITES = 300
SWAPS = 20_000  # at most; the swapping stops when the writes are done


def test_a_folder_swapped_for_a_link_mid_write_never_redirects_the_write(runner_brief, project, outside):
    ledger = project / ".kx" / "ledger.db"
    before, kx_files = ledger.read_bytes(), sorted((project / ".kx").iterdir())
    done = threading.Event()
    swaps = []

    def swapper():
        for n in range(SWAPS):
            if done.is_set():
                return
            park(project / "out", project / ".kx" if n % 2 == 0 else outside)
            unpark(project / "out")
            swaps.append(n)

    thread = threading.Thread(target=swapper)
    thread.start()
    refused = 0
    try:
        for n in range(WRITES):
            try:
                write(runner_brief, "out/ledger.db", f"# written {n}\n")
            except SystemExit as stop:  # the folder was a link to .kx/ or out of the root
                assert stop.code == 2
                refused += 1
            except OSError:  # the folder the write made in a gap, taken away by the swapping
                refused += 1
    finally:
        done.set()
        thread.join()
    assert sorted((project / ".kx").iterdir()) == kx_files
    assert ledger.read_bytes() == before and is_a_ledger(ledger)
    assert list(outside.iterdir()) == []
    assert len(swaps) > 10 and refused < WRITES


@pytest.mark.parametrize("moment", ["before the folder is opened", "after the folder is opened"])
def test_a_swap_between_the_check_and_the_write_cannot_redirect_it(runner_brief, project, monkeypatch, moment):
    """The swap made at the worst moment, every time: right after kx asked whether the folder (or the file) may
    be written."""
    ledger = project / ".kx" / "ledger.db"
    before = ledger.read_bytes()
    root = project.resolve()
    asked_about = root / "out" if moment.startswith("before") else root / "out" / "ledger.db"
    for name in ("problem", "refusal"):  # the guard's question, in whichever form the write asks it
        real = getattr(PathGuard, name, None)
        if real is None:
            continue

        def swapping(guard, path, *args, real=real, **kwargs):
            answer = real(guard, path, *args, **kwargs)
            if Path(guard.root / path) == asked_about and not (project / "out").is_symlink():
                park(project / "out", project / ".kx")
            return answer

        monkeypatch.setattr(PathGuard, name, swapping)
    try:
        write(runner_brief, "out/ledger.db", "# knowledge\n")
    except SystemExit as stop:
        assert stop.code == 2 and moment.startswith("before")
    else:
        assert moment.startswith("after")
        assert (project / "out.real" / "ledger.db").read_text() == "# knowledge\n"  # the folder it opened
    assert ledger.read_bytes() == before and is_a_ledger(ledger)


def test_a_hard_link_at_the_target_is_replaced_not_written_into(runner_brief, project, kx):
    ledger = project / ".kx" / "ledger.db"
    os.link(ledger, project / "out" / "p1.md")
    before = ledger.read_bytes()
    write(runner_brief, "out/p1.md", "# knowledge\n")
    assert ledger.read_bytes() == before and kx("status").code == 0
    target = project / "out" / "p1.md"
    assert target.read_text() == "# knowledge\n" and target.stat().st_ino != ledger.stat().st_ino
    assert ledger.stat().st_nlink == 1


def test_a_symlink_at_the_target_is_replaced_when_it_leads_out_and_followed_when_it_stays_in(runner_brief, project,
                                                                                             outside):
    (outside / "theirs.md").write_text("not kx's\n")
    (project / "out" / "p1.md").symlink_to(outside / "theirs.md")
    write(runner_brief, "out/p1.md", "# knowledge\n")
    assert (outside / "theirs.md").read_text() == "not kx's\n"
    assert not (project / "out" / "p1.md").is_symlink() and (project / "out" / "p1.md").read_text() == "# knowledge\n"

    (project / "out" / "to-ledger.md").symlink_to(project / ".kx" / "ledger.db")
    write(runner_brief, "out/to-ledger.md", "# knowledge\n")
    assert is_a_ledger(project / ".kx" / "ledger.db") and not (project / "out" / "to-ledger.md").is_symlink()

    (project / "shared").mkdir()
    (project / "out" / "p2.md").symlink_to(project / "shared" / "p2.md")  # inside the root: a link kept
    write(runner_brief, "out/p2.md", "# shared\n")
    assert (project / "out" / "p2.md").is_symlink() and (project / "shared" / "p2.md").read_text() == "# shared\n"


def test_folders_made_for_a_runner_never_go_through_a_link_to_kx(runner_brief, project):
    guard = PathGuard.around(project, ledger=project / ".kx" / "ledger.db")
    (project / "deep").symlink_to(project / ".kx")
    assert not guard.make_parent("deep/new/p1.md") and not (project / ".kx" / "new").exists()
    (project / "fine").symlink_to(project / "out")
    assert guard.make_parent("fine/new/p1.md") and (project / "out" / "new").is_dir()


@pytest.mark.slow
def test_consolidation_replaces_links_at_the_index_and_never_writes_through_them(kx, small_plan, project, outside):
    assert kx("plan", "import", "plan.md").code == 0
    run_small_plan(kx, project)
    (outside / "INDEX.md").write_text("their index\n")
    (project / "INDEX.md").symlink_to(outside / "INDEX.md")
    ledger = project / ".kx" / "ledger.db"
    (project / "completed").mkdir()
    os.link(ledger, project / "completed" / "plan.consolidation.md")
    result = kx("consolidate")
    assert result.code == 0, result.err
    assert (outside / "INDEX.md").read_text() == "their index\n"
    index = project / "INDEX.md"
    assert not index.is_symlink() and index.read_text().startswith("<!-- kx:begin plan -->")
    assert is_a_ledger(ledger) and ledger.stat().st_nlink == 1
    assert (project / "completed" / "plan.consolidation.md").read_text().startswith("# Consolidation")


def test_report_and_replay_outputs_replace_links_at_their_names(kx, small_plan, project, outside):
    assert kx("plan", "import", "plan.md").code == 0
    ledger = project / ".kx" / "ledger.db"
    os.link(ledger, project / "report.html")
    (outside / "then.md").write_text("theirs\n")
    (project / "then.md").symlink_to(outside / "then.md")
    assert kx("report", "-o", "report.html").code == 0
    assert kx("replay", "-o", "then.md").code == 0
    assert is_a_ledger(ledger) and (project / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert (outside / "then.md").read_text() == "theirs\n" and (project / "then.md").read_text() == SMALL_PLAN


# --- the temporary files of a killed writer ----------------------------------------------------------


def temp_of(name: str, pid: int, host: str | None = None) -> str:
    from ledger.files import temp_name

    return temp_name(name, pid=pid, host=host)


def a_pid_that_cannot_live() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_the_next_write_removes_its_names_stale_temp_files_and_only_those(tmp_path):
    from ledger.files import STALE_AFTER_S, write_beneath

    dead = temp_of("INDEX.md", a_pid_that_cannot_live())
    living = temp_of("INDEX.md", os.getpid())
    elsewhere = temp_of("INDEX.md", a_pid_that_cannot_live(), host="ffffff")
    old = temp_of("INDEX.md", os.getppid())
    other_name = temp_of("SKILL.md", a_pid_that_cannot_live())
    not_ours = ".INDEX.md.abc123.tmp"
    for name in (dead, living, elsewhere, old, other_name, not_ours):
        (tmp_path / name).write_text("half")
    long_ago = time.time() - STALE_AFTER_S - 60
    os.utime(tmp_path / old, (long_ago, long_ago))
    write_beneath(tmp_path, "INDEX.md", b"# index\n", lambda path: None)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["INDEX.md", living, elsewhere, other_name, not_ours])


def test_a_long_name_gets_a_temp_file_the_folder_can_hold(tmp_path):
    from ledger.files import write_beneath

    name = "é" * 120 + ".md"  # 243 bytes
    write_beneath(tmp_path, name, b"x", lambda path: None)
    assert [p.name for p in tmp_path.iterdir()] == [name]


KILLED_WRITER = """
import os, sys, time
def stuck(fd):
    print("stuck", flush=True)
    time.sleep(600)
os.fsync = stuck  # the first fsync is the index's temporary file: the writer is killed there
from cli.errors import run_guarded
from cli.main import cli
run_guarded(cli, ["consolidate"])
"""


@pytest.mark.slow
def test_a_temp_file_left_by_a_killed_consolidation_is_removed_by_the_next(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    run_small_plan(kx, project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER], cwd=project, env=env, stdout=subprocess.PIPE,
                              start_new_session=True)
    try:
        assert writer.stdout.readline() == b"stuck\n"
        wait_until(lambda: list(project.glob(".INDEX.md.*.tmp")), timeout=30)
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert len(list(project.glob(".INDEX.md.*.tmp"))) == 1
    assert kx("consolidate").code == 0
    assert list(project.glob(".INDEX.md.*")) == [] and (project / "INDEX.md").is_file()
