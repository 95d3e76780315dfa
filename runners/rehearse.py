"""A reference runner that rehearses a PART without any AI model, through the public protocol only.

It reads its brief with ``kx --json brief``, writes the PART's target file and
its KNOWLEDGE DROP (both marked as rehearsal output), and ticks the boxes step
by step with ``kx tick`` and records the drop with ``kx drop``, exactly as an
agent would. Seeded failures exercise retries:

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

from runners.protocol import check, kx, read_brief, record_drop, write

MARK = "REHEARSAL OUTPUT — written by kx's rehearse runner, not real knowledge."


def should_fail(args: argparse.Namespace, part: str, attempt: str) -> bool:
    number = int(attempt.rsplit("#", 1)[-1])
    if part in args.fail and number <= args.fail_attempts:
        return True
    chance = random.Random(f"{args.seed}:{attempt}").random()
    return chance < args.fail_rate


def knowledge(brief: dict) -> str:
    lines = [f"# {brief['title']}", "", f"> {MARK}", "", f"PART: {brief['part']} of plan {brief['plan']}", ""]
    for box in brief["boxes"]:
        if box["text"].lower().startswith("section"):
            lines += [f"## {box['text']}", "", "Rehearsal placeholder for this section.", ""]
    cited = [f"File {f['number']}: {f['path']}" for f in brief["influential_files"]]
    if cited:
        lines += ["## Sources", "", *[f"- {c}" for c in cited], ""]
    return "\n".join(lines)


def drop_text(brief: dict, started: float) -> str:
    return "\n".join([
        f"# KNOWLEDGE DROP: {brief['part']} — {brief['title']}", "", f"> {MARK}", "",
        f"- attempt: {brief['attempt']}", f"- knowledge file: {brief['target']}",
        f"- boxes: {len(brief['boxes'])}", f"- duration: {time.monotonic() - started:.1f}s", "",
    ])


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

    steps = [list(group) for _, group in groupby(brief["boxes"], key=lambda b: b["ref"].split(".")[0])]
    for index, boxes in enumerate(steps):
        time.sleep(args.sleep / max(1, len(steps)))
        if failing and index == len(steps) // 2:
            print(f"rehearsal failure injected for {attempt}", file=sys.stderr)
            return 1
        if index == len(steps) - 1:
            write(brief, os.environ.get("KX_TARGET"), knowledge(brief))
            record_drop(brief, drop_text(brief, started))
        check(kx("tick", part, *[b["ref"] for b in boxes if not b["ticked"]] or [boxes[0]["ref"]]))
    print(f"done {attempt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
