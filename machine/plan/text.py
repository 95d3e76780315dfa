"""Reading plan bytes into text and lines without losing a byte."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from ledger.errors import BadInput

BOM = "\ufeff"
QUOTE_LIMIT = 80  # characters of its input an error quotes
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_ENDING = re.compile(r"(?:\r\n|\r|\n)\Z")
# What a terminal would obey rather than show: whole escape sequences first, then any other control character
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c)"  # OSC ... BEL or ST: window title, hyperlink, clipboard
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c)"  # DCS, SOS, PM, APC ... ST
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, clearing the screen
    r"|\x1b[ -/]*[0-~]",  # any other escape (ESC c resets the terminal)
    re.DOTALL,
)
# C0 but newline and tab, DEL, C1, and the bidirectional controls that reorder what follows ('gnp.exe' shown as
# 'exe.png'): embeddings, overrides, isolates and marks
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class PlanTextError(ValueError):
    """The bytes are not a readable plan (empty, binary, not UTF-8)."""


def decode(raw: bytes, name: str = "plan") -> str:
    """The file's text, BOM kept, so that ``text.encode()`` gives ``raw`` back."""
    if not raw.strip():
        raise PlanTextError(f"{name} is empty")
    if b"\x00" in raw or raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        wide = _wide_encoding(raw)
        if wide:
            raise PlanTextError(f"{name} is encoded in {wide}: {wide} is not supported; save it as UTF-8")
        raise PlanTextError(f"{name} is a binary file (it contains NUL bytes), not a markdown plan")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanTextError(
            f"{name} is not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None


def _wide_encoding(raw: bytes) -> str | None:
    """The wide encoding the bytes are text in, "UTF-16" or "UTF-32" (by its BOM, or mostly-ASCII text's NULs)."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "UTF-32"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "UTF-16"
    high, low = raw[0::2], raw[1::2]  # ASCII in UTF-16 has a NUL in every other byte, and only there
    if len(raw) % 2 == 0 and any(a.count(0) * 2 >= len(a) and 0 not in b for a, b in ((high, low), (low, high))):
        return "UTF-16"
    return None


def printable(text: str) -> str:
    """``text`` as a terminal may show it: without escape sequences, control characters (newline, tab kept) and
    bidirectional controls.

    For what kx prints for a person; the ledger, files and ``--json`` keep the text as written."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def one_line(text: str, limit: int = 200) -> str:
    """``text`` folded to one line for a listing: newlines and tabs become spaces, at most ``limit`` characters
    (cut at a word with an ellipsis). Reasons and runners' output are others' text: one must not break a listing."""
    return cut(" ".join(printable(text).split()), limit)


def counted(n: int, word: str, words: str | None = None) -> str:
    """``1 event``, ``3 events``: a count with its noun."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters long: cut after its last whole word that fits (inside a long word when
    there is none in the last third), with an ellipsis."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 1]
    space = kept.rfind(" ")
    return (kept[:space] if space >= limit * 2 // 3 else kept).rstrip() + "…"


def quoted(text: str, limit: int = QUOTE_LIMIT) -> str:
    """How an error quotes what it was given: in quotes, at most ``limit`` characters of it."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def bounded(what: str, text: str, limit: int) -> str:
    """``text``, or bad input (exit 2) when it is longer than ``limit`` bytes of UTF-8: free text is bounded."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise BadInput(f"{what} is {size:,} bytes; give at most {limit:,} ({quoted(text)})")
    return text


def split_lines(text: str) -> list[str]:
    """Lines with their endings (LF, CRLF or CR); ``"".join`` gives ``text`` back."""
    return _LINE.findall(text)


def body(line: str) -> str:
    """The line without its ending."""
    return _ENDING.sub("", line)


def read_file(file: Path) -> bytes:
    """A plan file's bytes, or a one-line :class:`BadInput`."""
    if not file.exists():
        raise BadInput(f"no such plan file: {file}")
    if not file.is_file():
        raise BadInput(f"{file} is not a file; give the plan's markdown file")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from None
