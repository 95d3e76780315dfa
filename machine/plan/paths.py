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
import unicodedata
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
SPELLING_RULE = ("paths in plan text are NFC, hold no control, format or bidirectional characters, no backslash and"
                 " no lookalike of '/' or '.', with names of at most 255 bytes and 1 KiB in all")
MAX_NAME_BYTES, MAX_PATH_BYTES = 255, 1024
# Characters that read as '/', '\' or '.' but are not: those NFKC folds to them, and these it leaves alone
_LOOKALIKES = frozenset("\u2044\u2215\u2216\u2571\u29f5\u29f8\u29f9\u2027\u2219\u3002\uff61\u0701\u0702\ua4f8")
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, format characters (bidi marks, zero widths)


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


def unsafe_paths(plan: Plan, guard: PathGuard) -> list[tuple[int, str, str, str]]:
    """(line, path, problem, rule) for each path of the plan that is misspelt (:func:`misspelt_paths`) or that
    the guard refuses, in line order; a line with a misspelt path is not put to the guard (what it would resolve
    is not what was written)."""
    misspelt = misspelt_paths(plan)
    lines = {line for line, _, _ in misspelt}
    found = {(line, path, problem, RULE) for line, path in plan_paths(plan)
             if line not in lines and (problem := guard.problem(path, relative=True))}
    return sorted(found | {(line, path, problem, SPELLING_RULE) for line, path, problem in misspelt})


def refuse_unsafe_paths(plan: Plan, guard: PathGuard, name: str) -> None:
    """``kx plan import``'s check: the first unsafe path, with its line, as one line (exit 2)."""
    unsafe = unsafe_paths(plan, guard)
    if unsafe:
        line, path, problem, rule = unsafe[0]
        more = f" (and {len(unsafe) - 1} more; see 'kx plan lint {name}')" if len(unsafe) > 1 else ""
        raise BadInput(f"{name} line {line}: {path} {problem}; {rule}{more}")


# --- paths whose text does not say what it seems to ----------------------------------------------------


def misspelt_paths(plan: Plan) -> list[tuple[int, str, str]]:
    """(line, path as shown, problem) for each path of the plan text whose characters would make it name
    another file than it seems to, or none: a header box's target, a Read box's path, an influential file, a
    drop name. The parser reads a path as the longest run of plain path characters, so that ``..\\..\\x.md``,
    ``..∕..∕x.md`` (DIVISION SLASH) and ``out/<U+202E>gnp.md`` would quietly become ``x.md`` or ``gnp.md``, and
    ``café.md`` decomposed (NFD) no path at all."""
    from machine.plan.parser import read_path

    found = []
    for number, path in plan.influential_files.items():
        if problem := spelling_problem(path):
            found.append((plan.influential_lines.get(number, -1) + 1, shown_path(path), problem))
    for part in plan.parts:
        if part.header and (problem := _header_problem(part.header.text, part.header.target)):
            found.append((part.header.line + 1, *problem))
        for box in part.boxes:
            read = read_path(box.text)
            if read is not None and (problem := spelling_problem(read)):
                found.append((box.line + 1, shown_path(read), problem))
            elif part.drop_name and part.drop_name in box.text and (problem := length_problem(part.drop_name)):
                found.append((box.line + 1, shown_path(part.drop_name), problem))
    return sorted(set(found))


def _header_problem(text: str, target: str | None) -> tuple[str, str] | None:
    """A header box's words hold no invisible character and are NFC; the word its target is read from holds
    nothing that would change which file it names."""
    words = text.partition(":")[2]
    if problem := _invisible(words) or _not_nfc(words):
        word = next((w for w in words.split(" ") if _invisible(w) or _not_nfc(w)), words.strip())
        return shown_path(word.strip("`'\"")), problem
    if target is None:
        return None
    word = next((w.strip("`'\"()[],;:") for w in words.split(" ") if target in w), target)
    if problem := _lookalike(word) or length_problem(target):
        return shown_path(word), problem
    return None


def spelling_problem(path: str) -> str | None:
    """What makes ``path`` (as plan text writes it) unfit to name a file, or None."""
    return _invisible(path) or _not_nfc(path) or _lookalike(path) or length_problem(path)


def length_problem(path: str) -> str | None:
    if len(path.encode()) > MAX_PATH_BYTES:
        return f"is {len(path.encode())} bytes long; a path is at most {MAX_PATH_BYTES} bytes"
    longest = max(path.split("/"), key=lambda name: len(name.encode()))
    if len(longest.encode()) > MAX_NAME_BYTES:
        return (f"has a name of {len(longest.encode())} bytes; a file or folder name is at most"
                f" {MAX_NAME_BYTES} bytes")
    return None


def _invisible(text: str) -> str | None:
    found = next((c for c in text if unicodedata.category(c) in _INVISIBLE and c != "\t"), None)
    return f"holds {character(found)}, an invisible character that changes how the path reads" if found else None


def _not_nfc(text: str) -> str | None:
    if unicodedata.is_normalized("NFC", text):
        return None
    first = (next((c for c in text if unicodedata.combining(c)), None)
             or next((c for c in text if unicodedata.normalize("NFC", c) != c), text[0]))
    return f"is not in Unicode normal form NFC (it holds {character(first)} where NFC composes); save it as NFC"


def _lookalike(text: str) -> str | None:
    if "\\" in text:
        return f"holds {character(chr(0x5c))}; separate folders with '/'"
    found = next((c for c in text if c in _LOOKALIKES or not c.isascii() and any(
        mark in unicodedata.normalize("NFKC", c) for mark in "./\\")), None)
    if found is None:
        return None
    looks = "/" if any(s in unicodedata.name(found, "") for s in ("SOLIDUS", "SLASH", "DIAGONAL", "MINUS")) else "."
    return f"holds {character(found)}, which looks like '{looks}' but is not; write '{looks}'"


def character(c: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``."""
    return f"U+{ord(c):04X} {unicodedata.name(c, 'UNNAMED CHARACTER')}"


def shown_path(path: str, limit: int = 80) -> str:
    """``path`` for an error line: each character that is not plainly visible as ``<U+XXXX>``, at most
    ``limit`` characters."""
    shown = "".join(f"<U+{ord(c):04X}>" if unicodedata.category(c) in _INVISIBLE or unicodedata.combining(c)
                    else c for c in path)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
