"""The runner-facing commands have a callable core (``runners.commands``): each returns the JSON object
``kx --json COMMAND`` prints or raises the error it exits with, and the relays (``kx mcp``, a Ray node's calls)
run it without touching this process's stdout and stderr."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import SMALL_PLAN, SMALL_PLAN_SOURCES

STEPS = [  # (command, its arguments as the core takes them, its command line)
    ("status", {}, []),
    ("next_parts", {}, ["next"]),
    ("start", {"part": "PART-1"}, ["start", "PART-1"]),
    ("brief", {"part": "PART-1", "attempt": "PART-1#1"}, ["brief", "PART-1", "--attempt", "PART-1#1"]),
    ("tick", {"part": "PART-1", "refs": ["1"], "attempt": "PART-1#1"}, ["tick", "PART-1", "1", "--attempt",
                                                                        "PART-1#1"]),
    ("tick", {"part": "PART-1", "refs": ["2.1"], "attempt": "PART-1#1"}, ["tick", "PART-1", "2.1", "--attempt",
                                                                          "PART-1#1"]),
    ("untick", {"part": "PART-1", "refs": ["1"]}, ["untick", "PART-1", "1"]),
    ("drop", {"part": "PART-1", "path": "{folder}/drop.md", "attempt": "PART-1#1"},
     ["drop", "PART-1", "{folder}/drop.md", "--attempt", "PART-1#1"]),
    ("check", {"part": "PART-1"}, ["check", "PART-1"]),
    ("check", {}, ["check"]),
    ("check", {"attempt": "PART-1#1"}, ["check", "--attempt", "PART-1#1"]),
    ("finish", {"part": "PART-1", "attempt": "PART-1#1"}, ["finish", "PART-1", "--attempt", "PART-1#1"]),
    ("fail", {"part": "PART-1", "reason": "no model", "retry": False, "attempt": "PART-1#1"},
     ["fail", "PART-1", "--reason", "no model", "--no-retry", "--attempt", "PART-1#1"]),
    ("finish", {"part": "PART-9"}, ["finish", "PART-9"]),
    ("start", {"part": "PART-3"}, ["start", "PART-3"]),
]


def twin_projects(project):
    """Two copies of the small plan, each imported in a folder of its own: one for the CLI, one for the core."""
    from machine.acts.workspace import Workspace

    folders = {}
    for name in ("by-cli", "by-core"):
        folder = project / name
        for source in SMALL_PLAN_SOURCES:
            (folder / source).parent.mkdir(parents=True, exist_ok=True)
            (folder / source).write_text(f"# {source}\n", encoding="utf-8")
        (folder / "plan.md").write_text(SMALL_PLAN, encoding="utf-8")
        (folder / "drop.md").write_text("what was learned\n", encoding="utf-8")
        folders[name] = folder
    return folders, lambda name: Workspace.open(str(folders[name] / ".kx" / "ledger.db"))


def test_each_runner_command_returns_what_kx_json_prints_or_raises_what_it_exits_with(kx, project):
    from ledger.errors import KxError
    from runners import commands

    folders, workspace = twin_projects(project)
    for name, folder in folders.items():
        assert kx("--ledger", f"{folder}/.kx/ledger.db", "plan", "import", f"{folder}/plan.md").code == 0
    for command, arguments, argv in STEPS:
        printed = kx("--json", "--ledger", f"{folders['by-cli']}/.kx/ledger.db",
                     *[arg.format(folder=folders["by-cli"]) for arg in argv or ["status"]])
        given = {key: value.format(folder=folders["by-core"]) if isinstance(value, str) else value
                 for key, value in arguments.items()}
        try:
            returned = {"schema": 1, **getattr(commands, command)(workspace("by-core"), **given)}
        except KxError as error:
            returned = {"schema": 1, "error": {"code": error.code, "message": " ".join(error.message.split()),
                                               **({"details": error.details} if error.details else {})}}
        shown = json.dumps(returned).replace(str(folders["by-core"]), "FOLDER")
        assert json.loads(shown) == json.loads(printed.text.replace(str(folders["by-cli"]), "FOLDER")), argv
        assert printed.code == (returned["error"]["code"] if "error" in returned else 0 if returned.get("ok", True)
                                else 1), argv


@pytest.fixture
def started(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0


def test_a_tool_call_runs_the_core_and_leaves_this_process_s_output_alone(kx, started, capfd):
    from cli.main import _commands
    from machine.acts.workspace import Workspace
    from runners.mcp.server import Session

    streams = sys.stdout, sys.stderr
    session = Session(Workspace.open(), _commands(), attempt="PART-1#1")
    ticked = session.call("tick", {"part": "PART-1", "refs": ["1"]})
    refused = session.call("tick", {"part": "PART-1", "refs": ["2.1"]})
    assert (sys.stdout, sys.stderr) == streams and capfd.readouterr() == ("", "")
    assert not ticked.is_error and ticked.structured_content["boxes"] == [1]
    assert json.loads(ticked.content[0].text) == ticked.structured_content
    assert refused.is_error and refused.content[0].text.startswith("exit 3: ")
    assert refused.structured_content["error"]["code"] == 3


def test_a_relayed_call_keeps_what_the_command_writes_for_its_caller(kx, started, project, capfd):
    from cli.main import run_for_runner
    from machine.acts.workspace import Workspace

    seen = []

    class Call:  # as runners.ray.executor.NodeCall
        workspace = Workspace.open()
        env = {"KX_ATTEMPT": "PART-1#1"}

        def __init__(self, *argv):
            self.argv = list(argv)

        def admit(self, command):
            seen.append((sys.stdout, sys.stderr))

        def here(self, path):
            return str(project / path)

    streams = sys.stdout, sys.stderr
    assert run_for_runner(Call("tick", "PART-1", "1"))[:2] == (0, "PART-1: ticked 0.1 'Read influences/00-alpha.md'\n")
    code, out, err = run_for_runner(Call("--json", "tick", "PART-1", "2.1"))
    assert code == 3 and json.loads(out)["error"]["code"] == 3 and err.startswith("kx: error: ")
    assert run_for_runner(Call("--version")) == (0, "kx, version 0.1.0\n", "")
    assert seen == [streams, streams] and capfd.readouterr() == ("", "")  # this process's own, untouched
