"""Shared fixtures: a project folder, an in-process ``kx``, frozen time, sample plans."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from cli.errors import run_guarded
from cli.main import cli

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
SEED = DATA / "vlm-mastery-in-progress.md"
FRESH = DATA / "vlm-mastery.md"
FROZEN_AT = "2025-11-20T10:00:00Z"

SMALL_PLAN = """\
# Knowledge Expansion: Small Test Plan

**Strategy**: 4 runners, 2 at a time (2 batches)

- **Batch 1**: PARTs 1-2 (Foundations)
- **Batch 2**: PARTs 3-4 (Follow-ups)

### Worker Instructions
- Create KNOWLEDGE DROPS for every PART

**THE INFLUENTIAL FILES**:
1. `influences/00-alpha.md` - alpha
2. `influences/01-beta.md` - beta

# BATCH 1: Foundations

## PART 1: Alpha Topic (~100 lines)

- [ ] PART 1: Create topics/00-alpha.md

**Influenced by**: Files 1,2

**Step 0: Check Existing Knowledge**
- [ ] Read influences/00-alpha.md

**Step 1: Create Knowledge File**
- [ ] Section 1: Alpha overview
- [ ] Section 2: Alpha details
  - [ ] Section 2a: nested detail

```markdown
- [ ] this is an example inside a fence, not a box
```

**Step 2: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-alpha-2025-11-14-[TIME].md

## PART 2: Beta Topic (~100 lines)

- [ ] PART 2: Create topics/01-beta.md

**Step 1: Create Knowledge File**
- [ ] Section 1: Beta overview
- [ ] Section 2: Beta details

**Step 2: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-beta-2025-11-14-[TIME].md

# BATCH 2: Follow-ups

## PART 3: Gamma Topic

- [ ] PART 3: Create topics/02-gamma.md

**Step 1: Create Knowledge File**
- [ ] Section 1: Gamma overview

An example of a box written as code:

    - [ ] indented code after a paragraph break is code, not a box

**Step 2: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-gamma-2025-11-14-[TIME].md

## PART 4: Delta Topic

- [ ] PART 4: Create topics/03-delta.md

**Step 1: Create Knowledge File**
- [ ] Section 1: Delta overview
- [ ] Create KNOWLEDGE-DROP-delta-2025-11-14-[TIME].md
"""


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")

    @property
    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def frozen_time(request):
    if request.node.get_closest_marker("real_time"):  # benchmarks measure real durations
        yield None
        return
    with freeze_time(FROZEN_AT) as frozen:
        yield frozen


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("KX_LEDGER", "KX_ATTEMPT", "KX_PLAN", "KX_NOW"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def kx(project: Path):
    """Run ``kx ARGS`` in-process (under frozen time) and return its exit code and output."""

    def run(*args: str, input: str | None = None) -> Result:
        with CliRunner().isolation(input=input) as (out, err, _):
            code = run_guarded(cli, [str(a) for a in args])
        return Result(code, out.getvalue(), err.getvalue().decode("utf-8"))

    return run


SMALL_PLAN_SOURCES = ("influences/00-alpha.md", "influences/01-beta.md")  # what its Read boxes and lists name


@pytest.fixture
def small_plan(project: Path) -> Path:
    """SMALL_PLAN in the project, with the influential files it names (so a runner's Read tick has a file)."""
    path = project / "plan.md"
    path.write_text(SMALL_PLAN, encoding="utf-8")
    for source in SMALL_PLAN_SOURCES:
        (project / source).parent.mkdir(parents=True, exist_ok=True)
        (project / source).write_text(f"# {source}\n\nexisting knowledge\n", encoding="utf-8")
    return path


def write_target(kx, project: Path, part: str, skip: tuple[str, ...] = ()) -> Path:
    """The PART's target file as an honest runner writes it: a heading for every Section box (but the refs in
    ``skip``) and every cited file named; a file already there is continued."""
    brief = kx("--json", "brief", part).json
    path = project / brief["target"]
    if not path.resolve().is_relative_to(project.resolve()):
        return path  # a target the guard refuses: a test writes nothing outside its project
    lines = [path.read_text(encoding="utf-8") if path.is_file() else f"# {brief['title']}\n"]
    for box in brief["boxes"]:
        if box["ref"] in skip:
            continue
        if box["kind"] == "section":
            lines += [f"## {box['text']}", "", "Knowledge.", ""]
        elif box["kind"] == "cite":
            lines += [f"- File {n}" for n in box["files"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def seed_plan(project: Path) -> Path:
    path = project / "plan.md"
    shutil.copy(SEED, path)
    return path


def event_count(project: Path) -> int:
    import sqlite3

    ledger = project / ".kx" / "ledger.db"
    if not ledger.exists():
        return 0
    with sqlite3.connect(ledger) as conn:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]


def kx_subprocess(*args: str, cwd: Path, env: dict | None = None, input: bytes | None = None):
    """``kx`` as a real process (the console script's code), with ``$KX_NOW`` frozen."""
    import subprocess

    environment = {**os.environ, "KX_NOW": FROZEN_AT, **(env or {})}
    environment.pop("KX_LEDGER", None) if "KX_LEDGER" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=environment,
                          input=input, capture_output=True, timeout=60)
