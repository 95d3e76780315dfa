"""The built-in ``openai`` runner: one PART through an OpenAI-compatible chat-completions server.

    kx run --runner openai --model NAME [--base-url URL]
    kx run --runner 'openai --context 8192 --search-command "my-search {query}"' --model NAME

It reads the PART's influential files and Read paths itself (inside the
plan's root, capped), runs the checklist's searches on the configured search
backend (``search_command`` in ``.kx/config.toml``, or ``--search-command``),
fits all of it with the brief into the model's context window
(:mod:`runners.chat.budget`), and offers the model the ``read_file`` and
``search`` tools for more (:mod:`runners.chat.conversation`). It writes the
answer to the PART's target file and the KNOWLEDGE DROP (model, tokens,
duration, the context budget, what was read, cut, left out and searched,
what is missing), ticks only boxes with evidence: a Read box for a file the
model was shown, a Search box with the sources its search returned, Section
and CITE boxes the answer holds; then records the drop and ticks its box.
Nothing is ticked from the answer's words about reading or searching. An
attempt that cannot succeed records its drop and ``kx fail`` with the cause
(``--no-retry`` when the prompt cannot fit the window). The API key comes
only from an environment variable (``OPENAI_API_KEY`` unless
``--api-key-env`` names another); it is passed to no search backend, and its
value is redacted from everything the runner writes, logs or tells kx.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.secrets import protect_env, redact_text
from machine.state.headings import headings
from runners.chat.budget import DEFAULT_CONTEXT, Budget, Fit, Item, NoRoom, compact_brief, default_reserve, fit
from runners.chat.client import DEFAULT_BASE_URL, ChatClient, ChatError, ContextOverflow
from runners.chat.conversation import Asking, Conversation, Failure, converse
from runners.chat.evidence import evidenced_refs
from runners.chat.tools import Read, Workbench
from runners.protocol import drop_box_refs, kx, read_brief, record_drop, runner_guard, write

SYSTEM = """You are a runner of a knowledge-expansion plan. Write the knowledge file the brief describes, \
in markdown, and answer with that file only.
- Give every "Section N: ..." of the checklist its own heading: "## Section N: <title>".
- Cite the influential files by number and path ("File 3: path/to/file.md") wherever the brief asks.
- kx has read the PART's files for you (after the brief; a file cut for the context window says how to read the \
rest); call the read_file tool for any other file of the plan's root.
- {searching}
- Worker instructions from the plan:
{instructions}"""
SEARCHING = "kx ran the checklist's searches (their sources are after the brief); call the search tool for more."
NOT_SEARCHING = "No search backend is configured: you cannot search, so do not claim searches or sources."


def say(line: str) -> None:
    """A line of the runner's log, the API key's value (and any other secret) redacted."""
    print(redact_text(line), flush=True)


# --- what kx does before asking --------------------------------------------------------


@dataclass
class Material:
    """What kx read and searched for the model, before the budget cuts it: the items in plan order, and the read
    each file item is (kept so that a fit can say which files the model was shown, and how much)."""

    items: list[Item] = field(default_factory=list)
    reads: dict[str, tuple[Path, Read]] = field(default_factory=dict)  # item title → (real path, its read)

    def shown_to(self, bench: Workbench, fitted: Fit) -> None:
        """The workbench's reads become what this fit shows: a file left out was not read for the model."""
        bench.reads = {}
        for title, (real, read) in self.reads.items():
            if title in fitted.shown:
                bench.reads[real] = Read(read.path, read.size, min(read.shown, fitted.shown[title]), read.files)


def prepare(bench: Workbench, brief: dict[str, Any]) -> Material:
    """Read the influential files and the Read boxes' paths (in plan order), run the Search boxes' queries."""
    named = [(f"File {f['number']}: {f['path']}", f["path"]) for f in brief["influential_files"] if f["path"]]
    named += [(f"Read {box['path']}", box["path"]) for box in brief["boxes"] if box["kind"] == "read" and box.get("path")]
    titles: dict[str, str] = {}
    for title, path in named:
        titles.setdefault(path, title)  # a file both influential and read: shown once
    material = Material()
    for path, title in titles.items():
        text, real = bench.read(path), bench.real(path)
        material.items.append(Item(title, text, path, folder=bool(real and real.is_dir())))
        if real is not None and (read := bench.read_path(real)):
            material.reads[title] = (real, read)
    if bench.search_command:
        for box in brief["boxes"]:
            if box["kind"] == "search" and box.get("query"):
                material.items.append(Item(f'Search: "{box["query"]}"', bench.search(box["query"])))
    return material


def system_prompt(brief: dict[str, Any], searching: bool) -> str:
    instructions = "\n".join(brief["worker_instructions"]) or "(none)"
    return SYSTEM.format(instructions=instructions, searching=SEARCHING if searching else NOT_SEARCHING)


def find_budget(args: argparse.Namespace, brief: dict[str, Any], client: ChatClient) -> Budget:
    """The window: ``--context``, else ``context_tokens`` in the config, else what the server says, else the
    default; the answer's reserve: ``--max-tokens``, else a share of the window."""
    if args.context:
        window, source = args.context, "--context"
    elif brief.get("context_tokens"):
        window, source = brief["context_tokens"], "context_tokens in .kx/config.toml"
    elif told := client.context_window():
        window, source = told[0], f"the server's {told[1]}"
    else:
        window, source = DEFAULT_CONTEXT, "the default"
    return Budget(window, source, args.max_tokens or default_reserve(window))


# --- asking, within the budget -----------------------------------------------------------


@dataclass
class Attempt:
    """What this attempt sent and got: the budget, the prompt that fitted it, the conversation (both tries', when
    the server refused the first for its context window)."""

    budget: Budget
    fitted: Fit | None = None
    talk: Conversation = field(default_factory=Conversation)
    notes: list[str] = field(default_factory=list)


def answer(attempt: Attempt, client: ChatClient, bench: Workbench, brief: dict[str, Any], brief_text: str,
           material: Material, args: argparse.Namespace) -> None:
    """Fit the prompt and ask; a refusal for the context window is asked once more within the window it names."""
    system = system_prompt(brief, searching=bool(bench.search_command))
    for second in (False, True):
        tools = None if args.no_tools else bench.tools()
        try:
            attempt.fitted = fit(system, brief_text, compact_brief(brief), material.items, attempt.budget, tools)
        except NoRoom as no_room:
            raise Failure(f"the prompt cannot fit the model's context window ({attempt.budget.window} tokens,"
                          f" {attempt.budget.source}): {no_room}", retry=False) from None
        material.shown_to(bench, attempt.fitted)
        asking = Asking(client, bench, attempt.budget, stream=args.stream, say=say)
        try:
            ask(asking, attempt.fitted.messages, attempt.talk, args)
            return
        except ContextOverflow as overflow:
            sent = attempt.talk.sent[-1] if attempt.talk.sent else attempt.fitted.sent
            if second:
                raise Failure(f"the prompt cannot fit the model's context window: {overflow}; asked again within"
                              f" {attempt.budget.window} tokens ({sent} sent), refused again", retry=False) from None
            attempt.budget = attempt.budget.tighter(overflow.window, overflow.prompt, sent)
            counted = f", counting {attempt.budget.scale:.2f} tokens for each" if attempt.budget.scale > 1 else ""
            note = (f"the server refused {sent} tokens for its context window ({overflow}); asked again within"
                    f" {attempt.budget.window} tokens, {attempt.budget.reserve} reserved{counted}")
            say(note)
            attempt.notes.append(note)


def refuses_tools(error: ChatError) -> bool:
    return error.status in (400, 422) and "tool" in str(error).lower()


def ask(asking: Asking, history: list[dict[str, Any]], talk: Conversation, args: argparse.Namespace) -> Conversation:
    try:
        return converse(asking, history, talk, use_tools=not args.no_tools)
    except ChatError as error:
        if args.no_tools or isinstance(error, ContextOverflow) or not refuses_tools(error):
            raise
        say(f"the server refused tools ({error}); asking again without them")
        talk.notes.append(f"the server refused tools ({error}); asked again without them")
        return converse(asking, history, talk, use_tools=False)


# --- what the runner records -------------------------------------------------------------


@dataclass
class Verdict:
    ticks: list[list[str]] = field(default_factory=list)  # one kx tick call's arguments each; the drop's apart
    missing: list[str] = field(default_factory=list)


def judge(brief: dict[str, Any], bench: Workbench, answer: str) -> Verdict:
    """Which boxes have evidence: files shown, searches with sources, sections and citations in the answer."""
    verdict = Verdict()
    plain, missing_text = evidenced_refs(brief, answer)
    verdict.missing += missing_text
    for box in brief["boxes"]:
        if box["ticked"]:
            continue
        if box["kind"] == "read":
            real = bench.real(box.get("path"))
            if real is not None and bench.read_path(real):
                plain.append(box["ref"])
            elif real is not None and real.exists():
                verdict.missing.append(f"{box['text']} (left out for lack of room in the context window)")
            else:
                verdict.missing.append(f"{box['text']} (not found in the plan's root)")
        elif box["kind"] == "search":
            sources = bench.sources(box.get("query") or "")
            if sources:
                verdict.ticks.append([box["ref"], *(f"--source={s}" for s in sources)])
            else:
                why = "no sources found" if bench.search_command else "no search backend configured"
                verdict.missing.append(f"{box['text']} ({why})")
    if plain:
        verdict.ticks.insert(0, plain)
    return verdict


def tick(part: str, args: list[str]) -> int:
    """One ``kx tick``; the boxes it ticked (a refusal is printed, and the other calls still tick). kx refuses a
    tick of several boxes whole when one of them lacks its evidence, so a refused one is made again box by box."""
    result = kx("tick", part, *(redact_text(arg) for arg in args))
    say((result.stdout if result.returncode == 0 else result.stderr).strip())
    boxes = [arg for arg in args if not arg.startswith("--")]
    if result.returncode == 0:
        return len(boxes)
    options = [arg for arg in args if arg.startswith("--")]
    return sum(tick(part, [box, *options]) for box in boxes) if len(boxes) > 1 else 0


def budget_lines(attempt: Attempt) -> list[str]:
    budget, fitted, talk = attempt.budget, attempt.fitted, attempt.talk
    named = ": the server names none; set --context or context_tokens" if budget.source == "the default" else ""
    lines = [f"- window: {budget.window} tokens ({budget.source}{named})",
             f"- reserved for the answer: {budget.reserve} tokens (max_tokens, sent with every request)"]
    if fitted:
        form = "full" if fitted.brief_form == "full" else f"compact (the full brief takes {fitted.full_brief} tokens)"
        lines += [f"- brief: {form}", f"- first request: {fitted.sent} tokens (as kx counts them, on the high side)"]
        lines += [f"- cut: {c}" for c in fitted.cut] or ["- cut: nothing"]
        lines += [f"- left out: {t} (read_file can fetch it)" for t in fitted.left_out] or ["- left out: nothing"]
    if talk.sent:
        lines.append(f"- tokens sent per request: {', '.join(map(str, talk.sent))}")
    if talk.finish_reasons:
        lines.append(f"- finish reasons: {', '.join(talk.finish_reasons)}")
    lines += [f"- {note}" for note in [*attempt.notes, *talk.notes]]
    return lines


def requests_line(attempt: Attempt) -> str:
    """What the requests cost, for the log: tokens as kx counted them sent and as the server counted them."""
    talk = attempt.talk
    usage = ", ".join(f"{k} {v}" for k, v in talk.usage.items()) or "not reported"
    return (f"requests: {talk.requests}, {talk.seconds:.1f}s; tokens sent per request (counted by kx):"
            f" {', '.join(map(str, talk.sent)) or 'none'}; server's usage: {usage}; finish reasons:"
            f" {', '.join(talk.finish_reasons) or 'none'}")


def budget_summary(attempt: Attempt) -> str:
    budget, fitted = attempt.budget, attempt.fitted
    line = f"context {budget.window} tokens ({budget.source}), {budget.reserve} reserved"
    if fitted:
        line += f", {fitted.sent} sent; {len(fitted.cut)} cut, {len(fitted.left_out)} left out"
    return line


def drop_text(brief: dict[str, Any], attempt: Attempt, bench: Workbench, held: str, missing: list[str],
              failure: str | None = None) -> str:
    talk = attempt.talk
    usage = ", ".join(f"{k} {v}" for k, v in talk.usage.items()) or "not reported"
    lines = [f"# KNOWLEDGE DROP: {brief['part']} — {brief['title']}", "",
             f"- attempt: {brief['attempt']}", f"- knowledge file: {brief['target']}",
             f"- model: {talk.model or 'no answer'}", f"- tokens: {usage}", f"- duration: {talk.seconds:.1f}s",
             f"- requests: {talk.requests}", f"- tool calls: {talk.tool_calls}"]
    if failure:
        lines += ["", "## Failed", "", f"- {failure}", "- nothing was written to the knowledge file"]
    lines += ["", "## Context budget", "", *budget_lines(attempt), "", "## Read", ""]
    lines += [f"- {r.path}: {r.shown} of {r.size} bytes shown" + (f" ({r.files} files)" if r.files > 1 else "")
              for r in bench.reads.values()] or ["- nothing"]
    lines += ["", "## Searches", ""]
    for key, sources in bench.searches.items():
        lines += [f"- {bench.queries[key]}: {len(sources)} sources", *(f"  - {s}" for s in sources)]
    if not bench.searches:
        lines.append("- none run" + ("" if bench.search_command else " (no search backend configured)"))
    lines += ["", "## Sections found", ""]
    lines += [f"- {h}" for h in ([] if failure else headings(talk.text))] or ["- none"]
    lines += ["", "## Boxes with evidence", "", f"- {held}", "", "## Missing", ""]
    lines += [f"- {text}" for text in missing] or ["- nothing"]
    lines += ["", "## Problems", ""] + [f"- {p}" for p in bench.problems] if bench.problems else []
    return redact_text("\n".join(lines) + "\n")


def summary(brief: dict[str, Any], bench: Workbench, attempt: Attempt, held: int, missing: int) -> str:
    line = f"{brief['attempt']}: {held} boxes with evidence, {missing} without; {budget_summary(attempt)}"
    searches = sum(1 for box in brief["boxes"] if box["kind"] == "search" and not box["ticked"])
    if searches and not bench.search_command:
        line += (f"; {searches} Search boxes left unticked: no search backend"
                 " (set search_command in .kx/config.toml or --search-command)")
    elif failed := next((p for p in bench.problems if p.startswith("search ")), None):
        line += f"; {failed}"  # the backend's failure or silence is why a Search box stays unticked
    return line


def give_up(brief: dict[str, Any], bench: Workbench, attempt: Attempt, reason: str, retry: bool) -> int:
    """The attempt cannot succeed: its drop says why and what was sent, and ``kx fail`` records the cause."""
    part = brief["part"]
    say(requests_line(attempt))
    ticked = sum(1 for box in brief["boxes"] if box["ticked"])
    held = f"{ticked} of {len(brief['boxes'])} (this attempt ticked none)"
    record_drop(brief, drop_text(brief, attempt, bench, held, [], failure=reason))
    reason = redact_text(f"{reason}; {budget_summary(attempt)}")
    print(reason, file=sys.stderr, flush=True)
    kx("fail", part, "--reason", reason, *([] if retry else ["--no-retry"]))
    return 1


def finish_answer(brief: dict[str, Any], bench: Workbench, attempt: Attempt) -> int:
    """Write the answer, tick what it and the workbench give evidence for, record the drop, tick its box."""
    part, text = brief["part"], redact_text(attempt.talk.text)
    if not text.strip():  # the client refuses empty answers; a knowledge file is never written empty all the same
        return give_up(brief, bench, attempt, "the model's answer was empty", retry=True)
    write(brief, os.environ.get("KX_TARGET"), text)
    verdict = judge(brief, bench, attempt.talk.text)
    held = sum(1 for box in brief["boxes"] if box["ticked"]) + sum(tick(part, call) for call in verdict.ticks)
    drops = drop_box_refs(brief)
    shown = f"{held} of {len(brief['boxes'])} hold evidence now" + (
        "; the drop box is ticked once this drop is recorded" if drops else "")
    record_drop(brief, drop_text(brief, attempt, bench, shown, verdict.missing))
    if drops:
        held += tick(part, drops)
    say(requests_line(attempt))
    say(summary(brief, bench, attempt, held, len(verdict.missing)))
    return 0


# --- the runner --------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


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
    parser.add_argument("--context", type=positive, metavar="TOKENS",
                        help="the model's context window (default: context_tokens in .kx/config.toml, else what the"
                             f" server says, else {DEFAULT_CONTEXT})")
    parser.add_argument("--max-tokens", type=positive, metavar="TOKENS",
                        help="tokens reserved for the answer, sent as max_tokens (default: a quarter of the window,"
                             " at most 4096)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--retries", type=int, default=4, help="retries on connection errors, 429 and 5xx")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds")
    args = parser.parse_args(argv)
    if args.search_command is not None:
        args.search_command = shlex.split(args.search_command)
        if not any("{query}" in part for part in args.search_command):
            parser.error('--search-command needs "{query}" where the query goes, e.g. "my-search {query}"')
    return args


def key_hint(error: ChatError, variable: str) -> str:
    """Where the key comes from, when the server's refusal may be about it (401, 403; a 5xx when none was sent)."""
    unset = not os.environ.get(variable)
    if error.status in (401, 403):
        return f"; the API key is read from ${variable}" + (", which is not set" if unset else "")
    if error.status is not None and error.status >= 500 and unset:
        return f"; no API key was sent (${variable} is not set; --api-key-env names another variable)"
    return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protect_env(args.api_key_env)  # redact_text, here and in the kx calls, hides the key's value
    brief = read_brief()
    brief_text = Path(os.environ["KX_BRIEF"]).read_text(encoding="utf-8")
    bench = Workbench(runner_guard(brief), args.search_command or brief.get("search_command"),
                      hidden_env=(args.api_key_env,))
    client = ChatClient(args.base_url, args.model, os.environ.get(args.api_key_env), timeout=args.timeout,
                        retries=args.retries, backoff=args.backoff)
    client.on_retry = lambda reason, wait: say(f"retrying in {wait:.1f}s: {reason}")
    try:
        attempt = Attempt(find_budget(args, brief, client))
        say(f"{brief['attempt']}: asking {args.model} at {redact_text(args.base_url)}; {budget_summary(attempt)}")
        material = prepare(bench, brief)
        try:
            answer(attempt, client, bench, brief, brief_text, material, args)
        except ChatError as error:
            return give_up(brief, bench, attempt, f"chat server: {error}{key_hint(error, args.api_key_env)}",
                           retry=True)
        except Failure as failure:
            return give_up(brief, bench, attempt, failure.reason, retry=failure.retry)
    finally:
        client.close()
    return finish_answer(brief, bench, attempt)


if __name__ == "__main__":
    sys.exit(main())
