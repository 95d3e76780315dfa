"""Knowledge files and drops as a reviewer reads them: markdown rendered with raw HTML shown as text, the headings
that stand for Section boxes marked, sources as links only when they are web addresses, and what an attempt
changed as a unified diff."""

from __future__ import annotations

import difflib

from markdown_it import MarkdownIt

from machine.state.evidence import source_form

MARKDOWN = MarkdownIt("commonmark", {"html": False})  # raw HTML in a file is text; unsafe link schemes are refused
SHOWN_BYTES = 2 * 1024 * 1024  # a longer file is shown up to here
DIFF_LINES = 2000


def decoded(data: bytes) -> str:
    return data[:SHOWN_BYTES].decode("utf-8", errors="replace")


def render(text: str, marks: dict[int, str] | None = None) -> str:
    """``text`` as HTML; every heading anchored ``h-LINE``, and those in ``marks`` (line → the box it stands for)
    marked. Only markdown-it writes HTML here: the text's own HTML is escaped."""
    marks = marks or {}
    tokens = MARKDOWN.parse(text)
    for token in tokens:
        if token.type == "heading_open" and token.map:
            line = token.map[0] + 1
            token.attrSet("id", f"h-{line}")
            if line in marks:
                token.attrSet("class", "matched")
                token.attrSet("data-box", marks[line])
    return MARKDOWN.renderer.render(tokens, MARKDOWN.options, {})


def web_address(source: str) -> str | None:
    """The source itself when it is an http(s) URL with a host (shown as a link); None for any other source."""
    return source if source_form(source) == "url" else None


def diff(before: bytes, after: bytes, before_name: str, after_name: str) -> list[tuple[str, str]]:
    """A unified diff of two versions of a file, at most ``DIFF_LINES`` lines, each with what it is: ``file``,
    ``hunk``, ``added``, ``removed`` or ``same``."""
    lines = list(difflib.unified_diff(decoded(before).splitlines(), decoded(after).splitlines(), before_name,
                                      after_name, lineterm=""))
    shown = [(_line_kind(n, line), line) for n, line in enumerate(lines[:DIFF_LINES])]
    if len(lines) > DIFF_LINES:
        shown.append(("hunk", f"... {len(lines) - DIFF_LINES} more lines"))
    return shown


def _line_kind(number: int, line: str) -> str:
    if number < 2:
        return "file"
    return {"@": "hunk", "+": "added", "-": "removed"}.get(line[:1], "same")
