"""What kx can check about a box (CONTRACT section 7): its kind from its text, and what its evidence is.

A box's kind comes from its text as the seed plan writes it:

- ``Read PATH ...`` — the first token after Read is a path (a trailing ``/``: a folder) → ``read``
- ``Search: "QUERY"`` → ``search``
- ``Section N: TITLE`` (bold, parentheses, ``- 100 lines`` allowed in the title) → ``section``
- ``**CITE**: Files 1,5,8 ...`` / ``CITED: Files 1-4`` → ``cite``
- ``Create KNOWLEDGE-DROP-...`` → ``drop``
- anything else → ``other``

Pure functions over text, and the hashes of the files a Read box names; the rules
(:mod:`machine.state.rules`) decide with them, the brief explains them, runners use them.
Light on imports: ``kx tick`` loads this module.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from machine.plan.parser import HEADING_OPENING, number_list, read_path, search_query

if TYPE_CHECKING:
    from machine.plan.paths import PathGuard

KINDS = ("read", "search", "section", "cite", "drop", "other")
FOLDER_FILE_CAP = 10_000  # a Read folder is hashed over at most this many files (the evidence says when capped)

_BOLD = re.compile(r"\*\*|__")
_SECTION = re.compile(r"^\W*section\s+(\d{1,9}[a-z]?)\b\s*[:.\-–—]?\s*(.*)$", re.IGNORECASE)
_CITE = re.compile(r"^\W*cit(?:e|ed|es|ing)\b\W*files?\s+(\d[\d,\s\-–]*)", re.IGNORECASE)
_LINES_NOTE = re.compile(r"\s[-–—]\s*~?\d+\+?\s*lines?\b.*$", re.IGNORECASE)
_HEADING = re.compile(HEADING_OPENING + r"(?:[ \t]+#+)?[ \t]*$")  # CommonMark: closing #s follow a space ("## C#")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and the of for to in on with by at from as or vs versus via into its is are be how what when why"
    " which this that these those using use".split()
)


@dataclass(frozen=True, slots=True)
class BoxKind:
    """A box's kind and its arguments (``path`` of a read, ``query`` of a search, ``number`` and ``title`` of a
    section, ``files`` of a cite)."""

    kind: str
    path: str | None = None
    query: str | None = None
    number: str | None = None
    title: str | None = None
    files: tuple[int, ...] = ()

    @property
    def folder(self) -> bool:
        return bool(self.path) and self.path.endswith("/")

    def arguments(self) -> dict:
        fields = {"path": self.path, "query": self.query, "number": self.number, "title": self.title,
                  "files": list(self.files) if self.kind == "cite" else None}
        return {k: v for k, v in fields.items() if v is not None}


def kind_of(text: str, influential: Collection[int] = ()) -> BoxKind:
    """The kind of a box with this text; ``influential``: the numbers of the plan's influential-file list."""
    plain = _BOLD.sub("", text).strip()
    if (path := read_path(plain)) is not None:
        return BoxKind("read", path=path)
    if (query := search_query(plain)) is not None:
        return BoxKind("search", query=query)
    if section := _SECTION.match(plain):
        return BoxKind("section", number=section[1].lower(), title=section[2].strip())
    if cite := _CITE.match(plain):
        return BoxKind("cite", files=tuple(dict.fromkeys(number_list(cite[1], listed=influential))))
    if "KNOWLEDGE-DROP" in plain.upper():
        return BoxKind("drop")
    return BoxKind("other")


# --- the target file: its headings and the files it names ------------------------------


def headings(markdown: str) -> list[str]:
    """The text of every ATX heading (``## ...``) outside fenced code, bold marks removed."""
    found, fence = [], None
    for line in markdown.splitlines():
        if marker := _FENCE.match(line):
            if fence is None:
                fence = marker[1][0]
            elif marker[1][0] == fence:
                fence = None
            continue
        if fence is None and (heading := _HEADING.match(line)):
            found.append(_BOLD.sub("", heading["text"]).strip())
    return found


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def main_words(title: str) -> tuple[str, ...]:
    """The words of a section title that a heading must carry: before its parentheses and its ``- 100 lines``,
    without small words, bare numbers and single letters."""
    plain = _LINES_NOTE.sub("", _BOLD.sub("", title))
    for part in (plain.split("(", 1)[0], plain):
        chosen = [w for w in words(part) if w not in STOP_WORDS and not w.isdigit() and len(w) > 1]
        if chosen:
            return tuple(dict.fromkeys(chosen))
    return ()


def heading_for(box: BoxKind, found: Iterable[str]) -> str | None:
    """The first heading that stands for a Section box: it carries every main word of the title, or it names the
    section's number (``Section 2`` or a leading ``2.``) together with at least one of them. A title without main
    words: the number alone."""
    wanted = main_words(box.title or "")
    for heading in found:
        present = set(words(heading))
        numbered = bool(re.search(rf"\bsection\s+{re.escape(box.number or '')}\b", heading, re.IGNORECASE)
                        or re.match(rf"^\s*{re.escape(box.number or '')}\s*[.:)]", heading))
        if wanted and all(w in present for w in wanted):
            return heading
        if numbered and (not wanted or any(w in present for w in wanted)):
            return heading
    return None


def names_file(text: str, number: int, path: str | None) -> bool:
    """Whether a text names influential file ``number``: ``File N`` or its path."""
    return bool(re.search(rf"\bfile\s*#?\s*{number}\b", text, re.IGNORECASE)) or bool(path and path in text)


def suggested_heading(box: BoxKind) -> str:
    return f"## Section {box.number}: {_BOLD.sub('', box.title or '').strip()}".rstrip(": ")


# --- what each kind needs, and the command that gives it ---------------------------------


def how_to(box: BoxKind, part: str, ref: str, target: str | None, files: dict[int, str]) -> tuple[str, str]:
    """(what the box's evidence is, the command or action that gives it), as the brief and refusals say them."""
    target = target or "the target file"
    tick = f"kx tick {part} {ref}"
    if box.kind == "read":
        return (f"{box.path} inside the plan's root, read (kx hashes it when you tick)",
                f"{tick} once it is there (without --attempt, a person's override)")
    if box.kind == "search":
        return ("at least one source the search found (a URL or text)", f"{tick} --source URL")
    if box.kind == "section":
        return (f"a heading for it in {target}, e.g. '{suggested_heading(box)}'",
                f"write '{suggested_heading(box)}' in {target}, then {tick}")
    if box.kind == "cite":
        named = ", ".join(f"File {n}" + (f" ({files[n]})" if n in files else "") for n in box.files)
        return (f"{target} naming {named or 'the cited files'} (as 'File N' or the path)",
                f"name them in {target}, then {tick}")
    if box.kind == "drop":
        return ("the KNOWLEDGE DROP recorded first", f"kx drop {part} FILE, then {tick}")
    return ("nothing kx can check", tick)


# --- files inside the plan's root --------------------------------------------------------


def locate(guard: PathGuard, relative: str) -> tuple[Path | None, str | None]:
    """A path from plan text under the guard's root, symlinks resolved: (the real path, None) when the guard allows
    it and it exists, or (None, why not)."""
    if problem := guard.problem(relative, relative=True):
        return None, f"{relative} {problem}"
    real = (guard.root / relative).resolve()
    if not real.exists():
        return None, f"{relative} does not exist in the plan's root {guard.root}"
    return real, None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest_of(real: Path, guard: PathGuard, cap: int = FOLDER_FILE_CAP) -> dict:
    """A file's ``sha256``; a folder's: over its files' relative paths and hashes, sorted, with their count
    (``files``) — at most ``cap`` files (``capped``: true when there were more). What the guard refuses (a file
    that leaves the root through a symlink, kx's folder, the ledger) and unreadable files are left out."""
    if real.is_file():
        return {"sha256": sha256_of(real)}
    chosen: list[tuple[str, Path]] = []
    capped = False
    for folder, subfolders, names in os.walk(real):
        subfolders[:] = sorted(d for d in subfolders if guard.allows(Path(folder) / d))
        for name in sorted(names):
            path = Path(folder) / name
            target = path.resolve()
            if not target.is_file() or not guard.allows(path):
                continue
            if len(chosen) == cap:
                capped = True
                break
            chosen.append((path.relative_to(real).as_posix(), target))
        if capped:
            break
    digest = hashlib.sha256()
    count = 0
    for relative, target in sorted(chosen):
        try:
            digest.update(f"{relative}\0{sha256_of(target)}\n".encode())
        except OSError:
            continue
        count += 1
    return {"sha256": digest.hexdigest(), "files": count, **({"capped": True} if capped else {})}
