"""The few git operations consolidation needs, run as argument lists."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ledger.errors import KxError, Refused


def _git(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise KxError(f"git {args[0]} failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return result


def work_tree(folder: Path) -> Path | None:
    try:
        result = _git(folder, "rev-parse", "--show-toplevel", check=False)
    except FileNotFoundError:
        return None
    return Path(result.stdout.strip()) if result.returncode == 0 else None


def is_tracked(top: Path, path: Path) -> bool:
    return _git(top, "ls-files", "--error-unmatch", "--", str(path), check=False).returncode == 0


def staged(top: Path) -> list[str]:
    return [line for line in _git(top, "diff", "--cached", "--name-only").stdout.splitlines() if line]


def refuse_unrelated_staged(top: Path) -> None:
    already = staged(top)
    if already:
        shown = ", ".join(already[:5]) + (" ..." if len(already) > 5 else "")
        raise Refused(f"git has unrelated staged changes ({shown}); commit or unstage them, then consolidate",
                      rule="consolidate")


def move(top: Path, source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if is_tracked(top, source):
        _git(top, "mv", "--", str(source), str(destination))
    else:
        source.rename(destination)


def commit(top: Path, paths: list[Path], message: str) -> str:
    existing = [str(p) for p in paths if p.exists()]
    _git(top, "add", "--", *existing)
    _git(top, "commit", "-q", "-m", message)
    return _git(top, "rev-parse", "HEAD").stdout.strip()
