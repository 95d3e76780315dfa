"""``kx plan lint``: what a plan claims against what it contains.

Errors (exit 1): duplicate PART or batch numbers, PARTs ticked Completed while
boxes of theirs are unticked (a claim without evidence; the fix suggested is
``kx reopen``), paths that leave the plan's root, point at kx's own files or are
spelt so that they would name another file than written (the ones ``kx plan
import`` refuses). Everything else is a warning.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass

from machine.plan.model import Plan
from machine.plan.mojibake import RUN, mend
from machine.plan.parser import DROP_NAME, INFLUENCED, duplicate_lines, parse, read_path, search_query, unlisted_numbers
from machine.plan.paths import PathGuard, misspelt_paths, unsafe_paths
from machine.plan.text import body, split_lines


@dataclass(frozen=True)
class Finding:
    level: str  # "error" or "warning"
    code: str
    message: str
    line: int | None = None  # 1-based
    fix: str | None = None  # the command that would set it right

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def lint_text(text: str, name: str = "plan", guard: PathGuard | None = None,
              dropped: Collection[str] = ()) -> list[Finding]:
    """The findings about plan ``text``; ``guard`` (the plan's root, ledger, plan file) also checks its paths;
    ``dropped``: the PARTs whose drop the ledger recorded (under its real name: no ``[TIME]`` left to fill)."""
    plan = parse(text, name, strict=False)
    findings = [
        *_duplicates(plan), *_declared_vs_found(plan), *_claims(plan), *_drop_names(plan, dropped), *_mojibake(text),
        *_file_lists(plan, text), *_cut_short(plan, text), *_paths(plan, guard), *_queries(plan),
    ]
    return sorted(findings, key=lambda f: (f.level != "error", f.line or 0))


def _ranges(numbers: list[int]) -> str:
    spans: list[str] = []
    for n in sorted(numbers):
        if spans and spans[-1].split("-")[-1] == str(n - 1):
            spans[-1] = f"{spans[-1].split('-')[0]}-{n}"
        else:
            spans.append(str(n))
    return ", ".join(spans)


def _duplicates(plan: Plan):
    for kind, items in (("PART", plan.parts), ("BATCH", plan.batches)):
        for number, (first, second) in duplicate_lines(items).items():
            yield Finding("error", "duplicate", f"{kind} {number} appears twice (lines {first + 1} and {second + 1})",
                          second + 1)
    targets: dict[str, str] = {}
    for part in plan.parts:
        target = part.header.target if part.header else None
        if target and target in targets:
            yield Finding("warning", "duplicate", f"{part.id} and {targets[target]} both create {target}",
                          part.line + 1)
        elif target:
            targets[target] = part.id


def _declared_vs_found(plan: Plan):
    if not plan.declared:
        return
    found_batches = {b.number for b in plan.batches}
    declared_batches = {d.number for d in plan.declared}
    if missing := sorted(declared_batches - found_batches):
        yield Finding("warning", "declared", f"{len(found_batches)} batches present of {len(declared_batches)}"
                      f" declared; missing: batch {_ranges(missing)}")
    found = {p.number for p in plan.parts}
    if missing := sorted(plan.declared_parts - found):
        yield Finding("warning", "declared", f"{len(found)} PARTs present of {len(plan.declared_parts)} declared;"
                      f" missing: PART {_ranges(missing)}")
    if extra := sorted(found - plan.declared_parts):
        yield Finding("warning", "declared", f"PART {_ranges(extra)} found but not declared in any batch")
    ranges = {d.number: range(d.first, d.last + 1) for d in plan.declared}
    for part in plan.parts:
        if part.batch in ranges and part.number not in ranges[part.batch]:
            yield Finding("warning", "declared", f"{part.id} is in batch {part.batch}, declared for another batch",
                          part.line + 1)
    if plan.declared_runners and plan.declared_runners != len(plan.declared_parts):
        yield Finding("warning", "declared", f"the strategy promises {plan.declared_runners} runners but the"
                      f" batches declare {len(plan.declared_parts)} PARTs")


def _claims(plan: Plan):
    for part in plan.parts:
        header = part.header
        if header is None:
            yield Finding("warning", "header", f"{part.id} has no '- [ ] PART {part.number}: ...' box", part.line + 1)
            continue
        unticked = [b for b in part.boxes if not b.ticked]
        if header.ticked and unticked:  # a claim without evidence: done again, it earns its ticks and drop
            yield Finding("error", "evidence", f"{part.id} is ticked Completed but {len(unticked)} of"
                          f" {len(part.boxes)} boxes are unticked", header.line + 1,
                          fix=f"kx reopen {part.id} --reason ...")
        if header.stamp and not header.ticked:
            yield Finding("warning", "stamp", f"{part.id} has a Completed stamp but its box is not ticked:"
                          " it does not count as succeeded", header.line + 1)


def _drop_names(plan: Plan, dropped: Collection[str]):
    for part in plan.parts:
        if part.id in dropped:
            continue
        done = bool(part.header and part.header.ticked)
        for box in part.boxes:
            name = DROP_NAME.search(box.text)
            if name and "[TIME]" in name.group() and (box.ticked or done):
                yield Finding("warning", "time", f"{part.id}: drop name {name.group()} still has [TIME]",
                              box.line + 1)


def _paths(plan: Plan, guard: PathGuard | None):
    unsafe = unsafe_paths(plan, guard) if guard else [(*found, None) for found in misspelt_paths(plan)]
    for line, path, problem, _ in unsafe:
        yield Finding("error", "path", f"{path} {problem}", line)


def _queries(plan: Plan):
    """A query that starts with '-' reaches a search command as an option unless it puts '--' before {query}."""
    for part in plan.parts:
        for box in part.boxes:
            query = search_query(box.text) if read_path(box.text) is None else None
            if query and query.startswith("-"):
                yield Finding("warning", "search", f"{part.id}: the query {query[:80]!r} starts with '-': a search"
                              " command reads it as an option unless search_command has '--' before \"{query}\"",
                              box.line + 1)


def _file_lists(plan: Plan, text: str):
    lines = split_lines(text)
    for part in plan.parts:
        if part.influenced_line is None:
            continue
        written = INFLUENCED.search(body(lines[part.influenced_line]))["list"]
        if unlisted := unlisted_numbers(written, listed=plan.influential_files):
            yield Finding("warning", "files", f"{part.id}: Files {', '.join(unlisted)} are not in the plan's list of"
                          f" influential files ({len(plan.influential_files)} files)", part.influenced_line + 1)


def _cut_short(plan: Plan, text: str):
    """PARTs without a KNOWLEDGE DROP box; said louder when the section ends mid-sentence (the plan cut short)."""
    lines = split_lines(text)
    for part in plan.parts:
        if any(DROP_NAME.search(box.text) or "KNOWLEDGE-DROP" in box.text.upper() for box in part.boxes):
            continue
        written = [number for number in range(part.line, part.end_line) if body(lines[number]).strip()]
        last = written[-1] if written else part.line
        ending = body(lines[last]).rstrip()
        if _mid_sentence(ending, lines[last]):
            yield Finding("warning", "truncated", f"{part.id} ends mid-sentence ({_tail(ending)!r}) and has no"
                          " KNOWLEDGE DROP box: the plan looks cut short; complete the PART in the file", last + 1)
        else:
            yield Finding("warning", "drop", f"{part.id} has no KNOWLEDGE DROP box ('- [ ] Create"
                          " KNOWLEDGE-DROP-...-[TIME].md'): its runner records a drop of kx's default name",
                          part.line + 1)


def _mid_sentence(ending: str, line: str) -> bool:
    """A line cut off: brackets left open, or the file's last line, without its line end, ending in a word."""
    opened = sum(ending.count(c) for c in "([{") > sum(ending.count(c) for c in ")]}") or ending.count("`") % 2
    unterminated = not line.endswith(("\n", "\r")) and ending[-1:].isalnum()
    return bool(opened or unterminated)


def _tail(line: str, width: int = 40) -> str:
    return line if len(line) <= width else "…" + line[-(width - 1):]


def _mojibake(text: str):
    lines = [number for number, line in enumerate(split_lines(text), 1) if any(
        mend(run) is not None for run in RUN.findall(body(line)))]
    if lines:
        shown = ", ".join(map(str, lines[:8])) + (", ..." if len(lines) > 8 else "")
        yield Finding("warning", "mojibake", f"{len(lines)} lines hold UTF-8 read as Mac Roman or"
                      f" Windows-1252 (e.g. '‚úì' for '✓'), lines {shown}; 'kx render --repair' mends them", lines[0])
