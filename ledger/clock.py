"""The one clock every timestamp comes from.

In-process, freezegun freezes it (it patches ``datetime``). A ``kx`` started as
a subprocess is out of freezegun's reach, so ``$KX_NOW`` (an ISO-8601 time)
freezes it from outside.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from ledger.errors import BadInput

FROZEN_ENV = "KX_NOW"


def now() -> datetime:
    """The current time, timezone-aware UTC; a ``$KX_NOW`` that is not a time is bad input."""
    frozen = os.environ.get(FROZEN_ENV)
    if frozen:
        try:
            return parse_time(frozen)
        except ValueError:
            raise BadInput(f"{FROZEN_ENV}={frozen!r} is not an ISO-8601 time (e.g. 2025-11-20T10:00:00Z);"
                           " fix or unset it") from None
    return datetime.now(timezone.utc)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; a naive one is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(moment: datetime) -> str:
    """The ledger's timestamp form: ``2025-11-16T18:56:00.000000Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso(*, not_before: str | None = None) -> str:
    """Now in the ledger's form, or ``not_before`` (a stamp in that form) if now is earlier: a clock set back
    never stamps an event before the one it follows. The form is fixed-width, so stamps compare as text."""
    stamp = iso(now())
    if not_before is not None and len(not_before) == len(stamp) and not_before > stamp:
        return not_before
    return stamp


def log_stamp() -> str:
    """A log line's time: :func:`now_iso`, or the system's time when ``$KX_NOW`` is bad (a log never fails)."""
    try:
        return now_iso()
    except BadInput:
        return iso(datetime.now(timezone.utc))
