"""Paths from plan text, options and configuration stay inside the plan's root (CONTRACT section 8).

One table of hostile plans: import refuses each (exit 2, one line naming the line and the path) and
appends nothing, lint reports it; then the write sites refuse on their own, for a plan whose structure
got into the ledger without that check (an older kx, a hand-made event).
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.errors import BadInput
from tests.conftest import FROZEN_AT, SMALL_PLAN, SMALL_PLAN_SOURCES, complete, event_count, kx_run

TARGET = "- [ ] PART 1: Create topics/00-alpha.md"
READ = "- [ ] Read influences/00-alpha.md"
FILE_1 = "1. `influences/00-alpha.md` - alpha"
FILE_2 = "2. `influences/01-beta.md` - beta"


def outside(project: Path) -> Path:
    folder = project.parent / f"{project.name}-outside"
    folder.mkdir(exist_ok=True)
    return folder


def symlinked_folder(project: Path) -> None:
    (project / "linked").symlink_to(outside(project), target_is_directory=True)


HOSTILE = [
    # name, line replaced, its hostile version, the path the error names, prepare, global options
    ("the ledger", TARGET, "- [ ] PART 1: Create .kx/ledger.db", ".kx/ledger.db", None, []),
    ("the plan file", TARGET, "- [ ] PART 1: Create plan.md", "plan.md", None, []),
    ("anything in .kx", TARGET, "- [ ] PART 1: Create .kx/notes.md", ".kx/notes.md", None, []),
    ("a ledger elsewhere in the root", TARGET, "- [ ] PART 1: Create state.db", "state.db", None,
     ["--ledger", "state.db"]),
    ("../x", TARGET, "- [ ] PART 1: Create ../x.md", "../x.md", None, []),
    ("out/../../x", TARGET, "- [ ] PART 1: Create out/../../x.md", "out/../../x.md", None, []),
    ("an absolute target", TARGET, "- [ ] PART 1: Create /tmp/kx-absolute/x.md", "/tmp/kx-absolute/x.md", None, []),
    ("a symlinked folder pointing outside", TARGET, "- [ ] PART 1: Create linked/x.md", "linked/x.md",
     symlinked_folder, []),
    ("an influential file outside", FILE_1, "1. `../influences/00-alpha.md` - alpha", "../influences/00-alpha.md",
     None, []),
    ("an absolute influential file", FILE_2, "2. `/etc/hosts` - beta", "/etc/hosts", None, []),
    ("a Read box in .kx", READ, "- [ ] Read .kx/ledger.db", ".kx/ledger.db", None, []),
    ("a Read box outside", READ, "- [ ] Read ../../etc/passwd", "../../etc/passwd", None, []),
]


def hostile_plan(original: str, hostile: str) -> tuple[str, int]:
    assert SMALL_PLAN.count(original) == 1
    text = SMALL_PLAN.replace(original, hostile)
    return text, text.splitlines().index(hostile) + 1


def ledger_file(project: Path, options: list[str]) -> Path:
    return project / options[1] if options else project / ".kx" / "ledger.db"


@pytest.mark.parametrize(("name", "original", "hostile", "path", "prepare", "options"), HOSTILE,
                         ids=[row[0] for row in HOSTILE])
def test_a_hostile_plan_is_refused_and_reported(kx, project, name, original, hostile, path, prepare, options):
    if prepare:
        prepare(project)
    text, line = hostile_plan(original, hostile)
    plan = project / "plan.md"
    plan.write_text(text)

    for as_json in (False, True):
        result = kx(*options, *(["--json"] if as_json else []), "plan", "import", "plan.md")
        assert result.code == 2, result.err
        assert result.err.startswith("kx: error: ") and result.err.count("\n") == 1, result.err
        assert f"plan.md line {line}: {path}" in result.err and "Traceback" not in result.err
    assert not ledger_file(project, options).exists()  # refused before a ledger was made

    linted = kx(*options, "--json", "plan", "lint", "plan.md")
    assert linted.code == 1
    assert {"level": "error", "code": "path", "line": line} in [
        {k: f[k] for k in ("level", "code", "line")} for f in linted.json["findings"] if path in f["message"]]

    plan.write_text(SMALL_PLAN)  # the same plan, then revised into the hostile one
    assert kx(*options, "plan", "import", "plan.md").code == 0
    before = _events(ledger_file(project, options))
    plan.write_text(text)
    result = kx(*options, "plan", "import", "plan.md")
    assert result.code == 2 and f"line {line}: {path}" in result.err
    assert _events(ledger_file(project, options)) == before


MISSPELT = [
    # name, line replaced, its misspelt version, the path as the error shows it, the character it names
    ("an NFD name", TARGET, "- [ ] PART 1: Create topics/cafe\u0301.md", "topics/cafe<U+0301>.md",
     "U+0301 COMBINING ACUTE ACCENT"),
    ("a bidi override", TARGET, "- [ ] PART 1: Create out/\u202egnp.md", "out/<U+202E>gnp.md",
     "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("a bidi mark before the name", TARGET, "- [ ] PART 1: Create \u200ftopics/x.md", "<U+200F>topics/x.md",
     "U+200F RIGHT-TO-LEFT MARK"),
    ("backslashes", TARGET, "- [ ] PART 1: Create ..\\..\\x.md", "..\\..\\x.md", "U+005C REVERSE SOLIDUS"),
    ("division slashes", TARGET, "- [ ] PART 1: Create ..\u2215..\u2215x.md", "..\u2215..\u2215x.md",
     "U+2215 DIVISION SLASH"),
    ("fullwidth dots", TARGET, "- [ ] PART 1: Create \uff0e\uff0e/\uff0e\uff0e/etc/x.md",
     "\uff0e\uff0e/\uff0e\uff0e/etc/x.md", "U+FF0E FULLWIDTH FULL STOP"),
    ("a 300-byte name", TARGET, "- [ ] PART 1: Create topics/" + "n" * 297 + ".md", "topics/nnn",
     "a name of 300 bytes"),
    ("a path over 1 KiB", TARGET, "- [ ] PART 1: Create " + "d/" * 520 + "x.md", "d/d/d/", "1044 bytes"),
    ("a Read box with a zero-width space", READ, "- [ ] Read influences/00-al\u200bpha.md",
     "influences/00-al<U+200B>pha.md", "U+200B ZERO WIDTH SPACE"),
    ("an influential file with a backslash", FILE_1, "1. `influences\\00-alpha.md` - alpha",
     "influences\\00-alpha.md", "U+005C REVERSE SOLIDUS"),
]


@pytest.mark.parametrize(("name", "original", "misspelt", "shown", "character"), MISSPELT,
                         ids=[row[0] for row in MISSPELT])
def test_a_path_that_would_name_another_file_than_written_is_refused(kx, project, name, original, misspelt, shown,
                                                                      character):
    text, line = hostile_plan(original, misspelt)
    plan = project / "plan.md"
    plan.write_text(text)
    result = kx("plan", "import", "plan.md")
    assert result.code == 2 and result.err.startswith("kx: error: ") and result.err.count("\n") == 1, result.err
    assert f"plan.md line {line}: {shown}" in result.err and character in result.err, result.err
    assert "paths in plan text are NFC" in result.err and "\u202e" not in result.err
    assert not (project / ".kx").exists()
    linted = kx("--json", "plan", "lint", "plan.md")
    assert linted.code == 1
    assert [(f["level"], f["code"]) for f in linted.json["findings"] if f.get("line") == line] == [("error", "path")]
    assert kx("plan", "lint", "plan.md").code == 1

    plan.write_text(SMALL_PLAN)  # a revision into the misspelt plan appends nothing
    assert kx("plan", "import", "plan.md").code == 0
    before = _events(project / ".kx" / "ledger.db")
    plan.write_text(text)
    assert kx("plan", "import", "plan.md").code == 2
    assert _events(project / ".kx" / "ledger.db") == before


def test_paths_in_any_script_and_with_plain_punctuation_are_read():
    from machine.plan.parser import parse
    from machine.plan.paths import misspelt_paths

    text = SMALL_PLAN.replace(TARGET, "- [ ] PART 1: Create topics/caf\u00e9-\u65e5\u672c (v2.0), notes_1.md")
    text = text.replace(READ, "- [ ] Read influences/\u00fcber-0.1.md (first, e.g. the intro)")
    assert misspelt_paths(parse(text)) == []


def test_a_search_query_starting_with_a_dash_is_a_lint_warning(kx, project):
    text = SMALL_PLAN.replace(READ, f'{READ}\n- [ ] Search: "--output=/tmp/x vision"\n- [ ] **Search**: "a-b c"')
    (project / "plan.md").write_text(text)
    line = text.splitlines().index('- [ ] Search: "--output=/tmp/x vision"') + 1
    linted = kx("--json", "plan", "lint", "plan.md")
    assert linted.code == 0
    found = [f for f in linted.json["findings"] if f["code"] == "search"]
    assert [(f["level"], f["line"]) for f in found] == [("warning", line)]
    assert "'--' before" in found[0]["message"] and "--output=/tmp/x vision" in found[0]["message"]
    assert kx("plan", "import", "plan.md").code == 0


def _events(ledger: Path) -> int:
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


@pytest.mark.parametrize("plan_id", ["../../x", "a/b", "..", ".hidden", "x y", "a\\b"])
def test_an_unsafe_plan_id_is_refused_where_it_is_given(kx, small_plan, project, plan_id):
    result = kx("--plan", plan_id, "plan", "import", "plan.md")
    assert result.code == 2 and "plan id" in result.err and result.err.count("\n") == 1, result.err
    assert not (project / ".kx").exists()
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("--plan", plan_id, "status").code == 2
    assert kx("--plan", "plan", "status").code == 0


def test_attempt_folders_stay_in_kx_folder(project):
    from runners.attempt_folder import attempt_dir

    ledger = project / ".kx" / "ledger.db"
    assert attempt_dir(ledger, "plan", "PART-7#1") == project / ".kx" / "attempts" / "plan" / "PART-7-1"
    for plan_id, attempt in (("../../x", "PART-7#1"), ("plan", "../../PART-7#1"), ("a/b", "PART-1#1")):
        with pytest.raises(BadInput):
            attempt_dir(ledger, plan_id, attempt)


def test_the_guard_resolves_symlinks_and_keeps_out_of_kx(project):
    from machine.plan.paths import PathGuard

    (project / ".kx").mkdir()
    (project / "plan.md").write_text("x")
    symlinked_folder(project)
    (project / "INDEX.md").symlink_to(outside(project) / "INDEX.md")
    guard = PathGuard.around(project, ledger=project / ".kx" / "ledger.db", plan=project / "plan.md")
    assert guard.problem("topics/x.md") is None and guard.problem(project / "topics" / "x.md") is None
    for path in (".kx/ledger.db", ".kx/attempts/x", "plan.md", "../x.md", "out/../../x.md", "linked/x.md",
                 "INDEX.md", outside(project) / "x.md", ".kx/ledger.db-wal"):
        assert guard.problem(path) is not None, path
    assert guard.problem(project / "topics" / "x.md", relative=True) is not None  # plan text: relative only
    with pytest.raises(BadInput, match="outside the plan's root"):
        guard.check("../x.md")


# --- write sites, for a plan whose structure got into the ledger unchecked -----------


@pytest.fixture
def unchecked(kx, project, monkeypatch):
    """Import a plan without the import-time path check, as an older kx or a hand-made event would."""

    def load(text: str):
        import machine.acts.importer

        (project / "plan.md").write_text(text)
        for source in SMALL_PLAN_SOURCES:  # the files its Read boxes name
            (project / source).parent.mkdir(parents=True, exist_ok=True)
            (project / source).write_text(f"# {source}\n")
        with monkeypatch.context() as patch:
            patch.setattr(machine.acts.importer, "refuse_unsafe_paths", lambda *args, **kwargs: None)
            assert kx("plan", "import", "plan.md").code == 0

    return load


@pytest.mark.slow
@pytest.mark.parametrize("target", [".kx/ledger.db", "plan.md", "../outside.md"])
def test_the_rehearse_runner_refuses_a_target_outside(kx, project, unchecked, target):
    unchecked(SMALL_PLAN.replace("Create topics/00-alpha.md", f"Create {target}"))
    plan_before = (project / "plan.md").read_bytes()
    attempt = kx("start", "PART-1").text.strip()
    brief = kx("--json", "brief", "PART-1").json
    env = {**os.environ, "KX_LEDGER": str(project / ".kx" / "ledger.db"), "KX_PART": "PART-1",
           "KX_ATTEMPT": attempt, "KX_TARGET": brief["target_path"], "KX_DROP": brief["drop_path"],
           "KX_NOW": FROZEN_AT, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    run = subprocess.run([sys.executable, "-m", "runners.rehearse"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "kx: error: " in run.stderr and target in run.stderr
    assert (project / ".kx" / "ledger.db").read_bytes().startswith(b"SQLite format 3")
    assert (project / "plan.md").read_bytes() == plan_before
    assert not (project.parent / "outside.md").exists()
    assert event_count(project) > 0 and kx("audit", "verify").code == 0


def test_a_runner_never_writes_over_the_ledger_or_the_plan(project, monkeypatch):
    from runners.protocol import write

    (project / ".kx").mkdir()
    monkeypatch.setenv("KX_LEDGER", str(project / ".kx" / "ledger.db"))
    brief = {"root": str(project), "plan_path": str(project / "plan.md")}
    for path in (project / ".kx" / "ledger.db", project / "plan.md", project.parent / "x.md"):
        with pytest.raises(SystemExit) as stopped:
            write(brief, str(path), "overwritten")
        assert stopped.value.code == 2 and not path.exists()
    write(brief, str(project / "topics" / "x.md"), "fine")
    assert (project / "topics" / "x.md").read_text() == "fine"


def approve_everything(kx, project):
    for batch, parts in ((1, ("PART-1", "PART-2")), (2, ("PART-3", "PART-4"))):
        for part in parts:
            kx("start", part)
            assert complete(kx, project, part, f"{part}#1").code == 0
        assert kx("review", str(batch), "--approve", "--by", "rita").code == 0


def test_consolidate_refuses_a_knowledge_file_outside_before_writing(kx, project, unchecked):
    unchecked(SMALL_PLAN.replace("Create topics/00-alpha.md", "Create ../outside.md"))
    (project / ".kx" / "config.toml").write_text('[defaults]\nevidence = "ticked"\n')  # finish checks no target
    linted = kx("--json", "plan", "lint")  # the ledger's plan, with the ledger's root
    assert linted.code == 1 and any(f["code"] == "path" and "../outside.md" in f["message"]
                                    for f in linted.json["findings"])
    approve_everything(kx, project)
    (project.parent / "outside.md").write_text("# outside\n")
    result = kx("consolidate")
    assert result.code == 2 and "../outside.md" in result.err and result.err.count("\n") == 1, result.err
    assert not (project / "INDEX.md").exists() and not (project / "completed").exists()
    assert (project / "plan.md").exists() and not kx("--json", "status").json["consolidated"]


@pytest.mark.parametrize(("options", "named", "prepare"), [
    (["--index", ".kx/ledger.db"], ".kx/ledger.db", None),
    (["--index", "plan.md"], "plan.md", None),
    (["--index", "../INDEX.md"], "INDEX.md", None),
    (["--skill", "../SKILL.md"], "SKILL.md", None),
    (["--completed-dir", ".kx/done"], ".kx/done", None),
    (["--completed-dir", ".."], "..", None),
    (["--completed-dir", "linked"], "linked", symlinked_folder),
], ids=lambda o: " ".join(o) if isinstance(o, list) else None)
def test_consolidate_refuses_destinations_outside(kx, small_plan, project, options, named, prepare):
    kx("plan", "import", "plan.md")
    approve_everything(kx, project)
    if prepare:
        prepare(project)
    before = event_count(project)
    result = kx("consolidate", *options)
    assert result.code == 2 and result.err.count("\n") == 1 and named in result.err, result.err
    assert list(outside(project).iterdir()) == [] and not (project.parent / "INDEX.md").exists()
    assert not (project.parent / "SKILL.md").exists() and not (project.parent / "plan.md").exists()
    assert (project / "plan.md").read_bytes() == small_plan.read_bytes() and not (project / "completed").exists()
    assert event_count(project) == before and not kx("--json", "status").json["consolidated"]


@pytest.mark.parametrize("name", [".kx/x.md", "plan.md"])
def test_a_drop_in_kx_folder_or_the_plan_is_refused(kx, small_plan, project, name):
    kx("plan", "import", "plan.md")
    (project / ".kx" / "x.md").write_text("x")
    before = event_count(project)
    result = kx("drop", "PART-1", name)
    assert result.code == 2 and name in result.err
    assert event_count(project) == before


# --- bounded ranges --------------------------------------------------------------------


HUGE = SMALL_PLAN.replace("**Influenced by**: Files 1,2", "**Influenced by**: Files 1-99999999")


def test_a_huge_file_range_resolves_to_the_listed_files(kx, project):
    from machine.plan.parser import parse
    from runners.chat.evidence import evidenced_refs

    assert parse(HUGE).part(1).influenced_by == (1, 2)
    (project / "plan.md").write_text(HUGE)
    linted = kx("--json", "plan", "lint", "plan.md")
    line = HUGE.splitlines().index("**Influenced by**: Files 1-99999999") + 1
    assert {"level": "warning", "code": "files", "line": line,
            "message": "PART-1: Files 3-99999999 are not in the plan's list of influential files (2 files)"} \
        in linted.json["findings"]
    assert kx("plan", "import", "plan.md").code == 0
    assert [f["number"] for f in kx("--json", "brief", "PART-1").json["influential_files"]] == [1, 2]
    brief = {"influential_files": [{"number": 1, "path": "a.md"}],
             "boxes": [{"ref": "1", "text": "CITE: Files 1-99999999", "ticked": False}]}
    assert evidenced_refs(brief, "see File 1") == (["1"], [])


def test_ship_globs_stay_inside_the_root(project):
    from machine.state.config import load_config

    (project / "config.toml").write_text('[defaults.ray]\nship = ["../secrets/*"]\n')
    with pytest.raises(BadInput, match="relative to the plan's root"):
        load_config(project, "plan")


# --- a runner's folders: made before it starts, inside the root only ----------------------------------------

WRITING_RUNNER = """\
import os, subprocess, sys
open(os.environ["KX_TARGET"], "w").write("# Alpha\\n")
open(os.environ["KX_DROP"], "w").write("a drop\\n")
subprocess.run(["kx", "drop", os.environ["KX_PART"], os.environ["KX_DROP"]], check=True)
"""


@pytest.mark.slow
@pytest.mark.real_time
def test_a_runner_writes_its_target_into_a_folder_that_did_not_exist(kx, project):
    (project / "plan.md").write_text("# BATCH 1: One\n\n## PART 1: Alpha\n\n- [ ] PART 1: Create deep/new/alpha.md\n\n"
                                     "- [ ] Create KNOWLEDGE-DROP-alpha-2025-11-14-[TIME].md\n", encoding="utf-8")
    (project / ".kx").mkdir()
    (project / ".kx" / "config.toml").write_text('[plans.plan]\nevidence = "drop"\n', encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    (project / "writer.py").write_text(WRITING_RUNNER, encoding="utf-8")
    spec = f"{shlex.quote(sys.executable)} writer.py"
    code, _, err = kx_run(project, "run", "--runner", spec, "--until-batch", "1", "--review", "auto")
    log = next((project / ".kx" / "attempts" / "plan").glob("PART-1-1/runner.log")).read_text()
    assert code == 0, err + log
    assert (project / "deep" / "new" / "alpha.md").read_text() == "# Alpha\n"
    assert kx("--json", "status").json["batches"][0]["parts"][0]["state"] == "succeeded"


def test_only_folders_inside_the_root_are_made(tmp_path):
    from machine.plan.paths import PathGuard

    root = tmp_path / "root"
    root.mkdir()
    guard = PathGuard.around(root, ledger=root / ".kx" / "ledger.db")
    assert guard.make_parent(root / "a" / "b" / "c.md") and (root / "a" / "b").is_dir()
    assert not guard.make_parent(tmp_path / "outside" / "x.md") and not (tmp_path / "outside").exists()
    assert not guard.make_parent(root / ".kx" / "attempts" / "x.md") and not (root / ".kx").exists()
    assert not guard.make_parent(None)
