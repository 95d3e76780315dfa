"""What OpenAI-compatible servers say in their own words: tool calls left in the text, context limits in errors.

Servers that run small local models (llama.cpp, vLLM, Ollama, LM Studio) speak
the chat-completions protocol with accents. Some leave a model's tool call in
the answer's text instead of ``tool_calls`` (and take its result back in the
same form); each words a prompt that does not fit its context window
differently. This module reads and writes both, as pure functions of the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# A Hermes/Qwen-style call: <tool_call>{"name": ..., "arguments": {...}}</tool_call>
TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
FENCE = re.compile(r"\A```(?:json)?\s*\n(.*)\n```\Z", re.DOTALL)


@dataclass(frozen=True)
class TextualCall:
    name: str
    arguments: str  # JSON text


def textual_tool_calls(text: str, names: set[str]) -> tuple[list[TextualCall], str]:
    """The tool calls a server left in the answer's ``text`` (only of the tools offered, ``names``), and the text
    without them: ``<tool_call>{...}</tool_call>`` blocks, or an answer that is one JSON object with ``name`` and
    ``arguments`` (``parameters``), fenced or not. No call: ``([], text)``."""
    blocks = TOOL_CALL_BLOCK.findall(text)
    if blocks:
        calls = [call for block in blocks if (call := _call(block, names))]
        return (calls, TOOL_CALL_BLOCK.sub("", text).strip()) if calls else ([], text)
    stripped = text.strip()
    fenced = FENCE.match(stripped)
    call = _call(fenced[1] if fenced else stripped, names)
    return ([call], "") if call else ([], text)


def textual_tool_results(results: list[str]) -> str:
    """The results of calls a server left in the text, in the same textual form, for one user turn."""
    return "\n".join(f"<tool_response>\n{text}\n</tool_response>" for text in results)


def _call(candidate: str, names: set[str]) -> TextualCall | None:
    try:
        value = json.loads(candidate)
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        return TextualCall(value["name"], arguments)
    return TextualCall(value["name"], json.dumps(arguments)) if isinstance(arguments, dict) else None


# --- a prompt the server's context window cannot hold --------------------------------------

CONTEXT_WORDS = re.compile(
    r"context (?:length|size|window)|maximum context|n_ctx|too many tokens|prompt is too long|input is too long",
    re.IGNORECASE)
LIMIT_WORDINGS = [  # the window's size, as servers name it
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),  # OpenAI, vLLM, llama-cpp-python
    re.compile(r"available context size \((\d+) tokens?\)", re.IGNORECASE),  # llama.cpp's server
    re.compile(r"context (?:window|length|size) of (?:only )?(\d+)", re.IGNORECASE),  # llama-cpp-python, LM Studio
    re.compile(r"\bn_ctx\b\W{0,3}(\d+)", re.IGNORECASE),
]
PROMPT_WORDINGS = [  # the prompt's size as the server counted it
    re.compile(r"\((\d+) in the messages", re.IGNORECASE),  # OpenAI, vLLM, llama-cpp-python
    re.compile(r"messages resulted in (\d+) tokens", re.IGNORECASE),  # OpenAI
    re.compile(r"request has (\d+) input tokens", re.IGNORECASE),  # vLLM
    re.compile(r"request \((\d+) tokens?\) exceeds", re.IGNORECASE),  # llama.cpp's server
    re.compile(r"keep the first (\d+) tokens", re.IGNORECASE),  # LM Studio
    re.compile(r"\bn_prompt_tokens\b\W{0,3}(\d+)", re.IGNORECASE),
]


@dataclass(frozen=True)
class ContextLimit:
    """What a server's refusal says about its window: its size and the prompt's, when it names them."""

    window: int | None
    prompt: int | None


def context_limit(message: str, details: dict | None = None) -> ContextLimit | None:
    """The context limit a server's error names (llama.cpp, vLLM, OpenAI, LM Studio wordings, or llama.cpp's
    ``n_ctx``/``n_prompt_tokens`` fields in ``details``); None when the error is about something else."""
    details = details or {}
    if not CONTEXT_WORDS.search(message) and "n_ctx" not in details and details.get("code") != "context_length_exceeded":
        return None
    window = _number(details.get("n_ctx")) or _first(LIMIT_WORDINGS, message)
    prompt = _number(details.get("n_prompt_tokens")) or _first(PROMPT_WORDINGS, message)
    return ContextLimit(window, prompt)


def _first(wordings: list[re.Pattern], message: str) -> int | None:
    for wording in wordings:
        if found := wording.search(message):
            return int(found[1])
    return None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
