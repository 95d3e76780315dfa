"""The ledger's integrity, as ``kx audit verify`` checks it: positions increase, every stream's versions run
1, 2, 3... without gaps, every event's hash chains to the one before (plain, or keyed from the first keyed
event on), over the rows as stored.

On a long ledger the check runs in a second process (one interpreter that imports only the ledger, on the
machine's other core) while the audit replays the rules, reading the same events up to the same position
through a read-only connection of its own: no connection crosses into it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import KxError
from ledger.store import GENESIS, KEY_ENV, KEYED, Ledger, chain_hash, chain_key


class Chain:
    """The ledger's integrity: positions increase, every stream's versions run 1, 2, 3... without gaps, every
    event's hash chains to the one before (plain, or keyed from the first keyed event on)."""

    def __init__(self) -> None:
        self.findings: list[str] = []
        self.previous, self.last_position, self.events = GENESIS, 0, 0
        self.versions: dict[str, int] = {}
        self.chain_broken = False
        self.key = chain_key()
        self.keyed_from: int | None = None  # the first keyed event: every later one must be keyed too
        self.keyed = 0

    @classmethod
    @contextmanager
    def checking(cls, ledger: Ledger, until: int, *, in_parallel: bool) -> Iterator[Checking]:
        """The chain of the events up to ``until``, checked here when the block ends, or meanwhile in a second
        process (a connection of its own: none crosses into it)."""
        checking = Checking()
        if not in_parallel:
            yield checking
            checking.result = cls.of(ledger, until)
            return
        process = subprocess.Popen([sys.executable, "-c", CHAIN_PROCESS, str(ledger.path), str(until)],
                                   stdout=subprocess.PIPE)
        try:
            yield checking
            out, _ = process.communicate()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise KxError(f"the chain's check ended with status {process.returncode}; rerun with -v for details")
        checking.result = cls.restored(json.loads(out))

    @classmethod
    def of(cls, ledger: Ledger, until: int | None = None) -> Chain:
        chain = cls()
        chain.take_all(ledger.stored(until))
        return chain

    def saved(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if name != "key"}

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> Chain:
        chain = cls()
        vars(chain).update(saved)
        return chain

    def take_all(self, rows: Iterable[tuple]) -> None:
        """Every event as stored (:meth:`ledger.store.Ledger.stored`), in ledger order."""
        findings, versions = self.findings, self.versions
        previous, last = self.previous, self.last_position
        for position, stream, version, kind, text, recorded_at, digest in rows:
            self.events += 1
            if position <= last:
                findings.append(f"position {position}: not after {last}")
            expected = versions.get(stream, 0) + 1
            if version != expected:
                findings.append(f"position {position}: stream {stream} jumps to version {version}, expected {expected}")
            if not self.chain_broken:
                if chain_hash(previous, position, stream, version, kind, text, recorded_at) != digest:
                    self.keyed_link(previous, position, stream, version, kind, text, recorded_at, digest)
                elif self.keyed_from is not None:
                    findings.append(f"position {position}: hash not keyed after keyed events from position"
                                    f" {self.keyed_from}: the event was written or rewritten without {KEY_ENV}")
                    self.chain_broken = True
            versions[stream], last, previous = version, position, digest
        self.previous, self.last_position = previous, last

    def keyed_link(self, previous: str, position: int, stream: str, version: int, kind: str, text: str,
                   recorded_at: str, digest: str) -> None:
        """An event whose hash is not the plain one: a keyed link (checked with the key, counted without it), or
        a break in the chain."""
        if digest.startswith(KEYED):
            if self.keyed_from is None:
                self.keyed_from = position
            self.keyed += 1
            if self.key is None or chain_hash(previous, position, stream, version, kind, text, recorded_at,
                                              self.key) == digest:
                return
        other_key = ", or the chain was keyed with another key" if digest.startswith(KEYED) else ""
        self.findings.append(f"position {position}: hash chain broken (the event or one before it was altered"
                             f"{other_key})")
        self.chain_broken = True

    def keyed_summary(self) -> dict[str, Any] | None:
        """Where the keyed chain starts, how many keyed events there are, whether their keys were checked."""
        if self.keyed_from is None:
            return None
        return {"from": self.keyed_from, "events": self.keyed, "checked": self.key is not None}



@dataclass
class Checking:
    result: Chain = field(default_factory=Chain)  # the chain as checked, once the block that checks it ends


def print_chain(path: str, until: int) -> None:
    """The second process of :func:`verify`: the chain of the ledger at ``path`` up to ``until``, checked through a
    read-only connection of its own, printed as JSON."""
    ledger = Ledger.open(path, read_only=True)
    with ledger.snapshot():
        chain = Chain.of(ledger, until)
    ledger.close()
    print(json.dumps(chain.saved()))


CHAIN_PROCESS = "import sys; from ledger.chain import print_chain; print_chain(sys.argv[1], int(sys.argv[2]))"
