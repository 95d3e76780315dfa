"""The ``kx`` command line: click commands that parse, call one function, print."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli import views
from cli.errors import run_guarded

VERSION = "0.1.0"


class Options:
    def __init__(self, ledger: str | None, plan: str | None, as_json: bool, verbose: bool):
        self.ledger, self.plan, self.as_json, self.verbose = ledger, plan, as_json, verbose

    def workspace(self, *, create: bool = False):
        from ledger import logs
        from machine.workspace import Workspace

        workspace = Workspace.open(self.ledger, self.plan, create=create)
        logs.log_to(workspace.ledger.path.parent / "kx.log")
        return workspace

    def emit(self, payload: dict[str, Any], text: str | None) -> None:
        if self.as_json:
            click.echo(json.dumps({"schema": 1, **payload}, ensure_ascii=False))
        elif text:
            click.echo(text)


pass_options = click.make_pass_decorator(Options)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ledger", type=click.Path(dir_okay=False), help="The ledger file (default: $KX_LEDGER, else the nearest .kx/ledger.db).")
@click.option("--plan", "plan", metavar="ID", help="The plan, when the ledger holds several.")
@click.option("--json", "as_json", is_flag=True, help="Machine output on stdout: one JSON object with \"schema\": 1.")
@click.option("-v", "--verbose", is_flag=True, help="Log to stderr; show tracebacks.")
@click.version_option(VERSION, prog_name="kx")
@click.pass_context
def cli(ctx: click.Context, ledger: str | None, plan: str | None, as_json: bool, verbose: bool) -> None:
    """kx runs markdown knowledge-expansion plans on an append-only SQLite ledger."""
    from ledger import logs

    logs.configure(verbose)
    ctx.obj = Options(ledger, plan, as_json, verbose)


# --- plan -------------------------------------------------------------------


@cli.group()
def plan() -> None:
    """Import, list and lint plans."""


@plan.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder that drops and knowledge files must stay inside (default: the plan's folder).")
@pass_options
def plan_import(options: Options, file: Path, root: Path | None) -> None:
    """Record the plan FILE in the ledger (same bytes again: no-op; changed: a revision)."""
    from machine.importer import import_plan

    result = import_plan(lambda: options.workspace(create=True), file, root=root)
    options.emit(result.as_dict(), views.import_result(result))


@plan.command("list")
@pass_options
def plan_list(options: Options) -> None:
    """The plans in the ledger."""
    from machine.app import list_plans

    result = list_plans(options.workspace())
    options.emit(result, views.plan_list(result))


@plan.command("lint")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@pass_options
def plan_lint(options: Options, file: Path | None) -> None:
    """Warnings and errors about FILE (default: the ledger's plan, history included). Exit 1 on errors."""
    from machine.app import lint

    findings = lint(None if file else options.workspace(), file)
    errors = sum(f.level == "error" for f in findings)
    options.emit({"findings": [f.as_dict() for f in findings], "errors": errors}, views.findings(findings))
    if errors:
        sys.exit(1)


# --- read side ---------------------------------------------------------------


@cli.command()
@pass_options
def status(options: Options) -> None:
    """Batches and PARTs with their states, ticks and attempts."""
    from machine.app import status as plan_status

    result = plan_status(options.workspace())
    options.emit(result, views.status(result))


@cli.command()
@click.option("--since", type=click.IntRange(min=0), default=0, help="Only events after this position.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they are appended (Ctrl-C stops).")
@pass_options
def events(options: Options, since: int, follow: bool) -> None:
    """The raw event stream, in ledger order."""
    from machine.app import event_view, events as read_events

    workspace = options.workspace()
    rows = read_events(workspace, since)
    if options.as_json and not follow:
        options.emit({"events": [event_view(e) for e in rows]}, None)
        return
    while True:
        for row in rows:
            view = event_view(row)
            click.echo(json.dumps(view, ensure_ascii=False) if options.as_json else views.event_line(view))
            since = row.position
        if not follow:
            return
        time.sleep(0.5)
        rows = read_events(workspace, since)


@cli.command()
@click.option("--until", type=click.IntRange(min=0), help="Only events up to this position.")
@click.option("--at", "at", metavar="TIME", help="Only events recorded at or before this ISO-8601 time.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically) instead of stdout.")
@pass_options
def replay(options: Options, until: int | None, at: str | None, output: Path | None) -> None:
    """The plan markdown rebuilt from events alone, as it was then."""
    from machine.app import replay as rebuild

    data = rebuild(options.workspace(), until=until, at=at).encode("utf-8")
    if output is not None:
        from ledger.files import write_atomic

        write_atomic(output, data)
        options.emit({"output": str(output), "bytes": len(data)}, None)
    elif options.as_json:
        options.emit({"markdown": data.decode("utf-8")}, None)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def main() -> None:
    sys.exit(run_guarded(cli, sys.argv[1:]))


if __name__ == "__main__":
    main()
