"""Shared fixtures: a project folder, an in-process ``kx``, frozen time, sample plans."""

from __future__ import annotations

import _posixsubprocess
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
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
    # tests that wait on real processes (slow) or measure real durations (real_time) run on the real clock:
    # a frozen time.monotonic() would stand still and their deadlines could never fire
    if request.node.get_closest_marker("real_time") or request.node.get_closest_marker("slow"):
        yield None
        return
    with freeze_time(FROZEN_AT) as frozen:
        yield frozen


@pytest.fixture(autouse=True)
def processes_only_in_slow_tests(request, monkeypatch):
    """A test that starts a process (kx, a runner, git, a browser), itself or through kx, is marked slow: run apart
    and on the real clock. One that is not fails at its end, naming how it started one."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    started = []

    def noted(how: str, start):
        def starting(*args, **kwargs):
            started.append(how)
            return start(*args, **kwargs)

        return starting

    for owner, name in ((subprocess.Popen, "_execute_child"), (_posixsubprocess, "fork_exec"), (os, "fork")):
        monkeypatch.setattr(owner, name, noted(name, getattr(owner, name)))  # subprocess; multiprocessing; forks
    yield
    assert not started, f"it started a process ({started[0]}): a test that does is marked @pytest.mark.slow"


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


# --- helpers several test modules share ------------------------------------------------


def three_batch_plan(per_batch: int = 3, limit: int = 2) -> str:
    lines = [f"**Strategy**: {3 * per_batch} runners, {limit} at a time (3 batches)", ""]
    number = 0
    for batch in (1, 2, 3):
        lines.append(f"# BATCH {batch}: Batch {batch}")
        for _ in range(per_batch):
            number += 1
            lines += [f"## PART {number}: Topic {number}", "", f"- [ ] PART {number}: Create topics/{number:02d}.md",
                      "", "**Step 1: Research**", "- [ ] Search one", "- [ ] Search two",
                      "**Step 2: Create Knowledge File**", "- [ ] Section 1: Overview", "- [ ] Section 2: Details",
                      "**Step 3: Create KNOWLEDGE DROP**", f"- [ ] Create KNOWLEDGE-DROP-topic-{number}-2025-11-14-[TIME].md",
                      ""]
    return "\n".join(lines)


def real_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    return env


def kx_run(project, *args, wait=True, timeout=240):
    command = [sys.executable, "-m", "cli.main", *args]
    process = subprocess.Popen(command, cwd=project, env=real_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    if wait:
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out.decode(), err.decode()
    return process


def events_of(kx):
    return kx("--json", "events").json["events"]


def check_rules_from_events(events, limit, batches_of):
    running, peak = 0, 0
    approved = set()
    for event in events:
        kind, data = event["type"], event["data"]
        if kind == "RunnerStarted":
            running += 1
            peak = max(peak, running)
            batch = batches_of[data["part"]]
            assert batch == 1 or batch - 1 in approved, f"{data['attempt']} started before batch {batch - 1} approved"
        elif kind in ("RunnerSucceeded", "RunnerFailed", "RunnerLost") and data.get("by") != "import":
            running -= 1
        elif kind == "BatchReviewed" and data["decision"] == "approve":
            approved.add(data["batch"])
    assert 0 < peak <= limit
    return peak


@pytest.fixture
def plan3(kx, project):
    (project / "plan.md").write_text(three_batch_plan())
    assert kx("plan", "import", "plan.md").code == 0
    return {n: (n - 1) // 3 + 1 for n in range(1, 10)}


def batches_map(plan3):
    return {f"PART-{n}": b for n, b in plan3.items()}


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_until(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def run_until_first_start(kx, project):
    """A slow run in the background, and the first RunnerStarted it records."""
    process = kx_run(project, "run", "--runner", "rehearse --sleep 3", "--review", "auto", "--backoff", "0.1",
                     wait=False)
    wait_until(lambda: any(e["type"] == "RunnerStarted" for e in events_of(kx)))
    return process, next(e for e in events_of(kx) if e["type"] == "RunnerStarted")


def on_a_terminal(project, *args: str, env: dict | None = None) -> str:
    """``kx ARGS`` with its stdout on a pseudo-terminal: what a person would see."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KX_") and k != "NO_COLOR"}
    environment.update({"KX_NOW": FROZEN_AT, "COLUMNS": "100", "TERM": "xterm", **(env or {})})
    process = subprocess.Popen([sys.executable, "-m", "cli.main", *args], cwd=project, env=environment,
                               stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait(timeout=60) == 0, process.stderr.read().decode()
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def drawn(view: dict, width: int) -> str:
    """``kx status``'s table of ``view`` as a terminal ``width`` columns wide shows it, without colour."""
    import io

    from rich.console import Console

    from cli.terminal import StatusTable

    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(StatusTable(view))
    return console.file.getvalue()


def write(project, name, text="knowledge\n"):
    path = project / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def complete(kx, project, part, attempt=None, boxes=None):
    """Do PART's work as a runner does: write its target and drop, record the drop, tick every box, finish it."""
    flag = ["--attempt", attempt] if attempt else []
    total = kx("--json", "brief", part).json["boxes"]
    refs = [str(i) for i in range(1, len(total) + 1)] if boxes is None else boxes
    write_target(kx, project, part)
    write(project, f"drops/{part}.md", f"drop of {part}\n")
    assert kx("drop", part, f"drops/{part}.md", *flag).code == 0
    assert kx("tick", part, *refs, "--source", "https://example.org/found", *flag).code == 0
    return kx("finish", part, *flag)


GOLDEN = REPO / "tests" / "golden"


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("KX_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs; KX_UPDATE_GOLDEN=1 rewrites it"
