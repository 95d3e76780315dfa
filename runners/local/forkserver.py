"""The fork server that starts every attempt's wrapper: a fresh interpreter that never opens the ledger.

The supervisor must not fork wrappers itself: it has the SQLite ledger open, and
SQLite keeps per-process state about the file (its POSIX locks, the connections
open on its inode) that a forked child inherits but must not use. A wrapper
forked from the supervisor that outlives it (the supervisor SIGKILLed, its
terminal closed) then finds "database disk image is malformed", or commits
into a WAL file that the supervisor's exit already deleted: its outcome is
lost. So ``kx run`` starts this server once, before it opens the ledger: it
loads what a wrapper needs and forks the server from itself, which then holds
no SQLite state at all and loads nothing again (one interpreter per run). A
process that may hold a connection already (kx called as a library, tests) or
runs threads starts the server as a fresh interpreter instead (fork and exec),
which loads what a wrapper needs itself. Either way the server forks one
wrapper per attempt, and each wrapper opens the ledger itself: no interpreter
starts per attempt.

Why not multiprocessing's "forkserver" context, which has the same shape:
every child it starts runs the parent's ``__main__`` again (the ``kx`` script,
``cli.main`` under ``python -m``, pytest), the parent joins every child at its
exit unless one edits multiprocessing's private registry (leaving ``kx run``
would wait for every runner), each child is handed descriptors of its own (the
server's alive pipe, a resource tracker started for nothing), and a child
leaves the supervisor's session only after it has unpickled its task.

The protocol is JSON lines on the server's stdin and stdout: the supervisor
writes ``{"id": N, "args": {...}}`` (the arguments of
``runners.attempt.wrapper``), the server answers ``{"id": N, "code": C}`` when
that wrapper exits. At the end of its input (the supervisor left or died) the
server leaves at once; the wrappers run on in their own sessions and record
their outcomes themselves.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any

from ledger.errors import KxError

# The server imports kx from where the supervisor did, whatever its working directory and PYTHONPATH.
BOOT = "import sys; sys.path[:0] = sys.argv[1:]; from runners.local.forkserver import main; main()"
UNKNOWN_EXIT = 1  # a wrapper whose exit the server could not report: the ledger tells what became of it


class ForkServer:
    """The supervisor's end: ``start(**args)`` forks a wrapper, ``exit_code(id)`` says how it ended (None: running);
    ``fileno()`` becomes readable when a wrapper's exit is reported (None once the server is gone)."""

    def __init__(self) -> None:
        if may_fork():
            from runners.local.wrapper import warm_up

            warm_up()  # here, once: the server and every wrapper it forks inherit it
            self.process: subprocess.Popen | ForkedServer = ForkedServer()
        else:
            self.process = subprocess.Popen([sys.executable, "-c", BOOT, *sys.path], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE)
        os.set_blocking(self.process.stdout.fileno(), False)
        self.last_id = 0
        self.running: set[int] = set()
        self.codes: dict[int, int] = {}
        self.unread = b""
        self.ended = False  # the server's output ended: it is gone
        self.closed = False

    def start(self, **args: Any) -> int:
        if self.process.poll() is not None:
            raise KxError(f"the process that starts the wrappers stopped (exit status {self.process.returncode});"
                          " the running attempts record their own outcomes; 'kx resume' continues")
        self.last_id += 1
        self.running.add(self.last_id)
        try:
            self.process.stdin.write(json.dumps({"id": self.last_id, "args": args}).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._lost_all()
        return self.last_id

    def exit_code(self, wrapper: int) -> int | None:
        self.read()
        return self.codes.get(wrapper)

    def fileno(self) -> int | None:
        return None if self.ended or self.closed else self.process.stdout.fileno()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        """Let the server go (it leaves at the end of its input); the wrappers it forked run on. Once is enough."""
        if self.closed:
            return
        self.closed = True
        if not self.last_id:
            self.process.terminate()  # never used: no need to wait for it to finish loading kx
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def read(self) -> None:
        """Take in what the server reported: wrappers' exits, or its own end."""
        while not self.ended:
            try:
                chunk = os.read(self.process.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.ended = True
                self._lost_all()
                return
            *lines, self.unread = (self.unread + chunk).split(b"\n")
            for line in lines:
                reply = json.loads(line)
                self.running.discard(reply["id"])
                self.codes[reply["id"]] = reply["code"]

    def _lost_all(self) -> None:
        """The server died: the wrappers still running cannot report to this supervisor any more."""
        self.codes.update({wrapper: UNKNOWN_EXIT for wrapper in self.running})
        self.running.clear()


def may_fork() -> bool:
    """Whether this process may fork the server from itself: no thread but this one (a lock another thread holds
    would stay held in the child) and no SQLite database open (its connection's state would cross the fork)."""
    import threading

    import psutil

    return threading.active_count() == 1 and not any(_is_sqlite(f.path) for f in psutil.Process().open_files())


def _is_sqlite(path: str) -> bool:
    if path.endswith(("-wal", "-shm", "-journal")):
        return True
    try:
        with open(path, "rb") as file:
            return file.read(16) == b"SQLite format 3\0"
    except OSError:
        return True  # unreadable now: taken for one


class ForkedServer:
    """The server as a child forked from this process, offering what the supervisor's end uses of
    ``subprocess.Popen``: ``stdin``, ``stdout``, ``poll``, ``wait``, ``terminate``, ``kill``, ``returncode``."""

    def __init__(self) -> None:
        requests, ours_in = os.pipe()
        ours_out, replies = os.pipe()
        sys.stdout.flush()  # what this process printed must not be printed again by the child
        sys.stderr.flush()
        # What was loaded so far lives as long as the process: the collector leaves it alone from now on, in this
        # process (its last collection at exit gets short) and in the children (their memory stays shared)
        gc.freeze()
        self.pid = os.fork()
        if self.pid == 0:
            _serve_forked(requests, replies, [ours_in, ours_out])
        os.close(requests)
        os.close(replies)
        self.stdin, self.stdout = os.fdopen(ours_in, "wb"), os.fdopen(ours_out, "rb")
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired("kx fork server", timeout)
            time.sleep(0.005)
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)


def _serve_forked(requests: int, replies: int, parents: list[int]) -> None:
    """The forked child: the server on the two pipes, never returning into the code that forked it."""
    code = 1
    try:
        os.dup2(requests, 0)
        os.dup2(replies, 1)
        for fd in (requests, replies, *parents):
            os.close(fd)
        serve()
        code = 0
    except BaseException:  # noqa: BLE001 - said on stderr, as a fresh interpreter's server would
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


# --- the server ------------------------------------------------------------------------------


def main() -> None:
    """The server as a fresh interpreter (``BOOT``): it loads what a wrapper needs, then serves."""
    from runners.local.wrapper import warm_up

    warm_up()
    serve()
    os._exit(0)  # nothing to tear down: leaving at once frees the supervisor that waits for it


def serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's; its wrappers must still report
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a wrapper exited: the wakeup byte ends the select
    wrappers: dict[int, int] = {}  # pid -> the supervisor's id for it
    unread = b""
    while True:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            _drain(wake_r)
        if not _report_exits(wrappers):
            return
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                return  # the supervisor left or died
            *lines, unread = (unread + chunk).split(b"\n")
            for line in lines:
                request = json.loads(line)
                wrappers[_fork(request["args"], [wake_r, wake_w])] = request["id"]


def _fork(args: dict[str, Any], close: list[int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1  # the child never returns from here
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        from runners.local.wrapper import wrapper

        code = wrapper(**args)
    finally:
        os._exit(code)


def _report_exits(wrappers: dict[int, int]) -> bool:
    """Tell the supervisor of every wrapper that exited; False when the supervisor is gone."""
    while wrappers:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if not pid:
            return True
        reply = {"id": wrappers.pop(pid), "code": os.waitstatus_to_exitcode(status)}
        try:
            os.write(1, json.dumps(reply).encode() + b"\n")
        except BrokenPipeError:
            return False
    return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
