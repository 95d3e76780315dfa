"""SIGKILL a writer in the middle of appends, many times at seeded random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from ledger.store import Ledger
from machine.acts.audit import integrity
from tests.kill_writer import BATCH

pytestmark = pytest.mark.slow
KILLS = 12


def test_killed_writers_leave_no_partial_event(tmp_path, kx, project):
    path = project / ".kx" / "ledger.db"
    chance = random.Random(1120)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for kill in range(KILLS):
        writer = subprocess.Popen([sys.executable, "-m", "tests.kill_writer", str(path), str(kill * 10**6)],
                                  env=env, stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"writing\n"
        time.sleep(chance.uniform(0.0, 0.25))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        ledger = Ledger.open(path)
        rows = ledger.read()
        assert integrity(ledger) == []  # the chain, and the head moved in the same transaction as the events
        ledger.close()
        sizes = Counter(row.data["text"] for row in rows)
        assert set(sizes.values()) == {BATCH}, "a batch was cut in two"
    assert len(rows) >= KILLS * BATCH
    assert kx("audit", "verify").code == 0
