"""Keeping secrets out of logs and the ledger: API keys, tokens, passwords, bearer credentials."""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"
# Names of further variables whose values are secrets (comma-separated); set by protect_env, inherited by children.
PROTECTED_ENV = "KX_REDACT_ENV"
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|authorization|credential)", re.IGNORECASE)
SECRET_VALUE = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-]{8,}|\bgh[pousr]_[A-Za-z0-9]{16,}|\bxox[abpr]-[A-Za-z0-9\-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|(?<=Bearer )[A-Za-z0-9._~+/=\-]{8,})"
)


def protect_env(name: str) -> None:
    """Treat ``$name``'s value as a secret here and in every process started from here (``--api-key-env``)."""
    names = _protected_names()
    if name and name not in names:
        os.environ[PROTECTED_ENV] = ",".join([*names, name])


def _protected_names() -> list[str]:
    return [name for name in os.environ.get(PROTECTED_ENV, "").split(",") if name]


def _secret_env_values() -> list[str]:
    protected = set(_protected_names())
    return [v for k, v in os.environ.items() if (k in protected or SECRET_NAME.search(k)) and len(v) >= 8]


def redact_text(text: str) -> str:
    text = SECRET_VALUE.sub(REDACTED, text)
    for value in _secret_env_values():
        text = text.replace(value, REDACTED)
    return text


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secrets replaced; a value under a secret-looking key is replaced whole."""
    if key and SECRET_NAME.search(key) and isinstance(value, (str, bytes)) and value:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def redact_argv(argv: list[str]) -> list[str]:
    """A command line as the ledger may keep it: the value after ``--api-key`` and the like is hidden."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag.startswith("-") and SECRET_NAME.search(flag):
            if eq:
                shown.append(f"{flag}={REDACTED}")
            else:
                shown.append(arg)
                hide_next = True
            continue
        shown.append(redact_text(arg))
    return shown


def log_processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every log line goes through :func:`redact`."""
    return {key: redact(value, key) for key, value in event.items()}
