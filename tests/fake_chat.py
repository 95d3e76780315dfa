"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

It can mimic what real servers for local models do (``Quirks``): use tools only when ``tool_choice`` is sent,
fail (HTTP 500) on an assistant turn whose ``content`` is null or on any history with tool turns, refuse a prompt
longer than its context window in llama.cpp's, vLLM's or OpenAI's words, and tell its window on ``GET /models`` or
Ollama's ``POST /api/show``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer_for(brief: str) -> str:
    """A knowledge file that gives evidence for every box the brief lists."""
    lines = ["# Knowledge", ""]
    for text in re.findall(r"^- \[[ x]\] [\d.]+: (.*)$", brief, re.MULTILINE):
        section = re.match(r"Section (\d+): (.*)", text)
        if section:
            lines += [f"## Section {section[1]}: {section[2]}", "", "Content.", ""]
        elif text.startswith("Read "):
            lines.append(f"I read {text[5:]}.")
        elif text.startswith("Search: "):
            lines.append(f"- search: {text[8:]}")
        elif "CITE" in text:
            lines.append("Sources: " + ", ".join(f"File {n}" for n in re.findall(r"\d+", text.split(":")[1])))
    return "\n".join(lines) + "\n"


CONTEXT_WORDINGS = {
    "llama.cpp": lambda n_ctx, prompt: (400, {"error": {
        "code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": prompt, "n_ctx": n_ctx,
        "message": f"request ({prompt} tokens) exceeds the available context size ({n_ctx} tokens),"
                   " try increasing it"}}),
    "vllm": lambda n_ctx, prompt: (400, {"object": "error", "type": "BadRequestError", "code": 400, "error": {
        "message": f"This model's maximum context length is {n_ctx} tokens. However, you requested {prompt + 100}"
                   f" tokens ({prompt} in the messages, 100 in the completion). Please reduce the length of the"
                   " messages or completion."}}),
    "openai": lambda n_ctx, prompt: (400, {"error": {
        "code": "context_length_exceeded", "type": "invalid_request_error",
        "message": f"This model's maximum context length is {n_ctx} tokens. However, your messages resulted in"
                   f" {prompt} tokens. Please reduce the length of the messages."}}),
}


@dataclass
class Quirks:
    tools_need_choice: bool = False  # tools are used only when tool_choice is sent (llama-cpp-python's server)
    null_content_500: bool = False  # HTTP 500 on an assistant turn with "content": null
    tool_history_500: bool = False  # HTTP 500 on any request whose history holds tool turns
    context: int | None = None  # the window: a longer prompt (counted as bytes / 2) is refused...
    wording: str = "llama.cpp"  # ...in these words (CONTEXT_WORDINGS)
    models: dict | None = None  # what GET /models answers (else 404)
    ollama_show: dict | None = None  # what POST /api/show answers (else 404)


def prompt_size(body: dict) -> int:
    """The server's count of a request's prompt: more tokens than kx's own estimate, as a small vocabulary's is."""
    return len(json.dumps(body["messages"], ensure_ascii=False).encode()) // 2


class FakeChat:
    """``script[PART]`` is a list of replies used in turn (the last one repeats): ``"answer"``,
    ``("answer-without", "Section 2")``, ``("tools", [(name, arguments), ...])`` (a turn that calls tools, as
    models do), ``("text-tools", [(name, arguments), ...], "block"|"json")`` (the calls left in the answer's
    text), ``("length",)`` and ``("rest",)`` (the answer's first half, cut at the length limit, and the rest),
    ``("early-done",)`` (a stream ended by ``[DONE]`` before any finish_reason; a whole answer when not streamed), ``("empty",)``, ``("echo-auth",)``
    (the answer with the request's Authorization header in it), or ``(status, headers, body)`` (``body`` may be a
    function of the request's headers)."""

    def __init__(self, script: dict[str, list], quirks: Quirks | None = None):
        self.script, self.quirks = script, quirks or Quirks()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.send_json(self, *((200, fake.quirks.models) if self.path.endswith("/models")
                                       and fake.quirks.models is not None else (404, {"error": "not found"})))

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/api/show":
                    shown = fake.quirks.ollama_show
                    fake.send_json(self, *((200, shown) if shown is not None else (404, {"error": "not found"})))
                    return
                fake.chat(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def bodies(self, part: str) -> list[dict]:
        return [r["body"] for r in self.requests if r["part"] == part]

    def chat(self, handler, body: dict) -> None:
        brief = next(m["content"] for m in body["messages"] if m["role"] == "user")
        part = re.search(r"PART-\d+", brief).group()
        with self.lock:
            self.requests.append({"part": part, "auth": handler.headers.get("Authorization"), "body": body})
            refusal = self.refusal(body)
            if refusal is not None:
                self.send_json(handler, *refusal)
                return
            replies = self.script.get(part, ["answer"])
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        if isinstance(reply, tuple) and isinstance(reply[0], int):
            status, headers, payload = reply
            self.send_json(handler, status, payload(handler.headers) if callable(payload) else payload, headers)
            return
        kind = reply[0] if isinstance(reply, tuple) else reply
        uses_tools = body.get("tools") and (body.get("tool_choice") or not self.quirks.tools_need_choice)
        text = answer_for(brief)
        if kind == "tools" and uses_tools:
            self.send_answer(handler, body, None, calls=reply[1])
        elif kind == "text-tools" and uses_tools:
            calls = [{"name": name, "arguments": args} for name, args in reply[1]]
            if reply[2] == "block":
                said = "".join(f"<tool_call>\n{json.dumps(call)}\n</tool_call>\n" for call in calls)
            else:
                said = "```json\n" + json.dumps(calls[0]) + "\n```"
            self.send_answer(handler, body, said)
        elif kind == "answer-without":
            self.send_answer(handler, body, re.sub(rf"## {re.escape(reply[1])}:.*\n", "", text))
        elif kind in ("length", "rest"):
            half = len(text) // 2
            self.send_answer(handler, body, text[:half] if kind == "length" else text[half:],
                             finish="length" if kind == "length" else "stop")
        elif kind == "early-done" and body.get("stream"):
            self.send_answer(handler, body, text[:40], finish=None)
        elif kind == "empty":
            self.send_answer(handler, body, "")
        elif kind == "echo-auth":
            auth = handler.headers.get("Authorization") or ""
            self.send_answer(handler, body, f"{text}\nYou sent {auth}; your key is {auth.removeprefix('Bearer ')}.\n")
        else:
            self.send_answer(handler, body, text)

    def refusal(self, body: dict) -> tuple[int, dict] | None:
        """The server's error for this request, if its quirks refuse it."""
        messages, quirks = body["messages"], self.quirks
        if quirks.null_content_500 and any(m["role"] == "assistant" and m.get("content") is None for m in messages):
            return 500, {"error": {"message": "Internal Server Error: 'NoneType' object is not iterable"}}
        if quirks.tool_history_500 and any(m["role"] == "tool" for m in messages):
            return 500, {"error": {"message": "Internal Server Error: unexpected role 'tool'"}}
        if quirks.context and prompt_size(body) + body.get("max_tokens", 0) > quirks.context:
            return CONTEXT_WORDINGS[quirks.wording](quirks.context, prompt_size(body))
        return None

    @staticmethod
    def send_json(handler, status: int, payload, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def send_answer(self, handler, body, text, calls=(), finish: str | None = "stop"):
        words = len((text or "").split())
        usage = {"prompt_tokens": 100, "completion_tokens": words, "total_tokens": 100 + words}
        tool_calls = [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                      for n, (name, args) in enumerate(calls)]
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        if body.get("stream"):
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            deltas = [*_text_deltas(text or ""), *_tool_deltas(tool_calls)]
            for n, delta in enumerate(deltas):
                last = n == len(deltas) - 1
                chunk = {"model": body["model"], "choices": [{"delta": delta, "finish_reason": finish if last else None}]}
                handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if finish is not None:
                handler.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            handler.wfile.write(b"data: [DONE]\n\n")
            return
        message = {"role": "assistant", "content": text, **({"tool_calls": tool_calls} if tool_calls else {})}
        self.send_json(handler, 200, {"model": body["model"], "usage": usage,
                                      "choices": [{"message": message, "finish_reason": finish}]})

    def __enter__(self) -> FakeChat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _text_deltas(text: str) -> list[dict]:
    return [{"content": text[i : i + 40]} for i in range(0, len(text), 40)] or [{"content": ""}]


def _tool_deltas(tool_calls: list[dict]) -> list[dict]:
    """Each call as streaming servers send it: id and name first, then the arguments in two pieces."""
    deltas = []
    for index, call in enumerate(tool_calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        deltas.append({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                   for piece in (arguments[:half], arguments[half:])]
    return deltas
