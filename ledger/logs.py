"""Logging with structlog: JSON lines (info and up) to ``.kx/kx.log``; every level on stderr with ``-v``.

structlog is imported on the first line that is really written, so a command
that logs nothing (``kx tick`` without ``-v``) does not pay for it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

_settings: dict[str, Any] = {"file": None, "verbose": False, "configured": False}
_FILE_LEVELS = {"info", "warning", "error", "critical"}


def configure(verbose: bool = False) -> None:
    _settings["verbose"] = verbose
    _settings["configured"] = False


def log_to(path: Path | None) -> None:
    """Also write JSON lines to ``path`` (the ledger's ``kx.log``)."""
    _settings["file"] = path


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    from ledger import clock

    event.setdefault("ts", clock.log_stamp())
    return event


def _emit(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    import structlog

    if _settings["file"] is not None and name in _FILE_LEVELS:
        try:
            with open(_settings["file"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
        except OSError:
            pass  # a log that cannot be written never fails a command
    if _settings["verbose"]:
        print(structlog.dev.ConsoleRenderer(colors=False)(logger, name, dict(event)), file=sys.stderr)
    raise structlog.DropEvent


def _structlog_logger(name: str) -> Any:
    import structlog

    from ledger import secrets

    if not _settings["configured"]:
        structlog.configure(
            processors=[structlog.processors.add_log_level, _timestamp, secrets.log_processor, _emit],
            logger_factory=structlog.ReturnLoggerFactory(),
            cache_logger_on_first_use=False,
        )
        _settings["configured"] = True
    return structlog.get_logger(name)


class _Logger:
    """A structlog logger, made on the first line worth writing."""

    def __init__(self, name: str):
        self.name = name

    def _write(self, level: str, event: str, **fields: Any) -> None:
        if level == "debug" and not _settings["verbose"]:
            return
        if level != "debug" and _settings["file"] is None and not _settings["verbose"]:
            return
        getattr(_structlog_logger(self.name), level)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        self._write("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, **fields)


def get(name: str = "kx") -> _Logger:
    return _Logger(name)
