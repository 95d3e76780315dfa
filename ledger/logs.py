"""Logging with structlog: JSON lines (info and up) to ``.kx/kx.log``; every level on stderr with ``-v``.

Each destination is a structlog logger of its own, made by :func:`structlog.wrap_logger`: the same processors
(the level, the time from :mod:`ledger.clock`, secrets redacted), then the destination's renderer, level filter
(:func:`structlog.make_filtering_bound_logger`) and ``WriteLogger``. Not one ``structlog.configure``: it holds
one chain, one level and one logger factory for the whole process, and the two destinations differ in all three
(the stdlib bridge that could split them, ``ProcessorFormatter``, brings logging's handlers, whose failed writes
print a traceback).

structlog is imported on the first line a destination takes, so a command that logs nothing (``kx tick``
without ``-v``) does not pay for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

FILE_LEVEL = "info"  # the least level .kx/kx.log takes; stderr takes every level with -v
_settings: dict[str, Any] = {"file": None, "verbose": False}


def configure(verbose: bool = False) -> None:
    _settings["verbose"] = verbose


def log_to(path: Path | None) -> None:
    """Also write JSON lines to ``path`` (the ledger's ``kx.log``)."""
    _settings["file"] = path


class _Logger:
    """What kx logs with: each line handed to the structlog logger of every destination that may take it."""

    def debug(self, event: str, **fields: Any) -> None:
        self._write("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        verbose = _settings["verbose"]
        path = _settings["file"] if level != "debug" else None  # the file takes FILE_LEVEL and up: not opened else
        if not verbose and path is None:
            return  # no destination takes the line: decided before structlog is imported
        if verbose:  # stderr as the command has it now (a relayed call or a test swaps it)
            getattr(_console_logger(sys.stderr), level)(event, **fields)
        if path is not None:
            try:
                # opened for this line: a long-lived process (kx run, serve, mcp) holds no handle on a log
                # moved away, and a write that fails (a full disk) is dropped with its handle
                with open(path, "a", encoding="utf-8") as handle:
                    getattr(_file_logger(handle), level)(event, **fields)
            except OSError:
                pass  # a log that cannot be written never fails a command


def _structlog() -> Any:
    """structlog, imported without rich unless something loaded rich already. Its ``dev`` and ``tracebacks``
    modules import rich, when it is installed, for pretty tracebacks, which kx's lines never carry (a traceback
    goes to stderr with -v, through ``cli.errors``): loading it cost a piped ``kx run`` a tenth of its CPU."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment] - Python's way to make an import fail: structlog falls back
    try:
        import structlog
    finally:
        if sys.modules.get("rich", False) is None:
            del sys.modules["rich"]
    return structlog


def _file_logger(handle: TextIO) -> Any:
    structlog = _structlog()

    return _logger(handle, FILE_LEVEL, structlog.processors.JSONRenderer(ensure_ascii=False, default=str))


def _console_logger(stream: TextIO) -> Any:
    structlog = _structlog()

    return _logger(stream, "debug", structlog.dev.ConsoleRenderer(colors=False))


def _logger(stream: TextIO, least: str, renderer: Any) -> Any:
    from ledger import secrets

    structlog = _structlog()

    return structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[structlog.processors.add_log_level, _timestamp, secrets.log_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(least),
    )


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """The line's time from kx's clock (frozen in tests, ``$KX_NOW`` in subprocesses); structlog's ``TimeStamper``
    reads the system's."""
    from ledger import clock

    event.setdefault("ts", clock.log_stamp())
    return event


def get() -> _Logger:
    return _Logger()
