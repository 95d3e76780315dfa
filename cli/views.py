"""Plain-text renderings of command results (``--json`` prints the dicts themselves)."""

from __future__ import annotations

import json
import os
from typing import Any

from machine.outputs.status import PAST
from machine.plan.text import counted, one_line
from machine.state.runner_output import last_output, reason_line

HISTORY_WIDTH = 1000  # an event's details in 'kx audit history', one line per event


def plain_terminal() -> bool:
    """``NO_COLOR`` set, or a terminal that cannot redraw (``TERM=dumb``): neither kx's colours nor its live view."""
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def import_result(result: Any) -> str:
    moved = [f"ledger re-anchored here: it was made in {result.reanchored}"] if result.reanchored else []
    if result.action == "unchanged":
        return "\n".join([f"{result.plan}: {result.path} unchanged; nothing recorded", *moved])
    line = (f"{result.plan}: {result.action} {result.path} — {counted(result.batches, 'batch', 'batches')},"
            f" {counted(result.parts, 'PART')}, {counted(result.events, 'event')} recorded")
    if result.action == "revised":
        line += f"; {result.carried} ticks carried over" + (f", {len(result.dropped)} dropped" if result.dropped else "")
    return "\n".join([line, *(change["message"] for change in result.changes), *moved])


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
        f"{f.level}: {'line ' + str(f.line) + ': ' if f.line else ''}{f.message}"
        + (f"; to redo it: {f.fix}" if f.fix else "") for f in items
    )


def status(view: dict[str, Any]) -> str:
    """The plain status (pinned by a golden file); a terminal gets :class:`cli.terminal.StatusTable`."""
    lines = status_header(view)
    for batch in view["batches"]:
        done = sum(p["state"] == "succeeded" for p in batch["parts"])
        lines.append(f"\nBATCH {batch['number']}  {batch['state']:<15} {done}/{len(batch['parts'])} succeeded"
                     f"  {batch['title']}{review_note(batch)}")
        rows = [(f"  {p['id']}", p["state"], f"{p['ticked']}/{p['total']}", f"attempts {p['attempts']}", _note(p))
                for p in batch["parts"]]
        lines.append(table(rows))
    return "\n".join(lines + findings_lines(view))


def findings_lines(view: dict[str, Any]) -> list[str]:
    """The status's findings (a succeeded PART with boxes added since), one line each after the batches."""
    return ["", *(f"! {finding['message']}" for finding in view["findings"])] if view.get("findings") else []


def _note(part: dict[str, Any]) -> str:
    """The last column of a PART's line: its attempt while it runs, why it failed or was lost, on one line; whether
    its success is the imported file's word or a rehearsal's."""
    if part["state"] == "running":
        return part.get("attempt", "")
    if part["state"] == "lost":
        return f"{part.get('attempt', '')}: {why(part)}"
    if part["state"] == "failed":
        return why(part)
    return next((flag for flag in ("imported", "rehearsal") if part.get(flag)), "")


UNCHECKED = {"imported": "succeeded on the imported file's word, nothing checked ('kx check' checks their files)",
             "rehearsal": "succeeded in a rehearsal: placeholder files, no knowledge written"}


def _unchecked_lines(view: dict[str, Any]) -> list[str]:
    """A line per kind of success kx did not earn: the PARTs imported as done, the rehearsed ones."""
    parts = [p for batch in view["batches"] for p in batch["parts"]]
    lines = []
    for flag, said in UNCHECKED.items():
        flagged = [p["id"] for p in parts if p.get(flag)]
        if flagged:
            shown = ", ".join(flagged[:8]) + (f" and {len(flagged) - 8} more" if len(flagged) > 8 else "")
            lines.append(f"{flag}: {shown} {said}")
    return lines


def why(part: dict[str, Any]) -> str:
    """A failed or lost PART's reason and its runner's last line, folded to one line."""
    return reason_line(part.get("reason"), part.get("last_output"))


def run_result(summary: dict[str, Any]) -> str:
    """The end of ``kx run``: its message, then each failed or lost PART on a line of its own."""
    lines = [summary["message"]]
    lines += [f"  {f['part']} {f['state']} ({f['attempt']}): {why(f)}" for f in summary.get("failures", [])]
    return "\n".join(lines)


def status_header(view: dict[str, Any]) -> list[str]:
    return [f"{view['plan']}: {view['title'] or view['path']}",
            f"running {len(view['running'])}/{view['limit']}"
            + (f" ({', '.join(view['running'])})" if view["running"] else "")
            + f" · found {view['found']['parts']} PARTs in {view['found']['batches']} batches"
            + (f" of {view['declared']['parts']} PARTs in {view['declared']['batches']} declared"
               if view["declared"]["batches"] else "")
            + (" · consolidated" if view["consolidated"] else ""), *_unchecked_lines(view)]


def review_note(batch: dict[str, Any]) -> str:
    review = batch.get("review")
    if not review:
        return ""
    since = ", reopened since" if review["decision"] == "approve" and batch["state"] != "approved" else ""
    return f" — {PAST[review['decision']]} by {review['by']}{since}"


def event_header(stream_width: int = 0) -> str:
    """The names of :func:`event_line`'s columns: the ``events`` table's own."""
    return (f"{'position':>8}  {'recorded_at':<27}  {'type':<17} {'stream':<{stream_width}}  {'version':>7}  data")


def event_line(view: dict[str, Any], stream_width: int = 0) -> str:
    """One event: its stream's version (the event's number in the stream) apart from the stream, so that it
    is not read as an attempt (``PART-7#1``, in the data)."""
    data = {k: v for k, v in view["data"].items() if k not in ("plan", "source", "structure")}
    return (f"{view['position']:>8}  {view['recorded_at']:<27}  {view['type']:<17} {view['stream']:<{stream_width}}"
            f"  {view['version']:>7}  {json.dumps(data, ensure_ascii=False)}")


def table(rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def rendered(result: dict[str, Any], check: bool, repair: bool = False) -> str:
    if not result["changed"]:
        text = f"{result['path']} is up to date"
    elif check:
        text = (f"{result['path']} is out of date: {result['lines']} lines differ;"
                f" run 'kx render{' --repair' if repair else ''}'")
    else:
        text = f"{result['path']}: {result['lines']} lines rewritten"
    if result.get("repaired"):
        runs = ", ".join(f"{r['from']} → {r['to']} ×{r['count']}" for r in result["repaired"])
        text += f"\n{'would mend' if check else 'mended'} mojibake: {runs}"
    if result["missing"]:
        text += "\nticked in the ledger but not found in the file: " + "; ".join(result["missing"])
    if result["kept"]:
        text += ("\nticked in the file only, kept (record with 'kx tick' or 'kx plan import'): "
                 + "; ".join(result["kept"]))
    return text


def evidence_note(evidence: dict[str, Any] | None) -> str:
    """A tick's evidence in a few words: ``[read sha256 1a2b...]``, ``[search 2 sources]``, ``[override]``."""
    if not evidence:
        return ""
    words = [evidence.get("kind", "?")]
    if "sha256" in evidence:
        words.append(f"sha256 {evidence['sha256'][:12]}")
    if evidence.get("found") is False:
        words.append("not found")
    if "sources" in evidence:
        words.append(counted(len(evidence["sources"]), "source"))
    words += [flag for flag in ("override", "rehearsal") if evidence.get(flag)]
    return f" [{' '.join(words)}]"


def details(event: dict[str, Any]) -> str:
    data, kind = event["data"], event["type"]
    who = f" by {data['by']}" if data.get("by") and data.get("by") != event.get("attempt") else ""
    if kind in ("CheckboxTicked", "CheckboxUnticked"):
        return f"box {data['box']} {data['text']!r}{who}" + evidence_note(data.get("evidence"))
    if kind == "DropRecorded":
        return f"{data['path']} ({data['size']} bytes, sha256 {data['sha256'][:12]}){who}"
    if kind == "RunnerSucceeded":
        target = f", target {data['target']['path']} (sha256 {data['target']['sha256'][:12]})" if data.get("target") else ""
        overrides = f", overrides {', '.join(f'{r} ({h})' for r, h in data['overrides'].items())}" \
            if data.get("overrides") else ""
        return f"completed {data.get('completed_at') or '(no stamp)'}{target}{overrides}{who}"
    if kind in ("RunnerFailed", "RunnerLost"):
        code = f" (exit {data['exit_code']})" if data.get("exit_code") is not None else ""
        return reason_line(f"{data['reason']}{code}{who}", data.get("last_output") or last_output(data.get("log_tail")))
    if kind == "BatchReviewed":
        sent = f", sent back {', '.join(data['parts'])}" if data.get("parts") else ""
        cleared = "".join(f"; {part} {_cleared(what)}" for part, what in (data.get("cleared") or {}).items())
        note = f": {data['note']}" if data.get("note") else ""
        return f"batch {data['batch']} {PAST[data['decision']]}{who}{sent}{cleared}{note}"
    if kind == "PartReopened":
        return f"was {data['was']}, {_cleared(data['cleared'])}{who}: {data['reason']}"
    if kind in ("PlanImported", "PlanRevised"):
        return f"{data['path']} (sha256 {data['sha256'][:12]})"
    if kind == "RunnerStarted":
        return " ".join(data.get("runner") or []) + who
    if kind == "PartRetried":
        return (data.get("reason") or "") + who
    return json.dumps({k: v for k, v in data.items() if k not in ("part", "attempt")}, ensure_ascii=False)


def _cleared(what: dict[str, Any]) -> str:
    drop = f" and drop {what['drop']}" if what.get("drop") else ""
    return f"cleared {len(what.get('boxes', ()))} ticks{drop}"


def evidence_check(result: dict[str, Any]) -> str:
    """``kx check``: one line per box, then the target and the drop, then what stops ``finish``."""
    verdict = "finish would succeed" if result["ok"] else "finish would be refused"
    lines = [f"{result['part']} ({result['state']}, evidence policy {result['policy']}): {verdict}"]
    rows = [(b["ref"], b["kind"], "ok" if b["ok"] else "MISSING", b["why"]) for b in result["boxes"]]
    target, drop = result["target"], result["drop"]
    for name, piece in (("target", target), ("drop", drop)):
        where = f"{piece['path']}: " if piece.get("path") and piece["path"] not in piece["why"] else ""
        fix = f": {piece['fix']}" if piece.get("fix") else ""
        rows.append((name, "file", "ok" if piece["ok"] else "MISSING", where + piece["why"] + fix))
    lines.append(table(rows))
    lines += [f"blocked: {reason}" for reason in result["blocked"]]
    return "\n".join(lines)


def plan_check(result: dict[str, Any]) -> str:
    """``kx check`` of every PART: one line each, what it lacks folded to one line."""
    holding = sum(p["ok"] for p in result["parts"])
    lines = [f"{result['plan']} (evidence policy {result['policy']}): {holding} of {counted(len(result['parts']), 'PART')}"
             " hold up"]
    rows = []
    for part in result["parts"]:
        flags = "".join(f" ({flag})" for flag in ("imported", "rehearsal") if part.get(flag))
        rows.append((part["part"], part["state"] + flags, "ok" if part["ok"] else "MISSING",
                     one_line("; ".join(part["missing"]), 160)))
    return "\n".join([*lines, table(rows)])


def history(view: dict[str, Any]) -> str:
    rows = [(e["recorded_at"], e["type"], e.get("attempt") or "-", one_line(details(e), HISTORY_WIDTH))
            for e in view["events"]]
    return f"{view['part']}: {view['title']} (batch {view['batch']}, {view['state']})\n" + table(rows)


def verified(result: dict[str, Any]) -> str:
    keyed = result.get("keyed") or {}
    unchecked = (f"\n{counted(keyed['events'], 'keyed event')} could not be checked without KX_LEDGER_KEY (from"
                 f" position {keyed['from']})") if keyed and not keyed["checked"] else ""
    if not result["findings"]:
        return (f"ok: {counted(result['events'], 'event')}, {counted(len(result['plans']), 'plan')}; integrity and"
                f" rules hold{unchecked}")
    found = counted(len(result["findings"]), "finding")
    return "\n".join(result["findings"]) + f"\n{found} in {counted(result['events'], 'event')}{unchecked}"


def consolidated(result: dict[str, Any]) -> str:
    paths = result.get("paths", {})
    if result["action"] == "unchanged":
        return f"{result['plan']} is already consolidated" + (f" (commit {result['commit'][:12]})" if result.get("commit") else "")
    missing = f" ({counted(len(result['missing']), 'PART')} with files changed, missing or failing the checks," \
        " allowed by --allow-missing)" \
        if result.get("missing") else ""
    lines = [f"{result['plan']}: consolidated {result['knowledge_files']} knowledge files{missing}",
             f"index: {paths['index']}", f"report: {paths['report']}", f"plan: {paths['plan']}"]
    if paths.get("skill"):
        lines.append(f"skill: {paths['skill']}")
    if result.get("commit"):
        lines.append(f"commit: {result['commit'][:12]}")
    return "\n".join(lines)
