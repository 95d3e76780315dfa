"""The bad-input table: each row a clear one-line error, the CONTRACT exit code, and an unchanged ledger."""

from __future__ import annotations

import os
import sqlite3

import pytest


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


def config(text):
    return lambda project: (project / ".kx" / "config.toml").write_text(text)


def plan_became_a_folder(project):
    (project / "plan.md").unlink()
    (project / "plan.md").mkdir()


def ledger_env_names_a_folder(project):
    (project / "folder").mkdir()
    return {"KX_LEDGER": str(project / "folder")}


def vanishing_drop(project, monkeypatch):
    """The drop file is deleted while kx hashes it (and written again afterwards, for the next run)."""
    from machine.acts import lifecycle as actions

    drop = project / "drop.md"
    drop.write_text("a drop\n")
    real = actions.sha256_of

    def racing(path):
        drop.unlink()
        try:
            return real(path)
        finally:
            drop.write_text("a drop\n")

    monkeypatch.setattr(actions, "sha256_of", racing)


HUGE = str(10**30)  # beyond SQLite's 64-bit integers
UTF16_PLAN = "## PART 1: Café\n- [ ] PART 1: Create topics/a.md\n"


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
    ("huge batch number", None, ["review", "100000000000000000000000", "--approve"], 2, "is not in the range"),
    ("huge batch number, no ledger", "no-ledger", ["review", "100000000000000000000000", "--approve"], 2,
     "is not in the range"),
    ("huge --since", None, ["events", "--since", HUGE], 2, "is not in the range"),
    ("huge --until", None, ["replay", "--until", HUGE], 2, "is not in the range"),
    ("huge --until-batch", None, ["run", "--runner", "rehearse", "--until-batch", HUGE], 2, "is not in the range"),
    ("plan file became a folder", plan_became_a_folder, ["render"], 2, "is not a file"),
    ("config: defaults not a table", config("defaults = 5\n"), ["status"], 2, "defaults"),
    ("config: a plan's settings not a table", config("[plans]\nplan = 5\n"), ["status"], 2, "plans.plan"),
    ("config: negative lease", config("[defaults]\nlease_seconds = -5\n"), ["status"], 2, "lease_seconds"),
    ("config: endless lease", config("[defaults]\nlease_seconds = inf\n"), ["status"], 2, "lease_seconds"),
    ("config: negative retries", config("[defaults]\nretries = -1\n"), ["status"], 2, "retries"),
    ("config: policy not a boolean", config("[defaults]\nrequire_all_ticked = 'no'\n"), ["status"], 2,
     "require_all_ticked"),
    ("config: empty runner", config("[defaults]\nrunner = []\n"), ["status"], 2, "runner"),
    ("config: nested-array bomb", config("a = " + "[" * 100_000 + "]" * 100_000 + "\n"), ["status"], 2,
     "nests deeper than 32"),
    ("config: nested inline tables", config("a = " + "{b = " * 40 + "1" + "}" * 40 + "\n"), ["status"], 2,
     "nests deeper than 32"),
    ("config: a 100 KB dotted key", config("[defaults]\n" + ".".join(["a"] * 50_000) + " = 1\n"), ["status"], 2,
     "nests deeper than 32"),
    ("config: a deep table header", config("[" + ".".join(["t"] * 40) + "]\n"), ["status"], 2,
     "nests deeper than 32"),
    ("config: over 256 KiB", config("# padding\n" * 30_000), ["status"], 2, "larger than 256 KiB"),
    ("$KX_LEDGER names a folder", ledger_env_names_a_folder, ["status"], 2, "is not a file"),
    ("--ledger /dev/null", None, ["--ledger", "/dev/null", "plan", "import", "plan.md"], 2, "is not a file"),
    ("drop file deleted while hashed", vanishing_drop, ["drop", "PART-1", "drop.md"], 2, "cannot read"),
    ("-o into a missing folder", None, ["replay", "-o", "nofolder/x.md"], 2, "no folder nofolder for x.md"),
    ("-o under a file", None, ["replay", "-o", "plan.md/x.md"], 2, "no folder plan.md for x.md"),
    ("replay -o over the ledger", None, ["replay", "-o", ".kx/ledger.db"], 2, "is in kx's folder"),
    ("replay -o over the plan", None, ["replay", "-o", "plan.md"], 2, "plan.md is the plan file"),
    ("replay -o out of the root", None, ["replay", "-o", "../x.md"], 2, "is outside the plan's root"),
    ("report -o over the ledger", None, ["report", "-o", ".kx/ledger.db"], 2, "is in kx's folder"),
    ("report -o out of the root", None, ["report", "-o", "../r.html"], 2, "is outside the plan's root"),
    ("huge batch number in the plan", lambda p: (p / "bad.md").write_text(f"# BATCH {10**23}: B\n## PART 1: a\n"),
     ["plan", "import", "bad.md"], 2, "bad.md line 1: 100000000000000000000000 is beyond the largest number"),
    ("serve on an address it cannot bind", None, ["serve", "--host", "192.0.2.1", "--port", "0"], 2,
     "cannot listen on 192.0.2.1:0"),
    ("serve with a blank token", None, ["serve", "--token", " "], 2, "the token must be"),
    ("serve an unknown plan", None, ["--plan", "nope", "serve"], 4, "no plan 'nope'"),
    ("UTF-16 plan", lambda p: (p / "bad.md").write_text(UTF16_PLAN, encoding="utf-16"),
     ["plan", "import", "bad.md"], 2, "UTF-16 is not supported; save it as UTF-8"),
    ("UTF-16 plan without BOM", lambda p: (p / "bad.md").write_text(UTF16_PLAN, encoding="utf-16-le"),
     ["plan", "import", "bad.md"], 2, "UTF-16 is not supported; save it as UTF-8"),
]


def files_of(project):
    """What a refused command must not create (its own log line and SQLite's side files aside)."""
    return {p for p in project.rglob("*") if p.name not in ("kx.log", "ledger.db-wal", "ledger.db-shm")}


@pytest.mark.parametrize(("name", "prepare", "argv", "code", "message"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(kx, small_plan, project, monkeypatch, name, prepare, argv, code, message):
    if prepare != "no-ledger":
        setup_plan(kx, project)
    if prepare == "started":
        started(kx, project)
    elif callable(prepare):
        wants_monkeypatch = prepare.__code__.co_argcount == 2
        env = prepare(project, monkeypatch) if wants_monkeypatch else prepare(project)
        for key, value in (env if isinstance(env, dict) else {}).items():
            monkeypatch.setenv(key, value)
    outside = project.parent / f"{project.name}-outside.md"
    argv = [a.format(outside=outside.name, outside_abs=outside) for a in argv]
    before, files = ledger_fingerprint(project), files_of(project)
    for as_json in (False, True):
        result = kx(*(["--json"] if as_json else []), *argv)
        assert result.code == code, result.err
        assert result.err.startswith("kx: error: ") and result.err.count("\n") == 1, result.err
        assert message in result.err and "Traceback" not in result.err, result.err
        if as_json:
            assert result.json["error"]["code"] == code
    assert ledger_fingerprint(project) == before
    assert files_of(project) == files


def test_verbose_shows_the_traceback(kx, small_plan, project):
    setup_plan(kx, project)
    result = kx("-v", "tick", "PART-42", "1")
    assert result.code == 4 and "Traceback" in result.err


@pytest.mark.slow
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


def test_config_nesting_is_counted_as_toml_nests_it():
    """Brackets and dots in strings and comments do not count; a file nesting exactly the limit is read."""
    from machine.state.config import MAX_CONFIG_DEPTH, too_deep

    def depth(value):
        if isinstance(value, (dict, list)):
            return 1 + max(map(depth, value.values() if isinstance(value, dict) else value), default=0)
        return 0

    import tomllib

    at_the_limit = "[a]\n" + ".".join(["k"] * (MAX_CONFIG_DEPTH - 3)) + " = [[1]]\n"
    deep = "[{." * 40
    quiet = "".join(f'x{n} = "{deep}"\ny{n} = \'\'\'\n{deep}\n\'\'\'\n# {deep}\n"{deep}{n}" = 1.5e3\n'
                    f"t{n} = 1979-05-27T07:32:00.999Z\n" for n in range(40))
    for text in (at_the_limit, quiet, "[[arr.of]]\nk = { x.y = [1, { z = 2 }] }\n"):
        assert too_deep(text) is None and depth(tomllib.loads(text)) <= MAX_CONFIG_DEPTH + 1
    assert too_deep("ok = 1\n" + "a = " + "[" * (MAX_CONFIG_DEPTH + 1)) == 2
