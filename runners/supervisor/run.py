"""The entry point of ``kx run`` / ``kx resume``: options from the command line, the last run and the plan's config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ledger.errors import BadInput
from ledger.secrets import REDACTED
from machine.acts.queries import last_run
from machine.acts.workspace import Workspace
from machine.defaults import BACKOFF_S, RETRIES
from machine.plan.paths import check_plan_id
from runners.local.forkserver import ForkServer
from runners.spec import protect_runner_key, runner_command

if TYPE_CHECKING:
    from runners.supervisor.loop import Reporter, RunResult

# The options that shape attempts: recorded when a run starts its first attempt, reused by 'kx resume'
ATTEMPT_OPTIONS = ("runner", "model", "base_url", "retries", "max_parallel", "backoff", "executor", "ray_address")
RUNNER_OPTIONS = ("model", "base_url")  # they go with the runner: a runner given again does not take the recorded ones


def run_plan(workspace: Workspace, *, review: str | None, until_batch: int | None, interactive: bool,
             run_cli: Callable[..., tuple[int, str, str]] | None = None, command: str = "run",
             explicit: frozenset[str] | None = None, progress: Reporter | None = None,
             ask: Callable[[str, list[str]], str] | None = None, fork_server: ForkServer | None = None,
             **attempt_options: Any) -> RunResult:
    """``attempt_options``: ATTEMPT_OPTIONS' values (None: not given); ``explicit``: the names given on the
    command line (default: those not None). ``command`` "resume" takes the others from the plan's last run.
    ``fork_server``: one the caller started before it opened the ledger, for a local run (a run on Ray closes
    it); the caller closes it if this raises first."""
    check_plan_id(workspace.plan_id())  # it names the attempt folders: refused before any attempt starts
    given = {name: value for name, value in attempt_options.items()
             if (name in explicit if explicit is not None else value is not None)}
    if command == "resume":
        given = resumed_options(workspace, given)
    config = workspace.config()
    runner, executor = given.get("runner"), given.get("executor") or config.executor or "local"
    argv = runner_command(runner if runner is not None else config.runner, model=given.get("model") or config.model,
                          base_url=given.get("base_url") or config.base_url)
    protect_runner_key(argv)
    # A local run's wrappers come from a fork server: the caller's, else a fresh interpreter that loads kx as this
    # process does (started before this process loads the supervisor, the two load side by side).
    if fork_server is not None and executor != "local":
        fork_server.close()
    server = (fork_server or ForkServer()) if executor == "local" else None
    try:
        from runners.supervisor.loop import LogOnly, RunOptions, Supervisor

        retries = given.get("retries")
        options = RunOptions(
            command=argv,
            max_parallel=given.get("max_parallel"),
            retries=retries if retries is not None else (config.retries if config.retries is not None else RETRIES),
            review=review or ("prompt" if interactive else "wait"),
            until_batch=until_batch,
            backoff=given.get("backoff", BACKOFF_S),
            executor=executor,
            ray_address=given.get("ray_address"),
            run_cli=run_cli,
            run=command,
            given=given,
        )
        progress = progress or LogOnly()
        if command == "resume":  # the review is not resumed from the last run: say which one this run does
            progress.say(review_said(options.review, given=review is not None, interactive=interactive))
        supervisor = Supervisor(workspace, options, progress, ask if interactive else None, fork_server=server)
    except BaseException:
        if server is not None:
            server.close()
        raise
    return supervisor.run()


def review_said(mode: str, *, given: bool, interactive: bool) -> str:
    why = "--review given" if given else "asked here, on a terminal" if interactive else \
        "no terminal to ask on; approve with 'kx review N --approve'"
    return f"resuming with --review {mode} ({why}; --review prompt|wait|auto chooses)"


def resumed_options(workspace: Workspace, given: dict[str, Any]) -> dict[str, Any]:
    """The options of the plan's last recorded run, under those given now."""
    recorded = dict((last_run(workspace) or {}).get("options", {}))
    if "runner" in given:
        for name in RUNNER_OPTIONS:
            recorded.pop(name, None)
    elif REDACTED in (recorded.get("runner") or ""):
        raise BadInput("the run being resumed had a secret on its runner's command line, which kx does not record:"
                       " give --runner again (better: have the runner read its key from an environment variable)")
    for name, value in recorded.items():
        if name in ATTEMPT_OPTIONS and name not in given and isinstance(value, str) and REDACTED in value:
            option = "--" + name.replace("_", "-")
            raise BadInput(f"the run being resumed had a secret in its {option} (a password in the URL), which kx"
                           f" does not record: give {option} again")
    return {**{name: value for name, value in recorded.items() if name in ATTEMPT_OPTIONS}, **given}
