"""A small client for OpenAI-compatible chat-completions servers, on httpx.

Connection errors, 429 and 5xx are retried with exponential backoff and
jitter, honouring ``Retry-After``; any other 4xx is a :class:`ChatError` at
once, and a refusal that names the context window is a
:class:`ContextOverflow` (it cannot succeed unchanged). Retrying is
tenacity's (``Retrying`` with a wait that prefers the server's
``Retry-After``, and an injectable sleep for tests); reading a stream is
httpx-sse's (``EventSource``): both are well-kept libraries for exactly this,
and a chat request spends seconds on the server, so neither costs anything
measurable. tenacity rather than stamina: stamina wraps tenacity and adds
instrumentation kx does not use, and its backoff cannot take a server's
``Retry-After`` per attempt.

Every answer is checked before it is returned: a stream must end with a
``finish_reason`` (a ``[DONE]`` without one, or a connection that closes
early, means the server stopped it: retried like a 5xx, asking for the answer
whole, not streamed, since servers that stop streams under load, like
llama.cpp's, answer whole requests in turn), and an answer with
neither text nor tool calls is an error, never an empty knowledge file. The
API key is sent in a header and appears in no message this module produces.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ledger.secrets import REDACTED, redact_text
from runners.chat.dialects import context_limit, textual_tool_calls

DEFAULT_BASE_URL = "http://127.0.0.1:11434/v1"  # a local Ollama-style server
ARGUMENTS_CAP = 16 * 1024  # characters of one tool call's arguments: past this the call is not run
DISCOVERY_TIMEOUT_S = 5.0  # asking a server about its model is worth little waiting
OLLAMA_DEFAULT_CONTEXT = 4096  # Ollama's num_ctx when a Modelfile sets none (0.6 and later; 2048 before)


class ChatError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ContextOverflow(ChatError):
    """The server refused the prompt for its context window: ``window`` and ``prompt`` as it named them."""

    def __init__(self, message: str, status: int | None, window: int | None, prompt: int | None):
        super().__init__(message, status)
        self.window, self.prompt = window, prompt


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it

    @property
    def over_cap(self) -> bool:
        """Its arguments passed ARGUMENTS_CAP (a stream is read no further): it is not run."""
        return len(self.arguments) > ARGUMENTS_CAP


@dataclass
class ChatResult:
    text: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    seconds: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    raw_text: str = ""  # the answer's text as sent, tool calls a server left in it included
    textual: bool = False  # the tool calls came in the text (see runners.chat.dialects)

    def message(self) -> dict[str, Any]:
        """The assistant's turn, as the next request's history must carry it. A turn that only calls tools has
        ``"content": ""``: some servers fail (HTTP 500) on a null content."""
        if self.textual:
            return {"role": "assistant", "content": self.raw_text}
        turn: dict[str, Any] = {"role": "assistant", "content": self.text}
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


def error_body(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """The server's error message and the error object's other fields (llama.cpp puts ``n_ctx`` there)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase, {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300], error
    return str(error or body)[:300], {}


class ChatClient:
    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 600.0,
                 retries: int = 4, backoff: float = 1.0, max_wait: float = 60.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep):
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, transport=transport,
                                 timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)))
        self.model, self.retries, self.backoff, self.max_wait, self.sleep = model, retries, backoff, max_wait, sleep
        self.token_field = "max_tokens"  # newer OpenAI models take only max_completion_tokens
        self.on_retry: Callable[[str, float], None] = lambda reason, wait: None

    def complete(self, messages: list[dict[str, Any]], *, stream: bool = False, tools: list[dict] | None = None,
                 on_text: Callable[[str], None] | None = None, max_tokens: int | None = None,
                 retry_server_errors: bool = True) -> ChatResult:
        """One answer of at most ``max_tokens``. ``retry_server_errors=False``: a 5xx is a :class:`ChatError` at
        once (429 and connection errors are still retried)."""
        try:
            return self._complete(messages, stream, tools, on_text, max_tokens, retry_server_errors)
        except ChatError as error:
            if error.status != 400 or "max_completion_tokens" not in str(error) or self.token_field != "max_tokens":
                raise
            self.token_field = "max_completion_tokens"
            return self._complete(messages, stream, tools, on_text, max_tokens, retry_server_errors)

    def _complete(self, messages, stream, tools, on_text, max_tokens, retry_server_errors) -> ChatResult:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if max_tokens:
            body[self.token_field] = max_tokens
        if tools:
            body.update(tools=tools, tool_choice="auto")  # some servers use tools only when asked to
        names = {t["function"]["name"] for t in tools or []}
        started, tries, streaming = time.monotonic(), 0, stream

        def once() -> ChatResult:
            nonlocal tries, streaming
            tries += 1
            try:
                if streaming:
                    result = self._stream({**body, "stream": True, "stream_options": {"include_usage": True}}, on_text)
                else:
                    result = self._once(body)
            except _StreamCut:
                streaming = False  # a server that stops streams (llama.cpp's when another request waits): ask whole
                raise
            return _checked(_with_textual_calls(result, names))

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)
                                     and (retry_server_errors or not (exc.status or 0) >= 500)),
            stop=stop_after_attempt(self.retries + 1), wait=self._wait, sleep=self.sleep, reraise=True,
            before_sleep=lambda state: self.on_retry(self._scrub(state.outcome.exception().reason),
                                                     state.next_action.sleep))
        try:
            result = retrying(once)
        except ChatError as error:
            error.args = (self._scrub(str(error)),)
            raise error from None
        except _Retryable as retryable:
            gave_up = f"; gave up after {tries} attempts" if tries > 1 else ""
            raise ChatError(self._scrub(retryable.reason) + gave_up, retryable.status) from None
        result.attempts, result.seconds = tries, time.monotonic() - started
        return result

    def _wait(self, state: RetryCallState) -> float:
        """The server's ``Retry-After`` when it sent one, else exponential backoff with jitter; at most max_wait."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable) and failure.wait is not None:
            return min(failure.wait, self.max_wait)
        return wait_exponential_jitter(multiplier=self.backoff, max=self.max_wait, jitter=self.backoff)(state)

    def _scrub(self, text: str) -> str:
        """A server may echo the request's headers in its error body: the key never leaves in a message."""
        text = text.replace(self.api_key, REDACTED) if self.api_key else text
        return redact_text(text)

    def _once(self, body: dict[str, Any]) -> ChatResult:
        with self._request(body) as response:
            response.read()
            return self._whole(response)

    def _whole(self, response: httpx.Response) -> ChatResult:
        try:
            data = response.json()
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            calls = [_tool_call(n, c) for n, c in enumerate(message.get("tool_calls") or [])]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ChatError(f"the server's answer has no choices[0].message: {response.text[:200]}") from None
        return ChatResult(text, data.get("model", self.model), data.get("usage") or {}, tool_calls=calls,
                          finish_reason=choice.get("finish_reason") or "stop", raw_text=text)

    def _stream(self, body: dict[str, Any], on_text: Callable[[str], None] | None) -> ChatResult:
        with self._request(body) as response:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                response.read()  # a server that does not stream answers whole
                return self._whole(response)
            collected = _Stream(self.model, on_text)
            try:
                for event in EventSource(response).iter_sse():
                    if event.data.strip() == "[DONE]":
                        collected.done = True
                        break
                    if not collected.add(event.data):
                        break  # a tool call's arguments passed the cap: stop reading a runaway answer
            except (httpx.TransportError, SSEError) as exc:
                raise _StreamCut(f"the stream broke off ({type(exc).__name__}) before the answer was finished") from None
        return collected.result()

    def _request(self, body: dict[str, Any]):
        return _Checked(self.http, body)

    # --- what the server says about its model ---------------------------------------------

    def context_window(self) -> tuple[int, str] | None:
        """The model's context window as the server tells it, and where it said so; None when it does not."""
        for ask in (self._window_from_models, self._window_from_ollama):
            try:
                found = ask()
            except (httpx.HTTPError, ValueError, TypeError, AttributeError, KeyError):
                found = None
            if found:
                return found
        return None

    def _window_from_models(self) -> tuple[int, str] | None:
        """``GET /models``: vLLM's ``max_model_len``, llama.cpp's ``meta.n_ctx`` (``n_ctx_train``), others'
        ``context_length``."""
        response = self.http.get("/models", timeout=DISCOVERY_TIMEOUT_S)
        response.raise_for_status()
        models = [m for m in response.json().get("data") or [] if isinstance(m, dict)]
        model = next((m for m in models if m.get("id") in (self.model, f"{self.model}:latest")), None)
        if model is None and len(models) == 1:
            model = models[0]
        if model is None:
            return None
        meta = model.get("meta") if isinstance(model.get("meta"), dict) else {}
        for where, value in (("max_model_len", model.get("max_model_len")), ("context_length", model.get("context_length")),
                             ("context_window", model.get("context_window")),
                             ("loaded_context_length", model.get("loaded_context_length")),
                             ("meta.n_ctx", meta.get("n_ctx")), ("meta.n_ctx_train", meta.get("n_ctx_train"))):
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value, f"GET /models {where}"
        return None

    def _window_from_ollama(self) -> tuple[int, str] | None:
        """Ollama's ``POST /api/show`` at the server's root: the Modelfile's ``num_ctx`` if it sets one, else the
        model's trained ``context_length``, which is only an upper bound: Ollama runs a model at its own default
        window unless told otherwise (and cuts a longer prompt silently), so that default caps it."""
        root = str(self.http.base_url).rstrip("/").removesuffix("/v1")
        response = self.http.post(f"{root}/api/show", json={"model": self.model}, timeout=DISCOVERY_TIMEOUT_S)
        response.raise_for_status()
        shown = response.json()
        for line in str(shown.get("parameters") or "").splitlines():
            name, _, value = line.strip().partition(" ")
            if name == "num_ctx" and value.strip().isdigit():
                return int(value.strip()), "POST /api/show num_ctx"
        trained = [v for k, v in (shown.get("model_info") or {}).items()
                   if k.endswith(".context_length") and isinstance(v, int) and v > 0]
        if trained:
            return min(trained[0], OLLAMA_DEFAULT_CONTEXT), "POST /api/show context_length (at most Ollama's default)"
        return None

    def close(self) -> None:
        self.http.close()


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.status, self.wait = reason, status, wait


class _StreamCut(_Retryable):
    """A stream that ended before its answer did; the next try asks for the answer whole."""


class _Checked:
    """POST /chat/completions as a context manager whose response is known good."""

    def __init__(self, http: httpx.Client, body: dict[str, Any]):
        self.http, self.body, self.response = http, body, None

    def __enter__(self) -> httpx.Response:
        try:
            request = self.http.build_request("POST", "/chat/completions", json=self.body)
            self.response = self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach the server ({type(exc).__name__})") from None
        response = self.response
        if response.status_code < 400:
            return response
        response.read()
        message, details = error_body(response)
        said = f"HTTP {response.status_code}: {message}"
        limit = context_limit(message, details)
        if limit is not None:
            raise ContextOverflow(said, response.status_code, limit.window, limit.prompt)
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(said, response.status_code, retry_after(response))
        raise ChatError(said, response.status_code)

    def __exit__(self, *exc_info) -> None:
        if self.response is not None:
            self.response.close()


class _Stream:
    """The pieces of a streamed answer, put together: text, tool calls by index, usage, the finish reason."""

    def __init__(self, model: str, on_text: Callable[[str], None] | None):
        self.model, self.on_text = model, on_text
        self.pieces: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage: dict[str, int] = {}
        self.finish_reason: str | None = None
        self.done = self.capped = False

    def add(self, data: str) -> bool:
        """Take one event's data; False when reading should stop."""
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        if isinstance(chunk.get("error"), (dict, str)):  # llama.cpp reports some failures inside the stream
            error = chunk["error"]
            message = str(error.get("message") or error) if isinstance(error, dict) else error
            limit = context_limit(message, error if isinstance(error, dict) else None)
            if limit is not None:
                raise ContextOverflow(f"in the stream: {message[:300]}", None, limit.window, limit.prompt)
            raise ChatError(f"the server reported an error in the stream: {message[:300]}")
        self.model = chunk.get("model", self.model)
        self.usage = chunk.get("usage") or self.usage
        for choice in chunk.get("choices") or []:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            delta = choice.get("delta") or {}
            if text := delta.get("content") or "":
                self.pieces.append(text)
                if self.on_text:
                    self.on_text(text)
            for piece in delta.get("tool_calls") or []:
                call = self.calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "arguments": ""})
                _add_piece(call, piece)
                if len(call["arguments"]) > ARGUMENTS_CAP:
                    self.capped = True
                    return False
        return True

    def result(self) -> ChatResult:
        if self.finish_reason is None and not self.capped:
            how = "[DONE] came" if self.done else "the stream closed"
            raise _StreamCut(f"the stream ended before the answer was finished ({how} without a finish_reason:"
                             " the server stopped it)")
        calls = [ToolCall(c["id"] or f"call_{n}", c["name"], c["arguments"] or "{}")
                 for n, c in sorted(self.calls.items()) if c["name"]]
        text = "".join(self.pieces)
        return ChatResult(text, self.model, self.usage, tool_calls=calls,
                          finish_reason=self.finish_reason or "tool_arguments_cap", raw_text=text)


def _tool_call(n: int, call: dict[str, Any]) -> ToolCall:
    arguments = _arguments(call["function"].get("arguments"))
    return ToolCall(call.get("id") or f"call_{n}", call["function"]["name"], arguments)


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


def _with_textual_calls(result: ChatResult, names: set[str]) -> ChatResult:
    """Tool calls a server left in the text (when tools were offered and it sent none the usual way)."""
    if not names or result.tool_calls:
        return result
    calls, rest = textual_tool_calls(result.text, names)
    if calls:
        result.tool_calls = [ToolCall(f"text_call_{n}", c.name, c.arguments) for n, c in enumerate(calls)]
        result.text, result.textual = rest, True
    return result


def _checked(result: ChatResult) -> ChatResult:
    """An answer with neither text nor a tool call is an error that says why, never an empty knowledge file."""
    if result.text.strip() or result.tool_calls:
        return result
    if result.finish_reason == "length":
        raise ChatError("the answer was cut at the length limit before any text (finish_reason: length)")
    raise ChatError(f"the server's answer was empty (finish_reason: {result.finish_reason})")
