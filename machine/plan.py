"""The plan model: batches, PARTs, steps and checkboxes, each with its place in the file.

Places are line numbers (0-based, lines as :func:`machine.text.split_lines`
cuts them) and columns inside the line, so that a projection can change a mark
and leave every other byte alone.
"""

from __future__ import annotations

from difflib import SequenceMatcher

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Box(_Model):
    """A ``- [ ] text`` checkbox of a PART (the PART's header box excluded)."""

    id: int = Field(description="stable within the PART across plan revisions")
    line: int
    column: int = Field(description="where the mark starts inside the line")
    mark: str = Field(description="the mark as written: ' ', 'x', '✓', '‚úì', ...")
    text: str
    step: int | None = None

    @property
    def ticked(self) -> bool:
        return self.mark != " "


class Header(_Model):
    """The PART's own box: ``- [ ] PART 7: Create path.md (Completed ...)``."""

    line: int
    column: int
    mark: str
    text: str
    target: str | None = None
    stamp: str | None = Field(default=None, description="'YYYY-MM-DD HH:MM' of the Completed stamp")
    stamp_column: int | None = Field(default=None, description="where the stamp's time starts")

    @property
    def ticked(self) -> bool:
        return self.mark != " "


class Step(_Model):
    number: int
    title: str
    line: int


class Part(_Model):
    number: int
    title: str
    line: int
    end_line: int = Field(description="first line after the PART's section")
    batch: int
    header: Header | None = None
    steps: tuple[Step, ...] = ()
    boxes: tuple[Box, ...] = ()
    influenced_by: tuple[int, ...] = ()
    drop_name: str | None = None

    @property
    def id(self) -> str:
        return part_id(self.number)

    def box(self, box_id: int) -> Box | None:
        return next((b for b in self.boxes if b.id == box_id), None)


class Batch(_Model):
    number: int
    title: str
    line: int
    parts: tuple[int, ...] = ()


class DeclaredBatch(_Model):
    number: int
    first: int
    last: int
    title: str = ""
    line: int


class Plan(_Model):
    """Everything kx reads from a plan file."""

    title: str | None = None
    limit: int = 6
    limit_declared: bool = False
    declared_runners: int | None = None
    declared: tuple[DeclaredBatch, ...] = ()
    batches: tuple[Batch, ...] = ()
    parts: tuple[Part, ...] = ()
    influential_files: dict[int, str] = Field(default_factory=dict)
    worker_instructions: tuple[str, ...] = ()
    tick_glyph: str = "x"

    def part(self, ref: str | int) -> Part | None:
        number = parse_part_number(ref) if isinstance(ref, str) else ref
        return next((p for p in self.parts if p.number == number), None)

    def batch(self, number: int) -> Batch | None:
        return next((b for b in self.batches if b.number == number), None)

    def parts_of(self, batch_number: int) -> list[Part]:
        return [p for p in self.parts if p.batch == batch_number]

    @property
    def declared_parts(self) -> set[int]:
        return {n for d in self.declared for n in range(d.first, d.last + 1)}


def part_id(number: int) -> str:
    return f"PART-{number}"


def parse_part_number(ref: str) -> int | None:
    """``PART-7``, ``part 7``, ``PART7`` or ``7`` → 7; anything else → None."""
    text = ref.strip().upper().removeprefix("PART").strip(" -_#")
    return int(text) if text.isdigit() else None


def match_boxes(old: tuple[Box, ...], new: tuple[Box, ...]) -> dict[int, Box]:
    """Index in ``new`` → the box of ``old`` with the same text, matched in order (difflib)."""
    matcher = SequenceMatcher(None, [b.text for b in old], [b.text for b in new], autojunk=False)
    return {block.b + k: old[block.a + k] for block in matcher.get_matching_blocks() for k in range(block.size)}
