"""The few git operations consolidation needs, run as argument lists.

The checks (``unaddable``, ``unrelated_staged``, ``commit_with_trailer``) change nothing, so that
consolidation can make every one of them before its first side effect.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from ledger.errors import KxError


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
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


def is_tracked(top: Path, path: Path) -> bool:
    return _git(top, "ls-files", "--error-unmatch", "--", str(path), check=False).returncode == 0


def staged(top: Path) -> list[str]:
    """The staged paths, relative to ``top``; a rename shows as both of its paths."""
    return [line for line in _git(top, "diff", "--cached", "--name-only", "--no-renames").stdout.splitlines() if line]


def unrelated_staged(top: Path, ours: list[Path]) -> list[str]:
    """Staged paths that are not among ``ours`` (what an earlier, interrupted run staged is ours)."""
    mine = {_relative(top, path) for path in ours}
    return [path for path in staged(top) if path not in mine]


def unaddable(top: Path, paths: list[Path]) -> list[str]:
    """The paths ``git add`` would not take, each with why: outside the work tree (a nested repository
    included) or ignored. Paths that do not exist yet are checked as they will be."""
    trees: dict[Path, Path | None] = {}
    problems, inside = [], []
    for path in paths:
        folder = _existing_folder(path)
        if folder not in trees:
            trees[folder] = work_tree(folder)
        if path.is_relative_to(top) and trees[folder] == top:
            inside.append(str(path))
        else:
            problems.append(f"{path} is outside the git work tree {top}")
    if inside:
        ignored = _git(top, "check-ignore", "--", *inside, check=False)
        if ignored.returncode not in (0, 1):
            raise KxError(f"git check-ignore failed: {ignored.stderr.strip().splitlines()[-1:]}")
        problems += [f"{line} is ignored by git" for line in ignored.stdout.splitlines() if line]
    return problems


def _existing_folder(path: Path) -> Path:
    folder = path.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def _relative(top: Path, path: Path) -> str:
    return path.relative_to(top).as_posix() if path.is_relative_to(top) else str(path)


def move(top: Path, source: Path, destination: Path, rename: Callable[[Path, Path], None]) -> None:
    """``rename`` the file (kx's writer moves it), and git's index follows it when git tracks it, as ``git mv``."""
    tracked = is_tracked(top, source)
    rename(source, destination)
    if tracked:
        _git(top, "rm", "--cached", "--quiet", "--", str(source))
        _git(top, "add", "--force", "--", str(destination))


def commit_with_trailer(top: Path, trailer: str) -> str | None:
    """HEAD's id when its message holds ``trailer`` (a commit an interrupted run already made), else None."""
    head = _git(top, "log", "-1", "--format=%H%n%B", check=False)
    if head.returncode != 0:
        return None  # no commit yet
    commit, _, message = head.stdout.partition("\n")
    return commit.strip() if trailer in message.splitlines() else None


def stage(top: Path, paths: list[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        _git(top, "add", "--", *existing)


def commit_staged(top: Path, message: str) -> str | None:
    """Commit what is staged and return the commit's id; None when nothing is staged."""
    if _git(top, "diff", "--cached", "--quiet", check=False).returncode == 0:
        return None
    _git(top, "commit", "-q", "-m", message)
    return _git(top, "rev-parse", "HEAD").stdout.strip()
