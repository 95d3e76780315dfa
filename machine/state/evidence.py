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

import errno
import hashlib
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from machine.plan.parser import number_list, read_path, search_query

if TYPE_CHECKING:
    from machine.plan.paths import PathGuard

FOLDER_FILE_CAP = 10_000  # a Read folder is hashed over at most this many files (the evidence says when capped)
SKIPPED_SHOWN = 20  # entries of a Read folder that could not be read, named in the evidence

_BOLD = re.compile(r"\*\*|__")
_SECTION = re.compile(r"^\W*section\s+(\d{1,9}[a-z]?)\b\s*[:.\-–—]?\s*(.*)$", re.IGNORECASE)
_CITE = re.compile(r"^\W*cit(?:e|ed|es|ing)\b\W*files?\s+(\d[\d,\s\-–]*)", re.IGNORECASE)


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


# --- the target file: the files it names (its headings: machine.state.headings) ----------------


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
        return (f"{box.path} inside the plan's root, read (kx hashes it when you tick)", f"{tick} once it is there")
    if box.kind == "search":
        return (f"at least one source the search found: {SOURCE_FORMS}", f"{tick} --source URL")
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


# --- a Search box's sources -----------------------------------------------------------------

SOURCE_FORMS = ("an http(s) URL with a host, a DOI (10.1234/...), an arXiv id (arXiv:2103.00020 or 2103.00020)"
                " or a file inside the plan's root")
_DOI = re.compile(r"(?:doi:\s*)?10\.\d{4,9}/\S+", re.IGNORECASE)
_ARXIV = re.compile(r"(?:arxiv:\s*)?\d{4}\.\d{4,5}(?:v\d+)?|arxiv:\s*[a-z][a-z.\-]*/\d{7}(?:v\d+)?", re.IGNORECASE)
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?", re.IGNORECASE)


def source_form(text: str) -> str | None:
    """"url", "doi" or "arxiv" for a source in one of those forms, else None (a path is checked against the root)."""
    if any(c.isspace() for c in text) or "\0" in text:
        return None
    if _DOI.fullmatch(text):
        return "doi"
    if _ARXIV.fullmatch(text):
        return "arxiv"
    return "url" if _web_address(text) else None


def _web_address(text: str) -> bool:
    """An http(s) URL whose host is a host name or an IP address (a port, if any, a number)."""
    import ipaddress
    from urllib.parse import urlsplit  # only a tick with sources pays for these

    try:
        url = urlsplit(text)
        host, _ = url.hostname, url.port
    except ValueError:
        return False
    if url.scheme.lower() not in ("http", "https") or not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOST.fullmatch(host))


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


@dataclass
class FolderFiles:
    """A Read folder's regular files (relative path, real path), sorted, and what could not be read."""

    files: list[tuple[str, Path]]
    skipped: list[str]  # "relative/path (why)": a symlink loop, an unreadable folder or file
    capped: bool = False


def folder_files(real: Path, guard: PathGuard, cap: int = FOLDER_FILE_CAP) -> FolderFiles:
    """The regular files under the folder ``real`` that the guard allows (a file that leaves the root through a
    symlink, kx's folder, the ledger are left out), at most ``cap``; symlinked folders are not walked into.
    Symlink loops and what cannot be read are skipped and listed."""
    found = FolderFiles([], [])

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or real)
        found.skipped.append(f"{_relative(where, real)}/ (cannot be read: {error.strerror})")

    for folder, subfolders, names in os.walk(real, onerror=unreadable):
        subfolders[:] = sorted(d for d in subfolders if guard.allows(Path(folder) / d))
        for name in sorted(names):
            path = Path(folder) / name
            relative = _relative(path, real)
            try:
                info = os.stat(path)
            except OSError as error:  # a dangling link is no file; a loop or an unreadable entry is said
                if error.errno != errno.ENOENT:
                    found.skipped.append(f"{relative} ({_why(error)})")
                continue
            if not stat.S_ISREG(info.st_mode) or not guard.allows(path):
                continue
            if len(found.files) == cap:
                found.capped = True
                break
            found.files.append((relative, path.resolve()))
        if found.capped:
            break
    found.files.sort()
    return found


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() if path != folder else "."


def _why(error: OSError) -> str:
    return "a symlink loop" if error.errno == errno.ELOOP else f"cannot be read: {error.strerror}"


def digest_of(real: Path, guard: PathGuard, cap: int = FOLDER_FILE_CAP) -> dict:
    """A file's ``sha256``; a folder's: over its files' relative paths and hashes (:func:`folder_files`), with
    their count (``files``), ``capped`` when there were more than ``cap``, and ``skipped``: the entries that
    could not be read (symlink loops, unreadable files and folders), at most :data:`SKIPPED_SHOWN` of them."""
    if real.is_file():
        return {"sha256": sha256_of(real)}
    found = folder_files(real, guard, cap)
    digest = hashlib.sha256()
    count = 0
    for relative, target in found.files:
        try:
            digest.update(f"{relative}\0{sha256_of(target)}\n".encode())
        except OSError as error:
            found.skipped.append(f"{relative} ({_why(error)})")
            continue
        count += 1
    skipped = sorted(found.skipped)
    if len(skipped) > SKIPPED_SHOWN:
        skipped = [*skipped[:SKIPPED_SHOWN], f"... and {len(skipped) - SKIPPED_SHOWN} more"]
    return {"sha256": digest.hexdigest(), "files": count, **({"capped": True} if found.capped else {}),
            **({"skipped": skipped} if skipped else {})}
