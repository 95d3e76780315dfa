"""The context budget: what of a PART's brief and material fits the model's window, and what is cut or left out.

A model sees its prompt and writes its answer in one window of tokens. The
runner reserves the answer's share (``max_tokens``, sent on every request),
counts the prompt conservatively, and fits it: the instructions and the boxes
first and whole (the brief's compact form when the full one would crowd out
the files), then the influential and Read files and the searches' sources in
plan order, each cut to its share with a marker that says how ``read_file``
fetches the rest. Whatever does not fit at all is left out and named, so that
the drop and the runner's last line can say what the model did not see.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONTEXT = 4096  # tokens, when neither the spec, the config nor the server names the window
ANSWER_SHARE = 4  # the answer's default reserve: a quarter of the window...
ANSWER_CAP = 4096  # ...at most this (many hosted models refuse a larger max_tokens)
MESSAGE_OVERHEAD = 8  # tokens a chat template adds around each message (role markers, separators)
MIN_SHARE = 64  # tokens: an item whose share would be smaller is left out rather than shown as a stub

# Counting without the model's tokenizer (none is downloaded at run time). A flat bytes / 3 is not conservative:
# measured with SmolLM2's tokenizer (a 49k vocabulary, among the least efficient), kx's brief takes 2.9 bytes a
# token, numbers 1 (a token a digit), CJK and the plans' mojibake 1.5-1.9. So text is cut into the pieces byte-level
# BPE tokenizers split it into first, and each piece is priced: a letter run a token per 4 letters (and one per
# case change inside it, as in random-looking strings), a digit, an ASCII sign or a line break one token, a
# character outside ASCII one token per UTF-8 byte, a single space before a word nothing. Against SmolLM2 this is
# 1.2-1.35x the real count for briefs, plans, markdown, code and JSON, 1.5-1.6x for prose, CJK and mojibake, 1.0x
# for numbers; it runs under the real count only for random strings and some non-English words (0.8-0.9x), where
# a server that refuses the prompt names its own count and the runner asks again with it.
PIECES = re.compile(r"[A-Za-z]+|\d|[^\x00-\x7f]|\s+|[^\sA-Za-z\d]")
CASE_CHANGE = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")
LETTERS_PER_TOKEN = 4


def tokens(text: str) -> int:
    """A conservative count of the tokens ``text`` takes (see the pricing above)."""
    return sum(cost for _, cost in _priced(text))


def _priced(text: str):
    """Each piece of ``text``: (where it ends, its tokens)."""
    pieces = list(PIECES.finditer(text))
    for piece, following in zip(pieces, [*pieces[1:], None]):
        word, first = piece.group(), piece.group()[0]
        if first.isascii() and first.isalpha():
            cost = math.ceil(len(word) / LETTERS_PER_TOKEN) + len(CASE_CHANGE.findall(word))
        elif first.isspace():
            before_a_digit = following is not None and following.group()[0].isdigit()
            cost = 1 if "\n" in word or len(word) > 1 or before_a_digit else 0
        elif not first.isascii():
            cost = len(word.encode("utf-8", "replace"))
        else:
            cost = 1
        yield piece.end(), cost


def within(text: str, share: int) -> int:
    """How many characters of ``text`` fit in ``share`` tokens."""
    spent, end = 0, 0
    for piece_end, cost in _priced(text):
        if spent + cost > share:
            break
        spent, end = spent + cost, piece_end
    return end


def prompt_tokens(messages: list[dict[str, Any]], tools: list[dict] | None = None) -> int:
    """The tokens ``messages`` (and the ``tools`` offered, which templates put into the prompt) take."""
    count = sum(MESSAGE_OVERHEAD + tokens(str(m.get("content") or "")) for m in messages)
    count += sum(tokens(json.dumps(m["tool_calls"])) for m in messages if m.get("tool_calls"))
    return count + (tokens(json.dumps(tools)) if tools else 0)


def default_reserve(window: int) -> int:
    return max(1, min(window // ANSWER_SHARE, ANSWER_CAP))


@dataclass
class Budget:
    window: int  # tokens the model sees and writes in
    source: str  # where the window's size came from
    reserve: int  # tokens kept for the answer: max_tokens
    scale: float = 1.0  # > 1 after a server counted more tokens than tokens() did

    def limit(self) -> int:
        """The tokens (as :func:`tokens` counts them) a prompt may take: the window less the answer's reserve,
        less what a server counted beyond tokens()' estimate."""
        return math.floor((self.window - self.reserve) / self.scale)

    def room(self, messages: list[dict[str, Any]], tools: list[dict] | None = None) -> int:
        """Tokens still free for the prompt after ``messages`` (and the ``tools`` offered)."""
        return self.limit() - prompt_tokens(messages, tools)

    def tighter(self, window: int | None, prompt: int | None, sent: int) -> Budget:
        """The budget after a server refused ``sent`` tokens (as counted here) for its window: its window as it
        named it, its count of the prompt against ours; naming neither, a quarter less room."""
        scale = max(self.scale, prompt / max(1, sent) * 1.05) if prompt else self.scale  # 5% to spare
        if window and window < self.window:
            size, source = window, f"{window} as the server's refusal named it"
        elif prompt:
            size, source = self.window, self.source
        else:
            size, source = self.window * 3 // 4, f"a quarter less than {self.window} after the server's refusal"
        return Budget(size, source, min(self.reserve, default_reserve(size)), scale)


class NoRoom(Exception):
    """Even the instructions and the boxes do not fit beside the answer's reserve."""


@dataclass
class Item:
    """A piece of material for the prompt: a file kx read, or a search's sources."""

    title: str  # "File 3: path", "Read path", 'Search: "query"'
    text: str
    path: str | None = None  # what read_file takes for the rest (files only)
    folder: bool = False


@dataclass
class Fit:
    """The prompt that fits, and what it cost: what was cut (title → bytes shown, bytes) and left out."""

    messages: list[dict[str, Any]]
    brief_form: str  # "full" or "compact"
    sent: int  # tokens, as counted here
    shown: dict[str, int] = field(default_factory=dict)  # each item's title → bytes of its text shown
    cut: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    full_brief: int = 0  # tokens the full brief takes


HEADER = "# What kx read and searched for you"
FIT_TRIES = 4  # pieces priced apart cost a few tokens more joined: a fit over its room is redone this often


def fit(system: str, full_brief: str, compact_brief: str, items: list[Item], budget: Budget,
        tools: list[dict] | None) -> Fit:
    """The system and user messages that fit ``budget`` (see the module's docstring)."""
    room = budget.room([{"role": "system", "content": system}, {"role": "user", "content": ""}], tools)
    whole = [tokens(block(item, item.text)) for item in items]
    full = tokens(full_brief)
    form, brief = ("full", full_brief) if full + sum(whole) <= room or full <= room // 2 else ("compact", compact_brief)
    brief_tokens = full if form == "full" else tokens(brief)
    left = room - brief_tokens - tokens(HEADER) - 2
    if left < 0:
        raise NoRoom(f"the brief's boxes alone take {brief_tokens} tokens, and {room} are left after the"
                     f" instructions and the {budget.reserve} reserved for the answer")
    for _ in range(FIT_TRIES):
        result = _fitted(system, brief, form, items, whole, share_out(items, whole, left), tools)
        result.full_brief = full
        over = result.sent - budget.limit()
        if over <= 0:
            return result
        left -= over
    raise NoRoom(f"the material could not be cut to the {room} tokens left after the instructions")


def _fitted(system: str, brief: str, form: str, items: list[Item], whole: list[int], shares: list[int | None],
            tools: list[dict] | None) -> Fit:
    """The prompt with each item shown within its share; ``whole``: each item's block, whole, in tokens."""
    blocks, result = [HEADER, ""], Fit([], form, 0)
    for item, cost, share in zip(items, whole, shares):
        if share is None:
            result.left_out.append(item.title)
            continue
        whole_fits = share >= cost
        text = item.text if whole_fits else cut(item, share)
        if not whole_fits:
            result.cut.append(f"{item.title}: {len(text.encode())} of {len(item.text.encode())} bytes shown")
        result.shown[item.title] = len(text.encode())
        blocks.append(block(item, text))
    if result.left_out:
        blocks += ["## Left out for lack of room", "", *[f"- {title}" for title in result.left_out],
                   "", "read_file fetches any of these files.", ""]
    result.messages = [{"role": "system", "content": system},
                       {"role": "user", "content": f"{brief}\n\n" + "\n".join(blocks)}]
    result.sent = prompt_tokens(result.messages, tools)
    return result


def share_out(items: list[Item], costs: list[int], room: int) -> list[int | None]:
    """Each item's share of ``room`` in tokens (None: left out). Items that fit their fair share are shown whole
    and leave the rest to the others; while the fair share is below MIN_SHARE, the last items are left out."""
    kept = list(range(len(items)))
    while kept and room // len(kept) < MIN_SHARE:
        kept.pop()
    shares: list[int | None] = [None] * len(items)
    left, waiting = room, sorted(kept, key=lambda i: costs[i])
    while waiting:
        fair = left // len(waiting)
        if costs[waiting[0]] > fair:
            for i in waiting:
                shares[i] = fair
            break
        first = waiting.pop(0)
        shares[first], left = costs[first], left - costs[first]
    return shares


def block(item: Item, text: str) -> str:
    return f"## {item.title}\n\n{fenced(text)}\n"


def fenced(text: str) -> str:
    """``text`` in a code fence longer than any fence inside it."""
    longest = max((len(run) for run in re.findall(r"^\s*(`{3,})", text, re.MULTILINE)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def cut(item: Item, share: int) -> str:
    """``item.text`` cut to fit ``share`` tokens with its block."""
    return trim(item.text, share - tokens(block(item, "")), item.path, item.folder)


def trim(text: str, share: int, path: str | None = None, folder: bool = False) -> str:
    """``text`` cut to ``share`` tokens, ending at a line where one is near, with a marker that says how much was
    shown and how ``read_file`` fetches the rest of ``path``."""
    if tokens(text) <= share:
        return text
    data = text[: within(text, max(0, share - tokens(cut_marker(text, 10**9, path, folder))))]
    line_end = data.rfind("\n")
    if line_end > len(data) * 4 // 5:
        data = data[: line_end + 1]
    return data + cut_marker(text, len(data.encode()), path, folder)


def cut_marker(text: str, shown: int, path: str | None, folder: bool) -> str:
    if path and not folder:
        how = f'read_file with {{"path": {json.dumps(path)}, "offset": {shown}}} returns the rest'
    elif path:
        how = "read_file on a file of this folder (with an offset) returns the rest"
    else:
        how = "the rest is not shown"
    return f"\n[... cut for the context window: {shown} of {len(text.encode())} bytes shown; {how}]"


def compact_brief(brief: dict[str, Any]) -> str:
    """The brief for a small window: the PART, its target, the files to cite and the boxes, nothing else."""
    lines = [f"# Brief: {brief['part']} — {brief['title']}", "", f"Target file: {brief['target'] or '(not named)'}"]
    if brief["influential_files"]:
        lines += ["", "Influential files (cite each as \"File N: path\"):"]
        lines += [f"- File {f['number']}: {f['path'] or '(not in the plan list)'}" for f in brief["influential_files"]]
    lines += ["", "Checklist:"]
    lines += [f"- [{'x' if box['ticked'] else ' '}] {box['ref']}: {box['text']}" for box in brief["boxes"]]
    return "\n".join(lines)
