"""Asking the model: tool rounds within the context budget, a cut answer continued once, dialects handled.

The model may call ``read_file`` and ``search`` for up to MAX_TOOL_ROUNDS
rounds (each result cut to the room the window has left); the last round
offers no tools, so that a model that keeps calling them still answers. A
server that fails (5xx) on the request after a tool round is asked once more
for the answer plainly, without tools, with the results in the text. An
answer cut at the length limit (``finish_reason: length``) is continued
once, if the window has room for it; cut again, or without room, it is a
:class:`Failure` that says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger.secrets import redact_text
from runners.chat.budget import MESSAGE_OVERHEAD, MIN_SHARE, Budget, prompt_tokens, trim
from runners.chat.client import ARGUMENTS_CAP, ChatClient, ChatError, ChatResult, ContextOverflow, ToolCall
from runners.chat.dialects import textual_tool_results
from runners.chat.tools import Workbench

MAX_TOOL_ROUNDS = 8
CALLS_PER_ROUND = 8  # calls past this in one round are answered with an error, not run
CONTINUE = ("Your answer was cut at the length limit. Continue it exactly where it stopped, without repeating"
            " anything already written.")
PLAINLY = "Results of the tools you called, in order:"
NOW_ANSWER = "Now write the knowledge file, in markdown, and answer with that file only."


class Failure(Exception):
    """An attempt that cannot succeed, and why; ``retry=False``: nor would it unchanged (kx run does not retry)."""

    def __init__(self, reason: str, *, retry: bool = True):
        super().__init__(reason)
        self.reason, self.retry = reason, retry


@dataclass
class Conversation:
    text: str = ""
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    tool_calls: int = 0
    finish_reasons: list[str] = field(default_factory=list)  # one per answer received
    sent: list[int] = field(default_factory=list)  # tokens of each request, as the budget counts them
    notes: list[str] = field(default_factory=list)  # what happened on the way, for the drop

    def add(self, result: ChatResult) -> None:
        self.text, self.model = result.text, result.model
        for key, value in result.usage.items():
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value
        self.requests += result.attempts
        self.seconds += result.seconds
        self.tool_calls += len(result.tool_calls)
        self.finish_reasons.append(result.finish_reason or "unknown")


Say = Callable[[str], None]


@dataclass
class Asking:
    """One conversation's setting: the client, the workbench that runs tool calls, the budget, and how to say what
    happens (the runner's log)."""

    client: ChatClient
    bench: Workbench
    budget: Budget
    stream: bool = False
    say: Say = print

    def complete(self, talk: Conversation, history: list[dict[str, Any]], sent: int, tools: list[dict] | None = None,
                 **options: Any) -> ChatResult:
        """One request; ``sent``: its tokens as :func:`prompt_tokens` counts them (the caller has counted them)."""
        talk.sent.append(sent)
        result = self.client.complete(history, stream=self.stream, tools=tools, on_text=_progress,
                                      max_tokens=self.budget.reserve, **options)
        talk.add(result)
        return result


def _progress(_text: str) -> None:
    print(".", end="", flush=True)


def converse(asking: Asking, history: list[dict[str, Any]], talk: Conversation, *, use_tools: bool,
             max_rounds: int = MAX_TOOL_ROUNDS) -> Conversation:
    """Ask until the model answers without calling a tool (see the module's docstring); ``talk`` is filled as it
    goes, so that a failure still tells what was sent."""
    history, ran = list(history), []
    counted = prompt_tokens(history)  # the history's tokens, kept up to date as turns are added
    for round_ in range(max_rounds + 1):
        offered = asking.bench.tools() if use_tools and round_ < max_rounds else None
        offering = prompt_tokens([], offered) if offered else 0  # the tokens the tools' descriptions take
        tools = offered if offered and asking.budget.limit() - counted - offering >= MIN_SHARE else None
        try:
            result = asking.complete(talk, history, counted + (offering if tools else 0), tools,
                                     retry_server_errors=not ran)
        except ChatError as error:
            if not ran or isinstance(error, ContextOverflow) or (error.status or 0) < 500:
                raise
            return _plainly(asking, history, ran, talk, error)
        if not (tools and result.tool_calls):
            return _whole_answer(asking, history, counted, result, talk)
        history.append(result.message())
        counted += prompt_tokens(history[-1:])
        results = run_calls(asking, asking.budget.limit() - counted, result.tool_calls)
        ran += results
        replies = result_messages(result, results)
        history += replies
        counted += prompt_tokens(replies)
    raise AssertionError("the last round offers no tools")


def run_calls(asking: Asking, room: int, calls: list[ToolCall]) -> list[tuple[ToolCall, str]]:
    """Each call with its result, cut to its share of the ``room`` (tokens) the window has left."""
    share = room // max(1, len(calls)) - MESSAGE_OVERHEAD
    results = []
    for n, call in enumerate(calls):
        arguments = redact_text(call.arguments)  # a server that echoes the key must not put it into a search
        asking.say(f"tool {call.name} {arguments[:200]}")
        if n >= CALLS_PER_ROUND:
            text = f"error: at most {CALLS_PER_ROUND} tool calls a round; this one was not run"
        elif call.over_cap:
            text = f"error: the call's arguments passed {ARGUMENTS_CAP} characters; it was not run"
        elif share < MIN_SHARE:
            text = "error: no room is left in the context window for more; answer with what you have"
        else:
            text = asking.bench.call(call.name, arguments)
            shown = trim(text, share, _path_of(arguments))
            if shown != text:
                asking.bench.shown_only(_path_of(arguments), len(shown.encode()))
            text = shown
        results.append((call, text))
    return results


def result_messages(result: ChatResult, results: list[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
    """The tool results as the next request carries them: ``tool`` turns, or, for calls the server left in the
    text, one user turn in the same textual form."""
    if result.textual:
        return [{"role": "user", "content": textual_tool_results([text for _, text in results])}]
    return [{"role": "tool", "tool_call_id": call.id, "content": text} for call, text in results]


def _path_of(arguments: str) -> str | None:
    try:
        path = json.loads(arguments).get("path")
    except (json.JSONDecodeError, AttributeError):
        return None
    return path if isinstance(path, str) else None


def _plainly(asking: Asking, history: list[dict[str, Any]], ran: list[tuple[ToolCall, str]], talk: Conversation,
             error: ChatError) -> Conversation:
    """The server failed on the request after a tool round (some fail on a history with tool turns): ask once for
    the answer without tools, the results in the text."""
    asking.say(f"the server failed after a tool round ({error}); asking once more, plainly, without tools")
    talk.notes.append(f"the server failed after a tool round ({error}); asked again plainly, without tools")
    start = [m for m in history if m["role"] in ("system", "user")][:2]
    results = "\n\n".join(f"### {call.name} {call.arguments[:200]}\n\n{text}" for call, text in ran)
    room = asking.budget.room([*start, {"role": "user", "content": f"{PLAINLY}\n\n\n\n{NOW_ANSWER}"}])
    plain = [*start, {"role": "user", "content": f"{PLAINLY}\n\n{trim(results, room)}\n\n{NOW_ANSWER}"}]
    counted = prompt_tokens(plain)
    try:
        result = asking.complete(talk, plain, counted)
    except ChatError as second:
        raise ChatError(f"{error} (after a tool round); asked again plainly: {second}", second.status) from None
    return _whole_answer(asking, plain, counted, result, talk)


def _whole_answer(asking: Asking, history: list[dict[str, Any]], counted: int, result: ChatResult,
                  talk: Conversation) -> Conversation:
    """The answer, continued once if it was cut at the length limit; ``counted``: the history's tokens."""
    if result.finish_reason == "content_filter":
        raise Failure("the server filtered the answer (finish_reason: content_filter)")
    if result.finish_reason != "length":
        return talk
    reserve = asking.budget.reserve
    asked = [{"role": "assistant", "content": result.text}, {"role": "user", "content": CONTINUE}]
    sent = counted + prompt_tokens(asked)
    if sent > asking.budget.limit():
        raise Failure(f"the answer was cut at the length limit (max_tokens {reserve}) and the context window has"
                      " no room to ask for the rest")
    asking.say(f"the answer was cut at the length limit (max_tokens {reserve}); asking once to continue it")
    talk.notes.append(f"the answer was cut at the length limit (max_tokens {reserve}); asked once to continue")
    more = asking.complete(talk, [*history, *asked], sent)
    if more.finish_reason == "length":
        raise Failure(f"the answer was cut at the length limit twice (max_tokens {reserve} each time)")
    talk.text = result.text + more.text
    return talk
