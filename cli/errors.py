"""Every failure as one line on stderr (``kx: error: ...``) with the CONTRACT exit code."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, TextIO

import click

from ledger.errors import BadInput, KxError, as_kx_error
from machine.plan.text import QUOTE_LIMIT, cut, printable


def _flag(args: list[str], *names: str) -> bool:
    return any(arg in names for arg in args)


def run_guarded(command: click.Group, args: list[str], obj: object = None, out: TextIO | None = None,
                err: TextIO | None = None, **settings: Any) -> int:
    """``command`` run on ``args``: its exit code. Its errors are said on ``err`` (default: stderr), and with
    ``--json`` also on ``out`` (default: stdout); ``settings``: its context's (click.Context)."""
    as_json, verbose = _flag(args, "--json"), _flag(args, "-v", "--verbose")

    def report(error: KxError, code: int | None = None) -> int:
        return _report(error, as_json, verbose, code, out=out, err=err)

    try:
        command.main(args=args, prog_name="kx", standalone_mode=False, obj=obj, **settings)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return report(KxError("interrupted"), code=130)
    except click.ClickException as exc:  # click's words quote what it was given: at most QUOTE_LIMIT of each
        return report(BadInput(_LONG_RUN.sub(_cut_run, exc.format_message().rstrip(".")) + _hint(exc)))
    except KeyboardInterrupt:
        return report(KxError("interrupted"), code=130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        return report(as_kx_error(exc))


_LONG_RUN = re.compile(rf"\S{{{QUOTE_LIMIT + 1},}}")


def _cut_run(run: re.Match[str]) -> str:
    return run[0][: QUOTE_LIMIT - 1] + "…"


def _hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    return f"; see '{ctx.command_path} --help'" if ctx is not None else "; see 'kx --help'"


def _report(error: KxError, as_json: bool, verbose: bool, code: int | None = None, *, out: TextIO | None = None,
            err: TextIO | None = None) -> int:
    code = error.code if code is None else code
    if verbose and sys.exc_info()[0] is not None:
        import traceback  # only with -v

        traceback.print_exc(file=err)
    message = " ".join(error.message.split())
    from ledger import logs

    logs.get().error("command failed", code=code, message=message, argv=[cut(arg, 200) for arg in sys.argv[1:]])
    click.echo(f"kx: error: {printable(message)}", err=True, file=err)
    if as_json:
        body = {"code": code, "message": message}
        if error.details:
            body["details"] = error.details
        click.echo(json.dumps({"schema": 1, "error": body}, ensure_ascii=False), file=out)
    return code
