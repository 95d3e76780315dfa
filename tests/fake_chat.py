"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests."""

from __future__ import annotations

import json
import re
import threading
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


class FakeChat:
    """``script[PART]`` is a list of replies used in turn (the last one repeats): ``"answer"``,
    ``("answer-without", "Section 2")``, ``("tools", [(name, arguments), ...])`` (a turn that calls tools, as
    models do), or ``(status, headers, body)`` (``body`` may be a function of the request's headers)."""

    def __init__(self, script: dict[str, list]):
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                brief = next(m["content"] for m in body["messages"] if m["role"] == "user")
                part = re.search(r"PART-\d+", brief).group()
                with fake.lock:
                    fake.requests.append({"part": part, "auth": self.headers.get("Authorization"), "body": body})
                    replies = fake.script.get(part, ["answer"])
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if isinstance(reply, tuple) and isinstance(reply[0], int):
                    status, headers, payload = reply
                    if callable(payload):
                        payload = payload(self.headers)
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    data = json.dumps(payload).encode()
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if isinstance(reply, tuple) and reply[0] == "tools":
                    fake.send_answer(self, body, None, calls=reply[1])
                    return
                text = answer_for(brief)
                if isinstance(reply, tuple) and reply[0] == "answer-without":
                    text = re.sub(rf"## {re.escape(reply[1])}:.*\n", "", text)
                fake.send_answer(self, body, text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def send_answer(self, handler, body, text, calls=()):
        words = len((text or "").split())
        usage = {"prompt_tokens": 100, "completion_tokens": words, "total_tokens": 100 + words}
        tool_calls = [{"id": f"call_{n}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                      for n, (name, args) in enumerate(calls)]
        if body.get("stream"):
            handler.send_response(200)
            handler.send_header("Content-Type", "text/event-stream")
            handler.end_headers()
            for delta in [*_text_deltas(text or ""), *_tool_deltas(tool_calls)]:
                chunk = {"model": body["model"], "choices": [{"delta": delta}]}
                handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode())
            return
        message = {"role": "assistant", "content": text, **({"tool_calls": tool_calls} if tool_calls else {})}
        data = json.dumps({"model": body["model"], "usage": usage, "choices": [{"message": message}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> FakeChat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def _text_deltas(text: str) -> list[dict]:
    return [{"content": text[i : i + 40]} for i in range(0, len(text), 40)]


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
