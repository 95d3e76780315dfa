"""The markdown projection: a plan's text with its marks and stamps set from state.

Only the characters of a mark and of a ``(Completed ...)`` stamp ever change;
a mark whose state is what the text already says is left exactly as written,
so text rendered from a state equal to its own is returned byte for byte.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from machine.plan.model import Checkbox, Header, Plan
from machine.plan.text import body, split_lines


class PartMarks(Protocol):
    state: str
    ticked: set[int]
    completed_at: str | None


@dataclass(frozen=True)
class Edit:
    line: int
    start: int
    end: int
    text: str


def render(text: str, plan: Plan, parts: Mapping[str, PartMarks]) -> str:
    """``text`` (whose structure is ``plan``) with every mark and stamp as ``parts`` say."""
    return apply_edits(text, mark_edits(text, plan, parts, plan.tick_glyph))


def mark_edits(text: str, plan: Plan, parts: Mapping[str, PartMarks], glyph: str) -> list[Edit]:
    lines = split_lines(text)
    edits: list[Edit] = []
    for part in plan.parts:
        marks = parts.get(part.id)
        if marks is None:
            continue
        for box in part.boxes:
            wanted = box.id in marks.ticked
            if wanted != box.ticked:
                edits.append(mark_edit(box, glyph if wanted else " "))
        if part.header is not None:
            edits.extend(header_edits(part.header, marks, glyph, body(lines[part.header.line])))
    return edits


def mark_edit(box: Checkbox, mark: str) -> Edit:
    """``box``'s mark written as ``mark``."""
    return Edit(box.line, box.column, box.column + len(box.mark), mark)


def header_edits(header: Header, marks: PartMarks, glyph: str, line: str) -> Iterable[Edit]:
    succeeded = marks.state == "succeeded"
    if succeeded != header.ticked:
        yield mark_edit(header, glyph if succeeded else " ")
    if succeeded and marks.completed_at and marks.completed_at != header.stamp:
        if header.stamp_column is not None:
            end = header.stamp_column + len(header.stamp or "")
            yield Edit(header.line, header.stamp_column, end, marks.completed_at)
        else:
            end = len(line.rstrip(" \t"))
            yield Edit(header.line, end, end, f" (Completed {marks.completed_at})")
    elif not succeeded and header.ticked and header.stamp_column is not None:
        opening = line.rfind("(Completed", 0, header.stamp_column)
        start = len(line[:opening].rstrip(" \t"))
        yield Edit(header.line, start, line.index(")", header.stamp_column) + 1, "")


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    by_line: dict[int, list[Edit]] = defaultdict(list)
    for edit in edits:
        by_line[edit.line].append(edit)
    if not by_line:
        return text
    lines = split_lines(text)
    for number, line_edits in by_line.items():
        line = lines[number]
        for edit in sorted(line_edits, key=lambda e: e.start, reverse=True):
            line = line[: edit.start] + edit.text + line[edit.end :]
        lines[number] = line
    return "".join(lines)
