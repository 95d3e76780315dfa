"""What one ``kx serve`` serves: a plan of a ledger, behind a token; and each worker thread's own workspace."""

from __future__ import annotations

import hashlib
import hmac
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.store import Recorded
from machine.acts.queries import PLAN_DETAILS_HIDDEN
from machine.acts.workspace import Workspace
from machine.state.fold import PlanState
from runners.reconcile import reconciled_state, reconciled_status


@dataclass
class Site:
    ledger: Path
    plan: str
    token: str
    read_only: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def workspace(self) -> Workspace:
        """This thread's workspace: a SQLite connection is used by the thread that opened it, never shared."""
        workspace = getattr(self._local, "workspace", None)
        if workspace is None:
            workspace = self._local.workspace = Workspace.open(str(self.ledger), self.plan)
        return workspace

    @property
    def cookie(self) -> str:
        """The token's cookie: one per port, so that two servers on one host keep their own."""
        return f"kx-token-{self.port}"

    @property
    def csrf(self) -> str:
        """The forms' hidden ``csrf`` value: derived from the token, so only a page served with it carries it."""
        return hmac.new(self.token.encode(), b"kx serve forms", hashlib.sha256).hexdigest()

    def state(self) -> PlanState:
        """The plan's state now. This thread's is kept between requests and folds only the events appended since
        (as a workspace does after loading its read model): a page asked for again and again, as live pages are,
        does not load the whole read model each time."""
        workspace = self.workspace()
        config = workspace.config(self.plan)
        kept = getattr(self._local, "state", None)
        if kept is None or kept[0] is not config:  # a changed config (a time zone) changes the fold
            kept = self._local.state = (config, workspace.state())
        else:
            kept[1].fold_rows(workspace.ledger.scan(self.plan, since=kept[1].position))
        return kept[1]

    def reconciled(self) -> PlanState:
        """The plan's state as ``kx status`` sees it: attempts whose runner died are recorded lost first."""
        return reconciled_state(self.workspace(), self.state)

    def status(self) -> dict[str, Any]:
        """What ``kx --json status`` prints (its ``schema`` aside), from this thread's state."""
        return reconciled_status(self.workspace(), self.state)

    def head(self) -> int:
        """The ledger's newest position (0: no event yet)."""
        return self.workspace().ledger.digest()[0]

    def events_after(self, position: int, window: int = 1000) -> tuple[list[Recorded], int, bool]:
        """The plan's events after ``position``, at most ``window`` positions on; the position read up to; and
        whether that is the ledger's newest."""
        head = self.head()
        until = max(position, min(head, position + window))
        return self.workspace().ledger.read(plan=self.plan, since=position, until=until), until, until >= head


def event_json(event: Recorded) -> dict:
    """An event as the stream sends it; a plan's full text and structure are left out, as history leaves them."""
    data = {k: v for k, v in event.data.items() if k not in PLAN_DETAILS_HIDDEN}
    return {"type": event.type, "position": event.position, "stream": event.stream, "version": event.version,
            "recorded_at": event.recorded_at, "data": data}
