"""A writer to be killed: appends batches of 20 events, each batch tagged, until it is stopped.

    python -m tests.kill_writer LEDGER START
"""

from __future__ import annotations

import sys

from ledger.events.models import CheckboxTicked
from ledger.store import Ledger

BATCH = 20


def main(path: str, start: int) -> None:
    ledger = Ledger.open(path, create=True)
    for batch in range(start, start + 10**6):
        ledger.append([CheckboxTicked(plan="kill", part=f"PART-{n % 7}", box=n, text=f"batch-{batch}", by="writer")
                       for n in range(BATCH)])
        if batch == start:
            print("writing", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
