"""The openai runner against a real HTTP server on 127.0.0.1 (scripted), and its client on MockTransport."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from runners.chat_client import ChatClient, ChatError
from runners.evidence import has_evidence
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
    assert [0.5 <= w <= 1.5 for w in waits[:1]] == [True] and 1.0 <= waits[1] <= 3.0 and 2.0 <= waits[2] <= 6.0
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
        {"choices": [{"delta": {"content": "Hel"}}]}, {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [], "usage": {"total_tokens": 9}}]) + "data: [DONE]\n\n"
    seen = []
    chat, _ = client(lambda r: httpx.Response(200, text=events, headers={"Content-Type": "text/event-stream"}))
    result = chat.complete([], stream=True, on_text=seen.append)
    assert (result.text, result.usage, seen) == ("Hello", {"total_tokens": 9}, ["Hel", "lo"])


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
    assert has_evidence(box, answer, {1: "a.md"}) is verdict


# --- the runner, end to end against a local server --------------------------------------

# the openai runner reads and searches nothing (yet): a Read or Search box would stay unticked, so this plan has none
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

    assert reason("PART-3") == "chat server: HTTP 500: model crashed; gave up after 3 attempts"
    assert reason("PART-5") == "chat server: HTTP 404: model 'fake' not found"
    assert "1 of 4 boxes unticked" in reason("PART-4")
    for path in [project / ".kx" / "ledger.db", *(project / ".kx").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


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
