"""``kx report``: one self-contained HTML page of a plan's run, drawn from the fold.

A projection like the others: the folded state gives the batches, PARTs, ticks,
drops, reviews and every attempt (the very records the SQL views ``attempts``
and ``running_timeline`` project, so the page and a Datasette query agree). The
data is prepared here; the markup is ``templates/report.html``, a Jinja2
template that escapes every value (a plan is untrusted input). The timeline is
inline SVG; the page loads nothing (its Content-Security-Policy forbids it) and
runs no script.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from typing import Any

from ledger import clock
from ledger.store import Ledger
from machine.outputs.status import PAST, status_view
from machine.state.fold import PlanState

WIDTH = 1200
LABELLED_ROW = 12  # rows at least this tall carry their PART's label
OUTCOMES = {"succeeded": "ok", "failed": "bad", "lost": "lost", "running": "run"}
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
              172800, 604800)
BANNERS = {"rehearsal": "succeeded in a rehearsal: kx's rehearsal runner wrote placeholder files, no knowledge",
           "imported": "succeeded on the imported plan file's word: no attempt of kx earned them"}


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def size_text(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def story(attempt: dict[str, Any]) -> str:
    """What became of an attempt (an ``attempts`` row): its outcome, after "lost, then" when it was lost first."""
    if attempt["lost"] and attempt["outcome"] != "lost":
        return f"lost, then {attempt['outcome']}"
    return attempt["outcome"]


def reasons(attempt: dict[str, Any]) -> str:
    """Why it was lost, if it was, and why it ended."""
    return "; ".join(dict.fromkeys(r for r in (attempt["lost_reason"], attempt["reason"]) if r))


def troubles(attempts: list[dict[str, Any]]) -> str:
    """A PART's attempts that failed or were lost, counted by what became of them: ``1 failed, 1 lost, then
    succeeded``."""
    counts: dict[str, int] = {}
    for attempt in attempts:
        if attempt["outcome"] in ("failed", "lost") or attempt["lost"]:
            counts[story(attempt)] = counts.get(story(attempt), 0) + 1
    return ", ".join(f"{n} {what}" for what, n in counts.items())


# --- the data -------------------------------------------------------------------------


@dataclass
class Data:
    state: PlanState
    view: dict[str, Any]
    attempts: list[dict[str, Any]]  # every attempt, in the order they started
    timeline: list[dict[str, Any]]  # every start and end, with the running count after it
    now: datetime
    digest: str = ""  # the ledger's head as 'kx audit digest' prints it

    @property
    def parts(self) -> list[dict[str, Any]]:
        return [p for b in self.view["batches"] for p in b["parts"]]

    def attempts_of(self) -> dict[str, list[dict[str, Any]]]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for attempt in self.attempts:
            grouped.setdefault(attempt["part"], []).append(attempt)
        return grouped

    def reviews(self) -> list[dict[str, Any]]:
        return sorted((r for b in self.state.batches.values() for r in b.reviews), key=lambda r: r["position"])


def gather(ledger: Ledger, state: PlanState) -> Data:
    """The state's attempts and running count, and the ledger's head (read in one snapshot by the caller)."""
    attempts = state.runs()
    position, chain = ledger.digest()
    return Data(state, status_view(state), attempts, running_counts(attempts), clock.now(), f"{position}:{chain}")


def running_counts(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every start (+1) and first end (-1) in ledger order, with how many attempts run after it."""
    changes = sorted([(a["start_position"], a["started_at"], 1) for a in attempts]
                     + [(a["end_position"], a["ended_at"], -1) for a in attempts if a["ended_at"]])
    running, counts = 0, []
    for _, recorded_at, change in changes:
        running += change
        counts.append({"recorded_at": recorded_at, "change": change, "running": running})
    return counts


# --- the timeline ---------------------------------------------------------------------


class Scale:
    def __init__(self, start: float, end: float, left: float, right: float):
        self.start, self.end = start, max(end, start + 1.0)
        self.left, self.right = left, right

    def x(self, moment: float) -> float:
        return self.left + (moment - self.start) / (self.end - self.start) * (self.right - self.left)

    def ticks(self) -> tuple[int, list[float]]:
        span = self.end - self.start
        step = next((s for s in NICE_STEPS if span / s <= 10), NICE_STEPS[-1])
        first = math.ceil(self.start / step) * step
        return step, [first + i * step for i in range(int((self.end - first) // step) + 1)]


def epoch(text: str) -> float:
    return clock.parse_time(text).timestamp()


def tick_label(moment: float, step: int, span: float) -> str:
    when = datetime.fromtimestamp(moment, timezone.utc)
    if span > 86400:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M:%S" if step < 60 else "%H:%M")


def f1(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


class Timeline:
    """The Gantt of every attempt per PART, the review gates, and the running count against the limit, as the
    positions and labels of the template's SVG."""

    TOP, PANEL, GAP, BOTTOM = 40, 84, 30, 26

    def __init__(self, data: Data):
        self.data = data
        self.parts = data.parts
        count = max(1, len(self.parts))
        self.row = max(3.0, min(22.0, 2400.0 / count))
        self.labelled = self.row >= LABELLED_ROW
        self.left = 236.0 if self.labelled else 72.0
        self.gantt_top = self.TOP + self.PANEL + self.GAP
        self.height = self.gantt_top + self.row * len(self.parts) + self.BOTTOM
        moments = [epoch(a["started_at"]) for a in data.attempts]
        moments += [epoch(a["ended_at"]) for a in data.attempts if a["ended_at"]]
        first = min(moments)
        moments += [epoch(r["recorded_at"]) for r in data.reviews() if epoch(r["recorded_at"]) >= first]
        now = data.now.timestamp()
        if any(a["ended_at"] is None for a in data.attempts):
            moments.append(now)
        start, end = min(moments), max(moments)
        pad = (end - start) * 0.01
        self.scale = Scale(start - pad, end + pad, self.left, WIDTH - 18)
        self.now = now

    def drawing(self) -> dict[str, Any]:
        bottom = self.height - self.BOTTOM
        return {"width": WIDTH, "height": f1(self.height), "top": self.TOP, "bottom": f1(bottom),
                "above": f1(self.gantt_top - 8), "below": f1(bottom + 16), "bands": self._bands(),
                "part_labels": self._part_labels(), "grid": self._grid(), "panel": self._panel(), "bars": self._bars(),
                "gates": self._gates()}

    def _y(self, index: int) -> float:
        return self.gantt_top + index * self.row

    def _bands(self) -> list[dict[str, Any]]:
        out, index = [], 0
        for number, batch in enumerate(self.data.view["batches"]):
            height = self.row * len(batch["parts"])
            y = self._y(index)
            band = {"cls": "band" if number % 2 == 0 else "band alt", "y": f1(y), "height": f1(height),
                    "label": f"B{batch['number']}", "label_x": 6, "label_y": None}
            if self.labelled:
                band["label_y"] = f1(y + 13)
            elif height >= 9:
                band["label_x"], band["label_y"] = 8, f1(y + height / 2 + 4)
            out.append(band)
            index += len(batch["parts"])
        return out

    def _part_labels(self) -> list[dict[str, Any]]:
        if not self.labelled:
            return []
        budget = int((self.left - 44) / 6.0)  # characters that fit left of the chart at 11px
        labels = []
        for index, part in enumerate(self.parts):
            room = max(4, budget - len(part["id"]) - 1)
            short = part["title"] if len(part["title"]) <= room else part["title"][: room - 1] + "…"
            labels.append({"y": f1(self._y(index) + self.row / 2 + 4), "id": part["id"], "title": part["title"],
                           "short": short})
        return labels

    def _grid(self) -> list[dict[str, str]]:
        step, ticks = self.scale.ticks()
        span = self.scale.end - self.scale.start
        return [{"x": f1(self.scale.x(moment)), "label": tick_label(moment, step, span)} for moment in ticks]

    def _panel(self) -> dict[str, Any]:
        limit = self.data.state.limit
        peak = max([r["running"] for r in self.data.timeline] + [0])
        top, base = self.TOP + 6, self.TOP + self.PANEL
        high = max(limit, peak, 1)

        def y(count: float) -> float:
            return base - count / high * (base - top)

        x0, x1 = self.scale.x(self.scale.start), self.scale.x(self.scale.end)
        path = [f"M{f1(self.scale.x(self.scale.start))} {f1(base)}"]
        running = 0
        for row in self.data.timeline:
            path.append(f"H{f1(self.scale.x(epoch(row['recorded_at'])))}V{f1(y(row['running']))}")
            running = row["running"]
        end = self.now if running else self.scale.end
        path.append(f"H{f1(min(self.scale.x(end), x1))}")
        return {"x0": f1(x0), "x1": f1(x1), "width": f1(x1 - x0), "height": self.PANEL, "base": f1(base),
                "axis_x": f1(self.left - 8), "high": high, "high_y": f1(y(high) + 4) if high != limit else None,
                "name_y": f1(self.TOP + self.PANEL / 2 + 8), "line": "".join(path), "limit": limit,
                "limit_y": f1(y(limit)), "limit_label_y": f1(y(limit) + 4)}

    def _bars(self) -> list[dict[str, Any]]:
        out = []
        attempts = self.data.attempts_of()
        inset = self.row * 0.1 if self.row < 8 else 3.0
        for index, part in enumerate(self.parts):
            y, height = self._y(index) + inset, self.row - 2 * inset
            for attempt in attempts.get(part["id"], []):
                began = epoch(attempt["started_at"])
                ended = epoch(attempt["ended_at"]) if attempt["ended_at"] else self.now
                start = self.scale.x(began)
                width = max(1.5, self.scale.x(ended) - start)
                why = reasons(attempt)
                tip = (f"{attempt['attempt']} {story(attempt)}, {seconds_text(ended - began)}"
                       f", {attempt['started_at'][11:19]} → {(attempt['ended_at'] or 'now')[11:19]} UTC"
                       + (f": {why}" if why else ""))
                retry = self.row >= 14 and width >= 26 and attempt["number"] and attempt["number"] > 1
                out.append({"kind": OUTCOMES[attempt["outcome"]] + (" waslost" if attempt["lost"] else ""),
                            "x": f1(start), "y": f1(y), "width": f1(width), "height": f1(height),
                            "rx": 1 if self.row < 8 else 3, "tip": tip, "retry": attempt["number"] if retry else None,
                            "retry_x": f1(start + 4), "retry_y": f1(y + height / 2 + 3.5)})
        return out

    def _gates(self) -> list[dict[str, Any]]:
        out, last_x = [], [-1e9, -1e9]
        for review in self.data.reviews():
            moment = epoch(review["recorded_at"])
            if moment < self.scale.start:
                continue
            x = self.scale.x(moment)
            tip = (f"batch {review['batch']} {PAST[review['decision']]} by {review['by']} at"
                   f" {review['recorded_at'][:19]}Z" + (f": {review['note']}" if review.get("note") else ""))
            lane = 0 if x - last_x[0] >= 44 else 1
            gate = {"kind": "gate" if review["decision"] == "approve" else "gate rejected", "tip": tip, "x": f1(x),
                    "y1": self.TOP - 4 - 13 * lane, "batch": review["batch"], "mark": None,
                    "text_y": self.TOP - 8 - 13 * lane}
            if x - last_x[lane] >= 44:
                gate["mark"] = "✓" if review["decision"] == "approve" else "✗"
                last_x[lane] = x
            out.append(gate)
        return out


# --- the page --------------------------------------------------------------------------


def build(ledger: Ledger, state: PlanState) -> str:
    """The report page for ``state``, with its attempts and running count, and the ledger's head."""
    return page(gather(ledger, state))


def page(data: Data) -> str:
    view = data.view
    return template().render(
        title=view["title"] or view["plan"], view=view, now=clock.iso(data.now)[:19], digest=data.digest,
        banners=banners(data), cards=cards(data), progress=progress(data),
        timeline=Timeline(data).drawing() if data.attempts else None, reviews=reviews(data),
        part_tables=part_tables(data))


@cache
def template():
    from jinja2 import Environment, PackageLoader

    return Environment(loader=PackageLoader("machine.outputs"), autoescape=True, keep_trailing_newline=True) \
        .get_template("report.html")


def cards(data: Data) -> list[tuple[Any, str]]:
    parts = data.parts
    done = sum(p["state"] == "succeeded" for p in parts)
    attempts = data.attempts
    retries = sum(1 for a in attempts if a["number"] and a["number"] > 1)
    failed = sum(a["outcome"] == "failed" for a in attempts)
    lost = sum(bool(a["lost"]) for a in attempts)
    peak = max([r["running"] for r in data.timeline] + [0])
    starts = [a["started_at"] for a in attempts]
    ends = [a["ended_at"] for a in attempts if a["ended_at"]]
    wall = epoch(max(ends)) - epoch(min(starts)) if starts and ends else None
    return [(f"{done}/{len(parts)}", "PARTs succeeded"), (len(attempts), "attempts"), (retries, "retries"),
            (failed, "failed attempts"), (lost, "lost attempts"), (f"{peak}/{data.state.limit}", "peak running"),
            (seconds_text(wall), "first start → last end")]


def banners(data: Data) -> list[dict[str, Any]]:
    """What the page must not let pass for checked work: rehearsed and imported successes."""
    out = []
    for flag, said in BANNERS.items():
        flagged = [p["id"] for p in data.parts if p.get(flag)]
        if flagged:
            out.append({"flag": flag.capitalize(), "count": len(flagged), "total": len(data.parts), "said": said,
                        "parts": ", ".join(flagged)})
    return out


def progress(data: Data) -> list[dict[str, Any]]:
    rows = []
    for batch in data.view["batches"]:
        total = len(batch["parts"]) or 1
        counts = {kind: sum(p["state"] == kind for p in batch["parts"]) for kind in OUTCOMES}
        extra = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n and kind != "succeeded")
        rows.append({"number": batch["number"], "title": batch["title"], "state": batch["state"],
                     "extra": extra or "nothing failed, lost or running", "succeeded": counts["succeeded"],
                     "total": len(batch["parts"]),
                     "segments": [{"kind": OUTCOMES[kind], "width": f"{100 * n / total:.2f}"}
                                  for kind, n in counts.items() if n]})
    return rows


def reviews(data: Data) -> list[dict[str, Any]]:
    return [{"batch": r["batch"], "decision": PAST[r["decision"]], "by": r["by"],
             "at": r["recorded_at"][:19].replace("T", " "), "note": r.get("note") or "",
             "sent_back": ", ".join(r.get("parts") or ()), "accepted_failed": ", ".join(r.get("accepted_failed") or ())}
            for r in data.reviews()]


def part_tables(data: Data) -> list[dict[str, Any]]:
    attempts = data.attempts_of()
    many = len(data.parts) > 120
    tables = []
    for batch in data.view["batches"]:
        rows = []
        for part in batch["parts"]:
            drop = data.state.parts[part["id"]].drop
            rows.append({"id": part["id"], "title": part["title"], "state": part["state"],
                         "flags": [flag for flag in BANNERS if part.get(flag)],
                         "done": f"{100 * part['ticked'] / part['total'] if part['total'] else 0:.0f}",
                         "ticked": part["ticked"], "total": part["total"], "attempts": part["attempts"],
                         "troubles": troubles(attempts.get(part["id"], [])), "target": part.get("target"),
                         "drop": {**drop, "size": size_text(drop["size"])} if drop else None})
        done = sum(p["state"] == "succeeded" for p in batch["parts"])
        tables.append({"number": batch["number"], "title": batch["title"], "succeeded": done,
                       "total": len(batch["parts"]), "open": not (many and done == len(batch["parts"])),
                       "parts": rows})
    return tables
