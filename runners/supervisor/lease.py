"""One supervisor per plan: the lease it holds in the ledger, the heartbeat it beats, and how a holder is found gone.

``kx run`` and ``kx resume`` take the plan's lease before anything else (``SupervisorLeased``: pid, process start
time, host), beat ``.kx/attempts/PLAN/supervisor/heartbeat`` while they run, and release it when they end
(``SupervisorReleased``). A second one is refused at once (exit 3), naming the first; a lease whose holder is
gone — its process dead on this host, or no heartbeat for the lease's length from another — is taken over, and
the event says from whom.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from machine.acts.lifecycle import Act, release_lease, take_lease
from machine.acts.workspace import Workspace
from machine.defaults import SUPERVISOR
from runners.attempt_folder import Heartbeat, process_alive, silent_for, supervisor_dir, this_process


def gone(workspace: Workspace, plan_id: str, lease_s: float):
    """Whether a lease's holder is gone: dead on this host, or silent for ``lease_s`` seconds from another."""

    def holder_gone(held: dict[str, Any]) -> bool:
        if held["host"] == socket.gethostname():
            return not process_alive(held["pid"], held["pid_started"])
        return silent_for(supervisor_dir(workspace.ledger.path, plan_id), held["since"]) > lease_s

    return holder_gone


@contextmanager
def holding_the_plan(workspace: Workspace, lease_s: float) -> Iterator[None]:
    """The plan held by this process while the body runs: taken (or refused, exit 3), beaten, released."""
    plan_id, me = workspace.plan_id(), this_process()
    take_lease(workspace, me, gone(workspace, plan_id, lease_s), Act(by=SUPERVISOR))
    folder = supervisor_dir(workspace.ledger.path, plan_id)
    folder.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(folder, max(0.5, lease_s / 3))
    heartbeat.beat_now_and_start()
    try:
        yield
    finally:
        heartbeat.done.set()
        release_lease(workspace, me, Act(by=SUPERVISOR))
