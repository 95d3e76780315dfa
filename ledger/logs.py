"""Logging with structlog: JSON lines to ``.kx/kx.log``; readable lines on stderr with ``-v``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import structlog

from ledger import clock, secrets

_sinks: dict[str, Any] = {"file": None, "console": None, "configured": False}


def _timestamp(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("ts", clock.now_iso())
    return event


def _emit(_logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    if _sinks["file"] is not None:
        try:
            with open(_sinks["file"], "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, default=str, ensure_ascii=False) + "\n")
        except OSError:
            pass  # a log that cannot be written never fails a command
    if _sinks["console"] is not None:
        print(_sinks["console"](_logger, name, dict(event)), file=sys.stderr)
    raise structlog.DropEvent


def configure(verbose: bool = False) -> None:
    _sinks["console"] = structlog.dev.ConsoleRenderer(colors=False) if verbose else None
    _sinks["configured"] = True
    structlog.configure(
        processors=[structlog.processors.add_log_level, _timestamp, secrets.log_processor, _emit],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )


def log_to(path: Path | None) -> None:
    """Also write JSON lines to ``path`` (the ledger's ``kx.log``)."""
    _sinks["file"] = path


def get(name: str = "kx") -> Any:
    if not _sinks["configured"]:
        configure()
    return structlog.get_logger(name)
