"""The bad-input table: each row a clear one-line error, the CONTRACT exit code, and an unchanged ledger."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tests.conftest import event_count


def ledger_fingerprint(project):
    path = project / ".kx" / "ledger.db"
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*), MAX(position), MAX(hash) FROM events").fetchone()


def setup_plan(kx, project):
    assert kx("plan", "import", "plan.md").code == 0


def started(kx, project):
    setup_plan(kx, project)
    kx("start", "PART-1")
    kx("fail", "PART-1", "--reason", "x", "--attempt", "PART-1#1")
    kx("retry", "PART-1")
    kx("start", "PART-1")


def outside_file(project):
    outside = project.parent / f"{project.name}-outside.md"
    outside.write_text("x")
    return outside


def symlinked_out(project):
    (project / "link.md").symlink_to(outside_file(project))
    return "link.md"


def newer_schema(project):
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        conn.execute("UPDATE kx_meta SET value = '99' WHERE key = 'schema_version'")


def not_sqlite(project):
    (project / "junk.db").write_bytes(b"\x00not a database" * 64)


def read_only(project):
    os.chmod(project / ".kx" / "ledger.db", 0o444)


ROWS = [
    # name, prepare (after a plan import unless noted), argv, exit code, message fragment
    ("missing plan", None, ["plan", "import", "nope.md"], 2, "no such plan file"),
    ("empty plan", lambda p: (p / "bad.md").write_bytes(b""), ["plan", "import", "bad.md"], 2, "is empty"),
    ("binary plan", lambda p: (p / "bad.md").write_bytes(b"\x7fELF\x00\x01"), ["plan", "import", "bad.md"], 2, "binary"),
    ("latin-1 plan", lambda p: (p / "bad.md").write_bytes("## PART 1: Café".encode("latin-1")),
     ["plan", "import", "bad.md"], 2, "not UTF-8"),
    ("no PARTs", lambda p: (p / "bad.md").write_text("# Title\n- [ ] box\n"), ["plan", "import", "bad.md"], 2, "no PART"),
    ("duplicate PART numbers", lambda p: (p / "bad.md").write_text("## PART 1: a\n## PART 1: b\n"),
     ["plan", "import", "bad.md"], 2, "PART 1 twice"),
    ("unknown PART", None, ["tick", "PART-42", "1"], 4, "no PART-42"),
    ("unknown box", None, ["tick", "PART-1", "no such box"], 4, "no box of PART-1 contains"),
    ("unknown box number", None, ["tick", "PART-1", "99"], 4, "no box 99"),
    ("unknown batch", None, ["review", "9", "--approve"], 4, "no batch 9"),
    ("unknown plan", None, ["--plan", "nope", "status"], 4, "no plan 'nope'"),
    ("ambiguous box text", None, ["tick", "PART-1", "section"], 4, "matches 3 boxes"),
    ("drop outside the root (../)", outside_file, ["drop", "PART-1", "../{outside}"], 2, "outside the plan's root"),
    ("drop outside the root (absolute)", outside_file, ["drop", "PART-1", "{outside_abs}"], 2, "outside the plan's root"),
    ("drop through a symlink out", symlinked_out, ["drop", "PART-1", "link.md"], 2, "outside the plan's root"),
    ("stale attempt", "started", ["tick", "PART-1", "1", "--attempt", "PART-1#1"], 3, "stale attempt"),
    ("review of a batch not awaiting review", None, ["review", "1", "--approve"], 3, "not awaiting review"),
    ("start behind a locked gate", None, ["start", "PART-3"], 3, "gate:"),
    ("finish without evidence", None, ["finish", "PART-1"], 3, "evidence:"),
    ("read-only ledger file", read_only, ["tick", "PART-1", "1"], 2, "read-only"),
    ("ledger that is not SQLite", not_sqlite, ["--ledger", "junk.db", "status"], 2, "not a kx ledger"),
    ("newer schema version", newer_schema, ["status"], 2, "newer than this kx knows"),
    ("no ledger at all", "no-ledger", ["status"], 2, "no ledger found"),
    ("usage error", None, ["tick"], 2, "Missing argument"),
    ("bad option value", None, ["replay", "--until", "soon"], 2, "is not a valid integer"),
]


@pytest.mark.parametrize(("name", "prepare", "argv", "code", "message"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(kx, small_plan, project, name, prepare, argv, code, message):
    if prepare != "no-ledger":
        setup_plan(kx, project)
    if prepare == "started":
        started(kx, project)
    elif callable(prepare):
        prepare(project)
    outside = project.parent / f"{project.name}-outside.md"
    argv = [a.format(outside=outside.name, outside_abs=outside) for a in argv]
    before = ledger_fingerprint(project)
    for as_json in (False, True):
        result = kx(*(["--json"] if as_json else []), *argv)
        assert result.code == code, result.err
        assert result.err.startswith("kx: error: ") and result.err.count("\n") == 1, result.err
        assert message in result.err and "Traceback" not in result.err
        if as_json:
            assert result.json["error"]["code"] == code
    assert ledger_fingerprint(project) == before


def test_verbose_shows_the_traceback(kx, small_plan, project):
    setup_plan(kx, project)
    result = kx("-v", "tick", "PART-42", "1")
    assert result.code == 4 and "Traceback" in result.err


@pytest.mark.real_time  # the subprocess's timeout runs on the real clock
def test_run_on_a_read_only_ledger_stops_at_once(kx, small_plan, project):
    from tests.conftest import kx_subprocess

    setup_plan(kx, project)
    read_only(project)
    before = ledger_fingerprint(project)
    result = kx_subprocess("run", "--runner", "rehearse", "--review", "auto", cwd=project)  # it looped, forking wrappers
    err = result.stderr.decode()
    assert result.returncode == 2 and err.startswith("kx: error: ") and err.count("\n") == 1, err
    assert "read-only" in err and "Traceback" not in err
    assert ledger_fingerprint(project) == before and not (project / ".kx" / "attempts").exists()
