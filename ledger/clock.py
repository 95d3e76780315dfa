"""The one clock every timestamp comes from.

In-process, freezegun freezes it (it patches ``datetime``). A ``kx`` started as
a subprocess is out of freezegun's reach, so ``$KX_NOW`` (an ISO-8601 time)
freezes it from outside.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

FROZEN_ENV = "KX_NOW"


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    frozen = os.environ.get(FROZEN_ENV)
    if frozen:
        return parse_time(frozen)
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


def now_iso() -> str:
    return iso(now())
