"""The plan's configuration as last checked: the settings every act reads, kept so that pydantic need not load.

Checking ``config.toml`` (:mod:`machine.state.config`) imports pydantic and builds its validators, which cost a
``kx tick`` as much as the rest of it. So once a check passes, the settings acts read (:data:`KEPT`) are kept
in ``config.checked.json`` beside it, under the SHA-256 of the file's bytes and of the checking code. A command
that finds its file's entry there reads them without checking; any other setting (a runner's, Ray's) is checked
from the same bytes when first asked for. An edited file, new checking code or a damaged cache is checked
anew, and a file that fails its check is never kept.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from ledger.files import open_regular, write_atomic
from machine.defaults import CONFIG_FILE, EVIDENCE_POLICY, MAX_CONFIG_BYTES, SOURCES_POLICY

CACHE_FILE = "config.checked.json"  # beside config.toml
FORMAT = 1  # bump when the cache's shape changes
KEPT: dict[str, type | tuple[type, ...]] = {  # the settings acts read, and the JSON types they are kept as
    "evidence": str, "require_all_ticked": bool, "sources": str, "timezone": str, "lease_seconds": (int, float),
}
_CHECKING_CODE = Path(__file__).with_name("config.py")


class Settings:
    """A plan's settings: the kept ones at hand, any other from the full check (made when first asked for)."""

    def __init__(self, kept: dict[str, Any], check: Callable[[], Any]) -> None:
        self._kept = kept
        self._check = cache(check)

    @property
    def evidence_policy(self) -> str:
        """``evidence``, else the deprecated ``require_all_ticked = false`` as "drop", else EVIDENCE_POLICY."""
        if self._kept["evidence"] is not None:
            return self._kept["evidence"]
        return "drop" if self._kept["require_all_ticked"] is False else EVIDENCE_POLICY

    @property
    def sources_policy(self) -> str:
        return self._kept["sources"] or SOURCES_POLICY

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._kept[name] if name in KEPT else getattr(self._check(), name)


def load(ledger_folder: Path, plan_id: str) -> Settings:
    """The plan's settings from ``config.toml`` in ``ledger_folder``: kept ones when its bytes were checked
    before, else checked now (pydantic; exit 2 for a bad file) and kept."""
    content = _config_bytes(ledger_folder / CONFIG_FILE)
    if content is None:
        return Settings(dict.fromkeys(KEPT), _defaults)
    code = _code_digest()  # None: no source to key the cache by (kx run from bytecode alone): checked every time
    key = {"format": FORMAT, "config_sha256": hashlib.sha256(content).hexdigest(), "code_sha256": code}
    cached = _read_cache(ledger_folder / CACHE_FILE) if code is not None else None
    same_file = cached is not None and all(cached.get(name) == value for name, value in key.items())
    entry = cached["plans"].get(plan_id) if same_file else None
    if _well_formed(entry):
        return Settings(entry, lambda: _checked(ledger_folder, plan_id, content))
    checked = _checked(ledger_folder, plan_id, content)
    kept = {name: getattr(checked, name) for name in KEPT}
    if code is not None:
        plans = {**cached["plans"], plan_id: kept} if same_file else {plan_id: kept}
        _write_cache(ledger_folder / CACHE_FILE, {**key, "plans": plans})
    return Settings(kept, lambda: checked)


def _defaults() -> Any:
    from machine.state.config import PlanConfig

    return PlanConfig.model_construct()


def _checked(ledger_folder: Path, plan_id: str, content: bytes) -> Any:
    from machine.state.config import load_config

    return load_config(ledger_folder, plan_id, content)


def _config_bytes(path: Path) -> bytes | None:
    """The configuration's bytes (one more than any file may have, when it has more), or None when there is no
    file to read (nothing there, or a folder, a FIFO: not a regular file)."""
    try:
        return _regular_bytes(path, follow=True)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _regular_bytes(path: Path, *, follow: bool) -> bytes | None:
    """Up to MAX_CONFIG_BYTES + 1 bytes of the regular file at ``path``; None for anything else."""
    fd = open_regular(path, 0 if follow else os.O_NOFOLLOW)
    if fd is None:
        return None
    with open(fd, "rb") as handle:
        return handle.read(MAX_CONFIG_BYTES + 1)


@cache
def _code_digest() -> str | None:
    try:
        return hashlib.sha256(_CHECKING_CODE.read_bytes()).hexdigest()
    except OSError:
        return None


def _read_cache(path: Path) -> dict | None:
    """The cache as kx wrote it, or None: no file, a link, not a regular file, too long, or not its shape."""
    try:
        raw = _regular_bytes(path, follow=False)
        cached = json.loads(raw) if raw is not None and len(raw) <= MAX_CONFIG_BYTES else None
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or not isinstance(cached.get("plans"), dict):
        return None
    return cached


def _well_formed(entry: Any) -> bool:
    return (isinstance(entry, dict) and entry.keys() == KEPT.keys()
            and all(value is None or isinstance(value, KEPT[name]) for name, value in entry.items()))


def _write_cache(path: Path, cached: dict) -> None:
    try:
        write_atomic(path, json.dumps(cached, indent=1, sort_keys=True).encode(), durable=False)  # lost: checked again
    except OSError:
        pass  # a cache that cannot be written (a read-only folder, a folder at its name) is checked again next time
