"""``kx run --executor local``: attempts as wrappers on this machine, forked by the fork server."""

from __future__ import annotations

from machine.acts.workspace import Workspace
from runners.attempt_folder import plan_dir
from runners.local.forkserver import ForkServer


class LocalExecutor:
    """``kx run --executor local``: each attempt in a wrapper on this machine, forked by ``runners.local.forkserver``.

    An executor gives the supervisor attempts that answer ``poll()`` (the exit code, or None while running):
    0 succeeded, 1 failed or lost, 3 start refused. ``service()`` runs once per turn of the supervisor's loop;
    ``waits()`` says what the loop waits on between turns; ``close()`` when it stops.
    """

    def __init__(self, workspace: Workspace, command: list[str], lease: float, server: ForkServer | None = None):
        self.ws, self.command, self.lease = workspace, command, lease
        self.server = server or ForkServer()

    def spawn(self, plan_id: str, part: str) -> ForkedAttempt:
        folder = plan_dir(self.ws.ledger.path, plan_id)
        folder.mkdir(parents=True, exist_ok=True)
        number = self.server.start(ledger=str(self.ws.ledger.path.resolve()), plan=plan_id, part=part,
                                   command=self.command, lease=self.lease, errors=str(folder / "wrappers.log"))
        return ForkedAttempt(self.server, number)

    def service(self) -> None:
        self.server.read()  # also when no attempt runs: a server gone must not stay readable

    def waits(self) -> tuple[list[int], float | None]:
        """The fork server's reports: readable when a wrapper exits; nothing to do in between."""
        reports = self.server.fileno()
        return ([] if reports is None else [reports]), None

    def close(self) -> None:
        self.server.close()


class ForkedAttempt:
    """An attempt's wrapper, as its fork server reports it."""

    def __init__(self, server: ForkServer, number: int):
        self.server, self.number = server, number

    def poll(self) -> int | None:
        return self.server.exit_code(self.number)
