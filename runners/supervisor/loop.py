"""``kx run``: start runners batch by batch under the rules, review between batches, resume after a crash.

The supervisor keeps no state of its own that matters: what it knows of the
plan is the ledger's events, folded in memory as they come (each turn of its
loop folds in what was appended since the last). Between turns it sleeps until
something may have changed: a wrapper's exit (the fork server's reports), a
deadline (a retry's backoff, the next reconcile), or another process's append
(SQLite's ``data_version``, asked every ``watch`` seconds). Each attempt runs
in a wrapper process of its own session (``runners.local.wrapper``) that
records the start and the outcome itself, so killing the supervisor loses
nothing; the same command picks up from the ledger, reconciling attempts whose
wrappers died into ``RunnerLost`` first.
Where attempts run is the executor's business: wrappers on this machine,
forked by a fork server that never opens the ledger (``LocalExecutor``), or
Ray tasks on a cluster (``runners.ray.executor``).
"""

from __future__ import annotations

import re
import select
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ledger import logs
from ledger.errors import BadInput, Refused, Unknown
from machine.acts.lifecycle import Act, fail, finish, record_run, retry, review
from machine.acts.workspace import Workspace
from machine.defaults import BACKOFF_S, LEASE_S, SUPERVISOR
from machine.outputs.packet import batch_packet, packet_text
from machine.state.fold import PartState, PlanState
from runners.local.executor import LocalExecutor
from runners.local.forkserver import ForkServer
from runners.reconcile import reconcile
from runners.supervisor.lease import holding_the_plan
from runners.supervisor.review_page import review_page

REVIEW_MODES = ("prompt", "wait", "auto")
EXECUTORS = ("local", "ray")


@dataclass
class RunOptions:
    command: list[str]
    max_parallel: int | None = None
    retries: int = 1
    review: str = "prompt"
    until_batch: int | None = None
    backoff: float = BACKOFF_S
    watch: float = 0.25  # how often a waiting supervisor asks whether others appended (a review, a runner's ticks)
    reconcile_every: float = 2.0
    executor: str = "local"
    ray_address: str | None = None
    run_cli: Callable[..., tuple[int, str, str]] | None = None  # the CLI, for runners' kx on Ray nodes
    run: str = "run"  # the command, "run" or "resume", recorded with ``given``
    given: dict[str, Any] | None = None  # the options that shape attempts, as given: recorded (RunStarted) when
    # the first attempt starts, for 'kx resume'; None: nothing recorded


@dataclass
class RunResult:
    code: int
    outcome: str
    message: str
    summary: dict[str, Any] = field(default_factory=dict)


Ask = Callable[[str, list[str]], str]  # (question, choices; none: free text) → the answer


def _failure(part: PartState) -> dict[str, Any]:
    """A failed or lost PART as a run's summary names it: why, and the last line its runner wrote."""
    shown = {"part": part.id, "attempt": part.attempt, "state": part.state, "reason": part.reason}
    return {**shown, "last_output": part.last_output} if part.last_output else shown


class Reporter(Protocol):
    """What a run tells a person as it goes (the CLI's plain lines or its live view)."""

    def say(self, message: str) -> None: ...

    def update(self, state: PlanState) -> None: ...


class LogOnly:
    """A :class:`Reporter` for a run nobody watches: what it says goes to the log."""

    def say(self, message: str) -> None:
        logs.get().info("run", message=message)

    def update(self, state: PlanState) -> None:
        pass


class Attempt(Protocol):
    def poll(self) -> int | None: ...


class Executor(Protocol):
    """Where attempts run: ``runners.local.executor.LocalExecutor`` (wrappers on this machine), ``runners.ray.executor``."""

    def spawn(self, plan_id: str, part: str) -> Attempt: ...

    def service(self) -> None: ...

    def waits(self) -> tuple[list[int], float | None]:
        """What the loop waits on between turns: descriptors readable when an attempt ended, and the seconds
        until ``service`` is due again (None: only when a descriptor is ready)."""

    def close(self) -> None: ...


class Supervisor:
    def __init__(self, workspace: Workspace, options: RunOptions, progress: Reporter, ask: Ask | None = None,
                 fork_server: ForkServer | None = None):
        if options.review not in REVIEW_MODES:
            raise BadInput(f"--review must be one of {', '.join(REVIEW_MODES)}")
        if options.executor not in EXECUTORS:
            raise BadInput(f"--executor must be one of {', '.join(EXECUTORS)}")
        if options.ray_address and options.executor != "ray":
            raise BadInput("--ray-address goes with --executor ray")
        if workspace.ledger.read_only:
            raise BadInput(f"the ledger {workspace.ledger.path} is read-only (its file has no write permission) and"
                           " a run records every start and outcome; make it writable (chmod u+w) first")
        self.ws, self.options, self.progress, self.ask = workspace, options, progress, ask
        self.fork_server = fork_server  # the local executor's, if it was started already
        self.children: dict[str, Attempt] = {}
        self.executor: Executor
        self.failed_seen: dict[str, float] = {}
        self.interrupted = 0
        self.told_stopping = False
        self.waiting_for: int | None = None
        self.page_told: str | None = None  # the review page's address said while waiting
        self.page_checked = float("-inf")
        self.next_reconcile = 0.0  # when the loop next looks for attempts whose runner died (monotonic)
        self.retry_due: float | None = None  # when the first retry waiting out its backoff is due (monotonic)
        self.state: PlanState | None = None  # the plan's state, folded as far as the last turn looked
        self.seen_version = 0  # the ledger's data_version when the last turn looked
        self.recorded = options.given is None
        self.lease = workspace.config().lease_seconds or LEASE_S

    # --- the loop --------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run the plan, holding its lease (a second supervisor is refused, exit 3, before it starts anything)."""
        with ExitStack() as stack:
            if self.fork_server is not None:
                stack.callback(self.fork_server.close)  # also when the lease is refused
            state = self.ws.state()
            if all(batch.state == "approved" for batch in state.batches.values()):
                return self._result(state, 0, "completed", "every batch is approved")  # no lease for nothing to do
            stack.enter_context(holding_the_plan(self.ws, self.lease))
            self.executor = self._executor()
            stack.callback(self.executor.close)
            previous = signal.signal(signal.SIGINT, self._interrupt)
            stack.callback(signal.signal, signal.SIGINT, previous)
            return self._loop(state)

    def _executor(self) -> Executor:
        if self.options.executor == "ray":
            from runners.ray.executor import RayExecutor

            return RayExecutor(self.ws, self.options.command, self.lease, self.options.run_cli, self.options.ray_address)
        return LocalExecutor(self.ws, self.options.command, self.lease, self.fork_server)

    def _interrupt(self, _signum, _frame) -> None:
        # Only counted here: saying it from the handler would print and log inside whatever print, log or import
        # the signal cut into (the first log line imports structlog); the loop says it on its next turn.
        self.interrupted += 1
        if self.interrupted > 1:
            raise KeyboardInterrupt

    def _loop(self, state: PlanState) -> RunResult:
        lost = reconcile(self.ws, state)
        if lost:
            self.progress.say(f"found {len(lost)} attempts whose runner died: {', '.join(lost)} (recorded as lost)")
        self.state = state  # the lease and the losses just recorded are folded in at the first turn
        self.next_reconcile = time.monotonic() + self.options.reconcile_every
        while True:
            self._reap()
            state = self._caught_up()
            self.progress.update(state)
            if self.interrupted:
                if not self.told_stopping:
                    self.told_stopping = True
                    self.progress.say("stopping: no new runners; the running ones finish and record their outcome"
                                      " (Ctrl-C again to leave now; 'kx resume' continues)")
                if not self.children:
                    return self._result(state, 130, "interrupted", "interrupted; 'kx resume' continues")
                self._wait()
                continue
            settling = self._settle(state)
            if settling == "acted":
                continue
            batch = next((b for b in state.plan.batches if state.batches[b.number].state != "approved"), None)
            if batch is None:
                return self._result(state, 0, "completed", "every batch is approved")
            batch_state = state.batches[batch.number].state
            if batch_state == "awaiting_review" and not self._running(state) and settling != "waiting":
                result = self._review(state, batch.number)
                if result is not None:
                    return result
                continue
            self._launch(state)
            if self._maybe_reconcile(state):
                continue
            self._wait(self.retry_due, self.next_reconcile)

    def _caught_up(self) -> PlanState:
        """The plan's state with what was appended since the last look folded in (read anew if the plan's
        timezone, which its stamps are folded in, was changed meanwhile)."""
        self.seen_version = self.ws.ledger.data_version()  # first: an append from now on wakes the next wait
        if self.ws.config(self.state.id).timezone != self.state.timezone:
            self.state = self.ws.state()
        else:
            self.state.fold_rows(self.ws.ledger.scan(self.state.id, since=self.state.position))
        return self.state

    def _wait(self, *deadlines: float | None) -> None:
        """Sleep until something may have changed: an attempt ended, one of ``deadlines`` (monotonic times) came,
        the executor's service is due, Ctrl-C was pressed, or another process appended (asked every ``watch``
        seconds; the progress is updated then, so that a live view's clocks go on)."""
        due = min((deadline for deadline in deadlines if deadline is not None), default=float("inf"))
        while True:
            descriptors, service = self.executor.waits()
            timeout = min(self.options.watch, due - time.monotonic(), float("inf") if service is None else service)
            ready, _, _ = select.select(descriptors, [], [], max(0.0, timeout))
            if ready or service is not None or time.monotonic() >= due or self.interrupted and not self.told_stopping:
                return
            if self.ws.ledger.data_version() != self.seen_version:
                return
            self.progress.update(self.state)

    def _result(self, state: PlanState, code: int, outcome: str, message: str) -> RunResult:
        parts = [state.parts[p.id] for p in state.plan.parts]
        summary = {
            "plan": state.id, "outcome": outcome, "message": message,
            "batches": [{"number": n, "state": b.state} for n, b in state.batches.items()],
            "succeeded": sum(p.state == "succeeded" for p in parts),
            "failed": sum(p.state == "failed" for p in parts),
            "parts": len(parts),
            "failures": [_failure(p) for p in parts if p.state in ("failed", "lost")
                         and state.batches[p.batch].state != "approved"],
        }
        return RunResult(code, outcome, message, summary)

    def _stopped(self, state: PlanState, number: int, message: str) -> RunResult:
        """The run stops at batch ``number``'s review: exit 1 when PARTs of it failed, else 0."""
        failed = self.ws.rules(state).failed_parts(state.batches[number])
        if failed:
            message += f"; failed: {', '.join(failed)}"
        return self._result(state, 1 if failed else 0, "stopped", message)

    def _running(self, state: PlanState) -> bool:
        return bool(self.children) or bool(state.running())

    # --- runners -------------------------------------------------------------------

    def _launch(self, state: PlanState) -> None:
        startable = self.ws.rules(state).startable(claimed=self.children, limit=self.options.max_parallel)
        if startable and not self.recorded:
            record_run(self.ws, self.options.run, self.options.given or {}, Act(by=SUPERVISOR))
            self.recorded = True
        for part in startable:
            self.children[part] = self.executor.spawn(state.id, part)

    def _reap(self) -> None:
        self.executor.service()
        for part, child in list(self.children.items()):
            code = child.poll()
            if code is not None:
                del self.children[part]
                self.next_reconcile = 0.0  # a wrapper that died without recording its outcome is found at once
                if code == 3:
                    self.progress.say(f"{part}: start refused (another process got there first); will try again")

    def _maybe_reconcile(self, state: PlanState) -> bool:
        """Record as lost the attempts whose runner died, every ``reconcile_every`` seconds; whether any was."""
        if time.monotonic() < self.next_reconcile:
            return False
        self.next_reconcile = time.monotonic() + self.options.reconcile_every
        return bool(reconcile(self.ws, state))

    # --- failures and lost attempts ---------------------------------------------------

    def _settle(self, state: PlanState) -> str | None:
        """Finish lost attempts that left complete evidence; retry failures within budget, unless a failure says it
        cannot succeed unchanged (``RunnerFailed.retry`` false: a person decides).

        "acted" when something was recorded, "waiting" while a retry waits out its backoff.
        """
        rules = self.ws.rules(state)
        waiting = None
        self.retry_due = None
        for structure in state.plan.parts:
            part = state.parts[structure.id]
            if state.batches[part.batch].state == "approved" or part.state not in ("failed", "lost"):
                self.failed_seen.pop(part.id, None)
                continue
            if part.id in self.children and part.state == "failed":
                continue  # its wrapper is recording more; a lost attempt's wrapper is not waited for
            try:
                if part.state == "lost" and not rules.missing_evidence(part):
                    finish(self.ws, part.id, Act(attempt=part.attempt, by=SUPERVISOR))
                    self.progress.say(f"{part.id}: {part.attempt} was lost after leaving complete evidence; finished")
                    return "acted"
                if part.tries > self.options.retries or (part.state == "failed" and not part.retryable):
                    if part.state == "lost":
                        fail(self.ws, part.id, f"lost and out of retries ({part.reason})", Act(attempt=part.attempt),
                             last_output=part.last_output)
                        return "acted"
                    continue
                seen = self.failed_seen.setdefault(part.id, time.monotonic())
                due = seen + self.options.backoff * 2 ** (part.tries - 1)
                if time.monotonic() < due:
                    waiting = "waiting"
                    self.retry_due = min(due, self.retry_due or due)
                    continue
                retry(self.ws, part.id, Act(by=SUPERVISOR), reason=f"retry {part.tries} of {self.options.retries}")
                self.failed_seen.pop(part.id, None)
                return "acted"
            except Refused:
                return "acted"  # someone acted meanwhile; look again
        return waiting

    # --- reviews -------------------------------------------------------------------

    def _review(self, state: PlanState, number: int) -> RunResult | None:
        if self.options.until_batch is not None and number >= self.options.until_batch:
            return self._stopped(state, number, f"stopped at the gate: batch {number} awaits review"
                                 f" ('kx review {number} --approve' or '--reject', then 'kx resume')")
        mode = self.options.review
        if mode == "prompt" and self.ask is None:
            mode = "wait"
        if mode == "auto":
            return self._auto_review(state, number)
        if mode == "wait":
            if self.waiting_for != number:
                self.waiting_for = number
                self.progress.say(packet_text(batch_packet(state, number, self.ws.resolve)))
                self.progress.say(f"batch {number} awaits review: run 'kx review {number} --approve' (or --reject"
                                  " PART...) in another terminal")
            self._tell_review_page(state.id, number)
            self._wait(self.page_checked + self.options.reconcile_every)
            return None
        return self._prompt_review(state, number)

    def _tell_review_page(self, plan_id: str, number: int) -> None:
        """Say where ``kx serve`` shows the batch's review, once a server for the plan runs (checked now and then)."""
        if time.monotonic() - self.page_checked < self.options.reconcile_every:
            return
        self.page_checked = time.monotonic()
        page = review_page(self.ws.ledger.path, plan_id, number)
        if page and page != self.page_told:
            self.page_told = page
            self.progress.say(f"batch {number} can be reviewed in a browser: {page}")

    def _auto_review(self, state: PlanState, number: int) -> RunResult | None:
        failed = self.ws.rules(state).failed_parts(state.batches[number])
        if failed:
            return self._result(state, 1, "needs_review",
                                f"batch {number} has failed PARTs after retries ({', '.join(failed)}); review it:"
                                f" 'kx review {number} --reject' or '--approve --accept-failed', then 'kx resume'")
        review(self.ws, number, approve=True, parts=[], note="approved by kx run --review auto",
               act=Act(by="auto"))
        return None

    def _prompt_review(self, state: PlanState, number: int) -> RunResult | None:
        self.progress.say(packet_text(batch_packet(state, number, self.ws.resolve)))
        failed = self.ws.rules(state).failed_parts(state.batches[number])
        choices = ["approve", "reject", "retry", "quit"] if failed else ["approve", "reject", "quit"]
        answer = self.ask(f"batch {number}: {' / '.join(choices)}?", choices)
        act = Act(by=None)
        if answer == "quit":
            return self._stopped(state, number, f"stopped at batch {number}'s review; 'kx resume' continues")
        if answer == "retry":
            for part in failed:
                retry(self.ws, part, act, reason="reviewer asked for a retry")
        elif answer == "approve":
            accept = bool(failed) and self.ask(f"approve although {', '.join(failed)} failed?", ["yes", "no"]) == "yes"
            if failed and not accept:
                return None
            review(self.ws, number, approve=True, parts=[], note=None, act=act, accept_failed=accept)
        else:
            self._send_back(state, number, failed, act)
        return None

    def _send_back(self, state: PlanState, number: int, failed: list[str], act: Act) -> None:
        """Reject batch ``number``, sending back the PARTs the reviewer names (several at once, as
        ``kx review --reject`` takes them); a bad one is a one-line error and the question again."""
        members = [p.id for p in state.members(state.batches[number])]
        enter = f"; Enter: {', '.join(failed)}" if failed else ""
        question = f"which PARTs go back? (e.g. {members[0]} {members[-1]} or 1,3{enter})"
        while True:
            named = named_parts(self.ask(question, []))
            if not named and not failed:
                self.progress.say(f"kx: error: name at least one PART to send back ({', '.join(members)})")
                continue
            try:
                review(self.ws, number, approve=False, parts=named, note=None, act=act)
                return
            except (BadInput, Unknown) as exc:
                self.progress.say(f"kx: error: {exc.message}")


def named_parts(answer: str) -> list[str]:
    """The PARTs an answer names: ``PART-3 PART-5``, ``3,5`` or ``part 3, 5``, in the order given."""
    answer = re.sub(r"(?i)\bpart[\s_#-]*(?=\d)", "PART-", answer)
    return [token for token in re.split(r"[\s,;]+", answer) if token]
