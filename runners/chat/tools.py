"""What the ``openai`` runner does for a model: read files inside the plan's root and run searches.

A plain chat completion can neither read nor search, so the runner does both
itself: it reads the PART's influential files and Read paths before asking,
and offers the model two function-calling tools, ``read_file`` and (when a
search backend is configured) ``search``. The :class:`Workbench` remembers
what it really read and which sources each search really returned; those,
and never the answer's words, are what the runner ticks Read and Search
boxes with (CONTRACT section 7).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from ledger.errors import BadInput
from machine.plan.paths import PathGuard
from machine.plan.text import one_line, quoted
from machine.state.evidence import SOURCE_FORMS, folder_files, locate, source_form

FILE_CAP = 64 * 1024  # bytes of one file shown to the model
TOTAL_CAP = 512 * 1024  # bytes shown over the whole attempt
FOLDER_FILES = 40  # files of a folder read at most
SOURCES_CAP = 20  # sources kept from one search
SOURCE_BYTES = 2048  # the longest source a tick takes
SEARCH_TIMEOUT_S = 60.0

TOOLS = {
    "read_file": {
        "description": "Read a file (or list and read a folder) inside the plan's root. Paths are relative to the root.",
        "parameters": {"type": "object", "properties": {
            "path": {"type": "string", "description": "e.g. docs/intro.md"},
            "offset": {"type": "integer", "description": "bytes of the file to skip: where a cut one left off"}},
            "required": ["path"]},
    },
    "search": {
        "description": "Search the web (the plan's configured search backend). Returns one source per line.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}


def same_query(query: str) -> str:
    """Queries compare without case, surrounding quotes or repeated spaces."""
    return " ".join(query.strip().strip("\"“”'‘’").split()).casefold()


@dataclass
class Read:
    path: str  # as asked, relative to the root
    size: int  # bytes on disk (a folder: of the files read)
    shown: int  # bytes shown to the model
    files: int = 1


@dataclass
class Workbench:
    guard: PathGuard
    search_command: list[str] | None = None
    hidden_env: tuple[str, ...] = ()  # variables a search backend does not get (the API key's)
    reads: dict[Path, Read] = field(default_factory=dict)  # by real path
    searches: dict[str, list[str]] = field(default_factory=dict)  # sources, by same_query
    queries: dict[str, str] = field(default_factory=dict)  # each query as first asked, by same_query
    problems: list[str] = field(default_factory=list)
    shown: int = 0

    def tools(self) -> list[dict]:
        names = ["read_file"] + (["search"] if self.search_command else [])
        return [{"type": "function", "function": {"name": name, **TOOLS[name]}} for name in names]

    def call(self, name: str, arguments: str) -> str:
        """A tool call's result, as text for the model; a bad call is an error message, never an exception."""
        try:
            args = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            return f"error: the arguments are not JSON: {arguments[:200]}"
        if not isinstance(args, dict):
            return "error: the arguments must be a JSON object"
        if name == "read_file" and isinstance(args.get("path"), str):
            offset = args.get("offset") or 0
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                return "error: offset must be a whole number of bytes, 0 or more"
            return self.read(args["path"], offset)
        if name == "search" and self.search_command and isinstance(args.get("query"), str):
            return self.search(args["query"])
        return f"error: no tool {name!r} with those arguments; tools: {', '.join(t['function']['name'] for t in self.tools())}"

    # --- reading ---------------------------------------------------------------------

    def read(self, path: str, offset: int = 0) -> str:
        """A file's text from ``offset`` (a folder: its files'), within the caps; recorded as read."""
        try:
            real = self.guard.check(path.strip(), may_be_plan=True)
        except BadInput as refusal:
            return self._problem(f"error: {refusal.message}")
        if real.is_dir():
            return self._read_folder(path, real)
        if not real.is_file():
            return self._problem(f"error: {path} does not exist in the plan's root")
        size = real.stat().st_size
        if offset and offset >= size:
            return f"error: offset {offset} is past the end of {path} ({size} bytes)"
        text, size, shown = self._contents(real, offset)
        earlier = self.reads.get(real)
        self.reads[real] = Read(path, size, min(size, shown + (earlier.shown if earlier else 0)))
        return text

    def read_path(self, real: Path) -> Read | None:
        return self.reads.get(real)

    def real(self, path: str | None) -> Path | None:
        """The real path ``read`` takes ``path`` for, or None when it may not read it."""
        try:
            return self.guard.check(path.strip(), may_be_plan=True) if path else None
        except BadInput:
            return None

    def shown_only(self, path: str | None, shown: int) -> None:
        """The model saw only about ``shown`` bytes of what reading ``path`` returned (cut for its context window)."""
        real = self.real(path)
        if real in self.reads:
            self.reads[real] = replace(self.reads[real], shown=min(self.reads[real].shown, shown))

    def _read_folder(self, path: str, real: Path) -> str:
        """The folder's files as kx hashes them (:func:`folder_files`), the first ``FOLDER_FILES`` shown; symlink
        loops and what cannot be read are skipped and said."""
        found = folder_files(real, self.guard)
        files, skipped = found.files, found.skipped
        parts, size, shown, read = [f"{path}: a folder of {len(files)} files"], 0, 0, 0
        for relative, file in files[:FOLDER_FILES]:
            try:
                text, file_size, file_shown = self._contents(file)
            except OSError as error:
                skipped.append(f"{relative} (cannot be read: {error.strerror})")
                continue
            parts.append(f"\n=== {(real / relative).relative_to(self.guard.root).as_posix()} ===\n{text}")
            size, shown, read = size + file_size, shown + file_shown, read + 1
        if len(files) > FOLDER_FILES:
            parts.append(f"\n({len(files) - FOLDER_FILES} more files not shown)")
        if skipped:
            parts.append(self._problem(f"{path}: skipped {'; '.join(skipped)}"))
        self.reads[real] = Read(path, size, shown, files=read)
        return "\n".join(parts)

    def _contents(self, file: Path, offset: int = 0) -> tuple[str, int, int]:
        """(text for the model from ``offset``, size on disk, bytes shown), within the caps."""
        size = file.stat().st_size
        room = max(0, min(FILE_CAP, TOTAL_CAP - self.shown))
        with file.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(room)
        if b"\0" in data:
            return f"[a binary file of {size} bytes]", size, 0
        self.shown += len(data)
        text = data.decode("utf-8", errors="replace")
        if offset + len(data) < size:
            start = f" from byte {offset}" if offset else ""
            text += (f"\n[... shown {len(data)} of {size} bytes{start}; read_file with"
                     f" \"offset\": {offset + len(data)} returns the rest]")
        return text, size, len(data)

    # --- searching -------------------------------------------------------------------

    def search(self, query: str) -> str:
        key = same_query(query)
        if key not in self.searches:
            self.queries[key] = query
            self.searches[key] = self._run_search(query)
        sources = self.searches[key]
        if not sources:
            return f"no sources found for {query!r}"
        return "\n".join(f"{n}. {source}" for n, source in enumerate(sources, 1))

    def sources(self, query: str) -> list[str]:
        return self.searches.get(same_query(query), [])

    def _run_search(self, query: str) -> list[str]:
        """The sources among the backend's lines (CONTRACT section 7); the rest, a failure or nothing at all is a
        problem the drop and the runner's last line report."""
        argv = [part.replace("{query}", query) for part in self.search_command or []]
        env = {k: v for k, v in os.environ.items() if k not in self.hidden_env}
        try:
            done = subprocess.run(argv, capture_output=True, timeout=SEARCH_TIMEOUT_S, cwd=self.guard.root,
                                  stdin=subprocess.DEVNULL, env=env, check=False)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:  # ValueError: a NUL byte in the query
            self._problem(f"search {quoted(query)}: the backend {argv[0]!r} did not run ({type(exc).__name__})")
            return []
        if done.returncode != 0:
            last = one_line((done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1])
            self._problem(f"search {quoted(query)}: the backend exited with status {done.returncode}: {last}".rstrip(": "))
            return []
        sources, others = [], []
        for line in filter(None, (raw.strip() for raw in done.stdout.splitlines())):
            text = _text_line(line)
            (sources if text is not None and self.is_source(text) else others).append(text or "[binary]")
        if others:
            self._problem(f"search {quoted(query)}: {len(others)} of its lines are not sources (first:"
                          f" {quoted(others[0], 60)}); a source is {SOURCE_FORMS}")
        elif not sources:
            self._problem(f"search {quoted(query)}: the backend printed no source")
        return list(dict.fromkeys(sources))[:SOURCES_CAP]

    def is_source(self, text: str) -> bool:
        """A URL, DOI or arXiv id, or a file inside the plan's root, and no longer than a tick takes."""
        if len(text.encode()) > SOURCE_BYTES:
            return False
        return source_form(text) is not None or locate(self.guard, text)[0] is not None

    def _problem(self, message: str) -> str:
        self.problems.append(message)
        return message


def _text_line(line: bytes) -> str | None:
    """A line of the backend's output as text, or None when it is binary (a NUL byte, or not UTF-8)."""
    if b"\0" in line:
        return None
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None
