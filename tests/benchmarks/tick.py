"""``kx tick`` whole-process latency vs ``python -c`` opening the ledger's folder's SQLite and inserting one row.

Also in a project with a ``.kx/config.toml``, as most have: after its first check a tick reads the settings
kept from it (``machine.state.checked_config``) rather than checking the file again.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys

from tests.benchmarks.common import FRESH_PLAN, clean_env, kx_command, row, run, scratch, timed

FLOOR = ("import sqlite3; c = sqlite3.connect('.kx/floor.db', isolation_level=None);"
         " c.execute('PRAGMA synchronous = FULL'); c.execute('BEGIN IMMEDIATE');"
         " c.execute('INSERT INTO t (x) VALUES (1)'); c.execute('COMMIT')")
CLICK_FLOOR = "import click; " + FLOOR


def make_floor_table(folder) -> None:
    """The floor's table, in a WAL database beside the ledger (as the ledger is)."""
    subprocess.run([sys.executable, "-c", "import sqlite3; c = sqlite3.connect('.kx/floor.db');"
                    " c.execute('PRAGMA journal_mode = WAL'); c.execute('CREATE TABLE t (x)')"],
                   cwd=folder, check=True)


def bundled_project(folder) -> list[str]:
    """The bundled plan imported in ``folder``, the floor's table beside its ledger; the ``kx`` command."""
    shutil.copy(FRESH_PLAN, folder / "plan.md")
    kx = kx_command()
    run([*kx, "plan", "import", "plan.md"], folder)
    make_floor_table(folder)
    return kx


CONFIG = '[defaults]\nevidence = "verified"\ntimezone = "UTC"\nretries = 2\n'


def measure(rounds: int = 15) -> list[dict]:
    with scratch() as folder, scratch() as configured:
        kx = bundled_project(folder)
        bundled_project(configured)
        (configured / ".kx" / "config.toml").write_text(CONFIG)
        env = clean_env()
        kx_times, configured_times, floor_times, click_times = [], [], [], []
        for n in range(rounds):
            verb = "tick" if n % 2 == 0 else "untick"
            kx_times.append(timed(subprocess.run, [*kx, verb, "PART-1", "1"], cwd=folder, env=env,
                                  capture_output=True, check=True))
            configured_times.append(timed(subprocess.run, [*kx, verb, "PART-1", "1"], cwd=configured, env=env,
                                          capture_output=True, check=True))
            floor_times.append(timed(subprocess.run, [sys.executable, "-c", FLOOR], cwd=folder, env=env, check=True))
            click_times.append(timed(subprocess.run, [sys.executable, "-c", CLICK_FLOOR], cwd=folder, env=env,
                                     check=True))
    kx_ms, floor_ms = statistics.median(kx_times) * 1000, statistics.median(floor_times) * 1000
    return [row("kx tick latency vs python -c sqlite insert (median)", kx_ms, floor_ms, "ms", "<= 3x"),
            row("  the same with a .kx/config.toml", statistics.median(configured_times) * 1000, floor_ms, "ms",
                "<= 3x"),
            row("  of which: python -c 'import click' + sqlite insert", statistics.median(click_times) * 1000,
                floor_ms, "ms", "(the CLI's own floor)")]
