"""``kx render``: the plan file's marks and stamps set from the ledger, every other byte kept.

The file may have been edited by a person since the ledger last saw it. Its
boxes are matched to the ledger's by text, in order; a matched box gets the
ledger's mark, a box the ledger does not know keeps the mark it has, and a
ticked box of the ledger that the file no longer has is reported, not guessed.
A box a person ticked in the file that the ledger has never ticked or unticked
keeps its tick (reported, so that it can be recorded): render never removes a
mark that only a person wrote. New ticks take the glyph the file uses most; with
``repair`` (``kx render --repair``) the file's mojibake is mended first
(:mod:`machine.plan.mojibake`), its ``‚úì`` ticks becoming ``✓``. An edit made
while render works is merged too, or render writes nothing (:func:`render_file`).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import BadInput, Refused
from ledger.files import Place
from machine.acts.workspace import Workspace
from machine.plan.marks import render
from machine.plan.model import Plan, match_boxes
from machine.plan.mojibake import repair as mend_mojibake
from machine.plan.parser import PlanError, parse
from machine.plan.paths import PathGuard
from machine.plan.text import PlanTextError, decode, read_file, split_lines
from machine.state.fold import PlanState


@dataclass
class FileMarks:
    state: str
    ticked: set[int] = field(default_factory=set)
    completed_at: str | None = None


RENDER_TRIES = 8  # reads of the plan file when it changes while render works, before render gives up (exit 3)
LATE_CHECKS = 8  # bytes that reached the replaced file after the rename, carried over at most this often


def render_file(workspace: Workspace, *, check: bool = False, repair: bool = False) -> dict[str, Any]:
    """Write the file's marks and stamps from the ledger (``check``: only say whether it is out of date);
    ``repair`` also mends its mojibake, and new ticks then take the mended glyph.

    A person may edit the file meanwhile: the file is replaced only while it still holds what was read
    (inode, size, mtime, bytes), else it is read and merged again; after :data:`RENDER_TRIES` reads that all
    changed, nothing is written (exit 3). Bytes appended to the replaced file by a writer that had it open
    are appended to the new one. A ledger copied or moved from another project folder is refused: its history
    is not this folder's plan's."""
    if problem := workspace.ledger.place_problem():
        raise Refused(f"not rendered: {problem}", rule="ledger_place")
    state = workspace.state()
    path = workspace.resolve(state.path)
    with plan_guard(workspace, state).place(path, may_be_plan=True, make_folders=False) as place:
        for _ in range(RENDER_TRIES):
            seen = Seen.of(place)
            try:
                current = _read_plan_text(seen.data, path) if seen.data is not None else None
                result, wanted = _rendered(state, current, str(path), repair)
                if not result["changed"] or check:
                    return result
                if place.replace(wanted.encode("utf-8"), unchanged=lambda: seen.still_at(place)):
                    seen.carry_late_bytes(place)
                    return {**result, "written": True}
            finally:
                seen.close()
    raise Refused(f"{path} keeps changing while kx render works ({RENDER_TRIES} reads, each changed before it"
                  " could be replaced); nothing was written: run kx render again once the edits pause",
                  rule="render")


def plan_guard(workspace: Workspace, state: PlanState) -> PathGuard:
    """The guard the plan file is reached through: the plan's, or, for a plan kept outside the root it was
    imported with (``--root``), one around the plan's own folder."""
    guard = workspace.guard(state)
    path = workspace.resolve(state.path)
    if guard.problem(path, may_be_plan=True):
        return PathGuard.around(path.parent, ledger=workspace.ledger.path, plan=path)
    return guard


@dataclass
class Seen:
    """The plan file as render read it: that very file, still open (``fd``), and its bytes (None: no file)."""

    fd: int | None
    data: bytes | None
    info: os.stat_result | None = None

    @classmethod
    def of(cls, place: Place) -> Seen:
        fd = place.open()
        if fd is None:
            return cls(None, None)
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            os.close(fd)
            raise BadInput(f"cannot render into {place.path}: it is not a file; move it away and kx render writes"
                           " the plan afresh")
        return cls(fd, _read_all(fd), found)

    def still_at(self, place: Place) -> bool:
        """Whether the name still holds the file read, with the same size, mtime and bytes."""
        try:
            now = os.stat(place.name, dir_fd=place.folder, follow_symlinks=False)
        except FileNotFoundError:
            return self.fd is None
        if self.fd is None or (now.st_dev, now.st_ino) != (self.info.st_dev, self.info.st_ino):
            return False
        opened = os.fstat(self.fd)
        return ((opened.st_size, opened.st_mtime_ns) == (self.info.st_size, self.info.st_mtime_ns)
                and _read_all(self.fd) == self.data)

    def carry_late_bytes(self, place: Place) -> None:
        """After the rename: bytes a writer that had the old file open appended to it since it was read are
        appended to the file now at the name (the old one is gone from the folder, and they with it)."""
        if self.fd is None:
            return
        known = self.data
        for _ in range(LATE_CHECKS):
            now = _read_all(self.fd)
            if now == known:
                return
            _append(place, now[len(known):] if now.startswith(known) else now)  # a rewrite: kept whole
            known = now

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _append(place: Place, data: bytes) -> None:
    fd = os.open(place.name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=place.folder)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rendered(state: PlanState, current: str | None, name: str, repair: bool) -> tuple[dict[str, Any], str]:
    """What render reports for the file's text ``current`` (None: no file), and the text it wants there."""
    mending = mend_mojibake(current if current is not None else state.source) if repair else None
    if mending is not None:  # columns move where runs shrink: the mended text is parsed afresh
        wanted, missing, kept = _render_over(state, mending.text, name)
    elif current is not None:
        wanted, missing, kept = _render_over(state, current, name)
    else:
        wanted, missing, kept = render(state.source, state.plan, state.parts), [], []
    return {
        "path": state.path,
        "changed": wanted != current,
        "written": False,
        "lines": _changed_lines(current, wanted),
        "missing": missing,
        "kept": kept,
        "repaired": _mended_runs(mending.counts) if mending else [],
    }, wanted


def _read_plan_text(raw: bytes, path: Path) -> str:
    try:
        return decode(raw, str(path))
    except PlanTextError as exc:
        raise BadInput(f"cannot render into {path}: {exc}") from None


def _render_over(state: PlanState, text: str, name: str) -> tuple[str, list[str], list[str]]:
    """``text`` (the file's) with the ledger's marks and stamps, and the ticks it could not place or kept."""
    try:
        on_disk = parse(text, name)
    except PlanError as exc:
        raise BadInput(f"cannot render into {name}: {exc}") from None
    marks, missing, kept = file_marks(state, on_disk)
    return render(text, on_disk, marks), missing, kept


def _mended_runs(counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    ordered = sorted(counts.items(), key=lambda item: -item[1])
    return [{"from": before, "to": after, "count": count} for (before, after), count in ordered]


def file_marks(state: PlanState, on_disk: Plan) -> tuple[dict[str, FileMarks], list[str], list[str]]:
    """For each PART of the file: the marks the ledger wants, in the file's own box ids."""
    marks: dict[str, FileMarks] = {}
    missing: list[str] = []
    kept: list[str] = []
    for part in on_disk.parts:
        known, structure = state.parts.get(part.id), state.plan.part(part.id)
        if known is None or structure is None:
            continue
        matched = match_boxes(structure.boxes, part.boxes)
        ticked = set()
        for index, box in enumerate(part.boxes):
            ledger_box = matched.get(index)
            if ledger_box is not None and ledger_box.id in known.ticked:
                ticked.add(box.id)
            elif box.ticked and (ledger_box is None or ledger_box.id not in known.touched):
                ticked.add(box.id)
                if ledger_box is not None:
                    kept.append(f"{part.id}: {box.text!r}")
        marks[part.id] = FileMarks(known.state, ticked, known.completed_at)
        found = {b.id for b in matched.values()}
        missing += [f"{part.id}: {b.text!r}" for b in structure.boxes if b.id in known.ticked and b.id not in found]
    on_disk_parts = {p.id for p in on_disk.parts}
    missing += [f"{p.id}: the whole PART" for p in state.plan.parts
                if p.id not in on_disk_parts and (state.parts[p.id].ticked or state.parts[p.id].state == "succeeded")]
    return marks, missing, kept


def _changed_lines(before: str | None, after: str) -> int:
    if before is None:
        return after.count("\n") + 1

    old, new = split_lines(before), split_lines(after)
    return sum(a != b for a, b in zip(old, new)) + abs(len(old) - len(new))


def as_rendered(workspace: Workspace, state: PlanState) -> str:
    """The plan as ``kx render`` would write it now: the file on disk (a person's edits and mended mojibake
    included) with the ledger's marks, or, without a readable file, the imported text with them."""
    path = workspace.resolve(state.path)
    if path.is_file():
        try:
            return _render_over(state, _read_plan_text(read_file(path), path), str(path))[0]
        except BadInput:  # a file that is no plan any more: the ledger's own text
            pass
    return render(state.source, state.plan, state.parts)
