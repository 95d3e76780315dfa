"""Where a running ``kx serve`` shows a plan: the small file it keeps beside the ledger while it runs
(``.kx/serve-PLAN.json``: its pid and start time, host, port, plan), and the review page's address that
``kx run --review wait`` prints from it. The file never holds the token."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ledger.files import write_atomic
from machine.plan.paths import check_plan_id
from runners.attempt_folder import process_alive


def serve_file(ledger_path: Path, plan_id: str) -> Path:
    return ledger_path.resolve().parent / f"serve-{check_plan_id(plan_id)}.json"


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def announce(ledger_path: Path, plan_id: str, host: str, port: int) -> Path:
    """Note that this process serves ``plan_id`` at ``host:port``; the file's path."""
    import psutil

    path = serve_file(ledger_path, plan_id)
    me = {"pid": os.getpid(), "started": psutil.Process().create_time(), "host": host, "port": port, "plan": plan_id}
    write_atomic(path, json.dumps(me).encode())
    return path


def withdraw(path: Path) -> None:
    """Remove the note, unless another ``kx serve`` has written its own over it since."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def review_page(ledger_path: Path, plan_id: str, batch: int) -> str | None:
    """The address of batch ``batch``'s review page, when a live ``kx serve`` noted that it serves the plan."""
    try:
        noted = json.loads(serve_file(ledger_path, plan_id).read_text())
        alive = process_alive(int(noted["pid"]), float(noted["started"]))
        address = base_url(str(noted["host"]), int(noted["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"{address}/batches/{batch}/review" if alive else None
