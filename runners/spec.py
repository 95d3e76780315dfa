"""Runner specs: a built-in name or a command line, always run as an argument list."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import PurePath

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
    refuse_unexpanded(argv, spec)
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


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish"})
_KX_VARIABLE = re.compile(r"\$(\{KX_\w*\}?|KX_\w*)")


def refuse_unexpanded(argv: list[str], spec: str | list[str]) -> None:
    """Refuse a ``$KX_...`` that would reach the runner as written (exit 2, saying how to write it).

    A runner is run as an argument list, never by a shell, so nothing expands it; only the script of a shell's
    ``-c`` is expanded, by that shell, from the runner's environment (which holds every KX_ variable)."""
    script = _shell_script(argv)
    for i, arg in enumerate(argv):
        found = _KX_VARIABLE.search(arg)
        if found and i != script:
            raise BadInput(f"the runner {_shown(spec)} is not run by a shell, so {found.group(0)} would reach it as"
                           f" those very characters; let a shell expand it from the runner's environment: "
                           + _in_a_shell(argv, spec))


def _shell_script(argv: list[str]) -> int | None:
    """The index of the script in ``[env NAME=VALUE...] SHELL [-flags] -c SCRIPT ...``, else None."""
    i = 0
    if PurePath(argv[0]).name == "env":
        i = 1
        while i < len(argv) and ("=" in argv[i] or argv[i].startswith("-")):
            i += 1
    if i >= len(argv) or PurePath(argv[i]).name not in SHELLS:
        return None
    j = i + 1
    while j < len(argv) and argv[j][:1] in ("-", "+") and argv[j] != "--":
        if argv[j][1:2] != "-" and "c" in argv[j]:
            return j + 1
        j += 2 if argv[j] in ("-o", "+o") else 1  # -o takes an option's name
    return None


def _shown(spec: str | list[str]) -> str:
    return f"'{spec}'" if isinstance(spec, str) else json.dumps(spec)


def _in_a_shell(argv: list[str], spec: str | list[str]) -> str:
    if isinstance(spec, list):  # the config's runner
        script = " ".join(f'"{arg}"' if re.search(r"\s", arg) else arg for arg in argv)
        return f"runner = {json.dumps(['sh', '-c', script])}"
    if "'" in spec or '"' in spec:
        return "wrap the command in sh -c '...' (quoting each $KX_ variable in double quotes)"
    return f"""--runner 'sh -c "{spec}"'"""


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
