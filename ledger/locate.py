"""Where the ledger is: ``--ledger``, else ``$KX_LEDGER``, else the nearest ``.kx/ledger.db`` upward."""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = ".kx"
FILENAME = "ledger.db"
ENV = "KX_LEDGER"


def find_ledger(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FOLDER / FILENAME
        if candidate.is_file():
            return candidate
    return None


def default_ledger(cwd: Path | None = None) -> Path:
    """Where ``kx plan import`` creates a ledger when none is found."""
    return (cwd or Path.cwd()) / FOLDER / FILENAME


def ledger_for(explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None) -> Path:
    """The ledger a command uses: the one found, else where ``kx plan import`` would create it."""
    return find_ledger(explicit, cwd) or default_ledger(cwd)


def home_of(ledger_path: Path) -> Path:
    """The project folder a ledger serves: the parent of its ``.kx`` folder."""
    folder = ledger_path.resolve().parent
    return folder.parent if folder.name == FOLDER else folder


def prepare_folder(ledger_path: Path) -> None:
    """A ``.kx`` folder keeps itself out of git unless the user decides otherwise."""
    folder = ledger_path.parent
    if folder.name == FOLDER:
        ignore = folder / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# kx ledger and logs; delete this file to track them\n*\n")
