"""A reference runner that rehearses a PART without any AI model, through the public protocol only.

It reads its brief with ``kx --json brief``, really reads the files its Read boxes
name (kx hashes them when it ticks), writes the PART's target file and its
KNOWLEDGE DROP (both marked as rehearsal output, with a heading for every Section
box and every cited file named), and ticks the boxes step by step with ``kx tick``
and records the drop with ``kx drop``, exactly as an agent would. It searches
nothing: its Search boxes carry the source ``rehearsal: no search performed``, and
a Read box whose file this folder lacks is recorded by kx as a rehearsal that read
nothing (only the rehearse runner's attempts may do that). Seeded failures exercise
retries:

    python -m runners.rehearse [--sleep S] [--fail PART-3] [--fail-rate 0.2] [--seed N]
                               [--fail-attempts N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from itertools import groupby
from pathlib import Path

from machine.plan.model import AttemptId
from runners.protocol import check, kx, read_brief, record_drop, write

MARK = "REHEARSAL OUTPUT — written by kx's rehearse runner, not real knowledge."
NO_SEARCH = "rehearsal: no search performed"


def should_fail(args: argparse.Namespace, part: str, attempt: str) -> bool:
    number = AttemptId.parse(attempt).number
    if part in args.fail and number <= args.fail_attempts:
        return True
    chance = random.Random(f"{args.seed}:{attempt}").random()
    return chance < args.fail_rate


def read_sources(brief: dict) -> dict[str, str]:
    """Each Read box's path → what reading it found (the rehearsal reads what exists, and says what does not)."""
    root = Path.cwd()  # kx runs a runner in the plan's root (on a Ray node: the task's copy of it)
    found = {}
    for box in brief["boxes"]:
        if box["kind"] != "read":
            continue
        path = root / box["path"]
        if path.is_file():
            found[box["path"]] = f"read, {len(path.read_bytes())} bytes"
        elif path.is_dir():
            files = [p for p in sorted(path.rglob("*")) if p.is_file()]
            for file in files:
                file.read_bytes()
            found[box["path"]] = f"read, a folder of {len(files)} files"
        else:
            found[box["path"]] = "not in this folder; nothing read"
    return found


def knowledge(brief: dict, sources: dict[str, str]) -> str:
    lines = [f"# {brief['title']}", "", f"> {MARK}", "", f"PART: {brief['part']} of plan {brief['plan']}", ""]
    for box in brief["boxes"]:
        if box["kind"] == "section":
            lines += [f"## {box['text']}", "", "Rehearsal placeholder for this section.", ""]
    files = {f["number"]: f["path"] for f in brief["influential_files"]}
    cited = dict.fromkeys([*files, *(n for b in brief["boxes"] if b["kind"] == "cite" for n in b["files"])])
    if cited:
        lines += ["## Sources", "", *[f"- File {n}: {files.get(n) or '(not in the plan list)'}" for n in cited], ""]
    if sources:
        lines += ["## Read", "", *[f"- {path}: {what}" for path, what in sources.items()], ""]
    return "\n".join(lines)


def drop_text(brief: dict, started: float, sources: dict[str, str]) -> str:
    return "\n".join([
        f"# KNOWLEDGE DROP: {brief['part']} — {brief['title']}", "", f"> {MARK}", "",
        f"- attempt: {brief['attempt']}", f"- knowledge file: {brief['target']}",
        f"- boxes: {len(brief['boxes'])}", f"- searches: none ({NO_SEARCH})",
        *[f"- {path}: {what}" for path, what in sources.items()],
        f"- duration: {time.monotonic() - started:.1f}s", "",
    ])


def tick_step(part: str, boxes: list[dict]) -> None:
    refs = [b["ref"] for b in boxes if not b["ticked"]] or [boxes[0]["ref"]]
    searching = any(b["kind"] == "search" for b in boxes)
    check(kx("tick", part, *refs, *(["--source", NO_SEARCH] if searching else [])))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds spent per PART, spread over its steps")
    parser.add_argument("--fail", action="append", default=[], metavar="PART", help="fail this PART's first attempts")
    parser.add_argument("--fail-attempts", type=int, default=1, help="how many attempts of a --fail PART fail")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="chance that an attempt fails")
    parser.add_argument("--seed", default="kx", help="seed for --fail-rate")
    args = parser.parse_args(argv)
    args.fail = [p.upper() for p in args.fail]

    part, attempt = os.environ["KX_PART"], os.environ["KX_ATTEMPT"]
    started = time.monotonic()
    brief = read_brief()
    print(f"rehearsing {attempt}: {brief['title']}")
    failing = should_fail(args, part, attempt)
    sources = read_sources(brief)

    # a drop box is ticked once the drop is recorded, at the last step
    drop_boxes = [b for b in brief["boxes"] if b["kind"] == "drop"]
    others = [b for b in brief["boxes"] if b["kind"] != "drop"]
    steps = [list(group) for _, group in groupby(others, key=lambda b: b["ref"].split(".")[0])] or [[]]
    steps[-1] += drop_boxes
    for index, boxes in enumerate(steps):
        time.sleep(args.sleep / max(1, len(steps)))
        if failing and index == len(steps) // 2:
            print(f"rehearsal failure injected for {attempt}", file=sys.stderr)
            return 1
        if index == len(steps) - 1:
            write(brief, os.environ.get("KX_TARGET"), knowledge(brief, sources))
            record_drop(brief, drop_text(brief, started, sources))
        if boxes:
            tick_step(part, boxes)
    print(f"done {attempt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
