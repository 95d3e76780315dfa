"""``kx mcp`` that stops inside the transaction of its first append, for a test to kill it there.

    python -m tests.mcp_stall MARKER mcp [ARGS...]

Once the events and the read model are written but not committed, it writes its pid to MARKER and sleeps.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ledger.derived import readmodel


def stall_before_commit(marker: Path) -> None:
    save = readmodel.save

    def save_then_stall(*args, **kwargs):
        save(*args, **kwargs)
        marker.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(600)

    readmodel.save = save_then_stall


if __name__ == "__main__":
    stall_before_commit(Path(sys.argv[1]))
    from cli.errors import run_guarded
    from cli.main import cli

    sys.exit(run_guarded(cli, sys.argv[2:]))
