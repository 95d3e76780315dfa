"""The node side of ``kx run --executor ray``: the task that runs one attempt, and the mailbox between.

``run_task`` runs in a Ray worker on any node of the cluster. It lays out a
folder of its own (``/tmp/kx-PART-7-1-*/``): ``root/`` with the files sent
with the task (unless the plan's root is shared), ``brief.md``, ``runner.log``,
``bin/kx`` (the shim, ``runners.ray.shim``) and ``kx.sock``. It runs the
runner there with the usual ``KX_*`` environment, ``bin`` first on ``PATH``,
and relays each shim request to the supervisor through the ``Mailbox`` actor,
waiting for the answer: the command line as the runner gave it, with the
files it names in ``root/`` (their paths there, and their content unless the
plan's root is shared). The runner's output goes back in chunks; when the
runner exits, the task returns its exit code, the last output and the files
the runner wrote or changed under ``root/``.

Imported on Ray's workers: the standard library (and ``runners.protocol``, ``runners.ray.shim``) only at
module level.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from runners.protocol import runner_environment
from runners.ray.shim import SOCKET_ENV, failure

LOG_EVERY = 1.0  # seconds between chunks of the runner's output sent back
LOG_CHUNK = 1 << 20

# The runner dies with the task's worker (PR_SET_PDEATHSIG), as it dies with its wrapper on a local run.
LAUNCH = """import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    os._exit(137)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    print(f"kx: cannot start runner {sys.argv[2]!r}: {exc.strerror}", file=sys.stderr)
    os._exit(127)
"""


class Mailbox:
    """A Ray actor between the tasks and the supervisor that created it.

    A task ``ask``s (and waits for the supervisor's answer) or ``tell``s (output; no answer);
    the supervisor ``take``s what arrived and ``answer``s. It dies with the supervisor.
    """

    def __init__(self) -> None:
        self.inbox: list[tuple[int | None, str, dict]] = []
        self.waiting: dict[int, Any] = {}
        self.count = 0

    async def ask(self, attempt: str, message: dict) -> dict:
        import asyncio

        self.count += 1
        self.waiting[self.count] = answer = asyncio.get_running_loop().create_future()
        self.inbox.append((self.count, attempt, message))
        return await answer

    async def tell(self, attempt: str, message: dict) -> None:
        self.inbox.append((None, attempt, message))

    async def take(self) -> list[tuple[int | None, str, dict]]:
        taken, self.inbox = self.inbox, []
        return taken

    async def answer(self, replies: list[tuple[int, dict]]) -> None:
        for key, reply in replies:
            waiting = self.waiting.pop(key, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)


def on_node(view: dict[str, Any], root: Path | str) -> dict[str, Any]:
    """A brief whose paths (root, target, drop) are moved under ``root``, the plan's root on the node."""
    return {**view, "root": str(root),
            "target_path": str(Path(root, view["target"])) if view.get("target") else None,
            "drop_path": str(Path(root, view["drop_name"])) if view.get("drop_name") else None}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Relay(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, ask):
        super().__init__(path, _Request)
        self.ask = ask


class _Request(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        argv: list[str] = []
        try:
            request = json.loads(self.rfile.readline())
            argv = request["argv"]
            reply = self.server.ask(request)
        except Exception as exc:  # noqa: BLE001 - the shim gets an answer whatever happens
            reply = failure(1, f"the Ray task could not relay the request: {type(exc).__name__}: {exc}", argv)
        self.wfile.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")


def run_task(job: dict[str, Any], mailbox: Any) -> dict[str, Any]:
    """One attempt on this node (a Ray task function): the runner's exit code, last output and files."""
    import ray

    attempt = job["attempt"]
    base = Path(tempfile.mkdtemp(prefix=f"kx-{attempt.replace('#', '-')}-"))
    process: subprocess.Popen | None = None
    relay = None
    try:
        root = Path(job["shared_root"]) if job.get("shared_root") else base / "root"
        shipped = _unpack(root, job["files"])
        root = root.resolve()
        view = on_node(job["brief"], root)
        brief_path = base / "brief.md"
        from machine.acts.queries import brief_markdown
        from machine.plan.paths import PathGuard

        brief_path.write_text(brief_markdown(view) + "\n", encoding="utf-8")
        for path in (view["target_path"], view["drop_path"]):  # the folders the runner writes them in
            PathGuard.around(root).make_parent(path)

        def ask(request: dict) -> dict:
            return ray.get(mailbox.ask.remote(attempt, _located(request, root, shared=bool(job.get("shared_root")))))

        relay = _Relay(_socket_path(base), ask)
        threading.Thread(target=relay.serve_forever, daemon=True).start()
        env = _environment(job, view, base, brief_path)
        log_path = base / "runner.log"
        node = ray.get_runtime_context().get_node_id()
        log_path.write_text(f"kx ray: {attempt} on node {node[:12]} ({socket.gethostname()}), root {root}\n")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(_launch(job["command"], job["python"]), env=env, cwd=root, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            code, sent = _watch(process, log_path, lambda data: ray.get(mailbox.tell.remote(
                attempt, {"op": "log", "data": data})))
        files = {} if job.get("shared_root") else _changed(root, shipped)
        return {"code": code, "log": _read_from(log_path, sent, -1), "files": files}
    finally:
        if process is not None and process.poll() is None:  # cancelled, or the supervisor went away
            _stop(process)
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        shutil.rmtree(base, ignore_errors=True)
        Path(_socket_path(base)).unlink(missing_ok=True)


def _unpack(root: Path, files: dict[str, bytes]) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {relative: sha256(data) for relative, data in files.items()}


def _changed(root: Path, shipped: dict[str, str]) -> dict[str, bytes]:
    """The regular files under ``root`` the runner wrote or changed (by relative path)."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        relative, data = path.relative_to(root).as_posix(), path.read_bytes()
        if shipped.get(relative) != sha256(data):
            files[relative] = data
    return files


def _located(request: dict, root: Path, *, shared: bool) -> dict:
    """The request with the node's root and, for each argument that names something on this node, where it
    really is: relative to the root (None: outside it) and, unless the root is shared, a regular file's content."""
    paths: dict[str, str | None] = {}
    files: dict[str, bytes] = {}
    for argument in _path_like(request["argv"]):
        path = os.path.join(request["cwd"], argument)
        if not os.path.exists(path):
            continue  # a PART, a box, a reason, an option, or a path that names nothing here
        real = Path(os.path.realpath(path))
        relative = paths[argument] = real.relative_to(root).as_posix() if real.is_relative_to(root) else None
        if relative is not None and real.is_file() and not shared:
            files[relative] = real.read_bytes()
    return {**request, "root": str(root), "paths": paths, "files": files}


def _path_like(argv: list[str]) -> list[str]:
    """The arguments that may be paths: each one, and the value of a ``--name=value``."""
    values = [argument.partition("=")[2] for argument in argv if argument.startswith("--")]
    return [value for value in [*argv, *values] if value]


def _environment(job: dict, view: dict, base: Path, brief_path: Path) -> dict[str, str]:
    bin_dir = base / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kx"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m runners.ray.shim \"$@\"\n")
    shim.chmod(0o755)
    # KX_LEDGER is the ledger on the supervisor's machine; the shim never opens a ledger
    return runner_environment(job["ledger"], view, brief_path, [str(bin_dir), str(Path(sys.executable).parent)],
                              KX_EXECUTOR="ray", **{SOCKET_ENV: _socket_path(base)})


def _socket_path(base: Path) -> str:
    """``kx.sock`` in the task's folder, or in /tmp when that path is too long for a Unix socket."""
    path = base / "kx.sock"
    return str(path) if len(str(path)) < 100 else str(Path("/tmp", f"{base.name}.sock"))


def _launch(command: list[str], supervisor_python: str) -> list[str]:
    """The runner's argv on this node: a built-in runner runs with this node's Python."""
    argv = [sys.executable, *command[1:]] if command[0] == supervisor_python else list(command)
    if sys.platform == "linux":
        return [sys.executable, "-c", LAUNCH, str(os.getpid()), *argv]
    return argv


def _watch(process: subprocess.Popen, log_path: Path, send) -> tuple[int, int]:
    """Wait for the runner, sending its new output every ``LOG_EVERY`` seconds; its exit code and bytes sent."""
    sent = 0
    while True:
        try:
            return process.wait(timeout=LOG_EVERY), sent
        except subprocess.TimeoutExpired:
            data = _read_from(log_path, sent)
            if data:
                send(data)
                sent += len(data)


def _read_from(path: Path, offset: int, limit: int = LOG_CHUNK) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(limit)


def _stop(process: subprocess.Popen) -> None:
    for signum, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signum)
            process.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
