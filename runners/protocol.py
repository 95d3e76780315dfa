"""What a runner process uses to talk to kx: the ``kx`` command and the ``KX_*`` environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger.errors import BadInput
from machine.plan.paths import PathGuard


def runner_environment(ledger: str, view: dict[str, Any], brief_path: Path, path_first: list[str],
                       **extra: str) -> dict[str, str]:
    """A runner's environment: this process's, the attempt's ``KX_*`` (``view`` is its brief), ``path_first`` on PATH."""
    return {
        **os.environ,
        "KX_LEDGER": ledger,
        "KX_PLAN": view["plan"],
        "KX_PART": view["part"],
        "KX_ATTEMPT": view["attempt"],
        "KX_BRIEF": str(brief_path),
        "KX_TARGET": view["target_path"] or "",
        "KX_DROP": view["drop_path"] or "",
        **extra,
        "PATH": os.pathsep.join([*path_first, os.environ.get("PATH", "")]),
    }


def mcp_config(ledger: str, view: dict[str, Any]) -> dict[str, Any]:
    """``$KX_MCP``'s content: ``kx mcp`` serving this attempt, in the ``mcpServers`` shape agent CLIs read."""
    program = Path(sys.executable).parent / "kx"  # this installation's
    command, first = (str(program), []) if program.is_file() else (sys.executable, ["-m", "cli.main"])
    env = {"KX_LEDGER": ledger, "KX_PLAN": view["plan"], "KX_PART": view["part"], "KX_ATTEMPT": view["attempt"],
           **{name: os.environ[name] for name in ("PYTHONPATH", "KX_NOW") if name in os.environ}}
    args = [*first, "mcp", "--ledger", ledger, "--plan", view["plan"], "--attempt", view["attempt"]]
    return {"mcpServers": {"kx": {"command": command, "args": args, "env": env}}}


def kx(*args: str) -> subprocess.CompletedProcess:
    """Run ``kx ARGS`` (this installation's, found on PATH) and capture its output."""
    program = shutil.which("kx")
    command = [program, *args] if program else [sys.executable, "-m", "cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def check(result: subprocess.CompletedProcess, *, echo: bool = True) -> subprocess.CompletedProcess:
    """Echo a kx call's output into the runner's log (unless ``echo`` is false); stop the runner if kx refused."""
    if echo and result.stdout.strip():
        print(result.stdout.strip(), flush=True)
    if result.returncode != 0:
        print(result.stderr.strip(), file=sys.stderr, flush=True)
        raise SystemExit(result.returncode)
    return result


def read_brief() -> dict[str, Any]:
    """The attempt's brief (``kx --json brief``). The log gets one line about it, not the JSON: the log's tail is
    what a failure keeps, and the brief is in the attempt's folder already."""
    brief = json.loads(check(kx("--json", "brief", os.environ["KX_PART"]), echo=False).stdout)
    boxes = brief["boxes"]
    print(f"brief: {brief['part']} ({brief['attempt']}), {len(boxes)} boxes, {sum(b['ticked'] for b in boxes)}"
          f" ticked already; target {brief['target'] or '(none)'}", flush=True)
    return brief


def runner_guard(brief: dict[str, Any]) -> PathGuard:
    """Where a runner may read and write: the brief's root, never kx's folder, the plan or the ledger."""
    return PathGuard.around(brief["root"], ledger=os.environ.get("KX_LEDGER"), plan=brief.get("plan_path"))


def write(brief: dict[str, Any], path: str | None, text: str) -> None:
    """Write a runner's file where kx allows it (``runner_guard``, asked again for every folder on the way,
    whatever put the path in the brief), never through a link; else stop the runner (exit 2)."""
    if not path:
        return
    try:
        runner_guard(brief).write(Path(path).absolute(), text.encode("utf-8"), name=path)
    except BadInput as refusal:
        print(f"kx: error: {refusal.message}", file=sys.stderr, flush=True)
        raise SystemExit(refusal.code) from None


def record_drop(brief: dict[str, Any], text: str) -> None:
    """Write the KNOWLEDGE DROP to ``$KX_DROP`` and record it."""
    path = os.environ.get("KX_DROP")
    if path:
        write(brief, path, text)
        check(kx("drop", os.environ["KX_PART"], path))


def drop_box_refs(brief: dict[str, Any]) -> list[str]:
    return [b["ref"] for b in brief["boxes"] if "KNOWLEDGE-DROP" in b["text"].upper() and not b["ticked"]]
