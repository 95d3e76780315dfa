"""The files a plan's evidence rests on, hashed again: each PART's drop and the target its success recorded.

They were hashed when recorded (``DropRecorded``, ``RunnerSucceeded.target``); the review packet, ``kx audit
verify`` and ``kx consolidate`` hash them again, once each, and report any that changed or are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from machine.state.evidence import sha256_of
from machine.state.fold import PlanState

WHAT = {"changed": "changed since it was recorded", "gone": "is gone"}


@dataclass(frozen=True)
class RecordedFile:
    part: str
    kind: str  # "drop" or "target"
    path: str  # as the ledger stores it
    sha256: str


@dataclass(frozen=True)
class Change:
    file: RecordedFile
    problem: str  # "changed" or "gone"

    @property
    def part(self) -> str:
        return self.file.part

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.file.kind, "path": self.file.path, "problem": self.problem}

    def __str__(self) -> str:
        return f"{self.file.part}: {self.file.kind} {self.file.path} {WHAT[self.problem]}"


def recorded_files(state: PlanState, parts: Iterable[str] | None = None) -> list[RecordedFile]:
    """The evidence files of ``parts`` (default: every PART, in plan order) with the hashes recorded for them."""
    files = []
    for part_id in (p.id for p in state.plan.parts) if parts is None else parts:
        part = state.parts[part_id]
        if part.drop:
            files.append(RecordedFile(part_id, "drop", part.drop["path"], part.drop["sha256"]))
        target = part.target or {}
        if part.state == "succeeded" and target.get("path") and target.get("sha256"):
            files.append(RecordedFile(part_id, "target", target["path"], target["sha256"]))
    return files


def changes(files: Iterable[RecordedFile], resolve: Callable[[str], Path]) -> list[Change]:
    """The files whose bytes are no longer the ones recorded; each file is read once."""
    hashes: dict[Path, str | None] = {}
    found = []
    for file in files:
        path = resolve(file.path)
        if path not in hashes:
            hashes[path] = _hash_or_none(path)
        if hashes[path] is None:
            found.append(Change(file, "gone"))
        elif hashes[path] != file.sha256:
            found.append(Change(file, "changed"))
    return found


def _hash_or_none(path: Path) -> str | None:
    try:
        return sha256_of(path) if path.is_file() else None
    except OSError:  # unreadable is as good as gone
        return None
