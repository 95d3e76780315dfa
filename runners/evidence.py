"""Which boxes a knowledge file gives evidence for, so that a runner ticks only those.

- ``Section 3: Title`` — the answer has a heading naming "Section 3" (or the title).
- ``CITE: Files 1,5,8`` — the answer cites every one of those files (by number or path).
- ``Read some/path.md`` — the answer names the path (or its file name).
- ``Search: "query"`` — the answer lists the query.
Any other box is left for the runner to decide (or for a person).
"""

from __future__ import annotations

import re
from typing import Any

from machine.parser import number_list, read_path

_SECTION = re.compile(r"^\W*section\s+(\d+)\s*:?\s*(.*)$", re.IGNORECASE)
_CITE = re.compile(r"^\W*cited?\W*:?\s*files?\s+([\d,\s\-–]+)", re.IGNORECASE)
_SEARCH = re.compile(r"^search\s*:\s*\"?(.+?)\"?\s*$", re.IGNORECASE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$", re.MULTILINE)


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def section_headings(answer: str) -> list[str]:
    return [h.strip() for h in _HEADING.findall(answer)]


def has_evidence(box_text: str, answer: str, files: dict[int, str]) -> bool | None:
    """True/False for the kinds of box above; None when the answer cannot say."""
    text = box_text.replace("**", "").strip()
    lowered = answer.lower()
    if section := _SECTION.match(text):
        number, title = section.group(1), _words(section.group(2).split("(")[0])
        headings = [_words(h) for h in section_headings(answer)]
        return any(f"section {number}" in h or (title and title in h) for h in headings)
    if cite := _CITE.match(text):
        wanted = number_list(cite.group(1), listed=files)  # a range: only the files the brief lists
        return all(re.search(rf"\bfile\s+{n}\b", lowered) or (files.get(n) or "\0") in answer for n in wanted)
    if (read := read_path(text)) is not None:
        path = read.rstrip("/")
        return path.lower() in lowered or path.rsplit("/", 1)[-1].lower() in lowered
    if search := _SEARCH.match(text):
        return _words(search.group(1)) in _words(answer)
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
