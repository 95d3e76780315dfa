"""The queue kx's writers wait in for the ledger: a lock file beside it, passed on the moment a writer is done.

SQLite's write lock (``BEGIN IMMEDIATE``) stays the authority; this only
changes how kx's own writers wait for it. SQLite's busy handler sleeps 1, 2,
5, 10, 15, 20, 25... ms between tries whatever the lock does meanwhile, so six
wrappers recording their starts at once slept up to 50 ms each while the lock
stood free for most of it (transactions here last a few ms). A writer of kx
first takes an ``flock`` on ``LEDGER-lock``, trying again every few tenths of
a millisecond up to 2 ms, then begins its transaction, which then finds
SQLite's lock free unless another program writes (SQLite's own wait covers
that). ``flock`` belongs to the open file, not the process: two ledgers open
in one process exclude each other too, and a killed holder's lock goes with it.

Where the lock file cannot be had (a folder kx may not write, a link at its
name, a file system without ``flock``) writers wait in SQLite's way alone.
Not ``filelock``: importing it costs ``kx tick`` 40 ms, and its wait is timed
by a clock that a frozen test clock stops.
"""

from __future__ import annotations

import fcntl
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.files import open_regular

FIRST_PAUSE_S = 0.0002
LAST_PAUSE_S = 0.002  # the longest a waiter sleeps between tries: the most a handover waits
PATIENCE_S = 60.0  # then the writer goes on to SQLite's own wait (its busy timeout): a stuck holder is SQLite's to report


def lock_path(ledger: Path) -> Path:
    return ledger.with_name(ledger.name + "-lock")


class WriterQueue:
    """The lock file of one open ledger: :meth:`turn` holds it for a transaction."""

    def __init__(self, ledger: Path):
        self.path = lock_path(Path(os.path.abspath(ledger)))  # opened at the first turn, wherever the process is then
        self._fd: int | None = None
        self._opened = False
        self._closer: weakref.finalize | None = None  # a ledger nobody closes (a long-lived process's) closes it

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This writer's turn: the lock held while the block runs (nothing held where there is no lock file)."""
        fd = self._file()
        held = fd is not None and _take(fd)
        try:
            yield
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._fd, self._closer = None, None

    def _file(self) -> int | None:
        if not self._opened:  # once: a ledger whose lock file cannot be had does not ask at every transaction
            self._opened = True
            self._fd = _open_regular(self.path)
            if self._fd is not None:  # when the ledger goes, as its SQLite connection does
                self._closer = weakref.finalize(self, os.close, self._fd)
        return self._fd


def _open_regular(path: Path) -> int | None:
    """The lock file, opened (made if need be); None when something else is at its name."""
    try:  # flock needs no write permission; no link is followed
        return open_regular(path, os.O_CREAT | os.O_NOFOLLOW)
    except OSError:
        return None


def _take(fd: int) -> bool:
    """Wait for the lock; False when it cannot be had (unsupported here, or held past ``PATIENCE_S``)."""
    pause, waited = FIRST_PAUSE_S, 0.0  # waited: the sleeps counted, not a clock a frozen test clock stops
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if waited >= PATIENCE_S:
                return False
            time.sleep(pause)
            waited += pause
            pause = min(pause * 2, LAST_PAUSE_S)
        except OSError:
            return False
