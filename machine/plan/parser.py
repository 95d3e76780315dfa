"""Parse a markdown expansion plan (CONTRACT section 1) into a :class:`Plan`.

markdown-it finds the code blocks (fenced and indented, by CommonMark's own
rules); everything else is read line by line with the patterns below.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from machine.defaults import PARALLEL_LIMIT
from machine.plan.model import Batch, Box, DeclaredBatch, Header, Part, Plan, Step
from machine.plan.text import BOM, PlanTextError, body, decode, split_lines

TICK_MARKS = ("x", "X", "✓", "✔", "‚úì", "‚úî")
_MARK = "|".join(re.escape(m) for m in sorted(TICK_MARKS + (" ",), key=len, reverse=True))

CHECKBOX = re.compile(rf"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<mark>{_MARK})\](?:[ \t]+(?P<text>.*?))?[ \t]*$")
HEADING_OPENING = r"^ {0,3}(?P<level>#{1,6})[ \t]+(?P<text>.*?)"  # an ATX heading up to its closing sequence
HEADING = re.compile(HEADING_OPENING + r"[ \t]*#*[ \t]*$")  # closing #s go, spaced or not: "## PART 3#"
BATCH = re.compile(r"^BATCH[ \t]+(?P<number>\d+)\b[ \t]*:?[ \t]*(?P<title>.*)$", re.IGNORECASE)
PART = re.compile(r"^PART[ \t]+(?P<number>\d+)\b[ \t]*:?[ \t]*(?P<title>.*)$", re.IGNORECASE)
STEP = re.compile(r"^[ \t]*\*\*Step[ \t]+(?P<number>\d+)\b[ \t]*:?[ \t]*(?P<title>[^*]*?)[ \t]*\*\*[ \t]*$", re.IGNORECASE)
HEADER_TEXT = re.compile(r"^PART[ \t]+(?P<number>\d+)[ \t]*:", re.IGNORECASE)
STAMP = re.compile(r"\(Completed[ \t]+(?P<time>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2})\)[ \t]*$")
STRATEGY = re.compile(r"\*\*Strategy\*\*.*?(?P<limit>\d+)[ \t]+at[ \t]+a[ \t]+time", re.IGNORECASE)
RUNNERS = re.compile(r"(?P<runners>\d+)[ \t]+runners", re.IGNORECASE)
DECLARED = re.compile(
    r"^[ \t]*[-*+][ \t]+\*\*Batch[ \t]+(?P<number>\d+)\*\*[ \t]*:[ \t]*PARTs?[ \t]+(?P<first>\d+)"
    r"(?:[ \t]*[-–—][ \t]*(?P<last>\d+))?[ \t]*(?:\((?P<title>[^)]*)\))?",
    re.IGNORECASE,
)
INFLUENCED = re.compile(r"\*\*Influenced by\*\*[ \t]*:?[ \t]*Files?[ \t]+(?P<list>[\d,\s\-–]+)", re.IGNORECASE)
INFLUENTIAL_FILE = re.compile(r"^[ \t]*(?P<number>\d+)\.[ \t]+`(?P<path>[^`]+)`")
DROP_NAME = re.compile(r"KNOWLEDGE-DROP-[A-Za-z0-9._\-\[\]]*?\.md")
TARGET = re.compile(r"`?(?P<path>/?[\w.\-]+(?:/[\w.\-]+)*\.\w+)`?")  # an absolute one too, to refuse it
READ_BOX = re.compile(r"^\W*read\W*\s+`?(?P<path>[^\s`]+)", re.IGNORECASE)
SEARCH_BOX = re.compile(r"^\W*search\s*:\s*(.+?)\s*$", re.IGNORECASE)


class PlanError(ValueError):
    """The plan cannot be used; the message says why and where."""


INT64_MAX = 2**63 - 1  # SQLite's largest integer: no number of a plan may be beyond it


def bounded_int(digits: str) -> int | None:
    """``digits`` as a number, or None when it is beyond INT64_MAX (decided before ``int()``, which refuses
    numbers of thousands of digits)."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(INT64_MAX)):
        return None
    value = int(significant or "0")
    return value if value <= INT64_MAX else None


def parse(source: str | bytes, name: str = "plan", *, strict: bool = True) -> Plan:
    """Parse plan text (or raw bytes) into a :class:`Plan`; :class:`PlanError` if unusable.

    ``strict`` refuses duplicate PART or batch numbers; ``kx plan lint`` reads without it to report them.
    """
    try:
        text = decode(source, name) if isinstance(source, bytes) else source
    except PlanTextError as exc:
        raise PlanError(str(exc)) from None
    if not text.strip(BOM + " \t\r\n"):
        raise PlanError(f"{name} is empty")
    lines = [body(line) for line in split_lines(text)]
    bom_shift = 1 if text.startswith(BOM) else 0
    lines[0] = lines[0][bom_shift:]
    return _Reader(lines, code_lines(text.removeprefix(BOM)), bom_shift, name).read(strict)


def code_lines(text: str) -> set[int]:
    """Line numbers inside fenced or indented code blocks."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    inside: set[int] = set()
    for token in tokens:
        if token.type in ("fence", "code_block") and token.map:
            inside.update(range(token.map[0], token.map[1]))
    return inside


def read_path(box_text: str) -> str | None:
    """The path a ``Read PATH`` box names — its first token, a trailing ``/`` for a folder — or None for another
    kind of box (also for ``Read relevant files``: a first token with no ``/`` or ``.`` is no path)."""
    match = READ_BOX.match(box_text.replace("**", ""))
    if not match:
        return None
    path = match["path"].strip("'\"").rstrip(",;:)")
    return path if "/" in path or "." in path else None


def search_query(box_text: str) -> str | None:
    """The query a ``Search: "QUERY"`` box names, its quotes taken off, or None for another kind of box."""
    match = SEARCH_BOX.match(box_text.replace("**", "").replace("__", "").strip())
    if not match:
        return None
    return match[1].strip().strip("\"“”'‘’").strip() or match[1]


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """``"1,5-8"`` → (1, 1), (5, 8): each number or range of a file list, as its bounds."""
    for piece in re.split(r"[,\s]+", text.strip()):
        bounds = [bounded_int(n) for n in re.split(r"[-–]", piece) if n.isdigit()]
        if not bounds or bounds[0] is None:
            continue  # a number beyond any list names no file (import refuses it in a PART's file list)
        if len(bounds) == 1:
            yield bounds[0], bounds[0]
        elif len(bounds) == 2 and bounds[0] <= (last := INT64_MAX if bounds[1] is None else bounds[1]):
            yield bounds[0], last


def number_list(text: str, *, listed: Iterable[int]) -> tuple[int, ...]:
    """``"1,5,8"`` → (1, 5, 8); ``"1-4"`` → the numbers of ``listed`` from 1 to 4.

    A range expands only to numbers of the plan's list, so that ``Files 1-99999999`` costs what
    the list costs; a single number is kept even when unlisted (the brief shows it as such).
    """
    known = sorted(set(listed))
    numbers: list[int] = []
    for first, last in _pieces(text):
        if first == last:
            numbers.append(first)
        else:
            numbers.extend(known[bisect_left(known, first) : bisect_right(known, last)])
    return tuple(numbers)


def unlisted_numbers(text: str, *, listed: Iterable[int]) -> list[str]:
    """The numbers and ranges of ``text`` that are not in ``listed``, as ``"9"`` or ``"3-99999999"``."""
    known = sorted(set(listed))
    spans: list[str] = []
    for first, last in _pieces(text):
        start = first
        for number in known[bisect_left(known, first) : bisect_right(known, last)] + [last + 1]:
            if number > start:
                spans.append(str(start) if number - 1 == start else f"{start}-{number - 1}")
            start = number + 1
    return spans


@dataclass
class _PartDraft:
    number: int
    title: str
    line: int
    batch: int
    header: Header | None = None
    steps: list[Step] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    influenced: str = ""  # the file list of its "Influenced by" line, resolved once the plan's list is known
    influenced_line: int | None = None
    drop_name: str | None = None

    def build(self, end_line: int) -> Part:
        return Part(
            number=self.number, title=self.title, line=self.line, end_line=end_line, batch=self.batch,
            header=self.header, steps=tuple(self.steps), boxes=tuple(self.boxes),
            influenced_line=self.influenced_line, drop_name=self.drop_name,
        )


class _Reader:
    def __init__(self, lines: list[str], code: set[int], bom_shift: int, name: str):
        self.lines, self.code, self.bom_shift, self.name = lines, code, bom_shift, name
        self.title: str | None = None
        self.limit, self.limit_declared, self.runners = PARALLEL_LIMIT, False, None
        self.declared: list[DeclaredBatch] = []
        self.batches: list[Batch] = []
        self.batch_parts: dict[int, list[int]] = {}
        self.parts: list[Part] = []
        self.part: _PartDraft | None = None
        self.influenced: dict[int, str] = {}  # index in self.parts → its file list as written
        self.influential: dict[int, str] = {}
        self.influential_lines: dict[int, int] = {}
        self.instructions: list[str] = []
        self.in_instructions = False
        self.marks: Counter[str] = Counter()

    def number(self, digits: str, line: int) -> int:
        """A number the plan's structure keeps, refused with its line when SQLite could not hold it."""
        value = bounded_int(digits)
        if value is None:
            shown = digits if len(digits) <= 30 else f"a number of {len(digits)} digits"
            raise PlanError(f"{self.name} line {line + 1}: {shown} is beyond the largest number kx keeps"
                            f" (2^63 - 1, SQLite's largest integer); use a smaller number")
        return value

    def read(self, strict: bool) -> Plan:
        for number, line in enumerate(self.lines):
            if number not in self.code:
                self.read_line(number, line)
        self.close_part(len(self.lines))
        if not self.parts:
            raise PlanError(f"{self.name} has no PART (expected headings like '## PART 1: Title')")
        if strict:
            self.check_duplicates()
        batches = tuple(replace(b, parts=tuple(self.batch_parts.get(b.number, ()))) for b in self.batches)
        return Plan(
            title=self.title, limit=self.limit, limit_declared=self.limit_declared,
            declared_runners=self.runners, declared=tuple(self.declared), batches=batches,
            parts=self.resolved_parts(), influential_files=self.influential,
            influential_lines=self.influential_lines,
            worker_instructions=tuple(self.instructions), tick_glyph=self.dominant_tick(),
        )

    def resolved_parts(self) -> tuple[Part, ...]:
        """The PARTs with their "Influenced by" lists resolved against the plan's list (known only now)."""
        return tuple(replace(part, influenced_by=number_list(self.influenced[index], listed=self.influential))
                     if index in self.influenced else part for index, part in enumerate(self.parts))

    def read_line(self, number: int, line: str) -> None:
        heading = HEADING.match(line)
        if heading:
            self.read_heading(number, len(heading["level"]), heading["text"])
            return
        if self.in_instructions:
            self.read_instruction(line)
        box = CHECKBOX.match(line)
        if box:
            self.read_box(number, box)
        elif self.part and (step := STEP.match(line)):
            self.part.steps.append(Step(number=self.number(step["number"], number), title=step["title"].strip(),
                                        line=number))
        else:
            self.read_plan_line(number, line)

    def read_heading(self, number: int, level: int, text: str) -> None:
        self.in_instructions = "worker instructions" in text.lower()
        batch, part = BATCH.match(text), PART.match(text)
        if level == 1 and batch:
            self.close_part(number)
            self.start_batch(self.number(batch["number"], number), batch["title"].strip(), number)
        elif level == 2 and part:
            self.close_part(number)
            self.start_part(self.number(part["number"], number), part["title"].strip(), number)
        elif level == 1 and self.title is None:
            self.title = text
        if level <= 2 and not part and not batch:
            self.close_part(number)

    def start_batch(self, number: int, title: str, line: int) -> None:
        self.batches.append(Batch(number=number, title=title, line=line))
        self.batch_parts.setdefault(number, [])

    def start_part(self, number: int, title: str, line: int) -> None:
        if not self.batches:
            self.start_batch(1, "", line)  # a plan without batch headings is one batch
        batch = self.batches[-1].number
        self.batch_parts[batch].append(number)
        self.part = _PartDraft(number=number, title=title, line=line, batch=batch)

    def close_part(self, end_line: int) -> None:
        if self.part is not None:
            if self.part.influenced_line is not None:
                self.influenced[len(self.parts)] = self.part.influenced
            self.parts.append(self.part.build(end_line))
            self.part = None

    def read_instruction(self, line: str) -> None:
        """The worker instructions: the first run of non-blank lines under their heading."""
        if line.strip():
            self.instructions.append(line.strip())
        elif self.instructions:
            self.in_instructions = False

    def read_box(self, number: int, match: re.Match[str]) -> None:
        mark, text = match["mark"], (match["text"] or "")
        column = match.start("mark") + self.shift(number)
        if mark != " ":
            self.marks[mark] += 1
        part = self.part
        if part is None:
            return
        if (part.header is None and not part.boxes and (head := HEADER_TEXT.match(text))
                and self.number(head["number"], number) == part.number):
            part.header = self.header(number, match)
            return
        step = part.steps[-1].number if part.steps else None
        part.boxes.append(Box(id=len(part.boxes) + 1, line=number, column=column, mark=mark, text=text, step=step))
        drop = DROP_NAME.search(text)
        if drop and part.drop_name is None:
            part.drop_name = drop.group()

    def header(self, number: int, match: re.Match[str]) -> Header:
        text, shift = match["text"], self.shift(number)
        stamp = STAMP.search(text)
        words = text[HEADER_TEXT.match(text).end() : stamp.start() if stamp else None]
        target = TARGET.search(words)
        return Header(
            line=number, column=match.start("mark") + shift, mark=match["mark"], text=text,
            target=target["path"] if target else None,
            stamp=stamp["time"].replace("T", " ") if stamp else None,
            stamp_column=match.start("text") + stamp.start("time") + shift if stamp else None,
        )

    def shift(self, number: int) -> int:
        """Columns are counted in the file's line, BOM included."""
        return self.bom_shift if number == 0 else 0

    def read_plan_line(self, number: int, line: str) -> None:
        if self.part and (influenced := INFLUENCED.search(line)):
            for digits in re.findall(r"\d+", influenced["list"]):
                self.number(digits, number)
            self.part.influenced, self.part.influenced_line = influenced["list"], number
        elif (declared := DECLARED.match(line)):
            first = self.number(declared["first"], number)
            self.declared.append(DeclaredBatch(
                number=self.number(declared["number"], number), first=first,
                last=self.number(declared["last"], number) if declared["last"] else first,
                title=(declared["title"] or "").strip(), line=number,
            ))
        elif not self.limit_declared and (strategy := STRATEGY.search(line)):
            self.limit, self.limit_declared = max(1, self.number(strategy["limit"], number)), True
            runners = RUNNERS.search(line)
            self.runners = self.number(runners["runners"], number) if runners else None
        elif ((influential := INFLUENTIAL_FILE.match(line))
              and (listed := self.number(influential["number"], number)) not in self.influential):
            self.influential[listed] = influential["path"]
            self.influential_lines[listed] = number

    def check_duplicates(self) -> None:
        for kind, items in (("PART", self.parts), ("BATCH", self.batches)):
            twice = duplicate_lines(items)
            if twice:
                number, (first, second) = next(iter(twice.items()))
                raise PlanError(
                    f"{self.name} has {kind} {number} twice (lines {first + 1} and {second + 1}); renumber one of them"
                )

    def dominant_tick(self) -> str:
        return self.marks.most_common(1)[0][0] if self.marks else "x"


def duplicate_lines(items) -> dict[int, tuple[int, int]]:
    """Numbers that occur twice among PARTs or batches → (first line, second line)."""
    seen: dict[int, int] = {}
    twice: dict[int, tuple[int, int]] = {}
    for item in items:
        if item.number in seen:
            twice.setdefault(item.number, (seen[item.number], item.line))
        seen.setdefault(item.number, item.line)
    return twice
