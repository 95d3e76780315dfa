"""The rules of CONTRACT section 3, each in one place.

Each check raises :class:`Refused` naming the rule and what to do next. They
read only folded state (and, for evidence, the drop file), so the same checks
serve an act, inside its ``BEGIN IMMEDIATE`` transaction, the supervisor's and
``kx next``'s predictions, and ``kx audit verify``, replaying history:
:meth:`Rules.check` is the one question "may this event be recorded now?"
that acts ask before appending and the audit asks again of every event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from ledger.errors import Refused
from ledger.vocabulary import IMPORT
from machine.machines import batch_machine, fire, part_machine
from machine.state import BatchState, PartState, PlanState

# events a runner's attempt may record while it is the PART's current one (rule 4); a person, any time
# the PART's batch is not locked
ATTEMPT_ACTS = frozenset({"CheckboxTicked", "CheckboxUnticked", "DropRecorded", "RunnerSucceeded", "RunnerFailed"})
# the PART machine's trigger each event fires
PART_TRIGGERS = {"RunnerStarted": "start", "RunnerSucceeded": "succeed", "RunnerFailed": "fail",
                 "RunnerLost": "lose", "PartRetried": "retry", "PartReopened": "reopen"}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Rules:
    def __init__(self, state: PlanState, *, resolve: Callable[[str], Path] | None = None,
                 require_all_ticked: bool = True, accept_failed: bool = False):
        self.state = state
        self.resolve = resolve  # None: do not look at files (history replays)
        self.require_all_ticked = require_all_ticked
        self.accept_failed = accept_failed

    # the one check of every event ----------------------------------------------------

    def check(self, kind: str, data: dict[str, Any]) -> None:
        """Refuse an event that may not be recorded now; history ``by: import`` is taken as it was."""
        if data.get("by") == IMPORT:
            return
        part = self.state.parts.get(data.get("part")) if data.get("part") else None
        if part is not None:
            if kind in ATTEMPT_ACTS:
                self.may_act(part, data.get("attempt"))
            if kind in PART_TRIGGERS:
                fire(part_machine(), part, PART_TRIGGERS[kind], self)
        elif kind == "BatchReviewed":
            batch = self.state.batches.get(data.get("batch"))
            if batch is not None:
                approve = data.get("decision") == "approve"
                fire(batch_machine(), batch, "approve" if approve else "reject", self.accepting(data))
                for sent in data.get("parts", ()):
                    if sent in self.state.parts:
                        fire(part_machine(), self.state.parts[sent], "send_back", self)

    # rule 4, and the gate for people ----------------------------------------------------

    def may_act(self, part: PartState, attempt: str | None) -> None:
        """A runner acts only through the PART's current attempt; a person on any PART whose batch is open."""
        if attempt is None:
            self.gate(part)
            return
        owner = attempt.split("#", 1)[0]
        if owner != part.id:
            raise Refused(f"stale attempt: {attempt} belongs to {owner}, not {part.id}", rule="stale")
        if attempt != part.attempt or part.state not in ("running", "lost"):
            current = f"{part.attempt} is current" if part.attempt else "it has no attempt"
            raise Refused(
                f"stale attempt: {attempt} is over ({part.id} is {part.state}, {current}); this runner should stop",
                rule="stale",
            )

    def is_current(self, part: PartState, attempt: str) -> bool:
        return holds(self.may_act, part, attempt)

    # rules 1 and 2 -----------------------------------------------------------------

    def may_start(self, part: PartState) -> None:
        self.gate(part)
        if self.free_slots() <= 0:
            running = self.state.running()
            names = ", ".join(p.id for p in running)
            raise Refused(
                f"limit: {len(running)} of {self.state.limit} PARTs are running ({names}); wait until one"
                " finishes — 'kx next' lists what may start",
                rule="limit",
            )

    def free_slots(self, starting: int = 0, limit: int | None = None) -> int:
        """Slots under the limit (or a lower one) left when ``starting`` more attempts are on their way."""
        limit = self.state.limit if limit is None else min(limit, self.state.limit)
        return max(0, limit - len(self.state.running()) - starting)

    def startable(self, claimed: Collection[str] = (), limit: int | None = None) -> list[str]:
        """Pending PARTs past the gate, in plan order, at most as many as there are free slots.

        ``claimed``: PARTs already handed to a runner whose start may not be recorded yet (the supervisor's);
        they are not offered again, and those still pending take a slot each.
        """
        parts = self.state.parts
        ready = [p.id for p in self.state.plan.parts if parts[p.id].state == "pending" and p.id not in claimed
                 and holds(self.gate, parts[p.id])]
        starting = sum(parts[p].state == "pending" for p in claimed if p in parts)
        return list(dict.fromkeys(ready))[: self.free_slots(starting, limit)]

    def gate(self, part: PartState) -> None:
        batch = self.state.batch_of(part)
        if batch.state == "locked":
            before = self.state.first_unapproved_before(batch.number)
            if before is None:
                raise Refused(f"gate: {part.id} is in batch {batch.number}, which is locked", rule="gate")
            then = (f"review it with 'kx review {before.number} --approve'" if before.state == "awaiting_review"
                    else f"once its PARTs are done, review it with 'kx review {before.number} --approve'")
            raise Refused(
                f"gate: {part.id} is in batch {batch.number}, locked until batch {before.number} is approved"
                f" (it is {before.state.replace('_', ' ')}); {then}",
                rule="gate",
            )

    # rule 3 -------------------------------------------------------------------------

    def may_succeed(self, part: PartState) -> None:
        missing = self.missing_evidence(part)
        if missing:
            raise Refused(f"evidence: {part.id} cannot succeed: " + "; ".join(missing), rule="evidence",
                          details=missing)

    def missing_evidence(self, part: PartState) -> list[str]:
        missing: list[str] = []
        drop = part.drop
        if drop is None:
            missing.append(f"no drop recorded (write the KNOWLEDGE DROP, then 'kx drop {part.id} FILE')")
        elif self.resolve is not None:
            path = self.resolve(drop["path"])
            if not path.is_file():
                missing.append(f"drop {drop['path']} is gone")
            elif sha256_of(path) != drop["sha256"]:
                missing.append(f"drop {drop['path']} changed since it was recorded (record it again with 'kx drop')")
        if self.require_all_ticked:
            structure = self.state.plan.part(part.id)
            unticked = [b for b in structure.boxes if b.id not in part.ticked]
            if unticked:
                from machine.refs import index_of

                shown = ", ".join(f"{index_of(structure, b)} {_short(b.text)!r}" for b in unticked[:5])
                more = f" and {len(unticked) - 5} more" if len(unticked) > 5 else ""
                missing.append(f"{len(unticked)} of {len(structure.boxes)} boxes unticked: {shown}{more}")
        return missing

    # reviews --------------------------------------------------------------------------

    def may_approve(self, batch: BatchState) -> None:
        failed = self.failed_parts(batch)
        if failed and not self.accept_failed:
            raise Refused(
                f"batch {batch.number} has failed PARTs ({', '.join(failed)}): retry them, reject the batch,"
                " or approve with --accept-failed",
                rule="review",
            )

    def accepting(self, review: dict[str, Any]) -> Rules:
        """These rules, or, for a review that names the failed PARTs it accepts, rules that accept them."""
        accepted = set(review.get("accepted_failed") or ())
        if self.accept_failed or not accepted:
            return self
        batch = self.state.batches.get(review.get("batch"))
        covered = batch is not None and set(self.failed_parts(batch)) <= accepted
        return Rules(self.state, resolve=self.resolve, require_all_ticked=self.require_all_ticked,
                     accept_failed=covered)

    def failed_parts(self, batch: BatchState) -> list[str]:
        return [p.id for p in self.state.members(batch) if p.state == "failed"]


def holds(check: Callable[..., None], *args: Any) -> bool:
    """Whether a rule's check passes (it raises :class:`Refused` when not)."""
    try:
        check(*args)
    except Refused:
        return False
    return True


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
