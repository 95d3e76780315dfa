"""The built-in ``openai`` runner: one PART through an OpenAI-compatible chat-completions server.

    kx run --runner openai --model NAME [--base-url URL]

It sends the worker instructions and the PART's brief, writes the answer to
the PART's target file, writes the KNOWLEDGE DROP (model, tokens, duration,
sections found, what is missing), records the drop and ticks only the boxes
the answer gives evidence for — the evidence rule then decides success. The
API key comes only from an environment variable (``OPENAI_API_KEY`` unless
``--api-key-env`` names another); it is never written anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ledger.secrets import protect_env
from runners.chat_client import DEFAULT_BASE_URL, ChatClient, ChatError, ChatResult
from runners.evidence import evidenced_refs, section_headings
from runners.protocol import check, drop_box_refs, kx, read_brief, record_drop, write

SYSTEM = """You are a runner of a knowledge-expansion plan. Write the knowledge file the brief describes, \
in markdown, and answer with that file only.
- Give every "Section N: ..." of the checklist its own heading: "## Section N: <title>".
- Cite the influential files by number and path ("File 3: path/to/file.md") wherever the brief asks.
- Name each file the checklist says to read, and list the searches you would run under "## Searches", \
each with its exact query.
- Worker instructions from the plan:
{instructions}"""


def messages(brief: dict, brief_text: str) -> list[dict[str, str]]:
    instructions = "\n".join(brief["worker_instructions"]) or "(none)"
    return [{"role": "system", "content": SYSTEM.format(instructions=instructions)},
            {"role": "user", "content": brief_text}]


def drop_text(brief: dict, result: ChatResult, found: list[str], missing: list[str]) -> str:
    usage = ", ".join(f"{k} {v}" for k, v in result.usage.items() if isinstance(v, int)) or "not reported"
    lines = [f"# KNOWLEDGE DROP: {brief['part']} — {brief['title']}", "",
             f"- attempt: {brief['attempt']}", f"- knowledge file: {brief['target']}",
             f"- model: {result.model}", f"- tokens: {usage}", f"- duration: {result.seconds:.1f}s",
             f"- requests: {result.attempts}", "", "## Sections found", ""]
    lines += [f"- {h}" for h in section_headings(result.text)] or ["- none"]
    lines += ["", "## Boxes with evidence", "", f"- {len(found)} of {len(brief['boxes'])}", "",
              "## Missing", ""]
    lines += [f"- {text}" for text in missing] or ["- nothing"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kx run --runner openai", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="NAME",
                        help="the environment variable holding the API key")
    parser.add_argument("--stream", action="store_true", help="stream the answer, showing progress in the log")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--retries", type=int, default=4, help="retries on connection errors, 429 and 5xx")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protect_env(args.api_key_env)  # the kx calls below redact the key from what they record and log
    part = os.environ["KX_PART"]
    brief = read_brief()
    brief_text = Path(os.environ["KX_BRIEF"]).read_text(encoding="utf-8")
    client = ChatClient(args.base_url, args.model, os.environ.get(args.api_key_env), timeout=args.timeout,
                        retries=args.retries, backoff=args.backoff)
    client.on_retry = lambda reason, wait: print(f"retrying in {wait:.1f}s: {reason}", flush=True)
    print(f"{brief['attempt']}: asking {args.model} at {args.base_url}", flush=True)
    try:
        result = client.complete(messages(brief, brief_text), stream=args.stream,
                                 on_text=lambda text: print(".", end="", flush=True))
    except ChatError as error:
        reason = f"chat server: {error}"
        print(reason, file=sys.stderr, flush=True)
        kx("fail", part, "--reason", reason)
        return 1
    finally:
        client.close()
    write(brief, os.environ.get("KX_TARGET"), result.text)
    found, missing = evidenced_refs(brief, result.text)
    record_drop(brief, drop_text(brief, result, found, missing))
    refs = found + drop_box_refs(brief)
    if refs:
        check(kx("tick", part, *refs))
    print(f"{brief['attempt']}: {len(refs)} boxes with evidence, {len(missing)} without", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
