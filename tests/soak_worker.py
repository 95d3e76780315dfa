"""One soak worker: a bounded sequence of kx commands on its own PART, each tagged ``--by soak-I-J``.

    python -m tests.soak_worker I    (in the project folder; prints one JSON line per command)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

KX = [shutil.which("kx") or sys.executable, *([] if shutil.which("kx") else ["-m", "cli.main"])]


def call(tag: str, *args: str) -> dict:
    result = subprocess.run([*KX, "--json", *args, "--by", tag], capture_output=True, text=True)
    try:
        payload = json.loads(result.stdout) if result.stdout.strip() else {}
    except json.JSONDecodeError:
        payload = {}
    record = {"tag": tag, "args": list(args), "code": result.returncode, "stderr": result.stderr,
              "recorded": payload.get("recorded", ["RunnerStarted"] if args[0] == "start" and not result.returncode else []),
              "attempt": payload.get("attempt")}
    print(json.dumps(record), flush=True)
    return record


def main(index: int) -> None:
    part = f"PART-{index + 1}"
    ops = iter(range(100))

    def tag() -> str:
        return f"soak-{index}-{next(ops)}"

    call(tag(), "tick", part, "1")
    call(tag(), "tick", part, "2")
    call(tag(), "untick", part, "1")
    call(tag(), "tick", part, "1", "2", "3", "4")
    for _ in range(3):
        started = call(tag(), "start", part)
        if started["code"] == 0:
            attempt = started["attempt"]
            drop = Path(f"drop-{index}.md")
            drop.write_text(f"drop {index}\n")
            target = Path(f"p/{index + 1}.md")  # the PART's target file, which finish checks
            target.parent.mkdir(exist_ok=True)
            target.write_text(f"# P{index + 1}\n")
            call(tag(), "drop", part, str(drop), "--attempt", attempt)
            call(tag(), "finish", part, "--attempt", attempt)
            return
        time.sleep(0.2 + 0.05 * (index % 5))


if __name__ == "__main__":
    main(int(sys.argv[1]))
