"""Where kx may write, and read for a runner: inside the plan's root, out of ``.kx/``, neither the plan nor the ledger.

Every path that comes from plan text, options or configuration goes through
one :class:`PathGuard` (CONTRACT section 8): ``kx plan import`` and
``kx plan lint`` check the plan's paths with it, and every site that writes
(drops, runners, consolidation, files from a Ray node) or reads for a runner
checks again, so that a plan that got into a ledger some other way still
cannot make kx write over its own files or outside the root. Symlinks are
resolved first: a link out of the root is outside. Every write goes through
:meth:`PathGuard.write` (or :meth:`PathGuard.place`): the guard is asked again
for each folder on the way, as the write reaches it, so a folder swapped for a
link after the check cannot redirect the write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import BadInput
from ledger.files import Place, make_folders_beneath, place_beneath, write_beneath
from ledger.locate import FOLDER
from machine.plan.text import QUOTE_LIMIT, cut

if TYPE_CHECKING:
    from machine.plan.model import Plan

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RULE = "plan paths stay inside the plan's root, out of .kx/, and are neither the plan file nor the ledger"


def check_plan_id(plan_id: str) -> str:
    """A plan id names folders (``.kx/attempts/ID/``): letters, digits, ``.``, ``_``, ``-``, and no ``..``."""
    if not SAFE_ID.fullmatch(plan_id) or ".." in plan_id:
        raise BadInput(f"{plan_id!r} is not a plan id: use letters, digits, '.', '_' and '-' (no '/' or '..'),"
                       " starting with a letter or digit")
    return plan_id


@dataclass(frozen=True)
class PathGuard:
    root: Path  # all resolved
    kx_folders: tuple[Path, ...]
    ledger: Path | None = None
    plan: Path | None = None

    @classmethod
    def around(cls, root: Path | str, *, ledger: Path | str | None = None, plan: Path | str | None = None) -> PathGuard:
        root = Path(root).resolve()
        ledger = Path(ledger).resolve() if ledger else None
        folders = [root / FOLDER] + ([ledger.parent] if ledger and ledger.parent.name == FOLDER else [])
        return cls(root, tuple(dict.fromkeys(folders)), ledger, Path(plan).resolve() if plan else None)

    def problem(self, path: Path | str, *, relative: bool = False, may_be_plan: bool = False) -> str | None:
        """Why ``path`` (relative to the root unless absolute) may not be used, or None.

        ``relative``: the path comes from plan text, which names paths relative to the root only.
        """
        if relative and (Path(path).is_absolute() or str(path).startswith("~")):
            return "is an absolute path; plan paths are relative to the plan's root"
        try:
            real = (self.root / path).resolve()
        except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a NUL byte
            return f"cannot be resolved ({exc})"
        return self.refusal(real, may_be_plan=may_be_plan)

    def refusal(self, real: Path, *, may_be_plan: bool = False) -> str | None:
        """Why the path ``real`` (its symlinks already resolved: nothing is resolved here) may not be used, or None."""
        if not real.is_relative_to(self.root):
            return f"is outside the plan's root {self.root}"
        if folder := next((f for f in self.kx_folders if real.is_relative_to(f)), None):
            return f"is in kx's folder {folder}"
        if self.ledger and (real == self.ledger or real.parent == self.ledger.parent
                            and real.name.startswith(f"{self.ledger.name}-")):
            return "is the ledger"
        if self.plan and real == self.plan and not may_be_plan:
            return "is the plan file"
        return None

    def allows(self, path: Path | str) -> bool:
        return self.problem(path) is None

    def check(self, path: Path | str, *, name: Path | str | None = None, may_be_plan: bool = False) -> Path:
        """The real path (symlinks resolved), or :class:`BadInput` (exit 2) saying why not (of ``name``,
        the path as the user gave it, when ``path`` was made absolute)."""
        problem = self.problem(path, may_be_plan=may_be_plan)
        if problem:
            raise BadInput(f"{cut(str(name or path), QUOTE_LIMIT)} {problem}; {RULE}")
        return (self.root / path).resolve()

    def writable(self, path: Path | str, *, name: Path | str | None = None, may_be_plan: bool = False) -> Path:
        """Where a write of ``path`` lands (a symlink at its name is followed where the guard allows it, else
        replaced), or :class:`BadInput` (exit 2) saying why not, as :meth:`check` says it."""
        if self.problem(path, may_be_plan=may_be_plan) is None:
            return (self.root / path).resolve()
        folder = self.check((self.root / path).parent, name=name or path)
        at_name = folder / Path(path).name
        if problem := self.refusal(at_name, may_be_plan=may_be_plan):
            raise BadInput(f"{name or path} {problem}; {RULE}")
        return at_name

    def place(self, path: Path | str, *, name: Path | str | None = None, may_be_plan: bool = False,
              make_folders: bool = True) -> AbstractContextManager[Place]:
        """Where kx writes ``path`` (relative to the root, or absolute), reached from the root without following
        a link the guard refuses (:func:`ledger.files.place_beneath`); a refusal names ``name`` (exit 2)."""
        return place_beneath(self.root, Path(path), self._refuse(name or path, may_be_plan), make_folders=make_folders)

    def write(self, path: Path | str, data: bytes, *, name: Path | str | None = None,
              may_be_plan: bool = False) -> Path:
        """``data`` at ``path``, atomically and never through a link (:meth:`place`); the real path written."""
        return write_beneath(self.root, Path(path), data, self._refuse(name or path, may_be_plan))

    def make_parent(self, path: Path | str | None) -> bool:
        """Make the folder ``path`` goes in (for a runner that writes it), when the guard allows ``path``;
        whether it is there now. A path it refuses is left for the runner to fail on (import refuses it first)."""
        if path is None or not self.allows(path):
            return False
        try:
            make_folders_beneath(self.root, (self.root / path).parent, self._refuse(path, False))
        except (OSError, BadInput):
            return False
        return True

    def _refuse(self, name: Path | str, may_be_plan: bool) -> Callable[[Path], str | None]:
        def refuse(real: Path) -> str | None:
            problem = self.refusal(real, may_be_plan=may_be_plan)
            return f"{name} {problem}; {RULE}" if problem else None

        return refuse


def plan_paths(plan: Plan) -> Iterator[tuple[int, str]]:
    """Every path the plan text names, with its line (1-based): targets, drops, Read boxes, influential files."""
    from machine.plan.parser import read_path

    for number, path in plan.influential_files.items():
        yield plan.influential_lines.get(number, -1) + 1, path
    for part in plan.parts:
        if part.header and part.header.target:
            yield part.header.line + 1, part.header.target
        for box in part.boxes:
            if (read := read_path(box.text)) is not None:
                yield box.line + 1, read
            if part.drop_name and part.drop_name in box.text:
                yield box.line + 1, part.drop_name


def unsafe_paths(plan: Plan, guard: PathGuard) -> list[tuple[int, str, str]]:
    """(line, path, problem) for each path of the plan that the guard refuses, in line order."""
    found = {(line, path, problem) for line, path in plan_paths(plan)
             if (problem := guard.problem(path, relative=True))}
    return sorted(found)


def refuse_unsafe_paths(plan: Plan, guard: PathGuard, name: str) -> None:
    """``kx plan import``'s check: the first unsafe path, with its line, as one line (exit 2)."""
    unsafe = unsafe_paths(plan, guard)
    if unsafe:
        line, path, problem = unsafe[0]
        more = f" (and {len(unsafe) - 1} more; see 'kx plan lint {name}')" if len(unsafe) > 1 else ""
        raise BadInput(f"{name} line {line}: {path} {problem}; {RULE}{more}")
