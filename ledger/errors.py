"""Errors that reach the user: each carries the CONTRACT exit code and says what to do next."""

from __future__ import annotations

import errno
import sqlite3


class KxError(Exception):
    code = 1

    def __init__(self, message: str, *, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadInput(KxError):
    """Usage, unreadable or malformed plan, bad path, not a ledger (exit 2)."""

    code = 2


class Refused(KxError):
    """A rule or an invalid transition refused the act (exit 3)."""

    code = 3

    def __init__(self, message: str, *, rule: str = "transition", details: list[str] | None = None):
        super().__init__(message, details=details)
        self.rule = rule


class Unknown(KxError):
    """Unknown plan, PART, batch or checkbox (exit 4)."""

    code = 4


class DamagedLedger(BadInput):
    """An event whose data cannot be read (exit 2, as a ledger that is not a kx ledger)."""

    def __init__(self, position: int | None, event_type: str | None):
        where = f" at position {position} ({event_type})" if position is not None else ""
        super().__init__(f"the ledger holds a damaged event{where}: its data is not JSON; 'kx audit verify' lists"
                         " every finding and 'kx events' shows the raw row")


def as_kx_error(exc: Exception) -> KxError:
    """Any failure as the error a person or an agent reads: a ``KxError`` as it is, SQLite's and the file system's
    known failures said in words, anything else as an unexpected failure."""
    if isinstance(exc, KxError):
        return exc
    if isinstance(exc, sqlite3.Error):
        return _sqlite_error(exc)
    known = _os_error(exc) if isinstance(exc, OSError) else None
    return known or KxError(f"unexpected failure: {type(exc).__name__}: {exc}; rerun with -v for details")


def is_read_only(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused a write because the ledger may not be written (its file, or the connection)."""
    text = str(exc)
    return "readonly" in text or "read-only" in text


def _sqlite_error(exc: sqlite3.Error) -> KxError:
    text = str(exc)
    if is_read_only(exc):
        return BadInput("the ledger is read-only; check the file's permissions or pass another --ledger")
    if "disk is full" in text or "disk I/O" in text:
        return KxError(f"the ledger could not be written ({text}); nothing was recorded — free space and retry")
    if "not a database" in text or "malformed" in text:
        return BadInput(f"the ledger is not a kx ledger ({text}); pass another --ledger")
    if "locked" in text or "busy" in text:
        return KxError("the ledger stayed locked by another writer; nothing was recorded — retry")
    return KxError(f"ledger error: {text}")


# a path that cannot be used as given: the user's to fix (exit 2)
_BAD_PATH = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG,
             errno.EROFS, errno.EEXIST, errno.ENXIO, errno.ENODEV}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _os_error(exc: OSError) -> KxError | None:
    """A failed read or write of a file as a one-line error; None for an OSError that is no path's fault."""
    shown = f"{exc.filename}: " if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in _NO_SPACE:
        return KxError(f"cannot write {shown}{reason}; free space and retry")
    if exc.errno in _BAD_PATH:
        return BadInput(f"{shown}{reason}; check the path and retry")
    return None
