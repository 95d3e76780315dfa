"""Which boxes a knowledge file gives evidence for, so that a runner ticks only those.

Box kinds and the target checks are :mod:`machine.state.evidence`'s and :mod:`machine.state.headings`', the very
ones ``kx finish`` applies:

- ``Section 3: Title`` — a heading of the answer stands for it (the heading rule, CONTRACT section 7).
- ``CITE: Files 1,5,8`` — the answer names every one of those files (``File N`` or the path).
- ``Read path`` and ``Search: "query"`` — never from an answer's words: kx checks a Read box's file itself and a
  Search box needs the sources a search really found (CONTRACT section 7).
Any other box is left for the runner to decide (or for a person).
"""

from __future__ import annotations

from typing import Any

from machine.state.evidence import kind_of, names_file
from machine.state.headings import headings, match_sections


def evidenced_refs(brief: dict[str, Any], answer: str) -> tuple[list[str], list[str]]:
    """(refs with evidence, texts of boxes without) among the brief's unticked Section and CITE boxes."""
    files = {f["number"]: f["path"] for f in brief["influential_files"] if f["path"]}
    boxes = [(box, kind_of(box["text"], files)) for box in brief["boxes"]]
    sections = [(box, kind) for box, kind in boxes if kind.kind == "section"]
    matched = match_sections([kind for _, kind in sections], headings(answer))
    stood_for = {sections[index][0]["ref"] for index in matched}
    found, missing = [], []
    for box, kind in boxes:
        if box["ticked"] or kind.kind not in ("section", "cite"):
            continue
        holds = box["ref"] in stood_for if kind.kind == "section" else \
            all(names_file(answer, n, files.get(n)) for n in kind.files)
        (found if holds else missing).append(box["ref"] if holds else box["text"])
    return found, missing
