"""The commands a runner uses, callable: ``status``, ``next``, ``brief``, ``check``, ``start``, ``tick``, ``untick``,
``drop``, ``finish`` and ``fail``.

Each takes the workspace and its parsed arguments and returns the JSON object ``kx --json COMMAND`` prints (its
``"schema"`` aside), or raises the ``KxError`` the command exits with. The CLI's commands print what they return;
``kx mcp`` returns it as a tool's result, and a runner's ``kx`` relayed from a Ray node runs the CLI, which calls
them in turn. Each imports what it uses when called: ``kx tick`` loads only the tick's code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from machine.acts.context import Act
    from machine.acts.workspace import Workspace

Result = dict[str, Any]


def status(workspace: Workspace) -> Result:
    from runners.reconcile import reconciled_status

    return reconciled_status(workspace)


def next_parts(workspace: Workspace) -> Result:
    from machine.acts.queries import next_parts as startable

    return startable(workspace)


def brief(workspace: Workspace, part: str, attempt: str | None = None) -> Result:
    from machine.acts.queries import brief as make_brief

    return make_brief(workspace, part, attempt)


def check(workspace: Workspace, part: str | None = None, attempt: str | None = None) -> Result:
    """One PART's evidence (``ok``: finish would succeed), or every PART's without ``part``; the CLI exits 1 when
    not ``ok``."""
    from ledger.errors import BadInput
    from machine.acts.queries import check as check_part
    from machine.acts.queries import check_all

    if part is not None:
        return check_part(workspace, part, attempt or None)
    if attempt:
        raise BadInput("--attempt goes with a PART: kx check PART --attempt ID")
    return check_all(workspace)


def start(workspace: Workspace, part: str, by: str | None = None) -> Result:
    from machine.acts.lifecycle import start as start_part

    outcome = start_part(workspace, part, _act(None, by))
    return {"part": outcome.part, "attempt": outcome.data["attempt"]}


def tick(workspace: Workspace, part: str, refs: list[str], sources: Iterable[str] = (), attempt: str | None = None,
         by: str | None = None) -> Result:
    from machine.acts.ticks import tick as tick_boxes

    return tick_boxes(workspace, part, list(refs), _act(attempt, by), ticked=True, sources=sources).as_dict()


def untick(workspace: Workspace, part: str, refs: list[str], attempt: str | None = None,
           by: str | None = None) -> Result:
    from machine.acts.ticks import tick as tick_boxes

    return tick_boxes(workspace, part, list(refs), _act(attempt, by), ticked=False).as_dict()


def drop(workspace: Workspace, part: str, path: str | Path, attempt: str | None = None,
         by: str | None = None) -> Result:
    """``path``: the drop file, relative to this process's folder."""
    from machine.acts.lifecycle import drop as record_drop
    from machine.defaults import NAME_LIMIT
    from machine.plan.text import bounded

    bounded("a path", os.fspath(path), NAME_LIMIT)
    return record_drop(workspace, part, Path(path), _act(attempt, by)).as_dict()


def finish(workspace: Workspace, part: str, attempt: str | None = None, by: str | None = None) -> Result:
    from machine.acts.lifecycle import finish as finish_part

    return finish_part(workspace, part, _act(attempt, by)).as_dict()


def fail(workspace: Workspace, part: str, reason: str, retry: bool = True, attempt: str | None = None,
         by: str | None = None) -> Result:
    """``retry`` false: it cannot succeed unchanged, and ``kx run`` does not retry it."""
    from machine.acts.lifecycle import fail as fail_part

    return fail_part(workspace, part, reason, _act(attempt, by), retry=retry).as_dict()


def _act(attempt: str | None, by: str | None) -> Act:
    """Who acts: the runner's attempt, or a person (``by``, else the OS user) without one."""
    from machine.acts.context import Act

    return Act(attempt=attempt or None, by=by)
