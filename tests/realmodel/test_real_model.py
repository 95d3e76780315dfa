"""The bundled plan's batch 1 through a real model server, with ``--stream`` and without (not part of the suite).

Skipped unless ``KX_REAL_MODEL_URL`` names an OpenAI-compatible server (``tests/realmodel/run.sh`` starts
llama-cpp-python's with SmolLM2-135M-Instruct and runs this); ``KX_REAL_MODEL_NAME`` is the model (default
``smollm2``). A model this small writes poor knowledge, so PARTs may fail on their evidence: what is checked is
that the runner is honest about it. No context-length failure, no empty knowledge file, every PART ends with a
reason, every drop shows the budget, and no request passes the window. The figures (time and tokens per
attempt, from each attempt's log) are printed and written to ``$KX_REAL_MODEL_REPORT`` when it is set; the runs
stay in ``$KX_REAL_MODEL_WORK`` when it is set.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import FRESH, real_env

URL = os.environ.get("KX_REAL_MODEL_URL")
MODEL = os.environ.get("KX_REAL_MODEL_NAME", "smollm2")
pytestmark = [pytest.mark.realmodel, pytest.mark.real_time,
              pytest.mark.skipif(not URL, reason="KX_REAL_MODEL_URL names no model server")]
RUN_TIMEOUT_S = 3 * 3600


@pytest.mark.timeout(2 * RUN_TIMEOUT_S)
def test_batch_1_of_the_bundled_plan_through_a_real_model(kx, project):
    figures = {}
    work = Path(os.environ.get("KX_REAL_MODEL_WORK") or project)
    for mode in ("plain", "stream"):
        folder = work / mode
        folder.mkdir(parents=True)
        (folder / "vlm-mastery.md").write_bytes(FRESH.read_bytes())
        the_files_the_plan_names(kx, folder)
        figures[mode] = run_batch_1(kx, folder, ["--stream"] if mode == "stream" else [])
    report = "\n\n".join(table(mode, rows) for mode, rows in figures.items())
    print("\n" + report)
    if os.environ.get("KX_REAL_MODEL_REPORT"):
        Path(os.environ["KX_REAL_MODEL_REPORT"]).write_text(report + "\n\n" + json.dumps(figures, indent=2) + "\n")
    for rows in figures.values():
        for row in rows:
            assert row["state"] in ("succeeded", "failed"), row
            assert row["state"] == "succeeded" or row["reason"], row
            assert "cannot fit" not in (row["reason"] or "") and "refused" not in (row["reason"] or ""), row  # inside
            assert row["target_bytes"] != 0 and row["budget"] and row["sent"], row
            assert all(sent <= row["window"] - row["reserve"] for sent in row["sent"]), row


def the_files_the_plan_names(kx, folder: Path) -> None:
    """Batch 1's influential files and Read paths, as a repository holds them: markdown of a few KB each (the plan's
    own text), a folder of two, and one Read file of 74 KB, as the run that found the missing budget met."""
    text = FRESH.read_text(encoding="utf-8")
    subprocess.run([sys.executable, "-m", "cli.main", "plan", "import", "vlm-mastery.md"], cwd=folder, env=real_env(),
                   check=True, capture_output=True)
    os.chdir(folder)
    named = []
    for part in (f"PART-{n}" for n in range(1, 7)):
        brief = kx("--json", "brief", part).json
        named += [f["path"] for f in brief["influential_files"] if f["path"]]
        named += [b["path"] for b in brief["boxes"] if b["kind"] == "read"]
    for n, path in enumerate(dict.fromkeys(named)):
        size = 74_000 if path == "vision-language/00-token-concatenation-sequence-augmentation.md" else 1_500 + 300 * n
        files = [f"{path}00-notes.md", f"{path}01-more.md"] if path.endswith("/") else [path]
        for file in files:
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text(f"# {file}\n\n" + (text * (1 + size // len(text)))[n * 97 : n * 97 + size])


def run_batch_1(kx, folder: Path, stream: list[str]) -> list[dict]:
    """``kx run`` of batch 1, and a row of figures per attempt."""
    env = real_env() | {"OPENAI_API_KEY": "sk-no-key-needed"}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "cli.main", "--json", "run", "--runner",
                          " ".join(["openai", "--retries", "2", *stream]), "--model", MODEL, "--base-url", URL,
                          "--until-batch", "1", "--review", "auto"],
                         cwd=folder, env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
    print(f"{folder.name}: kx run exited {run.returncode} after {time.monotonic() - started:.0f} s")
    os.chdir(folder)
    rows = []
    for part in (f"PART-{n}" for n in range(1, 7)):
        rows += attempts_of(kx, folder, part)
    return rows


def attempts_of(kx, folder: Path, part: str) -> list[dict]:
    events = kx("--json", "audit", "history", part).json["events"]
    rows, row = [], None
    for event in events:
        data = event["data"]
        if event["type"] == "RunnerStarted":
            row = {"part": part, "attempt": event["attempt"], "started": event["recorded_at"], "state": "running",
                   "reason": None, "target_bytes": None, "budget": False}
            number = event["attempt"].split("#")[1]
            row.update(log_figures(next(folder.glob(f".kx/attempts/*/{part}-{number}/runner.log")).read_text()))
            rows.append(row)
        elif row and event["type"] == "DropRecorded":
            row["budget"] = "## Context budget" in (folder / data["path"]).read_text()
        elif row and event["type"] in ("RunnerSucceeded", "RunnerFailed", "RunnerLost"):
            row["state"] = {"RunnerSucceeded": "succeeded", "RunnerFailed": "failed"}.get(event["type"], "lost")
            row["reason"] = data.get("reason")
            row["seconds"] = seconds_between(row["started"], event["recorded_at"])
    target = folder / kx("--json", "brief", part).json["target"]
    if rows:
        rows[-1]["target_bytes"] = target.stat().st_size if target.exists() else None
    return rows


def log_figures(log: str) -> dict:
    """An attempt's figures, from the lines the openai runner logs: the budget and what each request cost."""
    def found(pattern: str, default=None):  # the last time the log says it
        matches = re.findall(pattern, log, re.MULTILINE)
        return matches[-1] if matches else default

    sent = found(r"tokens sent per request \(counted by kx\): ([\d, ]+);", "")
    return {"window": int(found(r"context (\d+) tokens", 0)), "reserve": int(found(r"(\d+) reserved", 0)),
            "sent": [int(n) for n in sent.split(", ") if n], "requests": int(found(r"^requests: (\d+)", 0)),
            "prompt_tokens": found(r"prompt_tokens (\d+)"), "completion_tokens": found(r"completion_tokens (\d+)"),
            "finish": found(r"finish reasons: (.*)$", ""), "cut": int(found(r"(\d+) cut,", 0)),
            "left_out": int(found(r"(\d+) left out", 0)), "tools": len(re.findall(r"^tool ", log, re.MULTILINE)),
            "retried": len(re.findall(r"^retrying in", log, re.MULTILINE))}


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def table(mode: str, rows: list[dict]) -> str:
    lines = [f"### {mode}", "", "| attempt | state | s | window | reserve | sent (kx's count) | prompt / completion"
             " (server's count) | finish | requests | tool calls | cut | left out | reason |", "|---" * 13 + "|"]
    for r in rows:
        reason = (r["reason"] or "").split(";")[0][:90]
        lines.append(f"| {r['attempt']} | {r['state']} | {r.get('seconds', 0):.0f} | {r['window']} | {r['reserve']} |"
                     f" {', '.join(map(str, r['sent']))} | {r['prompt_tokens']} / {r['completion_tokens']} |"
                     f" {r['finish']} | {r['requests']} | {r['tools']} | {r['cut']} | {r['left_out']} | {reason} |")
    return "\n".join(lines)
