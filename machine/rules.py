"""The rules of CONTRACT section 3, as conditions of the machines.

Each check raises :class:`Refused` naming the rule and what to do next. They
read only folded state (and, for evidence, the drop file), so the same checks
serve a command, inside its ``BEGIN IMMEDIATE`` transaction, and
``kx audit verify``, replaying history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from ledger.errors import Refused
from machine.state import BatchState, PartState, PlanState


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

    # rule 1 and 2 -----------------------------------------------------------------

    def may_start(self, part: PartState) -> None:
        self.gate(part)
        running = self.state.running()
        if len(running) >= self.state.limit:
            names = ", ".join(p.id for p in running)
            raise Refused(
                f"limit: {len(running)} of {self.state.limit} PARTs are running ({names}); wait until one"
                " finishes — 'kx next' lists what may start",
                rule="limit",
            )

    def gate(self, part: PartState) -> None:
        batch = self.state.batch_of(part)
        if batch.state == "locked":
            before = self.previous_batch(batch.number)
            raise Refused(
                f"gate: {part.id} is in batch {batch.number}, locked until batch {before.number} is approved"
                f" (it is {before.state.replace('_', ' ')}); review it with 'kx review {before.number} --approve'",
                rule="gate",
            )

    def previous_batch(self, number: int) -> BatchState:
        order = [b.number for b in self.state.plan.batches]
        return self.state.batches[order[order.index(number) - 1]]

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

    def failed_parts(self, batch: BatchState) -> list[str]:
        structure = self.state.plan.batch(batch.number)
        return [f"PART-{n}" for n in structure.parts if self.state.parts[f"PART-{n}"].state == "failed"]


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
