"""``kx serve``'s dashboard (``GET /``) on a long ledger vs ``kx --json status`` on the same ledger.

The dashboard answers from a running server, as it stays up: asked again with nothing new, and asked right after
each of a few ticks (its state folds the new events). ``kx --json status`` is a process per call. The target: the
dashboard under 200 ms at 1,000,000 events, and no slower than the status.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import httpx

from tests.benchmarks.common import clean_env, kx_command, row, run, timed
from tests.benchmarks.status import status_seconds

TOKEN = "benchmark"


def dashboard_seconds(folder: Path, rounds: int = 9) -> tuple[float, float]:
    """The median time of ``GET /`` from a ``kx serve`` of ``folder``'s ledger after one request to warm it: with
    nothing new, and right after a tick or untick each time."""
    server = subprocess.Popen([*kx_command(), "serve", "--port", "0", "--token", TOKEN], cwd=folder, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = server.stdout.readline().decode().strip().split("/?", 1)[0]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
            client.get("/").raise_for_status()
            again = statistics.median(timed(lambda: client.get("/").raise_for_status()) for _ in range(rounds))
            after = []
            for n in range(rounds):
                run([*kx_command(), "untick" if n % 2 else "tick", "PART-1", "1"], folder)
                after.append(timed(lambda: client.get("/").raise_for_status()))
        return again, statistics.median(after)
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure(folder: Path, events: int) -> list[dict]:
    floor = status_seconds(folder) * 1000  # it rebuilds the read model first, as kx status finds it after any act
    again, after = (seconds * 1000 for seconds in dashboard_seconds(folder))
    return [row(f"kx serve dashboard vs kx --json status, {events:,} events", again, floor, "ms", "< 200 ms; <= 1x"),
            row(f"kx serve dashboard after a tick vs kx --json status, {events:,} events", after, floor, "ms",
                "< 200 ms; <= 1x")]
