"""Mojibake: UTF-8 text that an editor read as Mac Roman or Windows-1252 and saved again (``‚úì`` for ``✓``).

A run of two or more non-ASCII characters is mojibake when its characters, written in one of those encodings,
are UTF-8 bytes of something else; mending it decodes them so. A run that does not round-trip (accents,
dashes, real symbols) is never touched, so no other character of a text changes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

RUN = re.compile(r"[^\x00-\x7f\ufeff]{2,}")  # the BOM is the file's, never part of a run
CODECS = ("mac_roman", "cp1252")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # bytes that happen to decode to a control character: no text


def mend(run: str, codecs: tuple[str, ...] = CODECS) -> str | None:
    """What ``run`` was before the first of ``codecs`` that round-trips it garbled it; None: it is no mojibake."""
    for codec in codecs:
        try:
            fixed = run.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
        if fixed != run and not _CONTROL.search(fixed):
            return fixed
    return None


@dataclass
class Repair:
    text: str
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (mojibake, mended) → how many runs


def repair(text: str) -> Repair:
    """``text`` with every mojibake run mended, trying first the encoding that explains most of its runs."""
    if text.isascii():
        return Repair(text)
    runs = RUN.findall(text)
    order = tuple(sorted(CODECS, key=lambda codec: -sum(mend(run, (codec,)) is not None for run in runs)))
    counts: Counter[tuple[str, str]] = Counter()

    def mended(match: re.Match[str]) -> str:
        fixed = mend(match.group(), order)
        if fixed is None:
            return match.group()
        counts[(match.group(), fixed)] += 1
        return fixed

    return Repair(RUN.sub(mended, text), dict(counts))


def mended(text: str) -> str:
    """``text`` with its mojibake mended: how a box is known before and after ``kx render --repair``."""
    return text if text.isascii() else repair(text).text
