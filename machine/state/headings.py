"""The heading rule (CONTRACT section 7): which heading of a knowledge file stands for which Section box.

A heading stands for a Section box when it carries every main word of the box's title, and, when the heading
names a section number (``Section N``, or ``N.`` / ``N)`` first), that number is the box's. The main words are
the title's words before any parenthesis and before a ``- 100 lines`` note, stop words aside; words compare
case-, accent- and punctuation-insensitively and in any order. Numbers are words, and so are identifiers: a word
holding a digit keeps its inner punctuation (``4.0.1`` is not ``4.0.2``, ``ARR-COC-0-1`` is one word), while a
plain hyphenated word is its parts (``self-attention`` is ``self`` and ``attention``). Paths and file names in a
heading are not words (``a/b-c.md``), and a heading that is only ``File N: path`` stands for no box. A title with
no main words is stood for by a heading that names its number.

Each heading stands for one box at most. A box takes the closest heading it can — the title exactly, then the
number named, then the first in the file — while every box that some heading qualifies for gets one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from machine.plan.parser import HEADING_OPENING

_HEADING = re.compile(HEADING_OPENING + r"(?:[ \t]+#+)?[ \t]*$")  # CommonMark: closing #s follow a space ("## C#")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_BOLD = re.compile(r"\*\*|__")
_LINES_NOTE = re.compile(r"\s[-–—]\s*~?\d+\+?\s*lines?\b.*$", re.IGNORECASE)
_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_INNER = re.compile(r"[^\w\s]|_")
_PLAIN_PARTS = re.compile(r"[^\W_]+")
_FILE_NAME = re.compile(r"^[\w.-]+\.(?:md|markdown|mdx|txt|rst|py|ipynb|json|ya?ml|toml|ini|cfg|html?|css|js|ts|tsx|"
                        r"csv|tsv|pdf|sh|rs|go|java|c|h|cc|cpp|hpp|sql|xml|tex|log)$", re.IGNORECASE)
_EXTENSION = re.compile(r"[^./\\]\.[A-Za-z0-9]{1,8}$")
_NUMBER = re.compile(r"^\s*(?:section\s+(?P<named>\d+[a-z]?)\b|(?P<first>\d+[a-z]?)\s*[.)])\s*[:.\-–—)]?\s*",
                     re.IGNORECASE)
_FILE_ONLY = re.compile(r"^\s*file\s+\d+\s*[:.\-–—]\s*(?P<path>\S+)\s*$", re.IGNORECASE)
STOP_WORDS = frozenset(
    "a an and the of for to in on with by at from as or vs versus via into its is are be how what when why"
    " which this that these those using use".split()
)


@dataclass(frozen=True, slots=True)
class Heading:
    line: int  # 1-based, in the knowledge file
    text: str  # bold marks removed

    def __str__(self) -> str:
        return self.text


class SectionBox(Protocol):
    """What the rule reads of a Section box (:class:`machine.state.evidence.BoxKind` has it)."""

    number: str | None
    title: str | None


def headings(markdown: str) -> list[Heading]:
    """Every ATX heading (``## ...``) outside fenced code, with its line."""
    found, fence = [], None
    for number, line in enumerate(markdown.splitlines(), 1):
        if marker := _FENCE.match(line):
            if fence is None:
                fence = marker[1][0]
            elif marker[1][0] == fence:
                fence = None
            continue
        if fence is None and (heading := _HEADING.match(line)):
            found.append(Heading(number, _BOLD.sub("", heading["text"]).strip()))
    return found


def _folded(text: str) -> str:
    """Case and accents aside: NFKD without combining marks, casefolded."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def is_path(token: str) -> bool:
    """A path or a file name, which a title's words never are: ``a/b-c.md``, ``notes/``, ``README.md``."""
    if "/" in token or "\\" in token:
        return token.endswith(("/", "\\")) or bool(_EXTENSION.search(token))
    return bool(_FILE_NAME.match(token))


def words(text: str) -> list[str]:
    """The words of a text as the rule compares them (paths left out)."""
    found: list[str] = []
    for raw in _BOLD.sub("", text).split():
        if is_path(raw.strip("`'\"()[]<>,;")):
            continue
        token = _EDGES.sub("", _folded(raw))
        if any(c.isdigit() for c in token) and _INNER.search(token):
            found.append(token)  # an identifier or a version: its punctuation is part of it
        else:
            found += _PLAIN_PARTS.findall(token)
    return found


def _title(title: str) -> str:
    return _LINES_NOTE.sub("", _BOLD.sub("", title)).strip()


def main_words(title: str) -> tuple[str, ...]:
    """The words a heading must carry: the title's before its parentheses, stop words aside (all of its words
    when the parentheses come first)."""
    plain = _title(title)
    for part in (plain.split("(", 1)[0], plain):
        chosen = [w for w in words(part) if w not in STOP_WORDS]
        if chosen:
            return tuple(dict.fromkeys(chosen))
    return ()


def named_number(text: str) -> str | None:
    """The section number a heading names (``Section 2: ...``, ``2. ...``, ``2) ...``), or None."""
    found = _NUMBER.match(text)
    return _folded(found["named"] or found["first"]) if found else None


def _unnumbered(text: str) -> str:
    found = _NUMBER.match(text)
    return text[found.end():] if found else text


def stands_for_none(heading: Heading) -> bool:
    """``File 2: distributed-training/01-deepspeed-pipeline-parallelism.md``: a file's name, not a section."""
    found = _FILE_ONLY.match(heading.text)
    return bool(found and is_path(found["path"]))


@dataclass(frozen=True)
class _Candidate:
    box: int
    heading: int
    exact: bool
    numbered: bool


def _box_terms(box: SectionBox) -> tuple[str, tuple[str, ...], list[str]]:
    """What the rule compares of a box: its number, its main words, the words of its title before parentheses."""
    return _folded(box.number or ""), main_words(box.title or ""), words(_title(box.title or "").split("(", 1)[0])


def _heading_terms(heading: Heading) -> tuple[str | None, set[str], list[str]] | None:
    """What the rule compares of a heading: the number it names, its words, its words after the number; None for
    a heading that stands for no box."""
    if stands_for_none(heading):
        return None
    return named_number(heading.text), set(words(heading.text)), words(_unnumbered(heading.text))


def _candidate(index: int, box: tuple[str, tuple[str, ...], list[str]], position: int,
               heading: tuple[str | None, set[str], list[str]] | None) -> _Candidate | None:
    if heading is None:
        return None
    (box_number, wanted, title), (number, present, unnumbered) = box, heading
    if number is not None and number != box_number:
        return None
    if not all(w in present for w in wanted) or not (wanted or number):
        return None
    return _Candidate(index, position, unnumbered == title, number is not None)


def match_sections(boxes: Sequence[SectionBox], found: Iterable[Heading]) -> dict[int, Heading]:
    """Box index → the heading that stands for it, for the boxes some heading stands for (see the module's rule).

    Pairs are settled closest first, tier by tier (the title exactly and the number named, the title exactly, the
    number named, the words alone); within a tier, as many boxes as possible get a heading (Kuhn's augmenting
    paths), earlier boxes and headings first."""
    found = list(found)
    box_terms, heading_terms = [_box_terms(box) for box in boxes], [_heading_terms(heading) for heading in found]
    candidates = [c for index, terms in enumerate(box_terms) for position, heading in enumerate(heading_terms)
                  if (c := _candidate(index, terms, position, heading))]
    owner: dict[int, int] = {}  # heading position → box index
    for tier in ((True, True), (True, False), (False, True), (False, False)):
        edges: dict[int, list[int]] = {}
        placed = set(owner.values())
        for c in candidates:
            if (c.exact, c.numbered) == tier and c.box not in placed and c.heading not in owner:
                edges.setdefault(c.box, []).append(c.heading)
        owner.update(_maximum_matching(edges))
    return {index: found[position] for position, index in owner.items()}


def _maximum_matching(edges: dict[int, list[int]]) -> dict[int, int]:
    """Heading → box for as many boxes as possible, each box trying its headings in order (Kuhn's algorithm)."""
    owner: dict[int, int] = {}

    def place(box: int, tried: set[int]) -> bool:
        for heading in edges[box]:
            if heading not in tried:
                tried.add(heading)
                if heading not in owner or place(owner[heading], tried):
                    owner[heading] = box
                    return True
        return False

    for box in sorted(edges):
        place(box, set())
    return owner
