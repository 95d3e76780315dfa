"""Crash detection without a daemon: a running attempt whose wrapper is gone becomes ``RunnerLost``.

Gone means: on this host, its pid is dead or belongs to a newer process (the
start time differs from the recorded one); on any host, its heartbeat is older
than the lease. An attempt run as a Ray task has no pid of its own: it is held
by its supervisor (``owner_pid``), which beats the attempt's heartbeat for it
while the task runs. Attempts started
by hand (no pid recorded) are never judged.
"""

from __future__ import annotations

import socket
from typing import Any, Callable

from ledger import logs
from machine.acts.workspace import Workspace
from machine.defaults import LEASE_S
from machine.state.fold import PlanState
from runners.attempt_folder import attempt_dir, last_output_of, process_alive, silent_for, stop_runner


def holder(started: dict[str, Any]) -> tuple[str, int, float | None] | None:
    """The process an attempt lives in: its wrapper, or the supervisor holding its Ray task; None if by hand."""
    if started.get("pid"):
        return f"its wrapper (pid {started['pid']})", started["pid"], started.get("pid_started")
    if started.get("owner_pid"):
        return (f"its supervisor (pid {started['owner_pid']}), which held its Ray task,", started["owner_pid"],
                started.get("owner_started"))
    return None


def why_gone(workspace: Workspace, plan_id: str, started: dict[str, Any], lease: float) -> str | None:
    held = holder(started)
    if held is None:
        return None
    who, pid, since = held
    if started.get("host") == socket.gethostname() and not process_alive(pid, since):
        return f"{who} is gone"
    age = silent_for(attempt_dir(workspace.ledger.path, plan_id, started["attempt"]), started["recorded_at"])
    if age > lease:
        return f"no heartbeat for {age:.0f}s (lease {lease:.0f}s)"
    return None


def reconcile(workspace: Workspace, state: PlanState | None = None) -> list[str]:
    """Record ``RunnerLost`` for every running attempt whose wrapper is gone; the lost attempts.

    ``state``: the plan's state if the caller already has it (it is read otherwise).
    """
    from machine.acts.lifecycle import lose

    if workspace.ledger.read_only:
        return []
    state = state or workspace.state()
    lease = workspace.config(state.id).lease_seconds or LEASE_S
    lost = []
    for part in state.running():
        reason = why_gone(workspace, state.id, part.started or {}, lease)
        if not reason:
            continue
        folder = attempt_dir(workspace.ledger.path, state.id, part.attempt)
        if lose(workspace, part.id, part.attempt, reason, last_output_of(folder)).recorded:
            logs.get().info("attempt lost", attempt=part.attempt, reason=reason)
            lost.append(part.attempt)
            if stop_runner(folder):
                logs.get().info("runner of a lost attempt stopped", attempt=part.attempt)
    return lost


def reconciled_state(workspace: Workspace, read: Callable[[], PlanState] | None = None) -> PlanState:
    """The plan's state, after recording as lost the attempts whose runner died. ``read``: how the state is read
    (default: ``workspace.state``), once, and again after a loss was recorded."""
    read = read or workspace.state
    state = read()
    if reconcile(workspace, state):
        state = read()
    return state


def reconciled_status(workspace: Workspace, read: Callable[[], PlanState] | None = None) -> dict[str, Any]:
    """``kx status``: the plan's state, after recording as lost the attempts whose runner died (``read``: as for
    :func:`reconciled_state`)."""
    from machine.outputs.status import status_view

    view = status_view(reconciled_state(workspace, read))
    if made_in := workspace.ledger.elsewhere():  # a copied ledger: said first
        view["findings"].insert(0, {"code": "ledger_moved", "made_in": made_in, "here": workspace.ledger.here(),
                                    "message": workspace.ledger.place_problem()})
    return view
