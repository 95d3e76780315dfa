"""Issue 15's end-to-end run on the user's plan with the openai runner against a local scripted server.

The user's repository holds the files the plan's Read boxes and influential files name; the five PARTs the plan
stamps Completed without evidence are reopened and run again, the model calling tools as models do; the batches
are reviewed and the plan consolidated. Every Read tick carries the hash of a file kx read, every Search tick
the sources the backend printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_chat import FakeChat

REOPENED = ("PART-1", "PART-3", "PART-7", "PART-8", "PART-9")
BACKEND = "import sys\nprint('https://papers.example/' + sys.argv[1].replace(' ', '+'))\n"


def the_users_repository(kx, project: Path) -> None:
    """Every file and folder the plan names, as the user's repository has them, and a search backend."""
    for n in range(1, 10):
        brief = kx("--json", "brief", f"PART-{n}").json
        named = [f["path"] for f in brief["influential_files"] if f["path"]]
        named += [b["path"] for b in brief["boxes"] if b["kind"] == "read"]
        for path in named:
            file = project / path / "00-notes.md" if path.endswith("/") else project / path
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(f"# {path}\nWhat the repository already knows.\n")
    (project / "search.py").write_text(BACKEND)
    (project / ".kx" / "config.toml").write_text(
        f"[defaults]\nsearch_command = [{json.dumps(sys.executable)}, \"search.py\", \"{{query}}\"]\n")


@pytest.mark.slow
@pytest.mark.real_time
def test_the_users_plan_reopened_and_run_again_by_the_openai_runner(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    the_users_repository(kx, project)
    assert kx("reopen", *REOPENED, "--reason", "stamped Completed without evidence").code == 0
    tools = ("tools", [("read_file", {"path": "plan.md"}), ("search", {"query": "vision language survey"})])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")} | {"OPENAI_API_KEY": "sk-local"}
    with FakeChat({part: [tools, "answer"] for part in REOPENED}) as server:
        run = subprocess.run([sys.executable, "-m", "cli.main", "run", "--runner", "openai --retries 0",
                              "--model", "scripted", "--base-url", server.url, "--review", "auto"],
                             cwd=project, env=env, capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr.decode()
    assert sorted({r["part"] for r in server.requests}) == list(REOPENED)
    assert all(len([r for r in server.requests if r["part"] == p]) == 2 for p in REOPENED)  # a tool turn, an answer

    parts = {p["id"]: p for b in kx("--json", "status").json["batches"] for p in b["parts"]}
    assert {p["state"] for p in parts.values()} == {"succeeded"}
    for part in REOPENED:
        assert parts[part]["ticked"] == parts[part]["total"]
        ticks = [e["data"] for e in kx("--json", "audit", "history", part).json["events"]
                 if e["type"] == "CheckboxTicked"]
        for tick in ticks:
            evidence = tick["evidence"]
            if evidence["kind"] == "read":
                assert evidence.get("found", True) and not evidence.get("rehearsal") and len(evidence["sha256"]) == 64
            if evidence["kind"] == "search":
                assert evidence["sources"] == ["https://papers.example/" + evidence["query"].replace(" ", "+")]
        assert {t["evidence"]["kind"] for t in ticks} >= {"read", "search", "section"}
        assert kx("check", part).code == 0
    target = project / "vlm-mastery" / "06-clip-vision-encoder.md"
    succeeded = next(e for e in kx("--json", "audit", "history", "PART-7").json["events"]
                     if e["type"] == "RunnerSucceeded" and e["attempt"])
    assert succeeded["data"]["target"]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert kx("audit", "verify").code == 0

    # the PARTs the import approved keep their files in the user's repository; here they are not there
    refused = kx("consolidate")
    assert refused.code == 3
    assert "PART-2 (imported): target vlm-mastery/01-mid-fusion-architectures.md does not exist" in refused.err
    done = kx("consolidate", "--allow-missing")
    assert done.code == 0, done.err
    assert ("consolidated 5 knowledge files (4 PARTs with files changed, missing or failing the checks, allowed by"
            " --allow-missing)") in done.text
    assert (project / "completed" / "plan.md").is_file() and (project / "INDEX.md").is_file()
