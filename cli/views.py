"""Plain-text renderings of command results (``--json`` prints the dicts themselves)."""

from __future__ import annotations

import json
from typing import Any


def import_result(result: Any) -> str:
    if result.action == "unchanged":
        return f"{result.plan}: {result.path} unchanged; nothing recorded"
    line = (f"{result.plan}: {result.action} {result.path} — {result.batches} batches, {result.parts} PARTs,"
            f" {result.events} events recorded")
    if result.action == "revised":
        line += f"; {result.carried} ticks carried over"
        if result.dropped:
            line += f", {len(result.dropped)} ticked boxes no longer in the file: " + "; ".join(result.dropped)
    return line


def plan_list(result: dict[str, Any]) -> str:
    if not result["plans"]:
        return "no plans; run 'kx plan import PLAN.md'"
    rows = [(p["id"], f"{p['succeeded']}/{p['parts']} PARTs", f"{p['batches']} batches", p["path"],
             "consolidated" if p["consolidated"] else "") for p in result["plans"]]
    return table(rows)


def findings(items: list[Any]) -> str:
    if not items:
        return "no findings"
    return "\n".join(
        f"{f.level}: {'line ' + str(f.line) + ': ' if f.line else ''}{f.message}" for f in items
    )


def status(view: dict[str, Any]) -> str:
    lines = [f"{view['plan']}: {view['title'] or view['path']}",
             f"running {len(view['running'])}/{view['limit']}"
             + (f" ({', '.join(view['running'])})" if view["running"] else "")
             + f" · found {view['found']['parts']} PARTs in {view['found']['batches']} batches"
             + (f" of {view['declared']['parts']} PARTs in {view['declared']['batches']} declared"
                if view["declared"]["batches"] else "")
             + (" · consolidated" if view["consolidated"] else "")]
    for batch in view["batches"]:
        done = sum(p["state"] == "succeeded" for p in batch["parts"])
        review = batch.get("review")
        note = f" — {review['decision']}d by {review['by']}" if review else ""
        lines.append(f"\nBATCH {batch['number']}  {batch['state']:<15} {done}/{len(batch['parts'])} succeeded"
                     f"  {batch['title']}{note}")
        rows = [(f"  {p['id']}", p["state"], f"{p['ticked']}/{p['total']}", f"attempts {p['attempts']}",
                 p.get("attempt", "") if p["state"] in ("running", "lost") else p.get("reason", "") or "")
                for p in batch["parts"]]
        lines.append(table(rows))
    return "\n".join(lines)


def event_line(view: dict[str, Any]) -> str:
    data = {k: v for k, v in view["data"].items() if k not in ("plan", "source", "structure")}
    return (f"{view['position']:>6}  {view['recorded_at']}  {view['type']:<17} {view['stream']}"
            f"#{view['version']}  {json.dumps(data, ensure_ascii=False)}")


def table(rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
