"""``kx status`` on a long ledger vs on a short one (same 1,000-PART plan), read model current on both."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

from tests.benchmarks.common import clean_env, kx_command, row, run, timed


def status_seconds(folder: Path, rounds: int = 5) -> float:
    kx = kx_command()
    run([*kx, "audit", "rebuild"], folder)
    return statistics.median(timed(subprocess.run, [*kx, "--json", "status"], cwd=folder, env=clean_env(),
                                   capture_output=True, check=True) for _ in range(rounds))


def measure(long_folder: Path, long_events: int, short_folder: Path, short_events: int) -> list[dict]:
    return [row(f"kx status on {long_events:,} vs {short_events:,} events", status_seconds(long_folder) * 1000,
                status_seconds(short_folder) * 1000, "ms", "<= 1.5x")]
