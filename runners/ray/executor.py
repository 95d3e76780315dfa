"""``kx run --executor ray``: each attempt runs as a Ray task; the ledger stays with the supervisor.

The supervisor records the start (``RunnerStarted`` with no pid: the attempt is
held by this process, ``owner_pid``), writes the brief into the attempt's
folder as on a local run, and submits ``runners.ray_node.run_task`` with the
brief, the runner command and the files the runner reads (influential files,
the target, ``ship`` globs). On the node, ``kx`` is a shim whose command lines
come back here through a ``Mailbox`` actor, unparsed; the CLI itself runs them
in this process (``run_cli``, given by ``cli.main``: this package does not
import the CLI), on this ledger, with the runner's attempt (``--attempt`` from
its ``$KX_ATTEMPT``), its path arguments moved from the node's root to the
plan's root here, and only the commands in ``NODE_COMMANDS``. The
files a call names (a drop's) arrive with it and are written under the plan's
root here first, so ``kx drop`` hashes and records them here; the files the
runner wrote come back with the task's result. Then the outcome is recorded as
for a local wrapper; a task that Ray reports failed, cancelled or on a dead
node or worker becomes ``RunnerLost``, which the supervisor retries.

Ray is imported here only, when ``--executor ray`` is asked for.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable

from ledger.errors import BadInput, Refused
from machine.acts.lifecycle import Act, Context, authorize, fail, lose, start
from machine.acts.workspace import Workspace
from machine.defaults import SUPERVISOR
from machine.plan.paths import PathGuard
from machine.state.config import RayConfig
from runners.attempt_folder import attempt_dir, beat, last_output_of, log_tail, this_process
from runners.local.wrapper import record_outcome, write_brief
from runners.ray.node import Mailbox, run_task
from runners.ray.shim import failure
from runners.spec import is_rehearsal

INSTALL = "pip install 'kx[ray]'"

# What a runner on a node may run: its own acts and what it reads. The rest is the supervisor's or a person's.
NODE_COMMANDS = ("tick", "untick", "drop", "finish", "fail", "brief", "status", "next")
SERVICE_S = 0.02  # how soon a task's kx call is answered, and an ended task seen: Ray has no descriptor to wait on


def import_ray():
    try:
        import ray
    except ImportError:
        raise BadInput(f"--executor ray needs Ray on this machine: {INSTALL}") from None
    return ray


def task_options(config: RayConfig) -> dict[str, Any]:
    """Ray's options for an attempt's task: its resources; no retry by Ray (kx retries, as a new attempt)."""
    options: dict[str, Any] = {"num_cpus": 1 if config.num_cpus is None else config.num_cpus,
                               "max_retries": 0, "retry_exceptions": False}
    if config.num_gpus:
        options["num_gpus"] = config.num_gpus
    if config.memory:
        options["memory"] = config.memory
    if config.resources:
        options["resources"] = dict(config.resources)
    return options


def cluster_address(option: str | None, config: RayConfig) -> str | None:
    """--ray-address, else $RAY_ADDRESS, else the config's address; None: start Ray on this machine."""
    return option or os.environ.get("RAY_ADDRESS") or config.address


def reachable(address: str) -> None:
    """A HOST:PORT address answers, or a one-line refusal now (Ray itself retries for many minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # auto, ray://...: Ray judges
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise BadInput(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check --ray-address"
                       " ($RAY_ADDRESS, address in .kx/config.toml) and that its head node runs") from None


class RayExecutor:
    def __init__(self, workspace: Workspace, command: list[str], lease: float, run_cli: RunCli,
                 address: str | None = None):
        self.ray = import_ray()
        self.ws, self.command, self.lease, self.run_cli = workspace, command, lease, run_cli
        self.config = workspace.config().ray or RayConfig()
        self.started_ray = self._connect(cluster_address(address, self.config))
        me = this_process()
        self.owner = {"owner_pid": me["pid"], "owner_started": me["pid_started"]}
        self.task = self.ray.remote(run_task).options(**task_options(self.config))
        self.mailbox = self.ray.remote(Mailbox).options(num_cpus=0, **self._here()).remote()
        self.attempts: dict[str, RayAttempt] = {}

    def _connect(self, address: str | None) -> bool:
        if self.ray.is_initialized():
            return False
        if address is not None:
            reachable(address)
        local = {"include_dashboard": False} if address is None else {}
        try:
            self.ray.init(address=address, namespace="kx", log_to_driver=False, logging_level=logging.WARNING,
                          **local)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; one line says which cluster
            where = f"the Ray cluster at {address}" if address else "a Ray instance on this machine"
            raise BadInput(f"cannot start or reach {where}: {' '.join(str(exc).split())[:300]}") from None
        return True

    def _here(self) -> dict[str, Any]:
        """The mailbox on the supervisor's node when it is one of the cluster's (soft: anywhere otherwise)."""
        try:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            node = self.ray.get_runtime_context().get_node_id()
            return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}
        except Exception:  # noqa: BLE001 - a client connection has no node of its own
            return {}

    # --- the executor interface (runners.supervisor.Executor) ------------------------

    def spawn(self, plan_id: str, part: str) -> RayAttempt:
        attempt = RayAttempt(self, plan_id, part)
        if attempt.code is None:  # started and submitted
            self.attempts[attempt.attempt] = attempt
        return attempt

    def service(self) -> None:
        """Answer the tasks' requests, keep the live attempts' heartbeats, settle the finished ones."""
        if not self.attempts:
            return
        live = list(self.attempts.values())
        ready, _ = self.ray.wait([a.ref for a in live], num_returns=len(live), timeout=0)
        self._answer(self.ray.get(self.mailbox.take.remote()))  # after the wait: a finished task's last words
        done = set(ready)
        for attempt in live:
            if attempt.ref in done:
                del self.attempts[attempt.attempt]
                attempt.settle()
            else:
                attempt.keep_alive()

    def waits(self) -> tuple[list[int], float | None]:
        """Nothing to wait on: Ray is asked again every ``SERVICE_S`` while tasks run."""
        return [], SERVICE_S if self.attempts else None

    def close(self) -> None:
        """Stopped with tasks still running (a second Ctrl-C, an error): cancel them, record them lost."""
        for attempt in list(self.attempts.values()):
            try:
                self.ray.cancel(attempt.ref, force=True)
                lose(self.ws, attempt.part, attempt.attempt, "kx run stopped while its Ray task ran; the task was"
                     " cancelled")
            except Exception:  # noqa: BLE001 - Ray or the ledger gone: the next kx run reconciles it
                pass
        self.attempts.clear()
        try:
            self.ray.kill(self.mailbox)
        except Exception:  # noqa: BLE001 - already gone with the cluster
            pass
        if self.started_ray:
            self.ray.shutdown()

    def _answer(self, messages: list[tuple[int | None, str, dict]]) -> None:
        replies = []
        for key, attempt, message in messages:
            holder = self.attempts.get(attempt)
            if holder is not None:
                reply = holder.receive(message)
            else:
                reply = failure(3, f"stale attempt: {attempt} is over; this runner should stop", message.get("argv", []))
            if key is not None:
                replies.append((key, reply))
        if replies:
            self.mailbox.answer.remote(replies)


READ_FOLDER_FILES = 1_000  # files of a Read box's folder sent with a task (more: the ship globs)


class RayAttempt:
    """One attempt run as a Ray task; ``poll()`` as a local wrapper's: 0 succeeded, 1 failed or lost, 3 refused."""

    def __init__(self, executor: RayExecutor, plan_id: str, part: str):
        self.executor, self.ws, self.part, self.code = executor, executor.ws, part, None
        try:
            started = start(self.ws, part, Act(by=SUPERVISOR), runner=executor.command, host=socket.gethostname(),
                            executor="ray", rehearsal=is_rehearsal(executor.command) or None, **executor.owner)
        except Refused:
            self.code = 3  # the supervisor says so and tries again
            return
        self.attempt = started.data["attempt"]
        self.folder = attempt_dir(self.ws.ledger.path, plan_id, self.attempt)
        self.folder.mkdir(parents=True, exist_ok=True)
        beat(self.folder)  # the supervisor beats for its Ray attempts (``owner_pid``)
        self.view = write_brief(self.ws, self.folder, part, self.attempt)
        self.root = Path(self.view["root"]).resolve()
        self.guard = PathGuard.around(self.root, ledger=self.ws.ledger.path, plan=self.view["plan_path"])
        self.beaten = time.monotonic()
        config = executor.config
        job = {"plan": plan_id, "part": part, "attempt": self.attempt, "command": executor.command,
               "python": sys.executable, "ledger": str(self.ws.ledger.path.resolve()), "brief": self.view,
               "shared_root": str(self.root) if config.shared_root else None,
               "files": {} if config.shared_root else self._files_to_send(config.ship)}
        try:
            self.ref = executor.task.remote(job, executor.mailbox)
        except Exception as exc:  # noqa: BLE001 - Ray gone or the job not serializable: the attempt is lost
            lose(self.ws, part, self.attempt, f"its Ray task could not be submitted: {_summary(exc)}")
            self.code = 1

    def poll(self) -> int | None:
        return self.code

    def _files_to_send(self, ship: list[str]) -> dict[str, bytes]:
        """What the runner reads: the influential files, what its Read boxes name (a folder: up to
        ``READ_FOLDER_FILES`` of its files), the target (a retry continues it), ``ship`` globs."""
        named = [f["path"] for f in self.view["influential_files"] if f["path"]] + [self.view["target"] or ""]
        reads = [self.root / b["path"] for b in self.view["boxes"] if b["kind"] == "read" and self.guard.allows(b["path"])]
        in_folders = [p for folder in reads if folder.is_dir() for p in islice(folder.rglob("*"), READ_FOLDER_FILES)]
        paths = [self.root / n for n in named if n] + reads + in_folders \
            + [p for pattern in ship for p in self.root.glob(pattern)]
        files = {}
        for path in paths:
            if self.guard.allows(path) and (real := path.resolve()).is_file():  # never the ledger or .kx/
                files[real.relative_to(self.root).as_posix()] = real.read_bytes()
        return files

    def keep_alive(self) -> None:
        if time.monotonic() - self.beaten >= max(0.5, self.executor.lease / 3):
            self.beaten = time.monotonic()
            beat(self.folder)

    # --- requests from the node ----------------------------------------------------

    def receive(self, message: dict) -> dict:
        """Output from the node, or a runner's ``kx`` call there, answered by the CLI run here."""
        if message["op"] == "log":
            with open(self.folder / "runner.log", "ab") as log:
                log.write(message["data"])
            return {"code": 0, "stdout": "", "stderr": ""}
        try:
            call = NodeCall(self, message)
            code, out, err = self.executor.run_cli(call)
        except Exception as exc:  # noqa: BLE001 - the runner gets an answer; the supervisor goes on
            return failure(1, f"unexpected failure: {type(exc).__name__}: {exc}", message.get("argv", []))
        return {"code": code, "stdout": call.on_node(out), "stderr": call.on_node(err)}

    def place_files(self, files: dict[str, bytes]) -> None:
        """A call's files from the node, written here before it runs; refused once this attempt is over."""
        with self.ws.ledger.transaction():
            self._authorize(self.part, Act(attempt=self.attempt))
            for relative, data in files.items():
                self._place(relative, data)

    def _authorize(self, part: str, act: Act) -> None:
        """Rule 4 (inside the caller's transaction) before a file from the node overwrites one here."""
        ctx = Context.of(self.ws)
        authorize(ctx, ctx.part(part)[0], act)

    def _place(self, relative: str, data: bytes) -> Path:
        """A file from the node, written under the plan's root here; never kx's folder, the plan or the ledger."""
        if Path(relative).is_absolute():
            raise BadInput(f"{relative} is outside the plan's root {self.root}")
        return self.guard.write(relative, data)

    # --- the outcome --------------------------------------------------------------

    def settle(self) -> None:
        ray = self.executor.ray
        try:
            result = ray.get(self.ref)
        except ray.exceptions.RayTaskError as error:  # kx's task code raised on the node
            self.code = self._fail(f"its Ray task raised {_summary(getattr(error, 'cause', None) or error)}")
        except ray.exceptions.RayError as error:  # worker or node died, cancelled, out of memory, ...
            lose(self.ws, self.part, self.attempt, f"its Ray task ended without an outcome: {_summary(error)}",
                 last_output_of(self.folder))
            self.code = 1
        else:
            with open(self.folder / "runner.log", "ab") as log:
                log.write(result["log"])
            self._receive_files(result["files"])
            self.code = record_outcome(self.ws, self.part, self.attempt, result["code"], self.folder / "runner.log",
                                       self.view["drop_path"])

    def _receive_files(self, files: dict[str, bytes]) -> None:
        if not files:
            return
        with self.ws.ledger.transaction():
            try:
                self._authorize(self.part, Act(attempt=self.attempt))
            except Refused:
                return  # the attempt is over: its files would overwrite a newer attempt's
            for relative, data in files.items():
                try:
                    self._place(relative, data)
                except (BadInput, OSError) as exc:
                    with open(self.folder / "runner.log", "a", encoding="utf-8") as log:
                        log.write(f"kx ray: {relative} not written here: {exc}\n")

    def _fail(self, reason: str) -> int:
        try:
            fail(self.ws, self.part, reason, Act(attempt=self.attempt), log_tail=log_tail(self.folder / "runner.log")
                 or None, last_output=last_output_of(self.folder))
        except Refused:
            pass  # someone else settled the attempt meanwhile
        return 1


class NodeCall:
    """A runner's ``kx ARGV`` from its node, for the CLI to run here (``cli.main.run_for_runner``).

    The CLI runs it on this workspace, whatever ``--ledger`` and ``--plan`` say, its options reading ``env`` for
    this process's environment; it asks ``admit`` before the command runs, and ``here`` for each path argument (a
    path on the node, from the runner's folder there).
    """

    def __init__(self, attempt: RayAttempt, message: dict):
        self.attempt, self.workspace, self.argv = attempt, attempt.ws, message["argv"]
        self.cwd, self.node_root = message["cwd"], message["root"]
        self.paths: dict[str, str | None] = message["paths"]  # an argument naming something on the node: where
        self.files: dict[str, bytes] = message["files"]
        self.env = _call_env(message["env"], attempt.attempt)
        self._roots_here = _naming({str(attempt.root), attempt.view["root"]} - {self.node_root})

    def admit(self, command: str | None) -> None:
        """The command, if a runner may run it; the files the call names written here first."""
        if command not in NODE_COMMANDS:
            raise BadInput(f"'kx {command}' is not available to a runner on a Ray node (only {', '.join(NODE_COMMANDS)})")
        if self.files:
            self.attempt.place_files(self.files)

    def here(self, path: str) -> str:
        """A path argument as the CLI reads it here: the node located it (``runners.ray.node``) or it names nothing."""
        if path not in self.paths:
            return os.path.join(self.cwd, path)  # names nothing on the node: nor does its path there name anything here
        relative = self.paths[path]
        if relative is None:
            raise BadInput(f"{path} is outside the plan's root {self.node_root}; a runner's files must be inside it")
        return str(self.attempt.root / relative)

    def on_node(self, text: str) -> str:
        """The CLI's output with the plan's root here named as the runner sees it, its root on the node."""
        return self._roots_here.sub(lambda _: self.node_root, text) if self._roots_here else text


RunCli = Callable[[NodeCall], tuple[int, str, str]]


def _naming(paths: set[str]) -> re.Pattern | None:
    """A pattern for these paths where they stand whole in a text (``/a/root`` in ``/a/root/x``, not ``/a/root2``)."""
    if not paths:
        return None
    return re.compile("|".join(map(re.escape, sorted(paths, key=len, reverse=True))) + r"(?![\w.-])")


def _call_env(forwarded: dict[str, str], attempt: str) -> dict[str, str]:
    """What the CLI reads of the runner's environment: its attempt, the task's unless the runner names one (the
    ledger's key and the clock stay this process's)."""
    return {"KX_ATTEMPT": forwarded.get("KX_ATTEMPT") or attempt}


def _summary(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip()[:300]}" if lines else type(error).__name__
