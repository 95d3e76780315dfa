"""``kx mcp`` driven by the MCP SDK's own client over stdio, as agent CLIs drive it (CONTRACT section 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import event_count

pytestmark = [pytest.mark.slow, pytest.mark.real_time]

TOOLS = {"status", "next", "brief", "check", "start", "tick", "untick", "drop", "finish", "fail"}


def kx_mcp(project: Path, *args: str, module: str = "cli.main", env: dict | None = None) -> StdioServerParameters:
    """``python -m cli.main mcp ARGS`` in the project, with this checkout's code."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return StdioServerParameters(command=sys.executable, args=["-m", module, *(["mcp"] if module == "cli.main" else []),
                                                              *args], cwd=str(project), env=environment)


def session(params: StdioServerParameters) -> Client:
    return Client(params, mode="legacy", read_timeout_seconds=60)  # the initialize handshake agent CLIs speak


async def call(client: Client, tool: str, **arguments) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def refused(client: Client, tool: str, **arguments) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.content[0].text
    return result.content[0].text


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def write_files(project: Path) -> None:
    for name in ("influences/00-alpha.md", "influences/01-beta.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"# {name}\n", encoding="utf-8")


def test_a_part_is_done_through_the_tools_alone(kx, small_plan, project):
    assert kx("plan", "import", small_plan).code == 0
    write_files(project)

    async def work():
        async with session(kx_mcp(project)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == TOOLS
            tick_schema = tools["tick"].input_schema
            assert tick_schema["required"] == ["part", "refs"]
            assert tick_schema["properties"]["refs"]["type"] == "array"
            assert tick_schema["properties"]["refs"]["items"] == {"type": "string"}
            assert set(tick_schema["properties"]) == {"part", "refs", "sources", "attempt"}
            assert tools["fail"].input_schema["required"] == ["part", "reason"]
            assert tools["status"].input_schema["properties"] == {}
            assert "Tick boxes" in tools["tick"].description  # the command's own help
            assert {name for name, tool in tools.items() if tool.annotations.read_only_hint} == {
                "status", "next", "brief", "check"}
            assert all(tool.output_schema["required"][0] == "schema" for tool in tools.values())
            assert tools["start"].output_schema["required"] == ["schema", "part", "attempt"]

            attempt = (await call(client, "start", part="PART-1"))["attempt"]
            assert attempt == "PART-1#1"
            brief = await call(client, "brief", part="PART-1", attempt=attempt)
            assert brief["attempt"] == attempt and brief["state"] == "running"
            target = Path(brief["target_path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(f"## {b['text']}\n\n" for b in brief["boxes"] if b["text"].startswith("Section")))
            assert (await refused(client, "finish", part="PART-1", attempt=attempt)).startswith("exit 3: ")

            drop_box = [b["ref"] for b in brief["boxes"] if "KNOWLEDGE-DROP" in b["text"]]
            for box in brief["boxes"]:
                if box["ref"] not in drop_box:
                    ticked = await call(client, "tick", part="PART-1", refs=[box["ref"]], attempt=attempt)
                    assert ticked["part"] == "PART-1"
            Path(brief["drop_path"]).write_text("# what was learned\n", encoding="utf-8")
            await call(client, "drop", part="PART-1", path=brief["drop_path"], attempt=attempt)
            await call(client, "tick", part="PART-1", refs=drop_box, attempt=attempt)
            await call(client, "finish", part="PART-1", attempt=attempt)

            status = await call(client, "status")
            part = status["batches"][0]["parts"][0]
            assert (part["id"], part["state"], part["ticked"]) == ("PART-1", "succeeded", part["total"])
            assert (await call(client, "next"))["parts"] == ["PART-2"]

            templates = (await client.list_resource_templates()).resource_templates
            assert [t.uri_template for t in templates] == ["kx://brief/{part}"]
            text = (await client.read_resource("kx://brief/PART-2")).contents[0].text
            assert text.startswith("# Brief: PART-2 — Beta Topic")
            prompt = (await client.get_prompt("worker", {"part": "PART-2"})).messages[0].content.text
            assert "Create KNOWLEDGE DROPS for every PART" in prompt and "# Brief: PART-2" in prompt
        return attempt

    attempt = anyio.run(work)
    history = kx("--json", "audit", "history", "PART-1").json["events"]
    assert [e["type"] for e in history][-1] == "RunnerSucceeded"
    assert {e["attempt"] for e in history if e["type"] != "PlanImported"} == {attempt}  # every act was the attempt's
    assert kx("audit", "verify").code == 0


def test_bad_arguments_are_tool_errors_that_append_nothing(kx, small_plan, project):
    assert kx("plan", "import", small_plan).code == 0
    (project / "outside.md").write_text("x\n", encoding="utf-8")
    assert kx("start", "PART-1").code == 0
    before = event_count(project)

    async def work():
        async with session(kx_mcp(project, "--attempt", "PART-1#1")) as client:
            errors = [
                await refused(client, "tick", part="PART-9", refs=["1"]),
                await refused(client, "tick", part="PART-1", refs=["99"]),
                await refused(client, "tick", part="PART-1"),
                await refused(client, "tick", part="PART-1", refs=[]),
                await refused(client, "tick", part="PART-1", refs="1"),
                await refused(client, "tick", part="PART-1", refs=["1"], box=3),
                await refused(client, "drop", part="PART-1", path="/etc/hostname"),
                await refused(client, "drop", part="PART-1", path="no-such-drop.md"),
                await refused(client, "fail", part="PART-1"),
                await refused(client, "fail", part="PART-1", reason=5),
                await refused(client, "finish", part="PART-1", attempt="PART-1#7"),
                await refused(client, "start", part="PART-3"),
                await refused(client, "review", batch=1),
            ]
            check = await client.call_tool("check", {"part": "PART-1"})
            return errors, check

    errors, check = anyio.run(work)
    codes = [text.split(":")[0] for text in errors]
    assert codes == ["exit 4", "exit 4", "exit 2", "exit 2", "exit 2", "exit 2", "exit 2", "exit 2", "exit 2",
                     "exit 2", "exit 3", "exit 3", "exit 2"], errors
    assert all("\n" not in text and "Traceback" not in text for text in errors)
    assert "'refs'" in errors[2] and "'box'" in errors[5] and "no tool 'review'" in errors[12]
    assert event_count(project) == before
    if "check" in kx("--help").text.split("Commands:")[1]:
        assert check.structured_content["part"] == "PART-1"  # kx check's result (ok or not), not an error
    else:
        assert check.is_error and check.content[0].text.startswith("exit 2: 'check' is not available in this kx")


LIMITED_PLAN = "# Knowledge Expansion: Limited\n\n**Strategy**: 6 runners, 2 at a time (1 batch)\n\n" + "".join(
    f"## PART {n}: Topic {n}\n\n- [ ] Section 1: one\n- [ ] Section 2: two\n- [ ] Section 3: three\n\n"
    for n in range(1, 7))
SESSIONS, ROUNDS = 6, 2


def test_six_sessions_at_once_start_exactly_the_limit_and_lose_no_tick(kx, project):
    (project / "plan.md").write_text(LIMITED_PLAN, encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    texts: list[str] = []
    started: list[str] = []

    async def one(part: str, connected: list[str], all_connected: anyio.Event) -> None:
        async with session(kx_mcp(project)) as client:
            connected.append(part)
            if len(connected) == SESSIONS:
                all_connected.set()
            await all_connected.wait()  # then all six act at once
            await act(client, part)

    async def act(client: Client, part: str) -> None:
        result = await client.call_tool("start", {"part": part})
        texts.append(result.content[0].text)
        attempt = None if result.is_error else result.structured_content["attempt"]
        if attempt:
            started.append(attempt)
        for _ in range(ROUNDS):  # a person's ticks on the PARTs that did not start, the attempt's on the others
            for ref in ("1", "2", "3"):
                for tool in ("tick", "untick"):
                    result = await client.call_tool(tool, {"part": part, "refs": [ref], "attempt": attempt})
                    texts.append(result.content[0].text)
                    assert not result.is_error, result.content[0].text
            texts.append((await client.call_tool("status", {})).content[0].text)
        await call(client, "tick", part=part, refs=["1", "2", "3"], attempt=attempt)

    async def work():
        connected: list[str] = []
        all_connected = anyio.Event()
        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for n in range(1, SESSIONS + 1):
                    group.start_soon(one, f"PART-{n}", connected, all_connected)

    anyio.run(work)
    assert len(started) == 2
    refusals = [t for t in texts if t.startswith("exit")]
    assert len(refusals) == SESSIONS - 2 and all(t.startswith("exit 3: limit") for t in refusals), refusals
    assert not [t for t in texts if "locked" in t]
    status = kx("--json", "status").json
    assert sorted(status["running"]) == sorted(a.split("#")[0] for a in started)
    assert [p["ticked"] for p in status["batches"][0]["parts"]] == [3] * SESSIONS
    history = [kx("--json", "audit", "history", f"PART-{n}").json["events"] for n in range(1, SESSIONS + 1)]
    ticks = [e["type"] for events in history for e in events if e["type"].startswith("Checkbox")]
    assert ticks.count("CheckboxTicked") == SESSIONS * (3 * ROUNDS + 3)
    assert ticks.count("CheckboxUnticked") == SESSIONS * 3 * ROUNDS
    assert kx("audit", "verify").code == 0


def test_a_session_killed_inside_its_transaction_leaves_the_ledger_intact(kx, small_plan, project):
    assert kx("plan", "import", small_plan).code == 0
    assert kx("start", "PART-1").code == 0
    before = event_count(project)
    marker = project / "stalled.pid"

    async def work():
        params = kx_mcp(project, str(marker), "mcp", "--attempt", "PART-1#1", module="tests.mcp_stall")
        with anyio.fail_after(60):
            async with session(params) as client:
                async with anyio.create_task_group() as group:
                    group.start_soon(client.call_tool, "tick", {"part": "PART-1", "refs": ["1", "2"]})
                    while not marker.exists():
                        await anyio.sleep(0.02)
                    os.kill(int(marker.read_text()), signal.SIGKILL)  # inside BEGIN IMMEDIATE, before COMMIT

    with pytest.raises(BaseExceptionGroup) as died:
        anyio.run(work)
    assert [str(e) for e in leaves(died.value)] == ["Connection closed"]  # the client saw its server die mid-call
    assert event_count(project) == before
    assert kx("audit", "verify").code == 0
    again = kx("--json", "tick", "PART-1", "1", "2", "--attempt", "PART-1#1")
    assert again.code == 0 and again.json["ticked"] == 2
    assert event_count(project) == before + 2


ONE_PART_PLAN = """\
# Knowledge Expansion: One Part

**Strategy**: 1 runner, 1 at a time (1 batch)

## PART 1: Alpha

- [ ] PART 1: Create topics/alpha.md

**Step 1: Create Knowledge File**
- [ ] Section 1: Alpha overview
- [ ] Section 2: Alpha details

**Step 2: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-alpha-2025-11-14-[TIME].md
"""


def test_kx_run_gives_each_runner_a_ready_mcp_config(kx, project):
    (project / "plan.md").write_text(ONE_PART_PLAN, encoding="utf-8")
    assert kx("plan", "import", "plan.md").code == 0
    run = subprocess.run([sys.executable, "-m", "cli.main", "run", "--runner", f"{sys.executable} -m tests.mcp_agent",
                          "--review", "auto", "--retries", "0"], cwd=project, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=120)
    logs = "".join(p.read_text() for p in (project / ".kx" / "attempts").rglob("*.log"))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    config = json.loads(next((project / ".kx" / "attempts").rglob("mcp.json")).read_text())
    server = config["mcpServers"]["kx"]
    assert Path(server["command"]).is_absolute()
    assert server["args"][-7:] == ["mcp", "--ledger", str((project / ".kx" / "ledger.db").resolve()), "--plan",
                                   "plan", "--attempt", "PART-1#1"]
    assert server["env"]["KX_ATTEMPT"] == "PART-1#1"
    history = kx("--json", "audit", "history", "PART-1").json["events"]
    types = [e["type"] for e in history if e["type"] not in ("PlanImported", "BatchReviewed")]
    assert (types[0], types[1], types[-1]) == ("RunnerStarted", "DropRecorded", "RunnerSucceeded")
    assert set(types[2:-1]) == {"CheckboxTicked"}
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["state"] == "succeeded" and part["ticked"] == part["total"]
    assert {e["attempt"] for e in history if e["type"] in types} == {"PART-1#1"}
    assert kx("audit", "verify").code == 0


def test_a_held_session_reads_the_config_as_it_is_now(kx, small_plan, project):
    assert kx("plan", "import", small_plan).code == 0
    config = project / ".kx" / "config.toml"

    async def work():
        async with session(kx_mcp(project)) as client:
            before = (await call(client, "brief", part="PART-1"))["evidence_policy"]
            config.write_text('[defaults]\nevidence = "ticked"\n', encoding="utf-8")
            edited = (await call(client, "brief", part="PART-1"))["evidence_policy"]
            config.unlink()
            removed = (await call(client, "brief", part="PART-1"))["evidence_policy"]
            return before, edited, removed

    assert anyio.run(work) == ("verified", "ticked", "verified")
