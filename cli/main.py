"""The ``kx`` command line: click commands that parse, call one function, print."""

from __future__ import annotations

import gc
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from cli.errors import run_guarded
from machine.defaults import BACKOFF_S
from machine.plan.text import printable

VERSION = "0.1.0"
INT64_MAX = 2**63 - 1  # SQLite's largest integer: no position, batch or count kx keeps is beyond it


def number(min: int = 0) -> click.IntRange:
    """The type of every position, batch number and count on the command line: a whole number SQLite can hold."""
    return click.IntRange(min=min, max=INT64_MAX)


class Relay:
    """A runner's ``kx ARGV`` run in this process for it (:func:`run_for_runner`): the call, and what the command
    writes, kept for the caller."""

    def __init__(self, call):
        self.call, self.here = call, call.here  # here: read by FilePath before Options exists (--ledger)
        self.out, self.err = io.StringIO(), io.StringIO()


class Options:
    def __init__(self, ledger: str | None, plan: str | None, as_json: bool, verbose: bool, relay: Relay | None = None):
        self.ledger, self.plan, self.as_json, self.verbose = ledger, plan, as_json, verbose
        self.given = relay.call.workspace if relay else None  # the supervisor's workspace, for a runner's call
        self.here = relay.here if relay else None  # that call's path arguments as they are here (see FilePath)
        self.out = relay.out if relay else None  # where the command writes (None: stdout)
        self.env = relay.call.env if relay else os.environ  # what its options read from the environment (--attempt)

    def override(self, ledger: str | None, plan: str | None, as_json: bool, verbose: bool) -> None:
        """The global options given after a command's name: they win over those before it."""
        self.ledger = self.ledger if ledger is None else ledger
        self.plan = self.plan if plan is None else plan
        self.as_json = self.as_json or as_json
        if verbose and not self.verbose:
            self.verbose = True
            if self.given is None:  # as the root does: a runner's call logs as its supervisor does
                from ledger import logs

                logs.configure(True)

    def workspace(self, *, create: bool = False):
        if self.given is not None:
            return self.given
        from ledger import logs
        from machine.acts.workspace import Workspace

        workspace = Workspace.open(self.ledger, self.plan, create=create)
        logs.log_to(workspace.ledger.path.parent / "kx.log")
        return workspace

    def terminal(self):
        """A rich console when a person sees stdout, or None when it is not a terminal (or --json): plain text then."""
        if self.as_json or not (self.out or sys.stdout).isatty():
            return None
        from cli.terminal import console

        return console()

    def emit(self, payload: dict[str, Any], text: str | None) -> None:
        """``payload`` as JSON, or ``text`` for a person: without the control sequences plan text may hold."""
        if self.as_json:
            click.echo(json.dumps({"schema": 1, **payload}, ensure_ascii=False), file=self.out)
        elif text:
            click.echo(printable(text), file=self.out)


pass_options = click.make_pass_decorator(Options)


class FilePath(click.Path):
    """Every path argument of kx: as given, or, in a call relayed from a Ray node (:func:`run_for_runner`), as
    that call's ``here`` maps it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from machine.defaults import NAME_LIMIT
        from machine.plan.text import bounded

        bounded("a path", os.fspath(value), NAME_LIMIT)
        here = getattr(ctx.find_root().obj, "here", None) if ctx is not None else None  # its Relay, then Options
        if here is not None:
            value = here(os.fspath(value))
        return super().convert(value, param, ctx)


GLOBAL_OPTIONS = (
    click.Option(["--ledger"], type=FilePath(dir_okay=False),
                 help="The ledger file (default: $KX_LEDGER, else the nearest .kx/ledger.db)."),
    click.Option(["--plan", "plan"], metavar="ID", help="The plan, when the ledger holds several."),
    click.Option(["--json", "as_json"], is_flag=True,
                 help="Machine output on stdout: one JSON object with \"schema\": 1."),
    click.Option(["-v", "--verbose"], is_flag=True, help="Log to stderr; show tracebacks."),
)
GLOBAL_NAMES = frozenset(option.name for option in GLOBAL_OPTIONS)


def _output(ctx: click.Context) -> TextIO | None:
    """Where the command of ``ctx`` writes: a relayed call's own output (its ``Relay`` or ``Options``), else
    None (stdout)."""
    return getattr(ctx.find_root().obj, "out", None)


def _show_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color, file=_output(ctx))
        ctx.exit()


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"kx, version {VERSION}", file=_output(ctx))
        ctx.exit()


class FromEnvironment(click.Option):
    """An option whose environment variable is read from the command's environment: a relayed call's own (a
    runner's ``KX_ATTEMPT``), else this process's."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        options = ctx.find_object(Options)
        return (options.env if options else os.environ).get(self.envvar) or None


class _TakesGlobalOptions:
    """A command or group that takes kx's global options after its name too (``kx status --json``), the one
    written last winning, and shows them in its help apart from its own; its help goes where the command writes.

    The options are shared, not copied onto each command: ``kx tick`` does not pay for building them 30 times."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return [*super().get_params(ctx), *GLOBAL_OPTIONS]

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.callback = _show_help
        return option

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.parent is not None:  # the root's are its callback's arguments
            given = {name: ctx.params.pop(name) for name in GLOBAL_NAMES}
            ctx.find_object(Options).override(**given)
        return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        own: list[tuple[str, str]] = []
        shared: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and isinstance(param, click.Option):
                (shared if param.name in GLOBAL_NAMES else own).append(record)
        for title, records in (("Options", own), ("Global options (before or after the command)", shared)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)
        if isinstance(self, click.Group):
            self.format_commands(ctx, formatter)


class KxCommand(_TakesGlobalOptions, click.Command):
    pass


class KxGroup(_TakesGlobalOptions, click.Group):
    command_class = KxCommand
    group_class = type  # a group's subgroups are KxGroups too


@click.group(cls=KxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, ledger: str | None, plan: str | None, as_json: bool, verbose: bool) -> None:
    """kx runs markdown knowledge-expansion plans on an append-only SQLite ledger.

    Example:

    \b
        kx plan import plan.md && kx run --runner rehearse --review auto
    """
    from ledger import clock, logs

    relay = ctx.obj  # a runner's call from a Ray node, run here for it by run_for_runner; else None
    if relay is None:
        logs.configure(verbose)
    else:
        relay.call.admit(ctx.invoked_subcommand)
    clock.now()  # a bad $KX_NOW fails every command alike (exit 2), not only the ones that record
    ctx.obj = Options(ledger, plan, as_json, verbose, relay)


# --- plan -------------------------------------------------------------------


@cli.group()
def plan() -> None:
    """Import, list and lint plans.

    Example:

    \b
        kx plan import plan.md
        kx plan lint --json
    """


@plan.command("import")
@click.argument("file", type=FilePath(path_type=Path))
@click.option("--root", type=FilePath(file_okay=False, path_type=Path),
              help="Folder that drops and knowledge files must stay inside (default: the plan's folder).")
@pass_options
def plan_import(options: Options, file: Path, root: Path | None) -> None:
    """Record the plan FILE in the ledger (same bytes again: no-op; changed: a revision).

    Example:

    \b
        kx plan import vlm-mastery.md --root .
    """
    from ledger.locate import ledger_for
    from machine.acts.importer import import_plan

    result = import_plan(lambda: options.workspace(create=True), file, root=root, ledger=ledger_for(options.ledger))
    options.emit(result.as_dict(), views.import_result(result))


@plan.command("list")
@pass_options
def plan_list(options: Options) -> None:
    """The plans in the ledger.

    Example:

    \b
        kx plan list
    """
    from machine.app import list_plans

    result = list_plans(options.workspace())
    options.emit(result, views.plan_list(result))


@plan.command("lint")
@click.argument("file", required=False, type=FilePath(path_type=Path))
@pass_options
def plan_lint(options: Options, file: Path | None) -> None:
    """Warnings and errors about FILE (default: the ledger's plan, history included). Exit 1 on errors.

    Example:

    \b
        kx plan lint vlm-mastery.md
    """
    from ledger.locate import ledger_for
    from machine.app import lint

    findings = lint(None if file else options.workspace(), file, ledger=ledger_for(options.ledger) if file else None)
    errors = sum(f.level == "error" for f in findings)
    options.emit({"findings": [f.as_dict() for f in findings], "errors": errors}, views.findings(findings))
    if errors:
        sys.exit(1)


# --- read side ---------------------------------------------------------------


@cli.command()
@pass_options
def status(options: Options) -> None:
    """Batches and PARTs with their states, ticks and attempts.

    Example:

    \b
        kx status --json --plan vlm-mastery
    """
    from runners import commands

    result = commands.status(options.workspace())
    terminal = options.terminal()
    if terminal is None:
        options.emit(result, views.status(result))
    else:
        from cli.terminal import StatusTable

        terminal.print(StatusTable(result))


@cli.command()
@click.option("--since", type=number(), default=0, help="Only events after this position.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they are appended (Ctrl-C stops).")
@pass_options
def events(options: Options, since: int, follow: bool) -> None:
    """The raw event stream, in ledger order: a row per event (--json: {"events": [...]}; with --follow, an
    object per line).

    \b
    Columns (the events table's own; the JSON fields have the same names):
      position  the event's place in the whole ledger (what --since counts)
      stream    what it is about: plan:PLAN, batch:PLAN:N or part:PLAN:PART-N
                (one stream per PART, across all its attempts)
      version   the event's number within its stream (1, 2, 3... without gaps);
                not an attempt
      data      the event's fields; "attempt": "PART-7#1" is PART-7's first
                attempt (kx start numbers them)

    Example:

    \b
        kx events --since 120 --follow
    """
    from machine.app import event_view
    from machine.app import events as read_events

    workspace = options.workspace()
    rows = read_events(workspace, since)
    if options.as_json and not follow:
        options.emit({"events": [event_view(e) for e in rows]}, None)
        return
    width = None  # the stream column's, set by the first rows
    while True:
        for row in rows:
            view = event_view(row)
            if options.as_json:
                click.echo(json.dumps(view, ensure_ascii=False))
                continue
            if width is None:
                width = max(len("stream"), *(len(r.stream) for r in rows))
                click.echo(views.event_header(width))
            click.echo(printable(views.event_line(view, width)))
        since = rows[-1].position if rows else since
        if not follow:
            return
        time.sleep(0.5)
        rows = read_events(workspace, since)


@cli.command()
@click.option("--until", type=number(), help="Only events up to this position.")
@click.option("--at", "at", metavar="TIME", help="Only events recorded at or before this ISO-8601 time.")
@click.option("-o", "--output", type=FilePath(dir_okay=False, path_type=Path), help="Write here (atomically) instead of stdout.")
@pass_options
def replay(options: Options, until: int | None, at: str | None, output: Path | None) -> None:
    """The plan markdown rebuilt from events alone, as it was then.

    Example:

    \b
        kx replay --at 2025-11-16T18:00:00Z -o then.md
    """
    from machine.app import replay as rebuild

    workspace = options.workspace()
    data = rebuild(workspace, until=until, at=at).encode("utf-8")
    if output is not None:
        from machine.app import write_output

        write_output(workspace, output, data)
        options.emit({"output": str(output), "bytes": len(data)}, None)
    elif options.as_json:
        options.emit({"markdown": data.decode("utf-8")}, None)
    elif sys.stdout.isatty():
        click.echo(printable(data.decode("utf-8")), nl=False)
    else:
        sys.stdout.buffer.write(data)  # the plan's bytes, exactly
        sys.stdout.flush()


@cli.command()
@click.option("-o", "--output", type=FilePath(dir_okay=False, path_type=Path),
              help="Write here (default: .kx/report-PLAN.html beside the ledger).")
@pass_options
def report(options: Options, output: Path | None) -> None:
    """One self-contained HTML page of the run: progress, a timeline of every attempt, reviews, PARTs.

    Example:

    \b
        kx report -o report.html
    """
    from machine.app import report as write_report

    result = write_report(options.workspace(), output)
    options.emit(result, f"{result['output']} ({result['bytes']} bytes)")


# --- runners and reviewers ------------------------------------------------------

attempt_option = click.option("--attempt", envvar="KX_ATTEMPT", metavar="ID", cls=FromEnvironment,
                              help="The runner's attempt (default: $KX_ATTEMPT); without it the act is a person's.")
by_option = click.option("--by", metavar="NAME", help="Who acts (default: the OS user).")


def acting_options(func):
    """``--attempt``, ``--by`` and the global options, for the acts a runner or a person does on a PART."""
    return attempt_option(by_option(pass_options(func)))


def _report_result(options: Options, result: dict[str, Any]) -> None:
    """An act's result: as JSON, or its message for a person."""
    options.emit(result, result["message"])


@cli.command("next")
@pass_options
def next_(options: Options) -> None:
    """The PARTs that may start now, in plan order (at most the free slots).

    Example:

    \b
        kx next
    """
    from runners import commands

    result = commands.next_parts(options.workspace())
    options.emit(result, "\n".join(result["parts"]) or f"nothing may start now ({result['running']}/{result['limit']} running)")


@cli.command()
@click.argument("part")
@attempt_option
@pass_options
def brief(options: Options, part: str, attempt: str | None) -> None:
    """What a runner needs for PART: instructions, section, target, drop name, files to cite.

    Example:

    \b
        kx brief PART-7 --attempt "$KX_ATTEMPT"
    """
    from machine.acts.queries import brief_markdown
    from runners import commands

    result = commands.brief(options.workspace(), part, attempt)
    options.emit(result, brief_markdown(result))


@cli.command()
@click.argument("part", required=False)
@attempt_option
@pass_options
def check(options: Options, part: str | None, attempt: str | None) -> None:
    """Whether each box of PART has its evidence now, and the target and drop; exit 0 when finish would succeed.

    Without PART, every PART: a succeeded one (imported ones included) by its knowledge file — the target there,
    a heading per Section box, every cited file named, its drop as recorded —, any other as finish would judge it;
    exit 0 when every PART holds.

    Example:

    \b
        kx check PART-7            # one line per box, then the target and the drop
        kx check PART-7 --json     # {"schema": 1, "part": ..., "ok": ..., "boxes": [...], ...}
        kx check                   # one line per PART
    """
    from runners import commands

    result = commands.check(options.workspace(), part, attempt)
    options.emit(result, views.plan_check(result) if part is None else views.evidence_check(result))
    if not result["ok"]:
        sys.exit(1)


@cli.command()
@click.argument("part")
@by_option
@pass_options
def start(options: Options, part: str, by: str | None) -> None:
    """Claim PART: records RunnerStarted and prints the attempt id.

    Example:

    \b
        kx start PART-7            # PART-7#1
    """
    from runners import commands

    result = commands.start(options.workspace(), part, by)
    options.emit(result, result["attempt"])


@cli.command()
@click.argument("part")
@click.argument("refs", nargs=-1, required=True)
@click.option("--source", "sources", multiple=True, metavar="URL-OR-TEXT",
              help="What a Search box's search found (repeatable); a runner's Search tick needs at least one.")
@acting_options
def tick(options: Options, part: str, refs: tuple[str, ...], sources: tuple[str, ...], attempt: str | None,
         by: str | None) -> None:
    """Tick boxes of PART: REF is 3 (third box), 2.4 (step 2, fourth box) or text. Idempotent.

    kx records each tick's evidence: a Read box's file (or folder) is hashed and must exist inside the plan's root;
    a Search box needs --source; a drop box, the drop recorded first. Without --attempt the tick is a person's
    override.

    Example:

    \b
        kx tick PART-7 1.1 --source https://arxiv.org/abs/2103.00020
    """
    from runners import commands

    _report_result(options, commands.tick(options.workspace(), part, list(refs), sources, attempt, by))


@cli.command()
@click.argument("part")
@click.argument("refs", nargs=-1, required=True)
@acting_options
def untick(options: Options, part: str, refs: tuple[str, ...], attempt: str | None, by: str | None) -> None:
    """Untick boxes of PART (same REFs as tick). Idempotent.

    Example:

    \b
        kx untick PART-7 2.4
    """
    from runners import commands

    _report_result(options, commands.untick(options.workspace(), part, list(refs), attempt, by))


@cli.command()
@click.argument("part")
@click.argument("file", type=FilePath(path_type=Path))
@acting_options
def drop(options: Options, part: str, file: Path, attempt: str | None, by: str | None) -> None:
    """Record FILE as PART's KNOWLEDGE DROP (sha256 and size); it must be inside the plan's root.

    Example:

    \b
        kx drop PART-7 "$KX_DROP"
    """
    from runners import commands

    _report_result(options, commands.drop(options.workspace(), part, file, attempt, by))


@cli.command()
@click.argument("part")
@acting_options
def finish(options: Options, part: str, attempt: str | None, by: str | None) -> None:
    """Record PART's success, or refuse listing the missing evidence.

    Example:

    \b
        kx finish PART-7
    """
    from runners import commands

    _report_result(options, commands.finish(options.workspace(), part, attempt, by))


@cli.command()
@click.argument("part")
@click.option("--reason", required=True, help="Why it failed.")
@click.option("--no-retry", is_flag=True, help="It cannot succeed unchanged: kx run does not retry it.")
@acting_options
def fail(options: Options, part: str, reason: str, no_retry: bool, attempt: str | None, by: str | None) -> None:
    """Record that PART failed.

    Example:

    \b
        kx fail PART-7 --reason "the model server timed out"
        kx fail PART-7 --reason "the prompt cannot fit the model's window" --no-retry
    """
    from runners import commands

    _report_result(options, commands.fail(options.workspace(), part, reason, not no_retry, attempt, by))


@cli.command()
@click.argument("part")
@click.option("--reason", help="Why it is retried.")
@by_option
@pass_options
def retry(options: Options, part: str, reason: str | None, by: str | None) -> None:
    """Send a failed or lost PART back to pending.

    Example:

    \b
        kx retry PART-7 --reason "server is back"
    """
    from machine.acts.context import Act
    from machine.acts.lifecycle import retry as retry_part

    _report_result(options, retry_part(options.workspace(), part, Act(by=by), reason).as_dict())


@cli.command()
@click.argument("parts", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the PARTs are done again (recorded).")
@click.option("--withdraw-consolidation", is_flag=True,
              help="The plan is consolidated: withdraw that (recorded), so that it opens again; kx consolidate redoes it.")
@by_option
@pass_options
def reopen(options: Options, parts: tuple[str, ...], reason: str, withdraw_consolidation: bool,
           by: str | None) -> None:
    """Send succeeded (imported ones too), failed or lost PARTS back to pending, their ticks and drop cleared.

    Their next attempt earns every tick and its drop again. A batch already approved needs review again, and
    the batches after it that are not approved lock until it is.

    Example:

    \b
        kx reopen PART-1 PART-3 --reason "stamped Completed without evidence"
    """
    from machine.acts.context import Act
    from machine.acts.lifecycle import reopen as reopen_parts

    _report_result(options, reopen_parts(options.workspace(), list(parts), reason, Act(by=by),
                                         withdraw_consolidation=withdraw_consolidation))


@cli.command()
@click.argument("batch", type=number())
@click.argument("parts", nargs=-1)
@click.option("--approve", "decision", flag_value="approve", help="Approve the batch: the next one opens.")
@click.option("--reject", "decision", flag_value="reject", help="Send PARTS (default: the failed ones) back.")
@click.option("--accept-failed", is_flag=True, help="Approve although some PARTs failed.")
@click.option("--note", help="The reviewer's note.")
@by_option
@pass_options
def review(options: Options, batch: int, parts: tuple[str, ...], decision: str | None, accept_failed: bool,
           note: str | None, by: str | None) -> None:
    """Review BATCH once it is awaiting review: --approve, or --reject [PART...].

    Example:

    \b
        kx review 2 --approve --note "drops read"
        kx review 2 --reject PART-8 PART-11 --note "too thin"
    """
    from ledger.errors import BadInput
    from machine.acts.context import Act
    from machine.acts.lifecycle import review as review_batch

    if decision is None:
        raise BadInput("say --approve or --reject")
    if parts and decision == "approve":
        raise BadInput("PARTs are named only with --reject")
    outcome = review_batch(options.workspace(), batch, approve=decision == "approve", parts=list(parts), note=note,
                           act=Act(by=by), accept_failed=accept_failed)
    _report_result(options, outcome.as_dict())


@cli.command()
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if the file is out of date.")
@click.option("--repair", is_flag=True, help="Also mend the file's mojibake ('‚úì' back to '✓'); with --check: show"
              " what it would mend.")
@pass_options
def render(options: Options, check: bool, repair: bool) -> None:
    """Rewrite the plan file's marks and Completed stamps from the ledger, every other byte kept.

    Example:

    \b
        kx render --check || kx render
        kx render --repair --check   # what --repair would mend, per glyph; writes nothing
        kx render --repair           # mend it, then write the marks
    """
    from machine.outputs.plan_file import render_file

    result = render_file(options.workspace(), check=check, repair=repair)
    options.emit(result, views.rendered(result, check, repair))
    if check and result["changed"]:
        sys.exit(1)


@cli.group()
def audit() -> None:
    """Who did what, and whether the ledger holds up.

    Example:

    \b
        kx audit history PART-7
        kx audit verify
    """


@audit.command()
@click.argument("part")
@pass_options
def history(options: Options, part: str) -> None:
    """PART's events in order: time, type, attempt, details (and its batch's reviews).

    Example:

    \b
        kx audit history PART-7 --json
    """
    from machine.acts.queries import history as part_history

    result = part_history(options.workspace(), part)
    options.emit(result, views.history(result))


@audit.command()
@click.option("--digest", "digests", multiple=True, metavar="POSITION:HASH",
              help="A digest kept outside the ledger ('kx audit digest'): a finding unless the event at POSITION"
                   " still has that chain hash. Repeatable.")
@pass_options
def verify(options: Options, digests: tuple[str, ...]) -> None:
    """Ledger integrity and rule invariants over all of history; exit 1 on any finding.

    With $KX_LEDGER_KEY set, keyed chain hashes are checked with the key.

    Example:

    \b
        kx audit verify
        kx audit verify --digest "$(cat ledger-digest.txt)"
    """
    from machine.acts.audit import verify as verify_ledger

    anchors = [_digest(text) for text in digests]
    result = verify_ledger(options.workspace(), anchors)
    options.emit(result, views.verified(result))
    if result["findings"]:
        sys.exit(1)


def _digest(text: str) -> tuple[int, str]:
    """``POSITION:HASH`` as 'kx audit digest' prints it, or bad input."""
    import re

    from ledger.errors import BadInput

    match = re.fullmatch(r"(\d{1,19}):((?:hmac:)?[0-9a-f]{64})", text.strip())
    if match is None or int(match[1]) > INT64_MAX:
        raise BadInput(f"--digest {text[:80]!r} is not POSITION:HASH as 'kx audit digest' prints it"
                       " (e.g. 42:9f86d081884c7d65...; 64 hex digits)")
    return int(match[1]), match[2]


@audit.command()
@pass_options
def digest(options: Options) -> None:
    """The ledger's head as POSITION:HASH: keep it outside the ledger, check it later with verify --digest.

    Example:

    \b
        kx audit digest > ledger-digest.txt
        kx audit verify --digest "$(cat ledger-digest.txt)"
    """
    position, chain = options.workspace().ledger.digest()
    options.emit({"position": position, "hash": chain}, f"{position}:{chain}")


@cli.command()
@click.option("--index", type=FilePath(dir_okay=False, path_type=Path), help="The index to update (default: ROOT/INDEX.md).")
@click.option("--skill", type=FilePath(dir_okay=False, path_type=Path), help="Also update this SKILL.md.")
@click.option("--completed-dir", type=FilePath(file_okay=False, path_type=Path), help="Where the plan moves (default: ROOT/completed).")
@click.option("--commit", is_flag=True, help="Commit knowledge files, drops, index, report and moved plan in one commit.")
@click.option("--allow-missing", is_flag=True,
              help="Consolidate although drops or knowledge files changed or are gone (the index and report say so).")
@by_option
@pass_options
def consolidate(options: Options, index: Path | None, skill: Path | None, completed_dir: Path | None, commit: bool,
                allow_missing: bool, by: str | None) -> None:
    """After the last batch is approved: index the knowledge files, move the plan to completed/.

    Refused (exit 3) while a drop or knowledge file changed or is gone since it was recorded, unless --allow-missing.

    Example:

    \b
        kx consolidate --index INDEX.md --commit
    """
    from machine.acts.context import person
    from machine.outputs.consolidate import consolidate as run_consolidation

    result = run_consolidation(options.workspace(), index=index, skill=skill, completed_dir=completed_dir,
                               commit=commit, by=by or person(), allow_missing=allow_missing)
    options.emit(result, views.consolidated(result))


@audit.command()
@pass_options
def rebuild(options: Options) -> None:
    """Rewrite the read model (kx_plans, kx_parts) from the events.

    Example:

    \b
        kx audit rebuild
    """
    from machine.acts.audit import rebuild as rebuild_read_model

    result = rebuild_read_model(options.workspace())
    options.emit(result, "\n".join(f"{plan}: read model rebuilt up to position {position}"
                                   for plan, position in result["rebuilt"].items()) or "no plans")


@audit.command("repair-guard")
@click.option("--reanchor", is_flag=True,
              help="Accept that the newest events are gone: anchor the head at the last event left.")
@pass_options
def repair_guard(options: Options, reanchor: bool) -> None:
    """Restore the ledger's append-only guard (its triggers and head) after someone removed or altered it.

    Example:

    \b
        kx audit verify          # append-only guard: trigger events_no_delete is missing; ...
        kx audit repair-guard    # trigger events_no_delete created
    """
    from machine.acts.audit import repair_guard as repair

    result = repair(options.workspace(), reanchor=reanchor)
    options.emit(result, "\n".join(result["repaired"]) or "the append-only guard is intact; nothing to repair")


# --- agents over MCP -----------------------------------------------------------------


@cli.command("mcp")
@attempt_option
@pass_options
def mcp(options: Options, attempt: str | None) -> None:
    """Serve the runner's commands as MCP tools on stdio (for agents that take tools over MCP).

    --ledger and --plan (before or after 'mcp') pick the ledger and plan the tools act on.

    Example:

    \b
        kx mcp --attempt "$KX_ATTEMPT"
    """
    from runners.mcp.server import serve

    serve(options.workspace(), _commands(), attempt=attempt, version=VERSION)


def _commands() -> dict[str, tuple[str, frozenset[str]]]:
    """Each command's help and option names: the MCP tools are made from them."""
    return {name: ((command.help or "").replace("\b\n", ""),  # click's "keep these lines" mark is no text
                   frozenset(opt for param in command.params for opt in param.opts))
            for name, command in cli.commands.items()}


# --- the review in a browser ----------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (only this host name or a loopback name is accepted in requests).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: a free port.")
@click.option("--token", help="The token every request needs (default: $KX_SERVE_TOKEN, else a random one).")
@click.option("--read-only", is_flag=True, help="Pages only: no forms, every POST refused (403).")
@pass_options
def serve(options: Options, host: str, port: int, token: str | None, read_only: bool) -> None:
    """Serve the plan's dashboard, PART pages and batch reviews in a browser; the first line is the address.

    Example:

    \b
        kx serve --port 8765      # open the printed http://127.0.0.1:8765/?token=... link
    """
    try:
        from web.server import serve as serve_web
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        from ledger.errors import BadInput

        raise BadInput(f"kx serve needs the web extra ({exc.name} is missing): pip install 'kx[web]'") from None
    serve_web(options.workspace(), host=host, port=port, token=token, read_only=read_only,
              ready=lambda url: options.emit({"url": url}, url), say=lambda line: click.echo(line, err=True))


# --- the supervisor ---------------------------------------------------------------


def _run_options(func):
    options = [
        click.option("--runner", "runner", metavar="SPEC", help="'rehearse [ARGS]' or any command line, run per PART"
                     " (default: runner in .kx/config.toml)."),
        click.option("--max-parallel", type=number(min=1), help="At most this many at once (never above the plan's limit)."),
        click.option("--retries", type=number(), help="Retries per PART after a failure or loss (default 1; counted afresh after a review sends it back or a reopen)."),
        click.option("--review", type=click.Choice(["prompt", "wait", "auto"]), default=None,
                     help="Between batches: ask here (default on a terminal), wait for 'kx review', or approve."),
        click.option("--until-batch", type=number(), metavar="N", help="Stop cleanly at the gate after batch N."),
        click.option("--backoff", type=click.FloatRange(min=0), default=BACKOFF_S, show_default=True,
                     help="Seconds before the first retry (doubling after)."),
        click.option("--model", help="With --runner openai: the model name."),
        click.option("--base-url", help="With --runner openai: the server (default http://127.0.0.1:11434/v1)."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
                     help="Where runners run: wrappers on this machine (default), or Ray tasks (pip install 'kx[ray]')."),
        click.option("--ray-address", metavar="ADDRESS", help="With --executor ray: the cluster (default: $RAY_ADDRESS,"
                     " else address in .kx/config.toml, else a Ray started here)."),
        click.option("--plain", is_flag=True, help="Plain lines, not the live view a terminal gets (also with"
                     " NO_COLOR or TERM=dumb; piped or --json: always)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _supervise(options: Options, command: str, plain: bool, **run_options: Any) -> None:
    from click.core import ParameterSource

    from cli.run_view import progress_for
    from runners.local.forkserver import ForkServer
    from runners.supervisor.run import run_plan

    context = click.get_current_context()
    explicit = frozenset(name for name in run_options
                         if context.get_parameter_source(name) is not ParameterSource.DEFAULT)
    # started before the ledger is opened, a local run's fork server is forked from this process: what a wrapper
    # needs is loaded once, for both (a run on Ray closes it unused)
    with ForkServer() as server, \
            progress_for(plain=plain, as_json=options.as_json, verbose=options.verbose) as (progress, ask):
        result = run_plan(options.workspace(), interactive=sys.stdin.isatty(), run_cli=run_for_runner,
                          command=command, explicit=explicit, progress=progress, ask=ask, fork_server=server,
                          **run_options)
    options.emit(result.summary, views.run_result(result.summary))
    sys.exit(result.code)


@cli.command()
@_run_options
@pass_options
def run(options: Options, **kwargs: Any) -> None:
    """Run the plan: runners batch by batch under the rules; after a crash, the same command resumes.

    Example:

    \b
        kx run --runner rehearse --review auto
        kx run --runner 'sh -c "my-agent --brief $KX_BRIEF"' --max-parallel 3
    """
    _supervise(options, "run", **kwargs)


@cli.command()
@_run_options
@pass_options
def resume(options: Options, **kwargs: Any) -> None:
    """Same as 'kx run', named for after a crash: lost attempts are reconciled first.

    It reuses the options of the plan's last run that shape attempts, as the ledger recorded them (RunStarted):
    --runner, --model, --base-url, --retries, --max-parallel, --backoff, --executor, --ray-address. Options given
    here win. --review and --until-batch are not reused. A key is never recorded: a runner that took one on its
    command line needs --runner again.

    Example:

    \b
        kx resume --review wait
    """
    _supervise(options, "resume", **kwargs)


class _LazyViews:
    """``cli.views`` imported when a command first prints text (it pulls in the read models)."""

    def __getattr__(self, name: str):
        from cli import views as module

        return getattr(module, name)


views = _LazyViews()


def run_for_runner(call) -> tuple[int, str, str]:
    """``kx ARGV`` for a runner's call relayed from a Ray node (``runners.ray.executor.NodeCall``), run in this
    process: exit code, stdout, stderr. ``call`` has the ``argv``, the ``workspace`` the command uses whatever
    --ledger and --plan say, the ``env`` its options read (``KX_ATTEMPT``), ``admit`` (asked before the command
    runs) and ``here`` (a path argument as it is here). What the command writes is kept for the call: this
    process's stdout and stderr are not touched.
    """
    relay = Relay(call)
    # no terminal here: help is laid out 80 columns wide, as a relayed call's always was
    code = run_guarded(cli, call.argv, obj=relay, out=relay.out, err=relay.err, terminal_width=80)
    return code, relay.out.getvalue(), relay.err.getvalue()


def main() -> None:
    from runners.ray.shim import SOCKET_ENV
    from runners.ray.shim import main as relay

    if os.environ.get(SOCKET_ENV):  # a runner's kx in a Ray attempt: the supervisor runs it, no ledger is opened here
        sys.exit(relay(sys.argv[1:]))
    code = run_guarded(cli, sys.argv[1:])
    # What the command loaded lives until the process ends: the collector's last passes over it (tens of
    # milliseconds for a whole run's modules) would only delay the exit
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    main()
