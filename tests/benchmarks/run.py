"""Every kx benchmark, each a ratio against a floor measured side by side in the same run.

    python -m tests.benchmarks.run            # the full figures (1,000,000-event ledger; a few minutes)
    python -m tests.benchmarks.run --quick    # small sizes, to check that the benchmarks still run
"""

from __future__ import annotations

import argparse

from tests.benchmarks import (
    append,
    big_part,
    contention,
    dashboard,
    mcp_session,
    orchestration,
    rebuild,
    status,
    tick,
    waiting,
)
from tests.benchmarks.big_ledger import make
from tests.benchmarks.common import compile_kx, print_table, scratch


def all_rows(quick: bool) -> list[dict]:
    compile_kx()
    rows = [*append.measure(200 if quick else 2000), *tick.measure(3 if quick else 15),
            *mcp_session.measure(5 if quick else 40)]
    long_events, short_events = (20_000, 1_000) if quick else (1_000_000, 1_000)
    with scratch() as long_folder, scratch() as short_folder:
        make(long_folder, long_events)
        make(short_folder, short_events)
        rows += rebuild.measure(long_folder / ".kx" / "ledger.db", long_events)
        rows += status.measure(long_folder, long_events, short_folder, short_events)
        rows += dashboard.measure(long_folder, long_events)
    rows += big_part.measure(2_000 if quick else 20_000, 1 if quick else 5)
    rows += contention.measure(1 if quick else 5)
    rows += [orchestration.measure(), orchestration.measure_reporting()]
    rows += waiting.measure(1 if quick else 10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benchmarks, not kx's speed")
    print_table(all_rows(parser.parse_args().quick))


if __name__ == "__main__":
    main()
