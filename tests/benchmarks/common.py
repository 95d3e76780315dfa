"""Helpers for benchmarks: every figure is a ratio against a floor measured in the same run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRESH_PLAN = REPO / "data" / "vlm-mastery.md"


def kx_command() -> list[str]:
    program = Path(sys.executable).parent / "kx"
    return [str(program)] if program.exists() else [sys.executable, "-m", "cli.main"]


def clean_env() -> dict[str, str]:
    """The environment kx runs in: no ``KX_*`` settings, and bytecode cached as an installed package has it
    (pip compiles a package's modules; an editable checkout under ``PYTHONDONTWRITEBYTECODE`` would be
    compiled again by every ``kx`` call)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("KX_") and k != "PYTHONDONTWRITEBYTECODE"}


def compile_kx() -> None:
    import compileall

    for package in ("ledger", "machine", "runners", "web", "cli"):
        compileall.compile_dir(REPO / package, quiet=1)


@contextmanager
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="kx-bench-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(func, *args, **kwargs) -> float:
    started = time.perf_counter()
    func(*args, **kwargs)
    return time.perf_counter() - started


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, check=True, **kwargs)


def row(name: str, measured: float, floor: float, unit: str, target: str) -> dict:
    return {"benchmark": name, "kx": measured, "floor": floor, "ratio": measured / floor, "unit": unit,
            "target": target}


def print_table(rows: list[dict]) -> None:
    print(f"{'benchmark':<52} {'kx':>12} {'floor':>12} {'ratio':>8}  target")
    for r in rows:
        print(f"{r['benchmark']:<52} {r['kx']:>10.4g}{r['unit']:>2} {r['floor']:>10.4g}{r['unit']:>2}"
              f" {r['ratio']:>7.2f}x  {r['target']}")
