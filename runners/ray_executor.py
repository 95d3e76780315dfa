"""``kx run --executor ray``: each attempt runs as a Ray task; the ledger stays with the supervisor.

The supervisor records the start (``RunnerStarted`` with no pid: the attempt is
held by this process, ``owner_pid``), writes the brief into the attempt's
folder as on a local run, and submits ``runners.ray_node.run_task`` with the
brief, the runner command and the files the runner reads (influential files,
the target, ``ship`` globs). On the node, ``kx`` is a shim whose calls come
back here through a ``Mailbox`` actor; they are answered with the same
functions, rules and attempt checks as the CLI (``machine.actions``). A drop's
content arrives with its ``kx drop`` and is written under the plan's root here,
then hashed and recorded by ``actions.drop``; the files the runner wrote come
back with the task's result. Then the outcome is recorded as for a local
wrapper; a task that Ray reports failed, cancelled or on a dead node or worker
becomes ``RunnerLost``, which the supervisor retries.

Ray is imported here only, when ``--executor ray`` is asked for.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ledger.errors import BadInput, KxError, Refused
from ledger.files import write_atomic
from machine.actions import Act, Context, authorize, drop, fail, finish, lose, start, tick
from machine.config import RayConfig
from machine.workspace import Workspace
from runners.attempt import WRAPPER, record_outcome, write_brief
from runners.attempts import beat, log_tail
from runners.ray_node import Mailbox, on_node, run_task

INSTALL = "pip install 'kx[ray]'"


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
    def __init__(self, workspace: Workspace, command: list[str], lease: float, address: str | None = None):
        import psutil

        self.ray = import_ray()
        self.ws, self.command, self.lease = workspace, command, lease
        self.config = workspace.config().ray or RayConfig()
        self.started_ray = self._connect(cluster_address(address, self.config))
        self.owner = {"owner_pid": os.getpid(), "owner_started": psutil.Process().create_time()}
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
                reply = {"code": 3, "error": f"stale attempt: {attempt} is over; this runner should stop"}
            if key is not None:
                replies.append((key, reply))
        if replies:
            self.mailbox.answer.remote(replies)


class RayAttempt:
    """One attempt run as a Ray task; ``poll()`` as a local wrapper's: 0 succeeded, 1 failed or lost, 3 refused."""

    def __init__(self, executor: RayExecutor, plan_id: str, part: str):
        self.executor, self.ws, self.part, self.code = executor, executor.ws, part, None
        try:
            started = start(self.ws, part, Act(by=WRAPPER), runner=executor.command, host=socket.gethostname(),
                            executor="ray", **executor.owner)
        except Refused:
            self.code = 3  # the supervisor says so and tries again
            return
        self.attempt = started.data["attempt"]
        self.folder, self.view = write_brief(self.ws, part, self.attempt)
        self.root = Path(self.view["root"]).resolve()
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
        """What the runner reads: the influential files, the target (a retry continues it), ``ship`` globs."""
        named = [f["path"] for f in self.view["influential_files"] if f["path"]] + [self.view["target"] or ""]
        paths = [self.root / n for n in named if n] + [p for pattern in ship for p in self.root.glob(pattern)]
        files = {}
        for path in paths:
            real = path.resolve()
            if real.is_relative_to(self.root) and real.is_file():
                files[real.relative_to(self.root).as_posix()] = real.read_bytes()
        return files

    def keep_alive(self) -> None:
        if time.monotonic() - self.beaten >= max(0.5, self.executor.lease / 3):
            self.beaten = time.monotonic()
            beat(self.folder)

    # --- requests from the node ----------------------------------------------------

    def receive(self, message: dict) -> dict:
        """A shim request (or output) from the node, answered as the CLI would: payload and text, or error."""
        if message["op"] == "log":
            with open(self.folder / "runner.log", "ab") as log:
                log.write(message["data"])
            return {"code": 0, "payload": {}}
        act = Act(attempt=message.get("attempt") or self.attempt, by=message.get("by"))
        try:
            if message["op"] == "brief":
                from machine.queries import brief, brief_markdown

                view = on_node(brief(self.ws, message["part"], act.attempt), message["root"])
                return {"code": 0, "payload": view, "text": brief_markdown(view)}
            outcome = self._act(message, act)
            return {"code": 0, "payload": outcome.as_dict(), "text": outcome.message}
        except KxError as error:
            return {"code": error.code, "error": error.message, "details": error.details}
        except Exception as exc:  # noqa: BLE001 - the runner gets an answer; the supervisor goes on
            return {"code": 1, "error": f"unexpected failure: {type(exc).__name__}: {exc}"}

    def _act(self, message: dict, act: Act):
        op, part = message["op"], message["part"]
        if op in ("tick", "untick"):
            return tick(self.ws, part, message["refs"], act, ticked=op == "tick")
        if op == "finish":
            return finish(self.ws, part, act)
        if op == "fail":
            return fail(self.ws, part, message["reason"], act)
        if op == "drop":
            if message.get("content") is None:  # a shared root: the file is already here
                return drop(self.ws, part, Path(message["path"]), act)
            relative = Path(message["path"]).relative_to(message["root"]) \
                if Path(message["path"]).is_relative_to(message["root"]) else None
            if relative is None:
                raise BadInput(f"{message['path']} is outside the plan's root {message['root']}; drops must be"
                               " written inside it")
            with self.ws.ledger.transaction():
                self._authorize(part, act)
                return drop(self.ws, part, self._place(relative.as_posix(), message["content"]), act)
        raise BadInput(f"'kx {op}' is not available to a runner on a Ray node")

    def _authorize(self, part: str, act: Act) -> None:
        """Rule 4 (inside the caller's transaction) before a file from the node overwrites one here."""
        ctx = Context.of(self.ws)
        authorize(ctx, ctx.part(part)[0], act)

    def _place(self, relative: str, data: bytes) -> Path:
        """A file from the node, written under the plan's root here; never over kx's own folder (the ledger)."""
        path = self.root / relative
        if Path(relative).is_absolute() or not path.resolve().is_relative_to(self.root):
            raise BadInput(f"{relative} is outside the plan's root {self.root}")
        if path.resolve().is_relative_to(self.ws.ledger.path.resolve().parent):
            raise BadInput(f"{relative} is in kx's folder beside the ledger; a runner does not write there")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        return path

    # --- the outcome --------------------------------------------------------------

    def settle(self) -> None:
        ray = self.executor.ray
        try:
            result = ray.get(self.ref)
        except ray.exceptions.RayTaskError as error:  # kx's task code raised on the node
            self.code = self._fail(f"its Ray task raised {_summary(getattr(error, 'cause', None) or error)}")
        except ray.exceptions.RayError as error:  # worker or node died, cancelled, out of memory, ...
            lose(self.ws, self.part, self.attempt, f"its Ray task ended without an outcome: {_summary(error)}")
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
                 or None)
        except Refused:
            pass  # someone else settled the attempt meanwhile
        return 1


def _summary(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1].strip()[:300]}" if lines else type(error).__name__
