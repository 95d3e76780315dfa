"""A tick through a live ``kx mcp`` session vs ``python -c`` opening SQLite and inserting one row.

An agent holds one session for its whole attempt: the server has its interpreter, imports and ledger connection
already, so a call costs the command's own work and its commit. Measured as the agent sees it, from the SDK's
client over stdio: request, the CLI run in the server, the JSON result back.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tests.benchmarks.common import clean_env, row, scratch, timed
from tests.benchmarks.tick import FLOOR, bundled_project

WARM_UP = 3


def measure(rounds: int = 40) -> list[dict]:
    import anyio

    with scratch() as folder:
        kx = bundled_project(folder)
        session_times, floor_times = anyio.run(_side_by_side, folder, kx, rounds)
    session_ms, floor_ms = statistics.median(session_times) * 1000, statistics.median(floor_times) * 1000
    return [row("tick through a kx mcp session vs the python -c floor", session_ms, floor_ms, "ms", "<= 0.2x")]


async def _side_by_side(folder, kx: list[str], rounds: int) -> tuple[list[float], list[float]]:
    """Each round: one tick (or untick) through the session, then one floor process."""
    from mcp import Client, StdioServerParameters

    server = StdioServerParameters(command=kx[0], args=[*kx[1:], "mcp"], cwd=str(folder), env=clean_env())
    session_times, floor_times = [], []
    async with Client(server, mode="legacy") as client:
        for n in range(WARM_UP + rounds):
            started = time.perf_counter()
            result = await client.call_tool("tick" if n % 2 == 0 else "untick", {"part": "PART-1", "refs": ["1"]})
            elapsed = time.perf_counter() - started
            assert not result.is_error, result.content[0].text
            if n >= WARM_UP:
                session_times.append(elapsed)
                floor_times.append(timed(subprocess.run, [sys.executable, "-c", FLOOR], cwd=folder, env=clean_env(),
                                         check=True))
    return session_times, floor_times
