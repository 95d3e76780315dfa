"""``kx`` for a runner on a Ray node: the commands a runner uses, relayed to the supervisor.

``kx [--json] tick|untick|drop|finish|fail|brief ...`` (as on the supervisor's
machine, ``--attempt`` defaulting to ``$KX_ATTEMPT``) becomes one JSON line on
the Unix socket ``$KX_RAY_SOCKET`` of the attempt's Ray task; the answer (one
JSON line: ``code`` and ``payload`` and ``text``, or ``code`` and ``error``)
is printed as ``kx`` prints it, with its exit code. No ledger is opened here.
The standard library only: each call is a fresh interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

COMMANDS = ("tick", "untick", "drop", "finish", "fail", "brief")


class Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise Usage(f"{message}; see '{self.prog} --help' on the supervisor's machine")


def request(argv: list[str]) -> tuple[dict, bool]:
    """The request for ``kx ARGV``, and whether the answer is wanted as JSON."""
    args, as_json = list(argv), False
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option == "--json":
            as_json = True
        elif option in ("--ledger", "--plan") and args:
            args.pop(0)  # the ledger and plan are the supervisor's
        elif option not in ("-v", "--verbose") and not option.startswith(("--ledger=", "--plan=")):
            raise Usage(f"no such option: {option}")
    if not args or args[0] not in COMMANDS:
        named = f"'kx {args[0]}' is" if args else "a command is"
        raise Usage(f"{named} not available to a runner on a Ray node (only {', '.join(COMMANDS)})")
    command = args[0]
    parser = _Parser(prog=f"kx {command}", add_help=False)
    parser.add_argument("part")
    if command in ("tick", "untick"):
        parser.add_argument("refs", nargs="+")
    if command == "drop":
        parser.add_argument("file")
    if command == "fail":
        parser.add_argument("--reason", required=True)
    parser.add_argument("--attempt", default=os.environ.get("KX_ATTEMPT"))
    if command != "brief":
        parser.add_argument("--by")
    options = vars(parser.parse_args(args[1:]))
    if "file" in options:
        options["path"] = os.path.join(os.getcwd(), options.pop("file"))
    return {"op": command, **options}, as_json


def relay(message: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(os.environ["KX_RAY_SOCKET"])
        connection.sendall(json.dumps(message, ensure_ascii=False).encode() + b"\n")
        with connection.makefile("rb") as answer:
            return json.loads(answer.readline())


def show(reply: dict, as_json: bool) -> int:
    code = reply["code"]
    if code == 0:
        if as_json:
            print(json.dumps({"schema": 1, **reply["payload"]}, ensure_ascii=False))
        elif reply.get("text"):
            print(reply["text"])
        return 0
    message = " ".join(reply["error"].split())
    print(f"kx: error: {message}", file=sys.stderr)
    if as_json:
        error = {"code": code, "message": message, **({"details": reply["details"]} if reply.get("details") else {})}
        print(json.dumps({"schema": 1, "error": error}, ensure_ascii=False))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        message, as_json = request(argv)
    except Usage as usage:
        return show({"code": 2, "error": str(usage)}, "--json" in argv)
    try:
        reply = relay(message)
    except (OSError, KeyError, ValueError) as exc:
        reply = {"code": 1, "error": f"cannot reach this attempt's Ray task ({exc}); this runner should stop"}
    return show(reply, as_json)


if __name__ == "__main__":
    sys.exit(main())
