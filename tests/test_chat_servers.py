"""The openai runner against what servers for local models really do: a context budget, honest completions,
tool-call dialects, a key echoed back. Each behaviour is mimicked by the scripted server (``tests.fake_chat``),
and the runner runs in this process, as kx run's wrapper runs it: start, brief, runner, outcome."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from runners.chat.budget import Budget, Item, NoRoom, compact_brief, fit, prompt_tokens, tokens
from runners.chat.client import ChatClient, ChatError, ContextOverflow
from runners.chat.dialects import context_limit, textual_tool_calls
from tests.fake_chat import FakeChat, Quirks, answer_for

KEY = "llm-" + "5e1d7b3a" * 4  # no well-known shape: only its variable says it is a secret

PLAN = """# BATCH 1: Local models
**Strategy**: 2 runners, 2 at a time

**Files**:
1. `influences/a.md` - a

""" + "\n".join(f"""## PART {n}: Topic {n}

- [ ] PART {n}: Create topics/{n}.md

**Influenced by**: Files 1

**Step 1: Read**
- [ ] Read notes/{n}.md

**Step 2: Create Knowledge File**
- [ ] Section 1: Overview of topic {n}
- [ ] Section 2: Details of topic {n}
- [ ] **CITE**: Files 1 explicitly

**Step 3: Create KNOWLEDGE DROP**
- [ ] Create KNOWLEDGE-DROP-topic-{n}-2025-11-14-[TIME].md
""" for n in (1, 2))


@pytest.fixture
def plan(kx, project):
    (project / "plan.md").write_text(PLAN)
    for path, text in (("influences/a.md", "# Influence A\nFusion happens early.\n"),
                       ("notes/1.md", "# One\nThe note PART-1 reads.\n"), ("notes/2.md", "# Two\n"),
                       ("notes/extra.md", "# Extra\nA file only a tool call reads.\n")):
        (project / path).parent.mkdir(parents=True, exist_ok=True)
        (project / path).write_text(text)
    assert kx("plan", "import", "plan.md").code == 0
    return project


class Ran:
    """One attempt's outcome: exit code, the runner's log, its PART's state and events."""

    def __init__(self, kx, project: Path, part: str, code: int, log: str):
        self.kx, self.project, self.part, self.code, self.log = kx, project, part, code, log

    @property
    def state(self) -> str:
        return next(p for b in self.kx("--json", "status").json["batches"] for p in b["parts"]
                    if p["id"] == self.part)["state"]

    def events(self, kind: str) -> list[dict]:
        return [e["data"] for e in self.kx("--json", "audit", "history", self.part).json["events"] if e["type"] == kind]

    @property
    def failure(self) -> dict:
        return self.events("RunnerFailed")[-1]

    @property
    def target(self) -> Path:
        return self.project / "topics" / f"{self.part.split('-')[1]}.md"

    def drop(self) -> str:
        return self.project.joinpath(self.events("DropRecorded")[-1]["path"]).read_text()


@pytest.fixture
def attempt(kx, plan, monkeypatch, capsys):
    """Run the openai runner on a new attempt of a PART, in this process, its kx calls in this process too."""
    from machine.acts.workspace import Workspace
    from runners import protocol
    from runners.attempt_folder import attempt_dir
    from runners.chat import runner
    from runners.local.wrapper import make_folders, record_outcome, write_brief

    def in_process(*args: str) -> subprocess.CompletedProcess:
        result = kx(*args)
        return subprocess.CompletedProcess(args, result.code, result.out.decode(), result.err)

    monkeypatch.setattr(protocol, "kx", in_process)
    monkeypatch.setattr(runner, "kx", in_process)
    monkeypatch.setenv("KX_REDACT_ENV", "")  # protect_env adds the key's variable: gone after the test
    monkeypatch.setenv("LLM_KEY", KEY)

    def run(server: FakeChat, *spec: str, part: str = "PART-1") -> Ran:
        started = kx("--json", "start", part)
        assert started.code == 0, started.err
        workspace = Workspace.open()
        folder = attempt_dir(workspace.ledger.path, workspace.plan_id(), started.json["attempt"])
        folder.mkdir(parents=True, exist_ok=True)
        view = write_brief(workspace, folder, part, started.json["attempt"])
        make_folders(workspace, view)
        for name, value in (("KX_LEDGER", str(workspace.ledger.path)), ("KX_PLAN", view["plan"]), ("KX_PART", part),
                            ("KX_ATTEMPT", view["attempt"]), ("KX_BRIEF", str(folder / "brief.md")),
                            ("KX_TARGET", view["target_path"]), ("KX_DROP", view["drop_path"])):
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = runner.main(["--model", "fake-model", "--base-url", server.url, "--api-key-env", "LLM_KEY",
                            "--retries", "1", "--backoff", "0.01", *spec])
        out, err = capsys.readouterr()
        (folder / "runner.log").write_text(out + err)
        monkeypatch.delenv("KX_ATTEMPT")
        record_outcome(workspace, part, view["attempt"], code, folder / "runner.log", view["drop_path"], stderr=err)
        return Ran(kx, plan, part, code, out + err)

    return run


# --- honest completions ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_an_answer_cut_at_the_length_limit_is_continued_once(attempt, stream):
    with FakeChat({"PART-1": [("length",), ("rest",)]}) as server:
        ran = attempt(server, *stream)
    assert ran.state == "succeeded", ran.log
    brief = server.bodies("PART-1")[0]["messages"][1]["content"]
    assert ran.target.read_text() == answer_for(brief)  # the two halves, joined
    follow = server.bodies("PART-1")[1]["messages"]
    assert [m["role"] for m in follow[-2:]] == ["assistant", "user"] and "Continue it exactly" in follow[-1]["content"]
    assert "- finish reasons: length, stop" in ran.drop()


def test_an_answer_cut_twice_fails_saying_so_and_writes_no_knowledge_file(attempt):
    with FakeChat({"PART-1": [("length",)]}) as server:
        ran = attempt(server)
    assert ran.state == "failed" and len(server.requests) == 2
    assert ran.failure["reason"].startswith("the answer was cut at the length limit twice (max_tokens 1024 each time)")
    assert not ran.target.exists() and "## Failed" in ran.drop()


@pytest.mark.parametrize(("reply", "cause"), [
    (("early-done",), "the stream ended before the answer was finished ([DONE] came without a finish_reason"),
    (("empty",), "the server's answer was empty (finish_reason: stop)"),
])
def test_an_early_or_empty_stream_is_an_error_with_its_cause_never_an_empty_file(attempt, reply, cause):
    with FakeChat({"PART-1": [reply]}) as server:
        ran = attempt(server, "--stream", "--retries", "0")
    assert ran.code == 1 and ran.state == "failed" and len(server.requests) == 1
    assert ran.failure["reason"].startswith(f"chat server: {cause}")
    assert "runner exited 0" not in ran.failure["reason"] and not ran.target.exists()


def test_a_stream_cut_short_is_asked_again_for_the_whole_answer(attempt):
    with FakeChat({"PART-1": [("early-done",)]}) as server:  # as llama.cpp's server does when others wait
        ran = attempt(server, "--stream")
    assert ran.state == "succeeded" and "retrying in" in ran.log and ran.target.stat().st_size > 0
    assert [body.get("stream", False) for body in server.bodies("PART-1")] == [True, False]


# --- tool-call dialects --------------------------------------------------------------------

EXTRA = ("tools", [("read_file", {"path": "notes/extra.md"})])


def test_tools_go_with_tool_choice_and_a_turn_that_only_calls_tools_has_empty_content(attempt):
    quirks = Quirks(tools_need_choice=True, null_content_500=True)
    with FakeChat({"PART-1": [EXTRA, "answer"]}, quirks) as server:
        ran = attempt(server)
    assert ran.state == "succeeded", ran.log
    first, second = server.bodies("PART-1")
    assert first["tool_choice"] == "auto" and second["messages"][2]["content"] == ""
    assert "A file only a tool call reads." in second["messages"][3]["content"]
    assert "- notes/extra.md: 39 of 39 bytes shown" in ran.drop()


def test_a_5xx_after_a_tool_round_is_asked_once_plainly_without_tools(attempt):
    with FakeChat({"PART-1": [EXTRA, "answer"]}, Quirks(tool_history_500=True)) as server:
        ran = attempt(server)
    assert ran.state == "succeeded", ran.log
    bodies = server.bodies("PART-1")
    assert len(bodies) == 3  # the tool round, its follow-up refused once (not retried), the plain question
    plain = bodies[2]
    assert "tools" not in plain and [m["role"] for m in plain["messages"]] == ["system", "user", "user"]
    assert "A file only a tool call reads." in plain["messages"][2]["content"]
    assert "asked again plainly, without tools" in ran.drop()


def test_a_5xx_after_a_tool_round_and_again_plainly_fails_with_both_causes(attempt):
    quirks = Quirks(tool_history_500=True)
    with FakeChat({"PART-1": [EXTRA, (500, {}, {"error": {"message": "still broken"}})]}, quirks) as server:
        ran = attempt(server)
    reason = ran.failure["reason"]
    assert reason.startswith("chat server: HTTP 500: Internal Server Error: unexpected role 'tool' (after a tool round);"
                             " asked again plainly: HTTP 500: still broken; gave up after 2 attempts")


@pytest.mark.parametrize("form", ["block", "json"])
def test_tool_calls_a_server_leaves_in_the_text_are_run(attempt, form):
    script = {"PART-1": [("text-tools", [("read_file", {"path": "notes/extra.md"})], form), "answer"]}
    with FakeChat(script) as server:
        ran = attempt(server)
    assert ran.state == "succeeded", ran.log
    second = server.bodies("PART-1")[1]["messages"]
    assert second[2]["role"] == "assistant" and "notes/extra.md" in second[2]["content"]
    assert second[3]["role"] == "user" and second[3]["content"].startswith("<tool_response>\n# Extra")


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_runaway_tool_arguments_are_not_run(attempt, stream):
    with FakeChat({"PART-1": [("tools", [("read_file", {"path": "x" * 20_000})]), "answer"]}) as server:
        ran = attempt(server, *stream)
    assert ran.state == "succeeded", ran.log
    result = server.bodies("PART-1")[1]["messages"][3]
    assert result == {"role": "tool", "tool_call_id": "call_0",
                      "content": "error: the call's arguments passed 16384 characters; it was not run"}


# --- the context budget ----------------------------------------------------------------------


@pytest.mark.parametrize("wording", ["llama.cpp", "vllm", "openai"])
def test_a_context_refusal_is_asked_again_within_the_window_it_names(attempt, plan, wording):
    (plan / "notes" / "1.md").write_text("# One\n" + "A line of notes about topic one.\n" * 300)
    with FakeChat({}, Quirks(context=3000, wording=wording)) as server:
        ran = attempt(server)
    assert ran.state == "succeeded", ran.log
    first, second = server.bodies("PART-1")
    assert (first["max_tokens"], second["max_tokens"]) == (1024, 750)
    drop = ran.drop()
    assert "- window: 3000 tokens (3000 as the server's refusal named it)" in drop
    assert "- cut: Read notes/1.md:" in drop and "asked again within 3000 tokens, 750 reserved" in drop
    assert "read_file with" in second["messages"][1]["content"]  # the cut file says how to read the rest


def test_a_prompt_that_cannot_fit_fails_once_and_is_not_retried(attempt, kx):
    with FakeChat({}, Quirks(context=400)) as server:
        ran = attempt(server)
    assert ran.state == "failed" and ran.failure["retry"] is False
    assert ran.failure["reason"].startswith("the prompt cannot fit the model's context window")
    assert "window: 400 tokens" in ran.drop()
    from machine.acts.workspace import Workspace
    from runners.supervisor.loop import RunOptions, Supervisor

    supervisor = Supervisor(Workspace.open(), RunOptions(command=["true"], retries=3, backoff=0), progress=None)
    assert supervisor._settle(Workspace.open().state()) is None  # nothing to retry, nothing waiting
    assert ran.events("PartRetried") == []


def test_the_runner_logs_one_line_for_its_brief_and_the_budget_in_its_last_line(attempt):
    with FakeChat({}) as server:
        ran = attempt(server)
    assert ran.state == "succeeded", ran.log
    assert '"schema"' not in ran.log and "brief: PART-1 (PART-1#1), 5 boxes, 0 ticked already" in ran.log
    last = ran.log.rstrip().splitlines()[-1]
    assert last.startswith("PART-1#1: 5 boxes with evidence, 0 without; context 4096 tokens (the default), 1024"
                           " reserved, ") and last.endswith("0 cut, 0 left out")


def test_a_retry_s_drop_counts_the_boxes_that_hold_evidence_now(attempt, kx):
    with FakeChat({"PART-1": [("answer-without", "Section 2"), "answer"]}) as server:
        first = attempt(server)
        assert first.state == "failed" and "- 3 of 5 hold evidence now; the drop box is ticked" in first.drop()
        assert kx("retry", "PART-1").code == 0
        second = attempt(server)
    assert second.state == "succeeded", second.log
    assert "- 5 of 5 hold evidence now" in second.drop()  # the first attempt's 4 ticks stand
    assert second.log.rstrip().splitlines()[-1].startswith("PART-1#2: 5 boxes with evidence, 0 without")


# --- where the window comes from ---------------------------------------------------------------


def test_the_window_comes_from_the_config_through_the_brief(attempt, plan):
    (plan / ".kx" / "config.toml").write_text("[defaults]\ncontext_tokens = 6000\n")
    with FakeChat({}, Quirks(models={"data": [{"id": "fake-model", "max_model_len": 2048}]})) as server:
        ran = attempt(server)
        assert "- window: 6000 tokens (context_tokens in .kx/config.toml)" in ran.drop()
        again = attempt(server, "--context", "5000", "--max-tokens", "700", part="PART-2")
    assert "- window: 5000 tokens (--context)" in again.drop() and server.bodies("PART-2")[0]["max_tokens"] == 700


@pytest.mark.parametrize(("models", "show", "window", "source"), [
    ({"data": [{"id": "m", "max_model_len": 32768}]}, None, 32768, "GET /models max_model_len"),
    ({"data": [{"id": "other"}, {"id": "m", "meta": {"n_ctx_train": 8192}}]}, None, 8192, "GET /models meta.n_ctx_train"),
    ({"data": [{"id": "m:latest"}]}, {"parameters": "temperature 0.7\nnum_ctx 16384"}, 16384, "POST /api/show num_ctx"),
    (None, {"model_info": {"llama.context_length": 131072}}, 4096,
     "POST /api/show context_length (at most Ollama's default)"),
    (None, None, None, None),
])
def test_the_server_tells_its_window(models, show, window, source):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models" and models:
            return httpx.Response(200, json=models)
        if request.url.path == "/api/show" and show:
            assert json.loads(request.content) == {"model": "m"}
            return httpx.Response(200, json=show)
        return httpx.Response(404)

    client = ChatClient("http://local.test/v1", "m", transport=httpx.MockTransport(handler))
    assert client.context_window() == ((window, source) if window else None)


def test_context_tokens_is_checked(kx, plan):
    for bad in ("10", '"4096"', "true"):
        (plan / ".kx" / "config.toml").write_text(f"[defaults]\ncontext_tokens = {bad}\n")
        result = kx("brief", "PART-1")
        assert result.code == 2 and "context_tokens" in result.err, result.err
    (plan / ".kx" / "config.toml").write_text("[plans.plan]\ncontext_tokens = 8192\n")
    assert kx("--json", "brief", "PART-1").json["context_tokens"] == 8192


# --- fitting the prompt ------------------------------------------------------------------------


def test_the_bundled_plan_fits_a_small_window_with_every_box_whole(kx, project):
    from tests.conftest import FRESH

    (project / "plan.md").write_bytes(FRESH.read_bytes())
    assert kx("plan", "import", "plan.md").code == 0
    brief = kx("--json", "brief", "PART-1").json
    full = kx("brief", "PART-1").text
    items = [Item(f"File {f['number']}: {f['path']}", f"# {f['path']}\n" + "knowledge line\n" * 5000, f["path"])
             for f in brief["influential_files"]]  # one of 74 KB, as the issue's run met
    items.append(Item("Read vision-language/00-token-concatenation-sequence-augmentation.md", "short file\n", "x.md"))
    budget = Budget(4096, "test", 1024)
    fitted = fit("system prompt", full, compact_brief(brief), items, budget, tools=None)
    assert fitted.brief_form == "compact" and fitted.sent <= 4096 - 1024
    user = fitted.messages[1]["content"]
    assert all(f"- [ ] {box['ref']}: {box['text']}" in user for box in brief["boxes"])  # every box, whole
    assert "short file" in user and len(fitted.cut) == 3 and fitted.left_out == []
    assert '[... cut for the context window: ' in user and '"offset": ' in user


def test_material_that_cannot_get_a_useful_share_is_left_out_in_plan_order():
    items = [Item(f"File {n}: f{n}.md", "word " * 2000, f"f{n}.md") for n in range(1, 17)]
    fitted = fit("s", "# Brief: PART-1\n- [ ] 1.1: Section 1: A", "compact", items, Budget(1200, "test", 300), None)
    kept = len(items) - len(fitted.left_out)
    assert 0 < kept < len(items) and fitted.left_out == [item.title for item in items[kept:]]  # the last ones
    assert all(f"## {item.title}" in fitted.messages[1]["content"] for item in items[:kept])
    assert fitted.sent <= 1200 - 300 and "Left out for lack of room" in fitted.messages[1]["content"]
    with pytest.raises(NoRoom):
        fit("s" * 3000, "brief", "brief", items, Budget(1200, "test", 300), None)


@pytest.mark.parametrize("window", [600, 1000, 2048, 4096, 8192])
def test_a_fitted_prompt_never_passes_its_room(window):
    items = [Item(f"File {n}: f{n}.md", "é ünïcode — line\n" * (n * 97), f"f{n}.md") for n in range(1, 6)]
    fitted = fit("system " * 20, "full brief " * 200, "compact brief", items, Budget(window, "t", window // 4), None)
    assert prompt_tokens(fitted.messages) <= window - window // 4


MEASURED = [  # texts and their tokens in SmolLM2-135M-Instruct's tokenizer (llama-cpp-python's /extras/tokenize)
    ("The vision encoder maps image patches into a sequence of embeddings that the language model attends to.", 18),
    ("## Section 2: VisualBERT (region features + BERT tokens)\n\n- [ ] 2.1: Section 1: Early fusion principles"
     " (merge before processing)\n- **CITE**: Files 1,5,8 explicitly + arr-coc concepts\n", 59),
    ('def fit(system: str, items: list[Item]) -> Fit:\n    room = budget.room([{"role": "system", "content": system}])'
     '\n    return Fit([], "full", 0)\n', 47),
    ('{"ref": "2.3", "text": "Section 3: ViLBERT (co-attentional transformer streams)", "ticked": false, "kind":'
     ' "section"}', 40),
    ("4096 2048 131072 3.14159 2025-11-14 16:05 0.0001 65536", 54),
    ("視覚言語モデルは画像とテキストを統合する。", 41),
    ("- ‚úÖ **Create KNOWLEDGE DROPS**: Every runner creates KNOWLEDGE-DROP-*.md ‚úì üöÄ", 36),
    ("vlm-mastery/00-early-fusion-architectures.md distributed-training/01-deepspeed-pipeline-parallelism.md", 34),
]


@pytest.mark.parametrize(("text", "real"), MEASURED)
def test_tokens_are_counted_high_against_a_small_vocabulary(text, real):
    assert real <= tokens(text) <= 2 * real


def test_the_bundled_plan_is_counted_high():
    from tests.conftest import FRESH

    assert 5629 <= tokens(FRESH.read_text(encoding="utf-8")) <= 1.5 * 5629  # SmolLM2 counts 5,629


# --- the dialects, as pure functions -----------------------------------------------------------


@pytest.mark.parametrize(("message", "details", "window", "prompt"), [
    ("request (5000 tokens) exceeds the available context size (4096 tokens), try increasing it", None, 4096, 5000),
    ("This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages,"
     " 1000 in the completion). Please reduce the length of the messages or completion.", None, 4096, 4000),
    ("'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's maximum context length is 4096 tokens"
     " and your request has 3500 input tokens (1000 > 4096 - 3500).", None, 4096, 3500),
    ("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", None,
     8192, 9000),
    ("Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with context"
     " length of only 4096 tokens, which is not enough.", None, 4096, 5000),
    ("the request exceeds the available context size", {"n_ctx": 2048, "n_prompt_tokens": 2100}, 2048, 2100),
])
def test_context_limits_in_each_server_s_words(message, details, window, prompt):
    limit = context_limit(message, details)
    assert (limit.window, limit.prompt) == (window, prompt)


def test_other_errors_are_not_context_limits():
    assert context_limit("model llama2 does not support tools") is None
    assert context_limit("Internal Server Error") is None


def test_textual_tool_calls():
    names = {"read_file", "search"}
    block = 'I will read.\n<tool_call>\n{"name": "read_file", "arguments": {"path": "a.md"}}\n</tool_call>'
    assert textual_tool_calls(block, names)[0][0].arguments == '{"path": "a.md"}'
    assert textual_tool_calls(block, names)[1] == "I will read."
    bare = '{"name": "search", "parameters": {"query": "q"}}'
    assert [(c.name, c.arguments) for c in textual_tool_calls(bare, names)[0]] == [("search", '{"query": "q"}')]
    for text in ('{"name": "delete", "arguments": {}}', "## Section 1: a JSON-free answer", '{"name": "search"'):
        assert textual_tool_calls(text, names) == ([], text)


# --- the client's checks, on httpx.MockTransport -------------------------------------------------


def sse(*chunks: dict | str) -> httpx.Response:
    body = "".join(f"data: {c if isinstance(c, str) else json.dumps(c)}\n\n" for c in chunks)
    return httpx.Response(200, text=body, headers={"Content-Type": "text/event-stream"})


def test_a_context_refusal_inside_a_stream_is_a_context_overflow():
    client = ChatClient("http://local.test/v1", "m", transport=httpx.MockTransport(lambda r: sse(
        {"error": {"message": "the request exceeds the available context size", "n_ctx": 4096}})))
    with pytest.raises(ContextOverflow) as raised:
        client.complete([], stream=True)
    assert raised.value.window == 4096


def test_a_server_that_does_not_stream_is_read_whole_and_max_completion_tokens_is_used_when_asked():
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        if "max_tokens" in bodies[-1]:
            return httpx.Response(400, json={"error": {"message": "Unsupported parameter: 'max_tokens' is not"
                                                        " supported with this model. Use 'max_completion_tokens'"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]})

    client = ChatClient("http://local.test/v1", "m", transport=httpx.MockTransport(handler))
    assert client.complete([], stream=True, max_tokens=99).text == "whole"
    assert bodies[-1]["max_completion_tokens"] == 99 and "max_tokens" not in bodies[-1]
    assert client.complete([], max_tokens=5).text == "whole" and len(bodies) == 3  # remembered


def test_a_5xx_is_not_retried_when_asked_not_to():
    calls = []
    client = ChatClient("http://local.test/v1", "m", transport=httpx.MockTransport(
        lambda r: calls.append(r) or httpx.Response(500, json={"error": {"message": "boom"}})), sleep=lambda s: None)
    with pytest.raises(ChatError, match="^HTTP 500: boom$"):
        client.complete([], retry_server_errors=False)
    assert len(calls) == 1


# --- the key, echoed back by a careless server -----------------------------------------------------


def test_a_key_a_server_echoes_into_its_answer_is_written_nowhere(attempt, plan):
    with FakeChat({"PART-1": [("echo-auth",)]}) as server:
        ran = attempt(server)
    assert server.requests[0]["auth"] == f"Bearer {KEY}"
    assert ran.state == "succeeded", ran.log
    assert "your key is [redacted]" in ran.target.read_text()
    assert KEY not in ran.log
    for path in plan.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
