"""``kx`` for a runner on a Ray node: the command line, relayed as it is to the supervisor's ``kx``.

``kx ARGS`` becomes one JSON line on the Unix socket ``$KX_RAY_SOCKET`` of the
attempt's Ray task: the arguments unparsed, the runner's folder and its
``KX_*`` variables. The supervisor runs its own command line with them and
answers with one JSON line (``code``, ``stdout``, ``stderr``), printed here as
they are, with that exit code. No ledger is opened here, and no argument is
parsed: every option of every command is the CLI's. ``cli.main``'s ``main``
relays through ``main`` here too when it runs inside a Ray attempt.
The standard library only: each call is a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import sys

SOCKET_ENV = "KX_RAY_SOCKET"


def request(argv: list[str]) -> dict:
    """``kx ARGV`` as the supervisor needs it: where the runner is, and its ``KX_*`` variables."""
    env = {name: value for name, value in os.environ.items() if name.startswith("KX_")}
    return {"op": "kx", "argv": list(argv), "cwd": os.getcwd(), "env": env}


def relay(message: dict) -> dict:
    import socket  # only inside a Ray attempt: every `kx` call imports this module to ask

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(os.environ[SOCKET_ENV])
        connection.sendall(json.dumps(message, ensure_ascii=False).encode() + b"\n")
        with connection.makefile("rb") as answer:
            return json.loads(answer.readline())


def failure(code: int, message: str, argv: list[str]) -> dict:
    """An answer for an error met on the way, printed as ``kx`` prints one (and its JSON with ``--json``)."""
    message = " ".join(message.split())
    error = {"schema": 1, "error": {"code": code, "message": message}}
    return {"code": code, "stdout": json.dumps(error, ensure_ascii=False) + "\n" if "--json" in argv else "",
            "stderr": f"kx: error: {message}\n"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        reply = relay(request(argv))
    except (OSError, KeyError, ValueError) as exc:
        reply = failure(1, f"cannot reach this attempt's Ray task ({exc}); this runner should stop", argv)
    sys.stdout.write(reply["stdout"])
    sys.stdout.flush()
    sys.stderr.write(reply["stderr"])
    return reply["code"]


if __name__ == "__main__":
    sys.exit(main())
