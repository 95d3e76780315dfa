"""Errors that reach the user: each carries the CONTRACT exit code and says what to do next."""

from __future__ import annotations


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
