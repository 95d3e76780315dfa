"""The plan model: batches, PARTs, steps and checkboxes, each with its place in the file.

Places are line numbers (0-based, lines as :func:`machine.text.split_lines`
cuts them) and columns inside the line, so that a projection can change a mark
and leave every other byte alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from machine.defaults import PARALLEL_LIMIT

if TYPE_CHECKING:
    from difflib import SequenceMatcher

# Plain frozen dataclasses, not pydantic models: the structure is read on every command
# (``kx tick`` included), and building pydantic schemas for it would double that command's start-up.


@dataclass(frozen=True, slots=True)
class Checkbox:
    """A ``- [ ] text`` line's box: where its mark is written, and the text after it."""

    line: int
    column: int  # where the mark starts inside the line
    mark: str  # the mark as written: ' ', 'x', '✓', '‚úì', ...
    text: str

    @property
    def ticked(self) -> bool:
        return self.mark != " "


@dataclass(frozen=True, slots=True)
class Box(Checkbox):
    """A checkbox of a PART (the PART's header box excluded)."""

    id: int  # stable within the PART across plan revisions
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Header(Checkbox):
    """The PART's own box: ``- [ ] PART 7: Create path.md (Completed ...)``."""

    target: str | None = None
    stamp: str | None = None  # 'YYYY-MM-DD HH:MM' of the Completed stamp
    stamp_column: int | None = None  # where the stamp's time starts


@dataclass(frozen=True, slots=True)
class Step:
    number: int
    title: str
    line: int


@dataclass(frozen=True)  # not slotted: it keeps its lookups beside its fields (``_lookups``)
class Part:
    number: int
    title: str
    line: int
    end_line: int  # first line after the PART's section
    batch: int
    header: Header | None = None
    steps: tuple[Step, ...] = ()
    boxes: tuple[Box, ...] = ()
    influenced_by: tuple[int, ...] = ()
    influenced_line: int | None = None  # where its "Influenced by" list is written
    drop_name: str | None = None

    @property
    def id(self) -> str:
        return part_id(self.number)

    def box(self, box_id: int) -> Box | None:
        return self._lookups()[0].get(box_id)

    def ref(self, box: Box) -> str:
        """How a box is referred to: ``step.n`` when it has a step, else its number in the PART."""
        return self._lookups()[1][box.id]

    def _lookups(self) -> tuple[dict[int, Box], dict[int, str]]:
        """Boxes by id and their refs, made once: a PART may have tens of thousands of boxes."""
        found = self.__dict__.get("_made")
        if found is None:
            by_id, refs, in_step = {}, {}, {}
            for number, box in enumerate(self.boxes, 1):
                by_id.setdefault(box.id, box)
                if box.step is None:
                    refs[box.id] = str(number)
                else:
                    in_step[box.step] = in_step.get(box.step, 0) + 1
                    refs[box.id] = f"{box.step}.{in_step[box.step]}"
            found = (by_id, refs)
            object.__setattr__(self, "_made", found)
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Part:
        return cls(**{**data, "header": Header(**data["header"]) if data.get("header") else None,
                      "steps": tuple(Step(**s) for s in data.get("steps", ())),
                      "boxes": tuple(Box(**b) for b in data.get("boxes", ())),
                      "influenced_by": tuple(data.get("influenced_by", ()))})


@dataclass(frozen=True, slots=True)
class Batch:
    number: int
    title: str
    line: int
    parts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DeclaredBatch:
    number: int
    first: int
    last: int
    line: int
    title: str = ""


@dataclass(frozen=True)
class Plan:
    """Everything kx reads from a plan file."""

    title: str | None = None
    limit: int = PARALLEL_LIMIT
    limit_declared: bool = False
    declared_runners: int | None = None
    declared: tuple[DeclaredBatch, ...] = ()
    batches: tuple[Batch, ...] = ()
    parts: tuple[Part, ...] = ()
    influential_files: dict[int, str] = field(default_factory=dict)
    influential_lines: dict[int, int] = field(default_factory=dict)  # file number → its line in the list
    worker_instructions: tuple[str, ...] = ()
    tick_glyph: str = "x"

    def part(self, ref: str | int) -> Part | None:
        number = parse_part_number(ref) if isinstance(ref, str) else ref
        return self._by_number().get(number)

    def _by_number(self) -> dict[int, Part]:
        index = self.__dict__.get("_index")
        if index is None:
            index = {}
            for p in self.parts:
                index.setdefault(p.number, p)
            object.__setattr__(self, "_index", index)
        return index

    def batch(self, number: int) -> Batch | None:
        return next((b for b in self.batches if b.number == number), None)

    @property
    def declared_parts(self) -> set[int]:
        return {n for d in self.declared for n in range(d.first, d.last + 1)}

    def with_parts(self, parts: tuple[Part, ...]) -> Plan:
        return replace(self, parts=parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as the PlanImported event stores it."""
        data = asdict(self)
        data["influential_files"] = {str(k): v for k, v in self.influential_files.items()}
        data["influential_lines"] = {str(k): v for k, v in self.influential_lines.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            title=data.get("title"), limit=data.get("limit", PARALLEL_LIMIT), limit_declared=data.get("limit_declared", False),
            declared_runners=data.get("declared_runners"),
            declared=tuple(DeclaredBatch(**d) for d in data.get("declared", ())),
            batches=tuple(Batch(**{**b, "parts": tuple(b.get("parts", ()))}) for b in data.get("batches", ())),
            parts=tuple(Part.from_dict(p) for p in data.get("parts", ())),
            influential_files={int(k): v for k, v in data.get("influential_files", {}).items()},
            influential_lines={int(k): v for k, v in data.get("influential_lines", {}).items()},
            worker_instructions=tuple(data.get("worker_instructions", ())),
            tick_glyph=data.get("tick_glyph", "x"),
        )


def part_id(number: int) -> str:
    return f"PART-{number}"


@dataclass(frozen=True, slots=True)
class AttemptId:
    """An attempt of a PART: ``PART-7#1`` is PART-7's first (``kx start`` numbers them)."""

    part: str
    number: int

    @classmethod
    def parse(cls, text: str) -> AttemptId | None:
        """``PART-7#1`` → AttemptId("PART-7", 1); anything else → None."""
        part, sign, number = text.partition("#")
        if not sign or not number.isdigit() or len(number) > 18 or parse_part_number(part) is None \
                or part != part_id(parse_part_number(part)):
            return None
        return cls(part, int(number))

    def __str__(self) -> str:
        return f"{self.part}#{self.number}"

    @property
    def folder(self) -> str:
        """Its name as a folder (``PART-7-1``): ``#`` has no place in a path."""
        return f"{self.part}-{self.number}"

    def earlier(self) -> list[AttemptId]:
        return [AttemptId(self.part, number) for number in range(1, self.number)]


def parse_part_number(ref: str) -> int | None:
    """``PART-7``, ``part 7``, ``PART7`` or ``7`` → 7; anything else → None."""
    text = ref.strip().upper().removeprefix("PART").strip(" -_#")
    return int(text) if text.isdigit() else None


def align_boxes(old: tuple[Box, ...], new: tuple[Box, ...]) -> SequenceMatcher:
    """difflib's alignment of two box lists by their text (its mojibake mended): how a revision knows a box again."""
    from difflib import SequenceMatcher  # revisions only, off kx tick's path

    from machine.plan.mojibake import mended

    return SequenceMatcher(None, [mended(b.text) for b in old], [mended(b.text) for b in new], autojunk=False)


def match_boxes(old: tuple[Box, ...], new: tuple[Box, ...]) -> dict[int, Box]:
    """Index in ``new`` → the box of ``old`` with the same text, matched in order (:func:`align_boxes`)."""
    matcher = align_boxes(old, new)
    return {block.b + k: old[block.a + k] for block in matcher.get_matching_blocks() for k in range(block.size)}
