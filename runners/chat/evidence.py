"""Which boxes a knowledge file gives evidence for, so that a runner ticks only those.

Box kinds and the target checks are :mod:`machine.state.evidence`'s, the very ones ``kx finish`` applies:

- ``Section 3: Title`` — the answer has a heading for it (its title's main words, or "Section 3" with one of them).
- ``CITE: Files 1,5,8`` — the answer names every one of those files (``File N`` or the path).
- ``Read path`` and ``Search: "query"`` — never from an answer's words: kx checks a Read box's file itself and a
  Search box needs the sources a search really found (CONTRACT section 7).
Any other box is left for the runner to decide (or for a person).
"""

from __future__ import annotations

from typing import Any

from machine.state.evidence import heading_for, headings, kind_of, names_file


def has_evidence(box_text: str, answer: str, files: dict[int, str]) -> bool | None:
    """True/False for Section and CITE boxes; None when the answer cannot say."""
    kind = kind_of(box_text, files)
    if kind.kind == "section":
        return heading_for(kind, headings(answer)) is not None
    if kind.kind == "cite":
        return all(names_file(answer, n, files.get(n)) for n in kind.files)
    return None


def evidenced_refs(brief: dict[str, Any], answer: str) -> tuple[list[str], list[str]]:
    """(refs with evidence, texts of boxes without) among the brief's unticked boxes."""
    files = {f["number"]: f["path"] for f in brief["influential_files"] if f["path"]}
    found, missing = [], []
    for box in brief["boxes"]:
        if box["ticked"]:
            continue
        verdict = has_evidence(box["text"], answer, files)
        if verdict:
            found.append(box["ref"])
        elif verdict is False:
            missing.append(box["text"])
    return found, missing
