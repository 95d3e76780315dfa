"""Keeping secrets out of logs and the ledger: API keys, tokens, passwords, bearer credentials."""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

REDACTED = "[redacted]"
# Names of further variables whose values are secrets (comma-separated); set by protect_env, inherited by children.
PROTECTED_ENV = "KX_REDACT_ENV"
# A name (a flag, a NAME=VALUE word, a log field, an environment variable) names a secret when one of its words
# (split at anything but letters and digits) is, or ends with, one of these: apikey, hf_token, client-secret...
_SECRET_ENDINGS = ("key", "token", "secret", "password", "passwd", "bearer", "credential", "credentials",
                   "authorization")
_SECRET_WORDS = frozenset({"pass", "pat"})  # not pwd: $PWD is a folder
_NAME_ONLY = frozenset({"env", "var"})  # --api-key-env LLM_KEY: the value is a variable's name, not a secret
_WORD = re.compile(r"[a-z0-9]+")
SECRET_VALUE = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-]{8,}|\bgh[pousr]_[A-Za-z0-9]{16,}|\bxox[abpr]-[A-Za-z0-9\-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|(?<=Bearer )[A-Za-z0-9._~+/=\-]{8,})"
)
# scheme://user:PASSWORD@ and http(s)://TOKEN@: the password, or an http user (a token), is hidden
_USERINFO = re.compile(r"\b(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/@:?#]*)(?::(?P<password>[^\s/@]*))?@")
_VALUE = r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\"']+)"
_FLAG_VALUE = re.compile(r"(?<![\w-])(?P<flag>--[A-Za-z0-9][\w-]*|-k)(?P<sep>=|[ \t]+)" + _VALUE)
_NAME_VALUE = re.compile(r"(?<![\w-])(?P<name>[A-Za-z_][A-Za-z0-9_]*)=" + _VALUE)


def secret_name(name: str) -> bool:
    """Whether ``name`` (``--hf-token``, ``DB_PASSWORD``, ``api_key``) names a secret."""
    words = _WORD.findall(name.lower())
    if not words or words[-1] in _NAME_ONLY:
        return False
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words)


def secret_flag(flag: str) -> bool:
    """Whether a command-line flag's value is a secret: ``-k``, or a long flag with a secret name."""
    return flag == "-k" or flag.startswith("--") and secret_name(flag)


def protect_env(name: str) -> None:
    """Treat ``$name``'s value as a secret here and in every process started from here (``--api-key-env``)."""
    names = _protected_names()
    if name and name not in names:
        os.environ[PROTECTED_ENV] = ",".join([*names, name])


def _protected_names() -> list[str]:
    return [name for name in os.environ.get(PROTECTED_ENV, "").split(",") if name]


def _secret_env_values() -> list[str]:
    protected = set(_protected_names())
    return [v for k, v in os.environ.items() if (k in protected or secret_name(k)) and len(v) >= 8]


def redact_text(text: str, env_secrets: list[str] | None = None) -> str:
    """``text`` with secrets hidden: well-known key shapes, bearer tokens, URL passwords (and http users, which
    are tokens), the values of secret-named ``--flag VALUE`` / ``--flag=VALUE`` and ``NAME=VALUE``, and the
    values of secret environment variables (``env_secrets``: those values, as read once for many strings)."""
    text = SECRET_VALUE.sub(REDACTED, text)
    if "://" in text:
        text = _USERINFO.sub(_hide_userinfo, text)
    if "=" in text or "-" in text:
        text = _FLAG_VALUE.sub(_hide_flag_value, text)
        text = _NAME_VALUE.sub(lambda m: f"{m['name']}={REDACTED}" if secret_name(m["name"]) else m.group(), text)
    for value in _secret_env_values() if env_secrets is None else env_secrets:
        text = text.replace(value, REDACTED)
    return text


def _hide_userinfo(match: re.Match[str]) -> str:
    if match["password"] is not None:
        return f"{match['scheme']}{match['user']}:{REDACTED}@"
    if match["scheme"].lower() in ("http://", "https://") and match["user"]:
        return f"{match['scheme']}{REDACTED}@"
    return match.group()


def _hide_flag_value(match: re.Match[str]) -> str:
    if not secret_flag(match["flag"]) or match["sep"] != "=" and match["value"].startswith("-"):
        return match.group()
    return f"{match['flag']}{match['sep']}{REDACTED}"


def redact(value: Any, key: str = "", env_secrets: list[str] | None = None) -> Any:
    """``value`` with secrets replaced; a value under a secret-looking key is replaced whole, a list of strings
    is read as a command line (:func:`redact_argv`)."""
    if key and secret_name(key) and isinstance(value, (str, bytes)) and value:
        return REDACTED
    if not isinstance(value, (str, dict, list, tuple)):
        return value
    env_secrets = _secret_env_values() if env_secrets is None else env_secrets
    if isinstance(value, str):
        return redact_text(value, env_secrets)
    if isinstance(value, dict):
        return {k: redact(v, str(k), env_secrets) for k, v in value.items()}
    if all(isinstance(v, str) for v in value):
        return type(value)(redact_argv(list(value), env_secrets))
    return type(value)(redact(v, "", env_secrets) for v in value)


def redact_argv(argv: list[str], env_secrets: list[str] | None = None) -> list[str]:
    """A command line as the ledger may keep it: the value after ``-k``, ``--api-key``, ``--token`` and the like
    (``--flag VALUE`` or ``--flag=VALUE``) and of ``NAME=VALUE`` words with a secret name is hidden, and each
    other argument is redacted as text (a URL's password)."""
    env_secrets = _secret_env_values() if env_secrets is None else env_secrets
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            shown.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if arg.startswith("-") and secret_flag(flag):
            shown.append(f"{flag}={REDACTED}" if eq else arg)
            hide_next = not eq
        elif eq and not arg.startswith("-") and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", flag) and secret_name(flag):
            shown.append(f"{flag}={REDACTED}")
        else:
            shown.append(redact_text(arg, env_secrets))
    return shown


def redact_command(spec: str) -> str:
    """A command line given as one string (a runner spec), redacted as :func:`redact_argv` does; kept as written
    when nothing in it is secret."""
    try:
        argv = shlex.split(spec)
    except ValueError:  # unbalanced quotes: not a command line kx would run
        return redact_text(spec)
    shown = redact_argv(argv)
    return spec if shown == argv else shlex.join(shown)


def log_processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every log line goes through :func:`redact`."""
    env_secrets = _secret_env_values()
    return {key: redact(value, key, env_secrets) for key, value in event.items()}
