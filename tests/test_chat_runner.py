"""The openai runner against a real HTTP server on 127.0.0.1 (scripted), and its client on MockTransport."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys

import httpx
import pytest

from runners.chat.client import ChatClient, ChatError
from runners.chat.evidence import evidenced_refs
from tests.fake_chat import FakeChat

SECRET = "sk-test-SECRET-4f9a1c"


# --- the client, on httpx.MockTransport ----------------------------------------------


def client(handler, **kwargs):
    waits = []
    chat = ChatClient("http://model.test/v1", "m", SECRET, transport=httpx.MockTransport(handler),
                      sleep=waits.append, **kwargs)
    return chat, waits


def ok(text="hello"):
    return httpx.Response(200, json={"model": "m", "usage": {"total_tokens": 3},
                                     "choices": [{"message": {"content": text}}]})


def test_429_with_retry_after_is_honoured():
    replies = iter([httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}}), ok()])
    chat, waits = client(lambda request: next(replies))
    result = chat.complete([{"role": "user", "content": "hi"}])
    assert (result.text, result.attempts, waits) == ("hello", 2, [7.0])


def test_5xx_and_connection_errors_back_off_exponentially_with_jitter():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(503, text="busy") if len(calls) < 4 else ok()

    chat, waits = client(handler, backoff=1.0)
    assert chat.complete([]).attempts == 4
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 3.0 and 4.0 <= waits[2] <= 5.0  # 2^n, up to 1 s of jitter
    assert calls[0].headers["authorization"] == f"Bearer {SECRET}"


def test_5xx_forever_gives_up_with_the_status_and_message():
    chat, waits = client(lambda r: httpx.Response(500, json={"error": {"message": "model crashed"}}), retries=2)
    with pytest.raises(ChatError) as raised:
        chat.complete([])
    assert str(raised.value) == "HTTP 500: model crashed; gave up after 3 attempts" and len(waits) == 2


def test_4xx_fails_at_once_without_the_key():
    chat, waits = client(lambda r: httpx.Response(401, json={"error": {"message": "invalid api key"}}))
    with pytest.raises(ChatError, match="HTTP 401: invalid api key") as raised:
        chat.complete([])
    assert waits == [] and SECRET not in str(raised.value)


def test_streaming_collects_deltas_and_usage():
    events = "".join(f"data: {json.dumps(c)}\n\n" for c in [
        {"choices": [{"delta": {"content": "Hel"}}]}, {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"total_tokens": 9}}]) + "data: [DONE]\n\n"
    seen = []
    chat, _ = client(lambda r: httpx.Response(200, text=events, headers={"Content-Type": "text/event-stream"}))
    result = chat.complete([], stream=True, on_text=seen.append)
    assert (result.text, result.usage, seen, result.finish_reason) == ("Hello", {"total_tokens": 9}, ["Hel", "lo"], "stop")


@pytest.mark.parametrize(("box", "answer", "verdict"), [
    ("Section 3: ViLBERT (co-attention)", "## Section 3: ViLBERT\ntext", True),
    ("Section 3: ViLBERT (co-attention)", "## Section 2: other\n", False),
    ("**CITE**: Files 1,5,8 explicitly", "see File 1, File 5 and File 8", True),
    ("**CITE**: Files 1,5,8 explicitly", "see File 1 and File 5", False),
    ("Read vision-language/00-tokens.md", "I read 00-tokens.md", None),  # never from the answer's words
    ('Search: "early fusion VLM 2024"', "- early fusion VLM 2024", None),
    ("Section 2: BLIP-2 Q-Former (learnable queries)", "## Section 2: VisualBERT\n", False),
    ("Create KNOWLEDGE-DROP-x.md", "anything", None),
])
def test_evidence(box, answer, verdict):
    brief = {"influential_files": [{"number": 1, "path": "a.md"}], "boxes": [{"ref": "1", "text": box, "ticked": False}]}
    found, missing = evidenced_refs(brief, answer)
    assert (True if found else False if missing else None) is verdict


# --- the runner, end to end against a local server --------------------------------------

# Section, CITE and drop boxes only; Read and Search boxes are below (WORK_PLAN)
PLAN = """# BATCH 1: Chat
**Strategy**: 5 runners, 5 at a time

**Files**:
1. `influences/a.md` - a
2. `influences/b.md` - b

""" + "\n".join(f"""## PART {n}: Topic {n}

- [ ] PART {n}: Create topics/{n}.md

**Influenced by**: Files 1,2

**Step 2: Create Knowledge File**
- [ ] Section 1: Overview of topic {n}
- [ ] Section 2: Details of topic {n}
- [ ] **CITE**: Files 1,2 explicitly

**Step 3: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-topic-{n}-2025-11-14-[TIME].md
""" for n in range(1, 6))


@pytest.mark.slow
def test_a_plan_runs_against_a_local_chat_server(kx, project):
    (project / "plan.md").write_text(PLAN)
    kx("plan", "import", "plan.md")
    script = {
        "PART-2": [(429, {"Retry-After": "1"}, {"error": {"message": "rate limited"}}), "answer"],
        "PART-3": [(500, {}, {"error": {"message": "model crashed"}})],
        "PART-4": [("answer-without", "Section 2")],
        "PART-5": [(404, {}, {"error": {"message": "model 'fake' not found"}})],
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    env["OPENAI_API_KEY"] = SECRET
    with FakeChat(script) as server:
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "--json", "run", "--runner", "openai --retries 2 --backoff 0.05 --stream",
             "--model", "fake-model", "--base-url", server.url, "--review", "auto", "--retries", "0"],
            cwd=project, env=env, capture_output=True, timeout=180)
    assert run.returncode == 1, run.stderr.decode()
    assert json.loads(run.stdout)["outcome"] == "needs_review"
    states = {p["id"]: p for p in kx("--json", "status").json["batches"][0]["parts"]}
    assert {k: v["state"] for k, v in states.items()} == {
        "PART-1": "succeeded", "PART-2": "succeeded", "PART-3": "failed", "PART-4": "failed", "PART-5": "failed"}
    assert states["PART-1"]["ticked"] == states["PART-1"]["total"] == 4
    assert states["PART-4"]["ticked"] == 3  # no evidence for Section 2: left unticked
    for n in (1, 2, 4):
        assert (project / "topics" / f"{n}.md").read_text().startswith("# Knowledge")
    drop = next(project.glob("KNOWLEDGE-DROP-topic-4-*.md")).read_text()
    assert "- model: fake-model" in drop and "- Section 2: Details of topic 4" in drop and "tokens: prompt_tokens 100" in drop
    assert [r["part"] for r in server.requests].count("PART-2") == 2
    assert [r["part"] for r in server.requests].count("PART-3") == 3
    assert all(r["auth"] == f"Bearer {SECRET}" and r["body"]["model"] == "fake-model" for r in server.requests)

    def reason(part):
        return next(e for e in kx("--json", "audit", "history", part).json["events"]
                    if e["type"] == "RunnerFailed")["data"]["reason"]

    assert reason("PART-3").startswith("chat server: HTTP 500: model crashed; gave up after 3 attempts; context 4096")
    assert reason("PART-5").startswith("chat server: HTTP 404: model 'fake' not found; context 4096 tokens")
    assert "1 of 4 boxes unticked" in reason("PART-4")
    for path in [project / ".kx" / "ledger.db", *(project / ".kx").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_openai_runner_needs_a_model(kx, project):
    (project / "plan.md").write_text(PLAN)
    kx("plan", "import", "plan.md")
    result = kx("run", "--runner", "openai", "--review", "auto")
    assert result.code == 2 and "--model" in result.err
    assert kx("run", "--runner", "rehearse", "--model", "x").code == 2


def echoing_the_key(headers) -> dict:
    """A careless server's 401: the Authorization header, and the bare token, in the error body."""
    auth = headers.get("Authorization") or ""
    return {"error": {"message": f"Incorrect API key provided: {auth.removeprefix('Bearer ')} (header: {auth})"}}


@pytest.mark.slow
@pytest.mark.real_time
def test_a_key_echoed_by_the_server_is_stored_and_printed_nowhere(kx, project):
    key = "llm-" + "7f3a9c2e" * 4  # no well-known shape, in a variable with no secret-looking name
    (project / "plan.md").write_text(PLAN)
    kx("plan", "import", "plan.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    env["LLM_KEY"] = key
    with FakeChat({f"PART-{n}": [(401, {}, echoing_the_key)] for n in range(1, 6)}) as server:
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", "--runner", "openai --api-key-env LLM_KEY --retries 0",
             "--model", "m", "--base-url", server.url, "--review", "auto", "--retries", "0"],
            cwd=project, env=env, capture_output=True, timeout=180)
    assert server.requests and all(r["auth"] == f"Bearer {key}" for r in server.requests)
    assert "Incorrect API key provided: [redacted]" in kx("--json", "audit", "history", "PART-1").text
    assert "the API key is read from $LLM_KEY" in kx("--json", "audit", "history", "PART-1").text  # where to look
    printed = [run.stdout, run.stderr]
    for args in (["status"], ["audit", "history", "PART-1"], ["events"], ["report"]):
        for as_json in ([], ["--json"]):
            result = kx(*as_json, *args)
            assert result.code == 0, result.err
            printed += [result.out, result.err.encode()]
    assert all(key.encode() not in text for text in printed)
    files = [path for path in project.rglob("*") if path.is_file()]
    assert any(path.name == "runner.log" for path in files) and any(path.suffix == ".html" for path in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), path


@pytest.mark.slow
@pytest.mark.real_time
def test_a_password_in_the_base_url_is_stored_and_printed_nowhere(kx, project):
    password = "pw-" + "5e1d0c7a" * 3
    (project / "plan.md").write_text(PLAN)
    kx("plan", "import", "plan.md")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    with FakeChat({f"PART-{n}": ["answer"] for n in range(1, 6)}) as server:
        base_url = server.url.replace("http://", f"http://reader:{password}@")
        run = subprocess.run(
            [sys.executable, "-m", "cli.main", "run", "--runner", "openai --retries 0", "--model", "m",
             "--base-url", base_url, "--review", "auto", "--retries", "0", "--until-batch", "1"],
            cwd=project, env=env, capture_output=True, timeout=180)
    assert server.requests, run.stderr
    printed = [run.stdout, run.stderr]
    for args in (["status"], ["audit", "history", "PART-1"], ["events"]):
        for as_json in ([], ["--json"]):
            printed.append(kx(*as_json, *args).out)
    assert all(password.encode() not in text for text in printed)
    files = [path for path in project.rglob("*") if path.is_file()]
    logs = [path for path in files if path.name == "runner.log"]
    assert logs and all(b"reader:[redacted]@127.0.0.1" in path.read_bytes() for path in logs)
    for path in files:
        assert password.encode() not in path.read_bytes(), path
    resumed = kx("resume", "--review", "auto")
    assert resumed.code == 2 and "--base-url" in resumed.err


# --- real work for Read and Search boxes: kx reads and searches, the model may call tools ----------

WORK_PLAN = """# BATCH 1: Work
**Strategy**: 2 runners, 2 at a time

**Files**:
1. `influences/a.md` - a

""" + "\n".join(f"""## PART {n}: Topic {n}

- [ ] PART {n}: Create topics/{n}.md

**Influenced by**: Files 1

**Step 1: Read**
- [ ] Read {read}
- [ ] Search: "topic {n} survey"

**Step 2: Create Knowledge File**
- [ ] Section 1: Overview of topic {n}
- [ ] **CITE**: Files 1 explicitly

**Step 3: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-topic-{n}-2025-11-14-[TIME].md
""" for n, read in ((1, "notes/one.md"), (2, "notes/missing.md")))

SEARCH_BACKEND = """import sys
query = sys.argv[1]
if "broken" in query:
    sys.exit("backend down")
print(f"https://example.org/{query.replace(' ', '-')}")
print()
print(f"https://papers.example/{len(query)}")
"""


def work_project(project, search=True):
    (project / "plan.md").write_text(WORK_PLAN)
    (project / "influences").mkdir()
    (project / "influences" / "a.md").write_text("# Influence A\nFusion happens early.\n")
    (project / "notes").mkdir()
    (project / "notes" / "one.md").write_text("# One\nThe note PART-1 reads.\n")
    (project / "notes" / "extra.md").write_text("# Extra\nA file only a tool call reads.\n")
    (project / "backend.py").write_text(SEARCH_BACKEND)
    if search:
        (project / ".kx").mkdir(exist_ok=True)
        (project / ".kx" / "config.toml").write_text(
            f"[defaults]\nsearch_command = [{json.dumps(sys.executable)}, \"backend.py\", \"{{query}}\"]\n")


def run_openai(project, server, *spec):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KX_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--json", "run", "--runner", " ".join(["openai", "--retries", "0", *spec]),
         "--model", "fake-model", "--base-url", server.url, "--review", "auto", "--retries", "0"],
        cwd=project, env=env, capture_output=True, timeout=180)


def ticks_of(kx, part):
    """Each ticked box's evidence, by the box's text."""
    return {e["data"]["text"]: e["data"].get("evidence") for e in kx("--json", "audit", "history", part).json["events"]
            if e["type"] == "CheckboxTicked"}


TOOL_TURN = ("tools", [("read_file", {"path": "notes/extra.md"}), ("search", {"query": "an extra query"}),
                       ("read_file", {"path": "../outside.md"}), ("read_file", {"path": ".kx/ledger.db"})])


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True])
def test_kx_reads_and_searches_for_the_runner_and_runs_the_models_tool_calls(kx, project, stream):
    work_project(project)
    kx("plan", "import", "plan.md")
    with FakeChat({"PART-1": [TOOL_TURN, "answer"]}) as server:
        run = run_openai(project, server, *(["--stream"] if stream else []))
    assert run.returncode == 1, run.stderr.decode()  # PART-2's Read path does not exist
    states = {p["id"]: p for p in kx("--json", "status").json["batches"][0]["parts"]}
    assert (states["PART-1"]["state"], states["PART-2"]["state"]) == ("succeeded", "failed")

    first = [r["body"] for r in server.requests if r["part"] == "PART-1"]
    assert len(first) == 2
    assert [t["function"]["name"] for t in first[0]["tools"]] == ["read_file", "search"]
    sent = first[0]["messages"][1]["content"]
    assert "Fusion happens early." in sent and "The note PART-1 reads." in sent  # the files, read by kx
    assert "https://example.org/topic-1-survey" in sent  # the box's search, run by kx
    results = [m["content"] for m in first[1]["messages"] if m["role"] == "tool"]
    assert "A file only a tool call reads." in results[0]
    assert results[1] == "1. https://example.org/an-extra-query\n2. https://papers.example/14"
    assert "outside the plan's root" in results[2] and "kx's folder" in results[3]
    assert first[1]["messages"][2]["tool_calls"][0]["function"]["name"] == "read_file"

    ticks = ticks_of(kx, "PART-1")
    read, search = ticks["Read notes/one.md"], ticks['Search: "topic 1 survey"']
    assert read["kind"] == "read" and read["sha256"] == hashlib.sha256((project / "notes" / "one.md").read_bytes()).hexdigest()
    assert search["sources"] == ["https://example.org/topic-1-survey", "https://papers.example/14"]

    # PART-2: the answer says "I read notes/missing.md", and that ticks nothing
    assert "Read notes/missing.md" not in ticks_of(kx, "PART-2") and states["PART-2"]["ticked"] == states["PART-2"]["total"] - 1
    drop = next(project.glob("KNOWLEDGE-DROP-topic-2-*.md")).read_text()
    assert "- Read notes/missing.md (not found in the plan's root)" in drop
    assert "- influences/a.md: 36 of 36 bytes shown" in drop and "- topic 2 survey: 2 sources" in drop


@pytest.mark.slow
def test_without_a_search_backend_search_boxes_stay_unticked_and_the_outcome_says_so(kx, project):
    work_project(project, search=False)
    kx("plan", "import", "plan.md")
    with FakeChat({}) as server:
        run = run_openai(project, server)
    assert run.returncode == 1
    body = server.requests[0]["body"]
    assert [t["function"]["name"] for t in body["tools"]] == ["read_file"]
    assert "No search backend is configured" in body["messages"][0]["content"]
    part = kx("--json", "status").json["batches"][0]["parts"][0]
    assert part["state"] == "failed" and 'Search: "topic 1 survey"' not in ticks_of(kx, "PART-1")
    log = next((project / ".kx").rglob("PART-1*/runner.log")).read_text()
    assert log.rstrip().splitlines()[-1].endswith(
        "1 Search boxes left unticked: no search backend (set search_command in .kx/config.toml or --search-command)")
    assert "(no search backend configured)" in next(project.glob("KNOWLEDGE-DROP-topic-1-*.md")).read_text()


@pytest.mark.slow
def test_a_search_command_in_the_runner_spec_wins_and_a_failing_backend_gives_no_sources(kx, project):
    work_project(project, search=False)
    (project / "plan.md").write_text(WORK_PLAN.replace("topic 1 survey", "broken query"))
    kx("plan", "import", "plan.md")
    with FakeChat({}) as server:
        run_openai(project, server, "--search-command", shlex.quote(f"{sys.executable} backend.py {{query}}"))
    assert [t["function"]["name"] for t in server.requests[0]["body"]["tools"]] == ["read_file", "search"]
    assert 'Search: "broken query"' not in ticks_of(kx, "PART-1")
    assert ticks_of(kx, "PART-2")['Search: "topic 2 survey"']["sources"]
    drop = next(project.glob("KNOWLEDGE-DROP-topic-1-*.md")).read_text()
    assert "(no sources found)" in drop and "backend exited with status 1: backend down" in drop
    log = next((project / ".kx").rglob("PART-1*/runner.log")).read_text()
    assert log.rstrip().splitlines()[-1].endswith("'broken query': the backend exited with status 1: backend down")


def test_a_search_command_without_the_query_is_refused(kx, project):
    work_project(project, search=False)
    (project / ".kx").mkdir(exist_ok=True)
    (project / ".kx" / "config.toml").write_text('[defaults]\nsearch_command = ["my-search"]\n')
    result = kx("plan", "import", "plan.md")
    assert result.code == 2 and "search_command" in result.err and "{query}" in result.err


# --- the workbench and the conversation, in process ------------------------------------------


def bench_in(tmp_path, **kwargs):
    from machine.plan.paths import PathGuard
    from runners.chat.tools import Workbench

    return Workbench(PathGuard.around(tmp_path, ledger=tmp_path / ".kx" / "ledger.db"), **kwargs)


def test_reads_are_capped_binary_is_not_shown_and_folders_are_read_file_by_file(tmp_path):
    from runners.chat import tools as chat_tools

    (tmp_path / "big.md").write_text("x" * (chat_tools.FILE_CAP + 10))
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2")
    (tmp_path / "folder" / "deep").mkdir(parents=True)
    (tmp_path / "folder" / "a.md").write_text("alpha\n")
    (tmp_path / "folder" / "deep" / "b.md").write_text("beta\n")
    (tmp_path / ".kx").mkdir()
    (tmp_path / ".kx" / "ledger.db").write_text("secret rows")
    (tmp_path / "link.md").symlink_to("/etc/hostname")
    bench = bench_in(tmp_path)
    assert bench.read("big.md").endswith(f"[... shown {chat_tools.FILE_CAP} of {chat_tools.FILE_CAP + 10} bytes;"
                                         f' read_file with "offset": {chat_tools.FILE_CAP} returns the rest]')
    assert bench.call("read_file", json.dumps({"path": "big.md", "offset": chat_tools.FILE_CAP})) == "x" * 10
    assert "past the end" in bench.call("read_file", '{"path": "big.md", "offset": 999999}')
    assert "whole number" in bench.call("read_file", '{"path": "big.md", "offset": -1}')
    assert bench.read("blob.bin") == "[a binary file of 3 bytes]"
    folder = bench.read("folder/")
    assert folder.startswith("folder/: a folder of 2 files") and "=== folder/deep/b.md ===\nbeta" in folder
    assert "kx's folder" in bench.read(".kx/ledger.db") and "outside the plan's root" in bench.read("link.md")
    assert "does not exist" in bench.read("nope.md")
    assert {r.path: (r.size, r.shown, r.files) for r in bench.reads.values()} == {
        "big.md": (chat_tools.FILE_CAP + 10, chat_tools.FILE_CAP + 10, 1),  # the rest read at an offset
        "blob.bin": (3, 0, 1), "folder/": (11, 11, 2)}
    assert len(bench.problems) == 3


@pytest.mark.slow
def test_searches_are_run_once_per_query_and_a_bad_tool_call_is_an_answer_not_a_crash(tmp_path):
    (tmp_path / "count.py").write_text("import sys, pathlib\np = pathlib.Path('runs'); p.write_text(p.read_text() + 'x'"
                                       " if p.exists() else 'x')\nprint('https://example.org/' + sys.argv[1].replace(' ', '+'))\n")
    bench = bench_in(tmp_path, search_command=[sys.executable, "count.py", "{query}"])
    assert bench.call("search", '{"query": "Early  Fusion"}') == "1. https://example.org/Early++Fusion"
    assert bench.call("search", '{"query": "\\"early fusion\\""}') == "1. https://example.org/Early++Fusion"
    assert (tmp_path / "runs").read_text() == "x" and bench.sources("EARLY FUSION") == ["https://example.org/Early++Fusion"]
    assert bench.call("read_file", "{not json").startswith("error: the arguments are not JSON")
    assert bench.call("delete", "{}") == "error: no tool 'delete' with those arguments; tools: read_file, search"
    assert "no tool 'search'" in bench_in(tmp_path).call("search", '{"query": "q"}')


def tool_turn(*calls):
    return httpx.Response(200, json={"model": "m", "choices": [{"message": {"role": "assistant", "content": None,
        "tool_calls": [{"id": f"c{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                       for n, (name, args) in enumerate(calls)]}}]})


def asking(chat, tmp_path, window=4096):
    from runners.chat.budget import Budget
    from runners.chat.conversation import Asking

    return Asking(chat, bench_in(tmp_path), Budget(window, "test", 512), say=lambda line: None)


def test_a_model_that_keeps_calling_tools_is_asked_once_more_without_them(tmp_path):
    from runners.chat.conversation import Conversation, converse

    (tmp_path / "a.md").write_text("alpha")
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return tool_turn(("read_file", {"path": "a.md"})) if "tools" in bodies[-1] else ok("the answer")

    chat, _ = client(handler)
    talk = converse(asking(chat, tmp_path), [{"role": "user", "content": "brief"}], Conversation(), use_tools=True,
                    max_rounds=3)
    assert (talk.text, talk.tool_calls, len(bodies)) == ("the answer", 3, 4)
    assert [m["role"] for m in bodies[-1]["messages"]] == ["user", "assistant", "tool"] * 1 + ["assistant", "tool"] * 2
    assert bodies[-1]["messages"][2] == {"role": "tool", "tool_call_id": "c0", "content": "alpha"}
    assert bodies[-1]["messages"][1]["content"] == ""  # a turn that only calls tools: never a null content
    assert all(b["tool_choice"] == "auto" for b in bodies[:3]) and all(b["max_tokens"] == 512 for b in bodies)


def test_a_server_that_refuses_tools_is_asked_again_without_them(tmp_path):
    from argparse import Namespace

    from runners.chat.conversation import Conversation
    from runners.chat.runner import ask

    def handler(request):
        if "tools" in json.loads(request.content):
            return httpx.Response(400, json={"error": {"message": "model llama2 does not support tools"}})
        return ok("plain answer")

    chat, _ = client(handler)
    talk = ask(asking(chat, tmp_path), [{"role": "user", "content": "b"}], Conversation(), Namespace(no_tools=False))
    assert talk.text == "plain answer"
    with pytest.raises(ChatError, match="does not support tools"):
        chat2, _ = client(lambda r: httpx.Response(400, json={"error": {"message": "does not support tools"}}))
        ask(asking(chat2, tmp_path), [], Conversation(), Namespace(no_tools=False))


@pytest.mark.slow
def test_the_search_backend_does_not_get_the_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_KEY", SECRET)
    (tmp_path / "env.py").write_text("import os\nprint('https://example.org/key=' + os.environ.get('LLM_KEY', 'none'))\n")
    bench = bench_in(tmp_path, search_command=[sys.executable, "env.py", "{query}"], hidden_env=("LLM_KEY",))
    assert bench.search("q") == "1. https://example.org/key=none"


@pytest.mark.slow
def test_only_sources_among_the_backends_lines_count_and_the_rest_is_reported(tmp_path):
    (tmp_path / "notes.md").write_text("a note\n")
    (tmp_path / "backend.py").write_text(
        "import sys\nout = sys.stdout.buffer\nout.write(b'no results found\\nhttps://example.org/a\\n10.1000/xyz\\n'"
        " b'arXiv:2103.00020\\nnotes.md\\n../outside.md\\nbin\\x00ary\\n\\xff\\xfe\\n')\n")
    bench = bench_in(tmp_path, search_command=[sys.executable, "backend.py", "{query}"])
    bench.search("q")
    assert bench.sources("q") == ["https://example.org/a", "10.1000/xyz", "arXiv:2103.00020", "notes.md"]
    assert bench.problems == ["search 'q': 4 of its lines are not sources (first: 'no results found'); a source is an"
                              " http(s) URL with a host, a DOI (10.1234/...), an arXiv id (arXiv:2103.00020 or"
                              " 2103.00020) or a file inside the plan's root"]


@pytest.mark.slow
def test_a_backend_that_prints_no_source_or_fails_leaves_the_search_without_sources(tmp_path):
    (tmp_path / "none.py").write_text("print('nothing relevant')\n")
    (tmp_path / "down.py").write_text("import sys\nprint('https://example.org/a')\nsys.exit('index unavailable')\n")
    for script, problem in (("none.py", "1 of its lines are not sources"),
                            ("down.py", "the backend exited with status 1: index unavailable")):
        bench = bench_in(tmp_path, search_command=[sys.executable, script, "{query}"])
        assert bench.search("q") == "no sources found for 'q'" and bench.sources("q") == []
        assert problem in bench.problems[0]


def test_a_refusal_that_may_be_about_the_key_says_where_the_key_is_read(monkeypatch):
    from runners.chat.runner import key_hint

    monkeypatch.delenv("LLM_KEY", raising=False)
    assert key_hint(ChatError("HTTP 403: forbidden", 403), "LLM_KEY") == "; the API key is read from $LLM_KEY, which is not set"
    assert key_hint(ChatError("HTTP 502: bad gateway", 502), "LLM_KEY").startswith("; no API key was sent ($LLM_KEY")
    monkeypatch.setenv("LLM_KEY", "set")
    assert key_hint(ChatError("HTTP 401: no", 401), "LLM_KEY") == "; the API key is read from $LLM_KEY"
    assert key_hint(ChatError("HTTP 502: bad gateway", 502), "LLM_KEY") == ""


def test_tool_calls_are_read_whether_arguments_come_as_text_or_as_an_object():
    calls = [{"id": "a", "function": {"name": "read_file", "arguments": '{"path": "x.md"}'}},
             {"function": {"name": "search", "arguments": {"query": "q"}}},
             {"id": "c", "function": {"name": "read_file"}}]
    chat, _ = client(lambda r: httpx.Response(200, json={"choices": [{"message": {"content": None, "tool_calls": calls}}]}))
    result = chat.complete([], tools=[{"type": "function", "function": {"name": "read_file"}}])
    assert [(c.id, c.name, json.loads(c.arguments)) for c in result.tool_calls] == [
        ("a", "read_file", {"path": "x.md"}), ("call_1", "search", {"query": "q"}), ("c", "read_file", {})]
    assert result.text == "" and result.message()["tool_calls"][1]["function"]["arguments"] == '{"query": "q"}'


def test_a_folder_with_symlink_loops_and_an_unreadable_file_is_read_around_them(tmp_path, monkeypatch):
    from runners.chat import tools as chat_tools

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.md").write_text("alpha\n")
    (tmp_path / "folder" / "secret.md").write_text("hidden\n")
    (tmp_path / "folder" / "loop").symlink_to("loop")
    bench = bench_in(tmp_path)
    real = chat_tools.Workbench._contents

    def unreadable(self, file):
        if file.name == "secret.md":
            raise PermissionError(13, "Permission denied", str(file))
        return real(self, file)

    monkeypatch.setattr(chat_tools.Workbench, "_contents", unreadable)
    shown = bench.read("folder/")
    assert shown.startswith("folder/: a folder of 2 files") and "=== folder/a.md ===\nalpha" in shown
    assert "hidden" not in shown
    assert bench.problems == ["folder/: skipped loop (a symlink loop); secret.md (cannot be read: Permission denied)"]
    assert [(r.path, r.files) for r in bench.reads.values()] == [("folder/", 1)]


def test_a_box_kx_refuses_does_not_keep_the_runners_other_boxes_unticked(kx, project, monkeypatch):
    from runners.chat import runner

    (project / "plan.md").write_text(WORK_PLAN)
    (project / "notes").mkdir()
    (project / "notes" / "one.md").write_text("read\n")
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    monkeypatch.setenv("KX_ATTEMPT", "PART-1#1")
    calls = []

    def in_process(*args):
        calls.append(args)
        done = kx(*args)
        return subprocess.CompletedProcess(args, done.code, done.out.decode(), done.err)

    monkeypatch.setattr(runner, "kx", in_process)
    (project / "notes" / "one.md").unlink()  # read by the runner, gone before it ticks: kx refuses that box
    boxes = kx("--json", "brief", "PART-1").json["boxes"]
    read, other = (next(b["ref"] for b in boxes if b["text"] == text) for text in ("Read notes/one.md", "Section 1: Overview of topic 1"))
    runner.tick("PART-1", [read, other])
    ticked = {b["ref"]: b["ticked"] for b in kx("--json", "brief", "PART-1").json["boxes"]}
    assert (ticked[read], ticked[other]) == (False, True)
    assert [c[2:] for c in calls] == [(read, other), (read,), (other,)]
