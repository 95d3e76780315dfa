"""Runner specs: a built-in name or a command line, always run as an argument list."""

from __future__ import annotations

import shlex
import sys

from ledger.errors import BadInput
from ledger.secrets import protect_env

BUILT_IN = {
    "rehearse": [sys.executable, "-m", "runners.rehearse"],
    "openai": [sys.executable, "-m", "runners.chat"],
}


def runner_command(spec: str | list[str] | None, *, model: str | None = None, base_url: str | None = None) -> list[str]:
    """``rehearse --fail PART-3`` or ``claude -p ...`` → argv; plan text never reaches a shell.

    ``model`` and ``base_url`` (kx run's --model and --base-url) go to the built-in ``openai`` runner.
    """
    if spec is None:
        raise BadInput("no runner: pass --runner (e.g. --runner rehearse) or set runner in .kx/config.toml")
    argv = shlex.split(spec) if isinstance(spec, str) else list(spec)
    if not argv:
        raise BadInput("the runner command is empty")
    if argv[0] == "openai":
        if model:
            argv += ["--model", model]
        if base_url:
            argv += ["--base-url", base_url]
        if "--model" not in argv:
            raise BadInput("the openai runner needs a model: kx run --runner openai --model NAME")
    elif model or base_url:
        raise BadInput("--model and --base-url go with --runner openai")
    if argv[0] in BUILT_IN:
        return BUILT_IN[argv[0]] + argv[1:]
    return argv


def is_rehearsal(command: list[str]) -> bool:
    """Whether a resolved runner command is kx's own rehearsal runner (its attempts are recorded as rehearsals)."""
    built_in = BUILT_IN["rehearse"]
    return command[: len(built_in)] == built_in


def protect_runner_key(argv: list[str]) -> None:
    """The variable ``--api-key-env NAME`` names (the openai runner's key) is redacted from everything this
    process and its children log or record; the default, OPENAI_API_KEY, is a secret by its name already."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag == "--api-key-env":
            protect_env(value if eq else (argv[i + 1] if i + 1 < len(argv) else ""))
