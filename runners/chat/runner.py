"""The built-in ``openai`` runner: one PART through an OpenAI-compatible chat-completions server.

    kx run --runner openai --model NAME [--base-url URL]
    kx run --runner 'openai --search-command "my-search {query}"' --model NAME

It reads the PART's influential files and Read paths itself (inside the
plan's root, capped), runs the checklist's searches on the configured search
backend (``search_command`` in ``.kx/config.toml``, or ``--search-command``),
sends all of it with the brief, and offers the model the ``read_file`` and
``search`` tools for more. It writes the answer to the PART's target file and
the KNOWLEDGE DROP (model, tokens, duration, what was read and searched,
what is missing), records the drop and ticks only boxes with evidence: a Read
box for a file it read, a Search box with the sources its search returned,
Section and CITE boxes the answer holds. Nothing is ticked from the answer's
words about reading or searching. The API key comes only from an environment
variable (``OPENAI_API_KEY`` unless ``--api-key-env`` names another); it is
never written anywhere, nor passed to the search backend.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import BadInput
from ledger.secrets import protect_env, redact_text
from machine.state.headings import headings
from runners.chat.client import DEFAULT_BASE_URL, ChatClient, ChatError, ChatResult
from runners.chat.evidence import evidenced_refs
from runners.chat.tools import Workbench
from runners.protocol import drop_box_refs, kx, read_brief, record_drop, runner_guard, write

SYSTEM = """You are a runner of a knowledge-expansion plan. Write the knowledge file the brief describes, \
in markdown, and answer with that file only.
- Give every "Section N: ..." of the checklist its own heading: "## Section N: <title>".
- Cite the influential files by number and path ("File 3: path/to/file.md") wherever the brief asks.
- kx has read the PART's files for you (after the brief); call the read_file tool for any other file of the \
plan's root.
- {searching}
- Worker instructions from the plan:
{instructions}"""
SEARCHING = "kx ran the checklist's searches (their sources are after the brief); call the search tool for more."
NOT_SEARCHING = "No search backend is configured: you cannot search, so do not claim searches or sources."
MAX_TOOL_ROUNDS = 8


@dataclass
class Conversation:
    text: str = ""
    model: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    tool_calls: int = 0

    def add(self, result: ChatResult) -> None:
        self.text, self.model = result.text, result.model
        for key, value in result.usage.items():
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value
        self.requests += result.attempts
        self.seconds += result.seconds
        self.tool_calls += len(result.tool_calls)


# --- what kx does before asking --------------------------------------------------------


def real_path(bench: Workbench, path: str | None) -> Path | None:
    try:
        return bench.guard.check(path, may_be_plan=True) if path else None
    except BadInput:
        return None


def prepare(bench: Workbench, brief: dict[str, Any]) -> str:
    """Read the influential files and the Read boxes' paths, run the Search boxes' queries: the material that
    follows the brief."""
    blocks = ["# What kx read and searched for you", ""]
    named = [(f"File {f['number']}: {f['path']}", f["path"]) for f in brief["influential_files"] if f["path"]]
    named += [(f"Read {box['path']}", box["path"]) for box in brief["boxes"] if box["kind"] == "read" and box.get("path")]
    titles: dict[str, str] = {}
    for title, path in named:
        titles.setdefault(path, title)  # a file both influential and read: shown once
    for path, title in titles.items():
        blocks += [f"## {title}", "", fenced(bench.read(path)), ""]
    if bench.search_command:
        for box in brief["boxes"]:
            if box["kind"] == "search" and box.get("query"):
                blocks += [f'## Search: "{box["query"]}"', "", bench.search(box["query"]), ""]
    return "\n".join(blocks)


def fenced(text: str) -> str:
    """``text`` in a code fence longer than any fence inside it."""
    longest = max((len(run) for run in re.findall(r"^\s*(`{3,})", text, re.MULTILINE)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def messages(brief: dict[str, Any], brief_text: str, material: str, searching: bool) -> list[dict[str, Any]]:
    instructions = "\n".join(brief["worker_instructions"]) or "(none)"
    system = SYSTEM.format(instructions=instructions, searching=SEARCHING if searching else NOT_SEARCHING)
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{brief_text}\n\n{material}"}]


# --- asking ------------------------------------------------------------------------------


def converse(client: ChatClient, history: list[dict[str, Any]], bench: Workbench, *, stream: bool,
             use_tools: bool, max_rounds: int = MAX_TOOL_ROUNDS) -> Conversation:
    """Ask until the model answers without calling a tool; its tool calls are run by the workbench. The last
    round offers no tools, so that a model that keeps calling them still answers."""
    conversation = Conversation()
    for round_ in range(max_rounds + 1):
        tools = bench.tools() if use_tools and round_ < max_rounds else None
        result = client.complete(history, stream=stream, tools=tools,
                                 on_text=lambda text: print(".", end="", flush=True))
        conversation.add(result)
        if not (tools and result.tool_calls):
            return conversation
        history.append(result.message())
        for call in result.tool_calls:
            print(f"tool {call.name} {call.arguments[:200]}", flush=True)
            history.append({"role": "tool", "tool_call_id": call.id, "content": bench.call(call.name, call.arguments)})
    return conversation


def refuses_tools(error: ChatError) -> bool:
    return error.status in (400, 422) and "tool" in str(error).lower()


def ask(client: ChatClient, history: list[dict[str, Any]], bench: Workbench, args: argparse.Namespace) -> Conversation:
    try:
        return converse(client, list(history), bench, stream=args.stream, use_tools=not args.no_tools)
    except ChatError as error:
        if args.no_tools or not refuses_tools(error):
            raise
        print(f"the server refused tools ({error}); asking again without them", flush=True)
        return converse(client, list(history), bench, stream=args.stream, use_tools=False)


# --- what the runner records -------------------------------------------------------------


@dataclass
class Verdict:
    ticks: list[list[str]] = field(default_factory=list)  # one kx tick call's arguments each
    missing: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        """The boxes ticked: every argument of the tick calls but their ``--source`` options."""
        return sum(1 for call in self.ticks for arg in call if not arg.startswith("--"))


def judge(brief: dict[str, Any], bench: Workbench, answer: str) -> Verdict:
    """Which boxes have evidence: files read, searches with sources, sections and citations in the answer."""
    verdict = Verdict()
    plain, missing_text = evidenced_refs(brief, answer)
    verdict.missing += missing_text
    for box in brief["boxes"]:
        if box["ticked"]:
            continue
        if box["kind"] == "read":
            real = real_path(bench, box.get("path"))
            if real is not None and bench.read_path(real):
                plain.append(box["ref"])
            else:
                verdict.missing.append(f"{box['text']} (not found in the plan's root)")
        elif box["kind"] == "search":
            sources = bench.sources(box.get("query") or "")
            if sources:
                verdict.ticks.append([box["ref"], *(f"--source={s}" for s in sources)])
            else:
                why = "no sources found" if bench.search_command else "no search backend configured"
                verdict.missing.append(f"{box['text']} ({why})")
    plain += drop_box_refs(brief)
    if plain:
        verdict.ticks.insert(0, plain)
    return verdict


def drop_text(brief: dict[str, Any], talk: Conversation, bench: Workbench, verdict: Verdict) -> str:
    usage = ", ".join(f"{k} {v}" for k, v in talk.usage.items()) or "not reported"
    lines = [f"# KNOWLEDGE DROP: {brief['part']} — {brief['title']}", "",
             f"- attempt: {brief['attempt']}", f"- knowledge file: {brief['target']}",
             f"- model: {talk.model}", f"- tokens: {usage}", f"- duration: {talk.seconds:.1f}s",
             f"- requests: {talk.requests}", f"- tool calls: {talk.tool_calls}", "", "## Read", ""]
    lines += [f"- {r.path}: {r.shown} of {r.size} bytes shown" + (f" ({r.files} files)" if r.files > 1 else "")
              for r in bench.reads.values()] or ["- nothing"]
    lines += ["", "## Searches", ""]
    for key, sources in bench.searches.items():
        lines += [f"- {bench.queries[key]}: {len(sources)} sources", *(f"  - {s}" for s in sources)]
    if not bench.searches:
        lines.append("- none run" + ("" if bench.search_command else " (no search backend configured)"))
    lines += ["", "## Sections found", ""]
    lines += [f"- {h}" for h in headings(talk.text)] or ["- none"]
    lines += ["", "## Boxes with evidence", "", f"- {verdict.found} of {len(brief['boxes'])}", "", "## Missing", ""]
    lines += [f"- {text}" for text in verdict.missing] or ["- nothing"]
    lines += ["", "## Problems", ""] + [f"- {p}" for p in bench.problems] if bench.problems else []
    return "\n".join(lines) + "\n"


def tick(part: str, args: list[str]) -> None:
    """One ``kx tick``; a refusal is printed and the other boxes are still ticked. kx refuses a tick of several
    boxes whole when one of them lacks its evidence, so a refused tick of several boxes is made box by box."""
    result = kx("tick", part, *args)
    print((result.stdout if result.returncode == 0 else result.stderr).strip(), flush=True)
    boxes = [arg for arg in args if not arg.startswith("--")]
    if result.returncode != 0 and len(boxes) > 1:
        options = [arg for arg in args if arg.startswith("--")]
        for box in boxes:
            tick(part, [box, *options])


def summary(brief: dict[str, Any], bench: Workbench, verdict: Verdict) -> str:
    line = f"{brief['attempt']}: {verdict.found} boxes with evidence, {len(verdict.missing)} without"
    searches = sum(1 for box in brief["boxes"] if box["kind"] == "search" and not box["ticked"])
    if searches and not bench.search_command:
        line += (f"; {searches} Search boxes left unticked: no search backend"
                 " (set search_command in .kx/config.toml or --search-command)")
    elif failed := next((p for p in bench.problems if p.startswith("search ")), None):
        line += f"; {failed}"  # the backend's failure or silence is why a Search box stays unticked
    return line


# --- the runner --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kx run --runner openai", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                        help="the environment variable holding the API key")
    parser.add_argument("--search-command", metavar="COMMAND",
                        help='the search backend, e.g. "my-search {query}": one source per line it prints'
                             " (default: search_command in .kx/config.toml)")
    parser.add_argument("--no-tools", action="store_true", help="offer the model no tools (kx still reads and searches)")
    parser.add_argument("--stream", action="store_true", help="stream the answer, showing progress in the log")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--retries", type=int, default=4, help="retries on connection errors, 429 and 5xx")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds")
    args = parser.parse_args(argv)
    if args.search_command is not None:
        args.search_command = shlex.split(args.search_command)
        if not any("{query}" in part for part in args.search_command):
            parser.error('--search-command needs "{query}" where the query goes, e.g. "my-search {query}"')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protect_env(args.api_key_env)  # the kx calls below redact the key from what they record and log
    part = os.environ["KX_PART"]
    brief = read_brief()
    brief_text = Path(os.environ["KX_BRIEF"]).read_text(encoding="utf-8")
    bench = Workbench(runner_guard(brief), args.search_command or brief.get("search_command"),
                      hidden_env=(args.api_key_env,))
    history = messages(brief, brief_text, prepare(bench, brief), searching=bool(bench.search_command))
    client = ChatClient(args.base_url, args.model, os.environ.get(args.api_key_env), timeout=args.timeout,
                        retries=args.retries, backoff=args.backoff)
    client.on_retry = lambda reason, wait: print(f"retrying in {wait:.1f}s: {reason}", flush=True)
    print(f"{brief['attempt']}: asking {args.model} at {redact_text(args.base_url)}", flush=True)
    try:
        talk = ask(client, history, bench, args)
    except ChatError as error:
        reason = f"chat server: {error}"
        print(reason, file=sys.stderr, flush=True)
        kx("fail", part, "--reason", reason)
        return 1
    finally:
        client.close()
    write(brief, os.environ.get("KX_TARGET"), talk.text)
    verdict = judge(brief, bench, talk.text)
    record_drop(brief, drop_text(brief, talk, bench, verdict))
    for call in verdict.ticks:
        tick(part, call)
    print(summary(brief, bench, verdict), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
