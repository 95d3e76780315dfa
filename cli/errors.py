"""Every failure as one line on stderr (``kx: error: ...``) with the CONTRACT exit code."""

from __future__ import annotations

import errno
import json
import re
import sqlite3
import sys

import click

from ledger.errors import BadInput, KxError
from machine.plan.text import QUOTE_LIMIT, cut, printable


def _sqlite_error(exc: sqlite3.Error) -> KxError:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return BadInput("the ledger is read-only; check the file's permissions or pass another --ledger")
    if "disk is full" in text or "disk I/O" in text:
        return KxError(f"the ledger could not be written ({text}); nothing was recorded — free space and retry")
    if "not a database" in text or "malformed" in text:
        return BadInput(f"the ledger is not a kx ledger ({text}); pass another --ledger")
    if "locked" in text or "busy" in text:
        return KxError("the ledger stayed locked by another writer; nothing was recorded — retry")
    return KxError(f"ledger error: {text}")


# a path that cannot be used as given: the user's to fix (exit 2)
_BAD_PATH = {errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ELOOP, errno.ENAMETOOLONG,
             errno.EROFS, errno.EEXIST, errno.ENXIO, errno.ENODEV}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def _os_error(exc: OSError) -> KxError | None:
    """A failed read or write of a file as a one-line error; None for an OSError that is no path's fault."""
    shown = f"{exc.filename}: " if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno in _NO_SPACE:
        return KxError(f"cannot write {shown}{reason}; free space and retry")
    if exc.errno in _BAD_PATH:
        return BadInput(f"{shown}{reason}; check the path and retry")
    return None


def _flag(args: list[str], *names: str) -> bool:
    return any(arg in names for arg in args)


def run_guarded(command: click.Group, args: list[str], obj: object = None) -> int:
    as_json, verbose = _flag(args, "--json"), _flag(args, "-v", "--verbose")
    try:
        command.main(args=args, prog_name="kx", standalone_mode=False, obj=obj)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return _report(KxError("interrupted"), as_json, verbose, code=130)
    except click.ClickException as exc:  # click's words quote what it was given: at most QUOTE_LIMIT of each
        return _report(BadInput(_LONG_RUN.sub(_cut_run, exc.format_message().rstrip(".")) + _hint(exc)), as_json,
                       verbose)
    except KxError as exc:
        return _report(exc, as_json, verbose)
    except sqlite3.Error as exc:
        return _report(_sqlite_error(exc), as_json, verbose)
    except KeyboardInterrupt:
        return _report(KxError("interrupted"), as_json, verbose, code=130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        known = _os_error(exc) if isinstance(exc, OSError) else None
        return _report(known or KxError(f"unexpected failure: {type(exc).__name__}: {exc}; rerun with -v for details"),
                       as_json, verbose)


_LONG_RUN = re.compile(rf"\S{{{QUOTE_LIMIT + 1},}}")


def _cut_run(run: re.Match[str]) -> str:
    return run[0][: QUOTE_LIMIT - 1] + "…"


def _hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    return f"; see '{ctx.command_path} --help'" if ctx is not None else "; see 'kx --help'"


def _report(error: KxError, as_json: bool, verbose: bool, code: int | None = None) -> int:
    code = error.code if code is None else code
    if verbose and sys.exc_info()[0] is not None:
        import traceback  # only with -v

        traceback.print_exc()
    message = " ".join(error.message.split())
    from ledger import logs

    logs.get().error("command failed", code=code, message=message, argv=[cut(arg, 200) for arg in sys.argv[1:]])
    click.echo(f"kx: error: {printable(message)}", err=True)
    if as_json:
        body = {"code": code, "message": message}
        if error.details:
            body["details"] = error.details
        click.echo(json.dumps({"schema": 1, "error": body}, ensure_ascii=False))
    return code
