"""What kx draws for a person at a terminal, with rich: the console (its colours, its width) and ``kx status``'s table.

Imported by ``kx status`` only when stdout is a terminal (piped, it prints the plain text of :mod:`cli.views`
without paying for rich) and by the run's live view (:mod:`cli.live`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions
from rich.text import Text

from cli.views import findings_lines, plain_terminal, review_note, status_header, why
from machine.outputs.status import IMPORTED_NOTE
from machine.plan.text import printable

# glyph and style per PART state, in the order the bar draws them
BAR = {"succeeded": ("█", "green"), "running": ("▓", "blue"), "lost": ("▚", "yellow"), "failed": ("▒", "red"),
       "pending": ("░", "dim")}
BATCH_STYLES = {"approved": "green", "running": "blue", "awaiting_review": "bold magenta", "rejected": "red",
                "locked": "dim"}
FLAG = ("!", "bold yellow")  # a succeeded PART with unticked boxes
FINDING_STYLE = "yellow"
SHOWN_REASONS = 3  # failed or lost PARTs of a batch whose reason gets a line of its own


def console(file: TextIO | None = None) -> Console:
    """A console on ``file`` (stdout when None) as wide as its terminal. Without colour under :func:`plain_terminal`:
    rich alone would keep bold and dim under ``NO_COLOR``. Text is printed as given: no markup, emoji codes or
    highlighting of numbers read into plan text."""
    return Console(file=file, color_system=None if plain_terminal() else "auto", markup=False, emoji=False,
                   highlight=False)


class StatusTable:
    """``kx status`` on a terminal: the header, a line per batch with a bar of its PARTs' states and below it the
    PARTs needing a look, then the legend and the findings; each line cut to the console's width."""

    def __init__(self, view: dict[str, Any]):
        self.view = printable_view(view)

    def __rich_console__(self, _console: Console, options: ConsoleOptions) -> Iterator[Text]:
        width = options.max_width
        yield from (line(text) for text in status_header(self.view))
        batches = self.view["batches"]
        if not batches:
            return
        bar_width = max(10, min(32, width - 60))
        number_width = max(len(str(b["number"])) for b in batches)
        yield line()
        for batch in batches:
            parts = batch["parts"]
            counts = {state: sum(p["state"] == state for p in parts) for state in BAR}
            bar = [(BAR[state][0] * n, BAR[state][1]) for state, n in bar_cells(counts, bar_width).items() if n]
            state = (f"{batch['state'].replace('_', ' '):<15}", BATCH_STYLES.get(batch["state"], ""))
            done = f"{counts['succeeded']}/{len(parts)}"
            yield line(f"{batch['number']:>{number_width}}  ", state, " ", *bar,
                       f" {done:>7}  {batch['title']}{review_note(batch)}")
            yield from needing_a_look(parts, " " * (number_width + 2), width)
        yield line()
        yield line(Text("  ").join(Text.assemble((glyph, style), f" {state}") for state, (glyph, style) in BAR.items()))
        yield from (line((text, FINDING_STYLE) if text else "") for text in findings_lines(self.view))


def printable_view(value: Any) -> Any:
    """A result with every string made :func:`printable`: plan text brings no control sequences of its own."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {key: printable_view(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable_view(item) for item in value]
    return value


def line(*pieces: str | tuple[str, str] | Text) -> Text:
    """One line of ``pieces`` (text, text and its style, or rich text), cut with an ellipsis where the console
    ends."""
    return Text.assemble(*pieces, no_wrap=True, overflow="ellipsis")


def bar_cells(counts: dict[str, int], width: int) -> dict[str, int]:
    """Cells per state: proportional, at least one for any state present, ``width`` in all."""
    total = sum(counts.values())
    if not total:
        return {"pending": width}
    cells = {k: max(1, round(n * width / total)) if n else 0 for k, n in counts.items()}
    largest = max(cells, key=lambda k: cells[k])
    cells[largest] += width - sum(cells.values())
    return cells


def needing_a_look(parts: list[dict[str, Any]], indent: str, width: int) -> Iterator[Text]:
    """Below a batch's line: its running, failed and lost PARTs and those succeeded with unticked boxes, then
    why the first failed or lost ones failed, and what to do about the unticked boxes."""
    notable = [p for p in parts if p["state"] in ("running", "failed", "lost")]
    flagged = [p for p in parts if p.get("warning")]
    if not notable and not flagged:
        return
    labels = [Text.assemble((f"{p['state']} {p.get('attempt') or p['id']}", BAR[p["state"]][1]),
                            f" {p['ticked']}/{p['total']}") for p in notable]
    labels += [Text.assemble((f"{FLAG[0]} {p['id']}", FLAG[1]), f" {p['ticked']}/{p['total']}") for p in flagged]
    yield line(indent, fitted_labels(labels, width - len(indent)))
    for part in [p for p in notable if p["state"] != "running"][:SHOWN_REASONS]:
        yield line(f"{indent}{part.get('attempt') or part['id']} {part['state']}: {why(part)}")
    imported = [p["id"] for p in flagged if IMPORTED_NOTE in p["warning"]]
    if imported:
        yield line(f"{indent}{FLAG[0]} succeeded with unticked boxes, {IMPORTED_NOTE};"
                   f" see 'kx reopen {' '.join(imported)}'")


def fitted_labels(labels: list[Text], room: int) -> Text:
    """``label ticks · label ticks · +N more``: as many as fit in ``room`` cells (at least one)."""
    def pieces(count: int) -> list[Text]:
        return [*labels[:count], *([Text(f"+{len(labels) - count} more")] if count < len(labels) else [])]

    count = len(labels)
    while count > 1 and sum(piece.cell_len + 3 for piece in pieces(count)) - 3 > room:
        count -= 1
    return Text(" · ").join(pieces(count))
