"""A runner's output in one line: the last line that says something, for ``kx run``, ``status`` and ``history``."""

from __future__ import annotations

import re

from machine.plan.text import one_line, printable

# A traceback's closing line, at the start of a line: ``ValueError: msg``, ``Error: msg``, ``java.io.IOException``
_ERROR_LINE = re.compile(r"(?:Exception in thread .*|(?:[\w$]+\.)*\w*(?:Error|Exception)\b.*)")
# A traceback's frame lines: Python's ``File "x", line 3``, JavaScript's and Java's ``at f (x.js:1:2)``
_FRAME_LINE = re.compile(r'\s+(?:File ".*", line \d+|at\s+\S|\.\.\. \d+ more)|Traceback \(most recent call last\):')
_LETTER = re.compile(r"[^\W\d_]")
WIDTH = 200  # a reason or a last line, in listings of one line per PART or event


def reason_line(reason: str | None, output: str | None) -> str:
    """Why an attempt failed or was lost, and its runner's last line, folded to one line for a listing."""
    said = f" — last output: {one_line(output, WIDTH)}" if output else ""
    return one_line(reason or "", WIDTH) + said


def last_output(log: str | None, stderr: str | None = None) -> str | None:
    """The last meaningful line of a runner's output, stderr's when it has one, else the whole log's; None if
    neither says anything. Blank lines and progress (dots, percentages: lines without a letter) are skipped,
    terminal control sequences dropped; when the output ends in a traceback's frame lines, its error line wins."""
    for text in (stderr, log):
        line = _last_line(text or "")
        if line is not None:
            return one_line(line)
    return None


def _last_line(text: str) -> str | None:
    lines = [line.rstrip() for line in printable(text.replace("\r", "\n")).splitlines()]
    meaningful = [line for line in lines if _LETTER.search(line)]
    if not meaningful:
        return None
    last = meaningful[-1]
    if _FRAME_LINE.match(last) or last[:1].isspace():
        errors = [line for line in meaningful if _ERROR_LINE.fullmatch(line)]
        if errors:
            return errors[-1]
    return last.strip()
