"""``kx report``: one self-contained HTML page of a plan's run, drawn from the ledger.

A projection like the others: the folded state gives the batches, PARTs, ticks,
drops and reviews; the SQL views (``attempts``, ``running_timeline``) give every
attempt and the running count, so the page and a Datasette query agree. The
timeline is inline SVG built here; the page loads nothing (its
Content-Security-Policy forbids it) and runs no script. Every piece of plan
text is escaped: a plan is untrusted input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

from ledger import clock
from ledger.derived import sql_views
from ledger.store import Ledger
from machine.outputs.status import PAST, status_view
from machine.state.fold import PlanState

WIDTH = 1200
LABELLED_ROW = 12  # rows at least this tall carry their PART's label
OUTCOMES = {"succeeded": "ok", "failed": "bad", "lost": "lost", "running": "run"}
NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
              172800, 604800)


def e(value: Any) -> str:
    """Escaped for HTML text and attribute values alike."""
    return escape("" if value is None else str(value), quote=True)


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
    attempts: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
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
    """The state and the views' rows for one plan (read in one snapshot by the caller)."""
    attempts = sql_views.rows(ledger.conn, "attempts", state.id)
    timeline = sql_views.rows(ledger.conn, "running_timeline", state.id)
    position, chain = ledger.digest()
    return Data(state, status_view(state), attempts, timeline, clock.now(), f"{position}:{chain}")


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
    """The Gantt of every attempt per PART, the review gates, and the running count against the limit."""

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

    def svg(self) -> str:
        body = [self._bands(), self._grid(), self._panel(), self._bars(), self._gates()]
        return (f'<svg class="timeline" viewBox="0 0 {WIDTH} {f1(self.height)}" role="img"'
                ' aria-label="timeline of every attempt per PART">' + "".join(body) + "</svg>")

    def _y(self, index: int) -> float:
        return self.gantt_top + index * self.row

    def _bands(self) -> str:
        out, index = [], 0
        for number, batch in enumerate(self.data.view["batches"]):
            height = self.row * len(batch["parts"])
            y = self._y(index)
            shade = "band" if number % 2 == 0 else "band alt"
            out.append(f'<rect class="{shade}" x="0" y="{f1(y)}" width="{WIDTH}" height="{f1(height)}"/>')
            label = f"B{batch['number']}"
            if self.labelled:
                out.append(f'<text class="blabel" x="6" y="{f1(y + 13)}">{e(label)}</text>')
            elif height >= 9:
                out.append(f'<text class="blabel" x="8" y="{f1(y + height / 2 + 4)}">{e(label)}</text>')
            index += len(batch["parts"])
        if self.labelled:
            budget = int((self.left - 44) / 6.0)  # characters that fit left of the chart at 11px
            for index, part in enumerate(self.parts):
                room = max(4, budget - len(part["id"]) - 1)
                title = part["title"] if len(part["title"]) <= room else part["title"][: room - 1] + "…"
                out.append(f'<text class="plabel" x="34" y="{f1(self._y(index) + self.row / 2 + 4)}">'
                           f'<title>{e(part["id"])}: {e(part["title"])}</title>'
                           f'<tspan class="pid">{e(part["id"])}</tspan> {e(title)}</text>')
        return "".join(out)

    def _grid(self) -> str:
        step, ticks = self.scale.ticks()
        span = self.scale.end - self.scale.start
        bottom = self.height - self.BOTTOM
        out = []
        for moment in ticks:
            x = f1(self.scale.x(moment))
            label = e(tick_label(moment, step, span))
            out.append(f'<line class="grid" x1="{x}" x2="{x}" y1="{self.TOP}" y2="{f1(bottom)}"/>'
                       f'<text class="tick" x="{x}" y="{f1(self.gantt_top - 8)}">{label}</text>'
                       f'<text class="tick" x="{x}" y="{f1(bottom + 16)}">{label}</text>')
        return "".join(out)

    def _panel(self) -> str:
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
        line = "".join(path)
        ly = f1(y(limit))
        peak_label = (f'<text class="axis" x="{f1(self.left - 8)}" y="{f1(y(high) + 4)}">{high}</text>'
                      if high != limit else "")
        return (f'<rect class="panel" x="{f1(x0)}" y="{self.TOP}" width="{f1(x1 - x0)}" height="{self.PANEL}"/>'
                f'<text class="axis" x="{f1(self.left - 8)}" y="{f1(base)}">0</text>{peak_label}'
                f'<text class="axis name" x="{f1(self.left - 8)}" y="{f1(self.TOP + self.PANEL / 2 + 8)}">running</text>'
                f'<path class="area" d="{line}V{f1(base)}Z"/><path class="count" d="{line}"/>'
                f'<line class="limit" x1="{f1(x0)}" x2="{f1(x1)}" y1="{ly}" y2="{ly}"/>'
                f'<text class="limitlabel" x="{f1(self.left - 8)}" y="{f1(y(limit) + 4)}">limit {limit}</text>')

    def _bars(self) -> str:
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
                kind = OUTCOMES[attempt["outcome"]] + (" waslost" if attempt["lost"] else "")
                why = reasons(attempt)
                tip = (f"{attempt['attempt']} {story(attempt)}, {seconds_text(ended - began)}"
                       f", {attempt['started_at'][11:19]} → {(attempt['ended_at'] or 'now')[11:19]} UTC"
                       + (f": {why}" if why else ""))
                out.append(f'<rect class="a {kind}" x="{f1(start)}" y="{f1(y)}" width="{f1(width)}"'
                           f' height="{f1(height)}" rx="{1 if self.row < 8 else 3}"><title>{e(tip)}</title></rect>')
                if self.row >= 14 and width >= 26 and attempt["number"] and attempt["number"] > 1:
                    out.append(f'<text class="retry" x="{f1(start + 4)}" y="{f1(y + height / 2 + 3.5)}">'
                               f'#{attempt["number"]}</text>')
        return "".join(out)

    def _gates(self) -> str:
        out, last_x = [], [-1e9, -1e9]
        bottom = self.height - self.BOTTOM
        for review in self.data.reviews():
            moment = epoch(review["recorded_at"])
            if moment < self.scale.start:
                continue
            x = self.scale.x(moment)
            decision = PAST[review["decision"]]
            tip = (f"batch {review['batch']} {decision} by {review['by']} at {review['recorded_at'][:19]}Z"
                   + (f": {review['note']}" if review.get("note") else ""))
            lane = 0 if x - last_x[0] >= 44 else 1
            kind = "gate" if review["decision"] == "approve" else "gate rejected"
            out.append(f'<g class="{kind}"><title>{e(tip)}</title>'
                       f'<line x1="{f1(x)}" x2="{f1(x)}" y1="{self.TOP - 4 - 13 * lane}" y2="{f1(bottom)}"/>')
            if x - last_x[lane] >= 44:
                mark = "✓" if review["decision"] == "approve" else "✗"
                out.append(f'<text x="{f1(x)}" y="{self.TOP - 8 - 13 * lane}">B{e(review["batch"])} {mark}</text>')
                last_x[lane] = x
            out.append("</g>")
        return "".join(out)


# --- the page --------------------------------------------------------------------------

STYLE = """
:root{--ok:#2f9e6e;--bad:#d9485f;--lost:#e39b2d;--run:#3b82f6;--todo:#d9dee7;--ink:#1d2433;--muted:#667085;
--line:#e4e7ec;--gate:#6d5bd0}
*{box-sizing:border-box}
.banner{margin:.4em 0;padding:.5em .8em;border-left:4px solid var(--lost);background:#fff7e6}
.flag{font-size:11px;padding:0 .4em;border-radius:3px;background:#fff0cc;color:#7a4b00}
body{margin:0;background:#f6f7f9;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1260px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 12px}
.meta{color:var(--muted);margin:0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:20px 0 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:22px}.card span{color:var(--muted);font-size:12px;text-transform:uppercase;
letter-spacing:.04em}
.box{background:#fff;border:1px solid var(--line);border-radius:10px;padding:14px 16px;overflow-x:auto}
.batch{display:grid;grid-template-columns:72px 300px 1fr 64px 124px;gap:12px;align-items:center;padding:5px 0;
border-bottom:1px solid #f0f2f5}
.batch .name{font-weight:600;white-space:nowrap}.batch .num{text-align:right;font-variant-numeric:tabular-nums}
.batch .title{color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.batches.dense{display:grid;grid-template-columns:1fr 1fr;column-gap:32px}
.dense .batch{grid-template-columns:72px 1fr 64px 124px}.dense .title{display:none}
.bar{display:flex;height:14px;border-radius:7px;overflow:hidden;background:var(--todo)}
.bar i{display:block;height:100%}
.ok{background:var(--ok)}.bad{background:var(--bad)}.lost{background:var(--lost)}.run{background:var(--run)}
.state{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#eef0f4}
.s-approved,.s-succeeded{background:#dff3ea;color:#1d6b4a}.s-failed,.s-rejected{background:#fbe3e7;color:#9b2335}
.s-running{background:#e1ecfe;color:#1d4fb8}.s-lost{background:#fcefd9;color:#8a5a12}
.s-awaiting_review{background:#ece8fb;color:#4b3aa8}.s-locked{color:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:16px;margin:10px 0 0;color:var(--muted);font-size:12px}
.legend i{display:inline-block;width:18px;height:10px;border-radius:3px;vertical-align:-1px;margin-right:6px}
.legend .gl{width:2px;height:14px;background:var(--gate);border-radius:0}
.legend .cl{height:2px;background:var(--run);border-radius:0;vertical-align:3px}
.legend .ll{height:0;border-top:2px dashed var(--bad);border-radius:0;vertical-align:3px}
.legend .wl{background:var(--ok);outline:2px solid var(--lost);outline-offset:-2px}
.timeline{display:block;width:100%;height:auto}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--ink)}
.band{fill:#fff}.band.alt{fill:#f4f6fa}
.blabel{font-weight:700;fill:var(--muted)!important}.plabel{fill:var(--ink)}.pid{font-weight:600}
.grid{stroke:#e9ecf1}.tick{text-anchor:middle;fill:var(--muted)!important;font-size:10px!important}
.panel{fill:#fbfcfe;stroke:var(--line)}
.axis{text-anchor:end;fill:var(--muted)!important;font-size:10px!important}.axis.name{font-size:11px!important}
.area{fill:rgba(59,130,246,.14)}.count{fill:none;stroke:var(--run);stroke-width:1.6}
.limit{stroke:var(--bad);stroke-dasharray:5 4;stroke-width:1.2}
.limitlabel{text-anchor:end;fill:var(--bad)!important;font-size:10px!important}
.a.ok{fill:var(--ok)}.a.bad{fill:var(--bad)}.a.lost{fill:var(--lost)}.a.run{fill:var(--run)}
.a.waslost{stroke:var(--lost);stroke-width:2}
.retry{fill:#fff!important;font-size:10px!important;font-weight:700;pointer-events:none}
.gate line{stroke:var(--gate);stroke-width:1.4;stroke-dasharray:2 2;opacity:.7}
.gate text{fill:var(--gate)!important;text-anchor:middle;font-size:10px!important;font-weight:700}
.gate.rejected line{stroke:var(--bad)}.gate.rejected text{fill:var(--bad)!important}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;font-size:12px;border-bottom:1px solid var(--line);
padding:6px 8px}
td{border-bottom:1px solid #f0f2f5;padding:5px 8px;vertical-align:top}
tr:last-child td{border-bottom:0}
td.id,td.when{white-space:nowrap}td.id{font-weight:600}
td.when{font-variant-numeric:tabular-nums}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#344054}
.mini{display:inline-block;width:46px;height:6px;border-radius:3px;background:var(--todo);margin-right:6px;
vertical-align:1px;overflow:hidden}.mini i{display:block;height:100%;background:var(--ok)}
details{margin:0 0 10px}summary{cursor:pointer;font-weight:600;padding:6px 0}
.muted{color:var(--muted)}.empty{color:var(--muted);font-style:italic}
footer{margin-top:36px;color:var(--muted);font-size:12px}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def build(ledger: Ledger, state: PlanState) -> str:
    """The report page for ``state``, with the attempts and running count from the ledger's views."""
    return page(gather(ledger, state))


def page(data: Data) -> str:
    view = data.view
    title = view["title"] or view["plan"]
    sections = [
        f"<header><h1>{e(title)}</h1><p class=\"meta\">plan <code>{e(view['plan'])}</code> · {e(view['path'])}"
        f" · report of {e(clock.iso(data.now)[:19])}Z (times in UTC)</p>{banners(data)}{cards(data)}</header>",
        f"<section><h2>Progress per batch</h2><div class=\"box\">{progress(data)}</div></section>",
        f"<section><h2>Timeline</h2><div class=\"box\">{timeline(data)}</div></section>",
        f"<section><h2>Batch reviews</h2><div class=\"box\">{reviews(data)}</div></section>",
        f"<section><h2>PARTs</h2>{parts(data)}</section>",
        f"<footer>Drawn by kx from the ledger's events up to position {view['position']}; ledger digest"
        f" <code>{e(data.digest)}</code> (<code>kx audit verify --digest</code> checks the ledger still holds"
        " it).</footer>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>kx report: {e(title)}</title><style>{STYLE}</style></head>"
            "<body><main>" + "\n".join(sections) + "</main></body></html>\n")


def cards(data: Data) -> str:
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
    items = [(f"{done}/{len(parts)}", "PARTs succeeded"), (len(attempts), "attempts"), (retries, "retries"),
             (failed, "failed attempts"), (lost, "lost attempts"), (f"{peak}/{data.state.limit}", "peak running"),
             (seconds_text(wall), "first start → last end")]
    return "<div class=\"cards\">" + "".join(
        f"<div class=\"card\"><b>{e(value)}</b><span>{e(label)}</span></div>" for value, label in items) + "</div>"


BANNERS = {"rehearsal": "succeeded in a rehearsal: kx's rehearsal runner wrote placeholder files, no knowledge",
           "imported": "succeeded on the imported plan file's word: no attempt of kx earned them"}


def banners(data: Data) -> str:
    """What the page must not let pass for checked work: rehearsed and imported successes."""
    out = []
    for flag, said in BANNERS.items():
        flagged = [p["id"] for p in data.parts if p.get(flag)]
        if flagged:
            out.append(f"<p class=\"banner\"><b>{e(flag.capitalize())}:</b> {len(flagged)} of {len(data.parts)}"
                       f" PARTs {e(said)} ({e(', '.join(flagged))}).</p>")
    return "".join(out)


def _flags(part: dict[str, Any]) -> str:
    return "".join(f" <span class=\"flag\">{flag}</span>" for flag in BANNERS if part.get(flag))


def _state(state: str) -> str:
    return f"<span class=\"state s-{e(state)}\">{e(state.replace('_', ' '))}</span>"


def progress(data: Data) -> str:
    rows = []
    batches = data.view["batches"]
    for batch in batches:
        total = len(batch["parts"]) or 1
        counts = {kind: sum(p["state"] == kind for p in batch["parts"]) for kind in OUTCOMES}
        segments = "".join(f"<i class=\"{OUTCOMES[kind]}\" style=\"width:{100 * n / total:.2f}%\"></i>"
                           for kind, n in counts.items() if n)
        extra = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n and kind != "succeeded")
        rows.append(f"<div class=\"batch\"><span class=\"name\" title=\"{e(batch['title'])}\">Batch {e(batch['number'])}"
                    f"</span><span class=\"title\" title=\"{e(batch['title'])}\">{e(batch['title'])}</span>"
                    f"<div class=\"bar\" title=\"{e(extra or 'nothing failed, lost or running')}\">{segments}</div>"
                    f"<span class=\"num\">{counts['succeeded']}/{len(batch['parts'])}</span>"
                    f"<span>{_state(batch['state'])}</span></div>")
    if not rows:
        return "<p class=\"empty\">the plan has no batches</p>"
    return f"<div class=\"batches{' dense' if len(batches) > 12 else ''}\">" + "".join(rows) + "</div>"


LEGEND = ("<div class=\"legend\"><span><i class=\"ok\"></i>succeeded</span><span><i class=\"bad\"></i>failed</span>"
          "<span><i class=\"lost\"></i>lost</span><span><i class=\"wl\"></i>lost, then finished</span>"
          "<span><i class=\"run\"></i>running</span><span><i class=\"gl\"></i>review gate (B<em>n</em> ✓ approved,"
          " ✗ rejected)</span><span><i class=\"cl\"></i>running count</span><span><i class=\"ll\"></i>limit</span>"
          "<span>#<em>n</em>: a retry · hover a bar for its details</span></div>")


def timeline(data: Data) -> str:
    if not data.attempts:
        return "<p class=\"empty\">no attempt recorded yet: the timeline starts with the first 'kx run' or 'kx start'</p>"
    return Timeline(data).svg() + LEGEND


def reviews(data: Data) -> str:
    rows = [f"<tr><td>Batch {e(r['batch'])}</td><td>{_state(PAST[r['decision']])}</td><td>{e(r['by'])}</td>"
            f"<td class=\"when\">{e(r['recorded_at'][:19].replace('T', ' '))}</td><td>{e(r.get('note') or '')}"
            + (f" <span class=\"muted\">sent back: {e(', '.join(r['parts']))}</span>" if r.get("parts") else "")
            + (f" <span class=\"muted\">accepted failed: {e(', '.join(r['accepted_failed']))}</span>"
               if r.get("accepted_failed") else "") + "</td></tr>"
            for r in data.reviews()]
    if not rows:
        return "<p class=\"empty\">no batch reviewed yet</p>"
    return ("<table><thead><tr><th>batch</th><th>decision</th><th>reviewer</th><th>at (UTC)</th><th>note</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def parts(data: Data) -> str:
    attempts = data.attempts_of()
    many = len(data.parts) > 120
    out = []
    for batch in data.view["batches"]:
        rows = []
        for part in batch["parts"]:
            drop = data.state.parts[part["id"]].drop
            done = part["ticked"] / part["total"] if part["total"] else 0
            troubled = troubles(attempts.get(part["id"], []))
            drop_cell = (f"<code>{e(drop['path'])}</code> <span class=\"muted\">{e(size_text(drop['size']))}"
                         f" · sha256 <code title=\"{e(drop['sha256'])}\">{e(drop['sha256'][:12])}</code></span>"
                         if drop else "<span class=\"muted\">-</span>")
            rows.append(f"<tr id=\"{e(part['id'])}\"><td class=\"id\">{e(part['id'])}</td><td>{e(part['title'])}</td>"
                        f"<td>{_state(part['state'])}{_flags(part)}</td>"
                        f"<td class=\"num\"><span class=\"mini\"><i style=\"width:{100 * done:.0f}%\"></i></span>"
                        f"{part['ticked']}/{part['total']}</td>"
                        f"<td class=\"num\">{part['attempts']}{f' ({e(troubled)})' if troubled else ''}</td>"
                        f"<td>{drop_cell}</td><td><code>{e(part.get('target') or '-')}</code></td></tr>")
        done = sum(p["state"] == "succeeded" for p in batch["parts"])
        opened = "" if many and done == len(batch["parts"]) else " open"
        out.append(f"<details{opened}><summary>Batch {e(batch['number'])}: {e(batch['title'])}"
                   f" <span class=\"muted\">({done}/{len(batch['parts'])} succeeded)</span></summary>"
                   "<div class=\"box\"><table><thead><tr><th>PART</th><th>title</th><th>state</th><th>ticks</th>"
                   "<th>attempts</th><th>drop</th><th>knowledge file</th></tr></thead><tbody>"
                   + "".join(rows) + "</tbody></table></div></details>")
    return "".join(out)
