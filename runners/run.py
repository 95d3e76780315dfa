"""The entry point of ``kx run`` / ``kx resume``: options from the command line and the plan's config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import click

from machine.paths import check_plan_id
from machine.workspace import Workspace
from runners.forkserver import ForkServer
from runners.progress import Progress
from runners.spec import protect_runner_key, runner_command

if TYPE_CHECKING:
    from runners.supervisor import RunResult


def ask_on_terminal(question: str, choices: list[str]) -> str:
    """One of ``choices``, or free text (Enter: empty) when there are none."""
    if not choices:
        return click.prompt(question, type=str, default="", show_default=False, err=True)
    return click.prompt(question, type=click.Choice(choices), err=True)


def run_plan(workspace: Workspace, *, runner: str | None, max_parallel: int | None, retries: int | None,
             review: str | None, until_batch: int | None, backoff: float, interactive: bool,
             model: str | None = None, base_url: str | None = None, executor: str | None = None,
             ray_address: str | None = None, run_cli: Callable[..., tuple[int, str, str]] | None = None,
             progress: Progress | None = None, ask: Callable[[str, list[str]], str] = ask_on_terminal) -> RunResult:
    check_plan_id(workspace.plan_id())  # it names the attempt folders: refused before any attempt starts
    config = workspace.config()
    command = runner_command(runner if runner is not None else config.runner, model=model or config.model,
                             base_url=base_url or config.base_url)
    protect_runner_key(command)
    # A local run's wrappers come from a fork server, a fresh interpreter that loads kx as this process does:
    # started before this process loads the supervisor, the two load side by side.
    server = ForkServer() if (executor or config.executor or "local") == "local" else None
    try:
        from runners.supervisor import RunOptions, Supervisor

        options = RunOptions(
            command=command,
            max_parallel=max_parallel,
            retries=retries if retries is not None else (config.retries if config.retries is not None else 1),
            review=review or ("prompt" if interactive else "wait"),
            until_batch=until_batch,
            backoff=backoff,
            executor=executor or config.executor or "local",
            ray_address=ray_address,
            run_cli=run_cli,
        )
        supervisor = Supervisor(workspace, options, progress or Progress(), ask if interactive else None,
                                fork_server=server)
    except BaseException:
        if server is not None:
            server.close()
        raise
    return supervisor.run()
