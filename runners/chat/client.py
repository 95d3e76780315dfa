"""A small client for OpenAI-compatible chat-completions servers, on httpx.

Retries connection errors, 429 and 5xx with exponential backoff and jitter,
honouring ``Retry-After``; any other 4xx is a :class:`ChatError` at once. The
API key is sent in a header and appears in no message this module produces.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ledger.secrets import REDACTED, redact_text

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # a local Ollama-style server


class ChatError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass
class ChatResult:
    text: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    seconds: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The assistant's turn, as the next request's history must carry it."""
        turn: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            turn["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                  for c in self.tool_calls]
        return turn


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error or body)[:300]


class ChatClient:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 600.0,
                 retries: int = 4, backoff: float = 1.0, max_wait: float = 60.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep):
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, transport=transport,
                                 timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
        self.model, self.retries, self.backoff, self.max_wait, self.sleep = model, retries, backoff, max_wait, sleep
        self.on_retry: Callable[[str, float], None] = lambda reason, wait: None

    def complete(self, messages: list[dict[str, Any]], *, stream: bool = False, tools: list[dict] | None = None,
                 on_text: Callable[[str], None] | None = None) -> ChatResult:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:
            body["tools"] = tools
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        started = time.monotonic()
        for attempt in range(1, self.retries + 2):
            try:
                result = self._stream(body, on_text) if stream else self._once(body)
                result.attempts, result.seconds = attempt, time.monotonic() - started
                return result
            except ChatError as error:
                raise ChatError(self._scrub(str(error)), error.status) from None
            except _Retryable as retryable:
                reason = self._scrub(retryable.reason)
                if attempt > self.retries:
                    raise ChatError(f"{reason}; gave up after {attempt} attempts", retryable.status) from None
                wait = retryable.wait if retryable.wait is not None else self._backoff(attempt)
                self.on_retry(reason, wait)
                self.sleep(min(wait, self.max_wait))
        raise AssertionError("unreachable")

    def _scrub(self, text: str) -> str:
        """A server may echo the request's headers in its error body: the key never leaves in a message."""
        text = text.replace(self.api_key, REDACTED) if self.api_key else text
        return redact_text(text)

    def _backoff(self, attempt: int) -> float:
        return self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())

    def _once(self, body: dict[str, Any]) -> ChatResult:
        with self._request(body) as response:
            response.read()
            data = response.json()
        try:
            message = data["choices"][0]["message"]
            text = message.get("content") or ""
            calls = [ToolCall(c.get("id") or f"call_{n}", c["function"]["name"], _arguments(c["function"].get("arguments")))
                     for n, c in enumerate(message.get("tool_calls") or [])]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ChatError(f"the server's answer has no choices[0].message: {str(data)[:200]}") from None
        return ChatResult(text, data.get("model", self.model), data.get("usage") or {}, tool_calls=calls)

    def _stream(self, body: dict[str, Any], on_text: Callable[[str], None] | None) -> ChatResult:
        pieces: list[str] = []
        calls: dict[int, dict[str, str]] = {}  # a tool call arrives in pieces, by index
        usage: dict[str, int] = {}
        model = self.model
        with self._request(body) as response:
            for chunk in _sse_events(response.iter_lines()):
                model = chunk.get("model", model)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content") or ""
                    if text:
                        pieces.append(text)
                        if on_text:
                            on_text(text)
                    for piece in delta.get("tool_calls") or []:
                        _add_piece(calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": ""}),
                                   piece)
        tool_calls = [ToolCall(c["id"] or f"call_{n}", c["name"], c["arguments"] or "{}")
                      for n, c in sorted(calls.items()) if c["name"]]
        return ChatResult("".join(pieces), model, usage, tool_calls=tool_calls)

    def _request(self, body: dict[str, Any]):
        return _Checked(self.http, body)

    def close(self) -> None:
        self.http.close()


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait


class _Checked:
    """POST /chat/completions as a context manager whose response is known good."""

    def __init__(self, http: httpx.Client, body: dict[str, Any]):
        self.http, self.body, self.response = http, body, None

    def __enter__(self) -> httpx.Response:
        try:
            request = self.http.build_request("POST", "/chat/completions", json=self.body)
            self.response = self.http.send(request, stream=True)
        except (httpx.TransportError,) as exc:
            raise _Retryable(f"cannot reach the server ({type(exc).__name__})") from None
        response = self.response
        if response.status_code == 429 or response.status_code >= 500:
            response.read()
            raise _Retryable(f"HTTP {response.status_code}: {server_message(response)}", response.status_code,
                             retry_after(response))
        if response.status_code >= 400:
            response.read()
            raise ChatError(f"HTTP {response.status_code}: {server_message(response)}", response.status_code)
        return response

    def __exit__(self, *exc_info) -> None:
        if self.response is not None:
            self.response.close()


def _arguments(value: Any) -> str:
    """A call's arguments as JSON text: some servers send the object itself."""
    if value is None or value == "":
        return "{}"
    return value if isinstance(value, str) else json.dumps(value)


def _add_piece(call: dict[str, str], piece: dict[str, Any]) -> None:
    function = piece.get("function") or {}
    call["id"] = piece.get("id") or call["id"]
    call["name"] = call["name"] or function.get("name") or ""  # sent whole, once (some servers repeat it)
    call["arguments"] += function.get("arguments") or ""


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except json.JSONDecodeError:
            continue
