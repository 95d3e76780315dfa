"""The rules of CONTRACT section 3, each in one place.

Each check raises :class:`Refused` naming the rule and what to do next. They
read only folded state (and, for evidence, the drop, the target and the files a
Read box names, through :mod:`machine.state.evidence`; never while replaying), so the same checks
serve an act, inside its ``BEGIN IMMEDIATE`` transaction, the supervisor's and
``kx next``'s predictions, and ``kx audit verify``, replaying history:
:meth:`Rules.check` is the one question "may this event be recorded now?"
that acts ask before appending and the audit asks again of every event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ledger.errors import Refused
from ledger.events.vocabulary import IMPORT
from machine.defaults import EVIDENCE_POLICY, SOURCES_POLICY
from machine.plan.model import AttemptId, Box, Part
from machine.plan.paths import PathGuard
from machine.plan.refs import index_of
from machine.plan.text import quoted
from machine.state.evidence import (
    SOURCE_FORMS,
    BoxKind,
    digest_of,
    how_to,
    kind_of,
    locate,
    names_file,
    sha256_of,
    source_form,
)
from machine.state.fold import BatchState, PartState, PlanState
from machine.state.headings import Heading, headings, match_sections
from machine.state.machines import allows, batch_machine, fire, part_machine

# events a runner's attempt may record while it is the PART's current one (rule 4); a person, any time
# the PART's batch is not locked
ATTEMPT_ACTS = frozenset({"CheckboxTicked", "CheckboxUnticked", "DropRecorded", "RunnerSucceeded", "RunnerFailed"})
# the PART machine's trigger each event fires
PART_TRIGGERS = {"RunnerStarted": "start", "RunnerSucceeded": "succeed", "RunnerFailed": "fail",
                 "RunnerLost": "lose", "PartRetried": "retry", "PartReopened": "reopen"}
POLICIES = ("verified", "ticked", "drop")  # what a PART needs to succeed (CONTRACT section 7)


class Rules:
    def __init__(self, state: PlanState, *, resolve: Callable[[str], Path] | None = None,
                 policy: str = EVIDENCE_POLICY, sources: str = SOURCES_POLICY, accept_failed: bool = False,
                 paths: Callable[[], PathGuard] | None = None):
        self.state = state
        self.resolve = resolve  # None: do not look at files (history replays)
        self.policy = policy
        self.sources = sources  # "checked": a Search tick's sources are in SOURCE_FORMS; "any": any text
        self.accept_failed = accept_failed
        self._paths, self._guard = paths, None  # the plan's path guard, made when a file is first looked at
        self._kinds: dict[str, BoxKind] = {}
        self._targets: dict[str, dict[str, Any]] = {}  # a target file is read once per act
        self._sections: dict[tuple[str, str], dict[int, Heading]] = {}  # its headings matched once per PART
        self._drop_hashes: dict[Path, str] = {}  # and a drop hashed once ('kx finish' asks, then its append)
        self._reports: dict[tuple[str, int], EvidenceReport] = {}  # a PART's report, once per state it is asked of

    # the one check of every event ----------------------------------------------------

    def check_all(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """:meth:`check` each of an act's events (type, data); the ticks that lack their evidence are refused
        together, each named."""
        lacking: list[str] = []
        for kind, data in events:
            try:
                self.check(kind, data)
            except Refused as refusal:
                if refusal.rule != "evidence" or kind != "CheckboxTicked":
                    raise
                lacking += refusal.details
        if lacking:
            raise Refused("evidence: " + "; ".join(lacking), rule="evidence", details=lacking)

    def check(self, kind: str, data: dict[str, Any]) -> None:
        """Refuse an event that may not be recorded now; history ``by: import`` is taken as it was (once the plan
        is open to it)."""
        self.open_to(kind, data)
        if kind == "PlanConsolidated":
            self.may_consolidate()
        elif kind == "SupervisorLeased":
            self.may_lease(data)
        elif kind == "SupervisorReleased":
            self.may_release(data)
        if data.get("by") == IMPORT:
            return
        part = self.state.parts.get(data.get("part")) if data.get("part") else None
        if part is not None:
            if kind in ATTEMPT_ACTS:
                self.may_act(part, data.get("attempt"))
            if kind == "CheckboxTicked":
                self.may_tick(part, data)
            if kind in PART_TRIGGERS:
                rules = self.judging(data) if kind == "RunnerSucceeded" else self
                fire(part_machine(), part, PART_TRIGGERS[kind], rules)
        elif kind == "BatchReviewed":
            batch = self.state.batches.get(data.get("batch"))
            if batch is not None:
                trigger = "approve" if data.get("decision") == "approve" else "reject"
                if not allows(batch_machine(), batch, trigger):
                    raise Refused(self.not_reviewable(batch), rule="review")
                fire(batch_machine(), batch, trigger, self.accepting(data))
                for sent in data.get("parts", ()):
                    if sent in self.state.parts:
                        fire(part_machine(), self.state.parts[sent], "send_back", self)

    # a consolidated plan is closed -----------------------------------------------------

    def open_to(self, kind: str, data: dict[str, Any]) -> None:
        """Nothing is recorded on a consolidated plan but a reopening that withdraws the consolidation."""
        done = self.state.consolidated
        if done is None or kind == "PartReopened" and data.get("withdrew_consolidation"):
            return
        commit = f", commit {done['commit'][:12]}" if done.get("commit") else ""
        raise Refused(f"plan {self.state.id} is consolidated (by {done.get('by', '?')}{commit}) and closed to changes;"
                      " to change it, withdraw the consolidation: 'kx reopen PART... --reason TEXT"
                      " --withdraw-consolidation' (the next kx consolidate redoes it)", rule="consolidated")

    def may_consolidate(self) -> None:
        """Consolidation waits until every batch is approved."""
        left = [f"batch {n} is {b.state.replace('_', ' ')}" for n, b in self.state.batches.items()
                if b.state != "approved"]
        if left:
            raise Refused("consolidation waits until every batch is approved: " + "; ".join(left),
                          rule="consolidate")

    # one supervisor per plan ------------------------------------------------------------

    def may_lease(self, lease: dict[str, Any]) -> None:
        """A supervisor takes the plan when nobody holds it, or over from the holder its act found gone."""
        held = self.state.lease
        if held is None or (lease.get("took_over") or {}).get("position") == held["position"]:
            return
        raise Refused(f"a supervisor, pid {held['pid']} on {held['host']} since {held['since'][:19]}Z, runs plan"
                      f" {self.state.id}; 'kx status' to watch it (a second kx run or resume would race it)",
                      rule="lease")

    def may_release(self, release: dict[str, Any]) -> None:
        held = self.state.lease
        if held is None or (held["pid"], held["host"]) != (release.get("pid"), release.get("host")):
            raise Refused(f"pid {release.get('pid')} on {release.get('host')} does not hold plan {self.state.id}",
                          rule="lease")

    # rule 4, and the gate for people ----------------------------------------------------

    def may_act(self, part: PartState, attempt: str | None) -> None:
        """A runner acts only through the PART's current attempt; a person on any PART whose batch is open."""
        if attempt is None:
            self.gate(part)
            return
        parsed = AttemptId.parse(attempt)
        if parsed is None or parsed.part != part.id:
            owner = f"belongs to {parsed.part}" if parsed else "is not an attempt id (PART-7#1)"
            raise Refused(f"stale attempt: {quoted(attempt)} {owner}, not {part.id}", rule="stale")
        if attempt != part.attempt:
            current = f"{part.attempt} is its current attempt" if part.attempt else "it has no attempt"
            raise Refused(f"stale attempt: {attempt} is over ({part.id} is {part.state}; {current});"
                          " this runner should stop", rule="stale")
        if part.state not in ("running", "lost"):
            raise Refused(f"stale attempt: {attempt} has ended ({part.id} is {part.state}); this runner should stop",
                          rule="stale")

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

    # rule 3, and the evidence of each tick (CONTRACT section 7) ---------------------------

    def may_succeed(self, part: PartState) -> None:
        missing = self.missing_evidence(part)
        if missing:
            raise Refused(f"evidence: {part.id} cannot succeed: " + "; ".join(missing), rule="evidence",
                          details=missing)

    def missing_evidence(self, part: PartState) -> list[str]:
        return self.evidence_report(part).missing

    def evidence_report(self, part: PartState) -> EvidenceReport:
        """Whether each piece of the PART's evidence holds now, under the policy: its drop, its boxes, its target
        (built once for the state it is asked of: 'kx finish' records what it reports, then its check asks)."""
        key = (part.id, self.state.position)
        if key not in self._reports:
            self._reports[key] = self._evidence_report(part)
        return self._reports[key]

    def _evidence_report(self, part: PartState) -> EvidenceReport:
        structure = self.state.plan.part(part.id)
        target = self.target_verdict(part, structure)
        boxes = [self.box_verdict(part, structure, box, target) for box in structure.boxes]
        return EvidenceReport(part.id, self.policy, self.drop_verdict(part), boxes, target, len(structure.boxes))

    def knowledge_problems(self, part: PartState) -> list[str]:
        """What the PART's knowledge file fails of the checks ``finish`` makes that need no tick (under "verified"):
        the target exists, a heading stands for every Section box, every cited file is named, and a drop, if one
        was recorded, is as recorded. For work that no attempt of kx earned: imported, or to be consolidated."""
        structure = self.state.plan.part(part.id)
        target = self.target_verdict(part, structure)
        problems = [] if target["ok"] else [target["why"]]
        if "text" in target:
            sections = [b for b in structure.boxes if self.kind(b.text).kind == "section"]
            unheaded = [index_of(structure, b) for b in sections if b.id not in target["sections"]]
            if unheaded:
                problems.append(f"{target['path']} has no heading for {len(unheaded)} of {len(sections)} Section"
                                f" boxes ({', '.join(unheaded)})")
            files = self.state.plan.influential_files
            cited = dict.fromkeys(n for b in structure.boxes for n in self.kind(b.text).files)
            if unnamed := [n for n in cited if not names_file(target["text"], n, files.get(n))]:
                problems.append(f"{target['path']} does not name {', '.join(f'File {n}' for n in unnamed)}")
        drop = self.drop_verdict(part) if part.drop else None
        return problems + ([drop["why"]] if drop and not drop["ok"] else [])

    def drop_verdict(self, part: PartState) -> dict[str, Any]:
        drop = part.drop
        if drop is None:
            return {"ok": False, "why": f"no drop recorded (write the KNOWLEDGE DROP, then 'kx drop {part.id} FILE')"}
        seen = {"path": drop["path"], "sha256": drop["sha256"]}
        if self.resolve is not None:
            path = self.resolve(drop["path"])
            if not path.is_file():
                return {**seen, "ok": False, "why": f"drop {drop['path']} is gone"}
            if path not in self._drop_hashes:
                self._drop_hashes[path] = sha256_of(path)
            if self._drop_hashes[path] != drop["sha256"]:
                return {**seen, "ok": False, "why": f"drop {drop['path']} changed since it was recorded (record it"
                        f" again with 'kx drop {part.id} {drop['path']}')"}
        return {**seen, "ok": True, "why": "recorded" + (" and unchanged" if self.resolve else "")}

    def box_verdict(self, part: PartState, structure: Part, box: Box, target: dict[str, Any]) -> BoxVerdict:
        kind, ref = self.kind(box.text), index_of(structure, box)
        verdict = partial(BoxVerdict, ref, kind.kind, box.text)
        if self.policy == "drop":
            return verdict(True, "not required (evidence policy 'drop')")
        _, command = how_to(kind, part.id, ref, structure.header.target if structure.header else None,
                                self.state.plan.influential_files)
        if box.id not in part.ticked:
            return verdict(False, f"not ticked: {command}")
        evidence = part.evidence.get(box.id)
        if self.policy == "ticked":
            return verdict(True, "ticked")
        if evidence is None:
            return verdict(False, f"ticked without evidence (by import or an older kx): {command}")
        if evidence.get("override"):
            return verdict(True, "a person's override", override="person")
        if problem := self.lacking(part, kind, evidence):
            return verdict(False, f"{problem}: {command}")
        if evidence.get("rehearsal"):
            what = "no search was run" if kind.kind == "search" else f"{kind.path} is not in the plan's root; nothing was read"
            return verdict(True, f"rehearsal: {what}", override="rehearsal")
        if kind.kind in ("section", "cite") and "text" in target:
            return self.target_holds(verdict, box, kind, target, command)
        return verdict(True, _summary(kind, evidence, part.drop))

    def target_holds(self, verdict: Callable[..., BoxVerdict], box: Box, kind: BoxKind, target: dict[str, Any],
                     command: str) -> BoxVerdict:
        text = target["text"]
        if kind.kind == "section":
            heading = target["sections"].get(box.id)
            return verdict(True, f"heading {heading.text!r} (line {heading.line})", heading=heading) if heading else \
                verdict(False, f"{target['path']} has no heading for it; {command}")
        files = self.state.plan.influential_files
        unnamed = [n for n in kind.files if not names_file(text, n, files.get(n))]
        if unnamed:
            shown = ", ".join(f"File {n}" + (f" ({files[n]})" if n in files else "") for n in unnamed)
            return verdict(False, f"{target['path']} does not name {shown}; {command}")
        return verdict(True, f"names {', '.join(f'File {n}' for n in kind.files) or 'no file'}")

    def target_verdict(self, part: PartState, structure: Part) -> dict[str, Any]:
        """The PART's target file (its header's ``Create PATH``), read once; under "verified" it must exist."""
        path = structure.header.target if structure.header else None
        if self.policy != "verified":
            return {"path": path, "ok": True, "why": f"not checked (evidence policy {self.policy!r})"}
        if path is None:
            needed = any(self.kind(b.text).kind in ("section", "cite") for b in structure.boxes)
            return {"path": None, "ok": not needed,
                    "why": "the PART names no target file (its header box 'PART N: Create PATH')" if needed
                    else "the PART names no target file"}
        if self.resolve is None:
            return {"path": path, "ok": True, "why": "not checked (no files while replaying history)"}
        if path not in self._targets:
            self._targets[path] = self._read_target(path)
        target = dict(self._targets[path])
        if "headings" in target:
            if (path, part.id) not in self._sections:  # a tick of many Section boxes matches them once
                sections = [box for box in structure.boxes if self.kind(box.text).kind == "section"]
                matched = match_sections([self.kind(box.text) for box in sections], target["headings"])
                self._sections[path, part.id] = {sections[index].id: heading for index, heading in matched.items()}
            target["sections"] = self._sections[path, part.id]
        return target

    def _read_target(self, path: str) -> dict[str, Any]:
        real, why = locate(self.guard(), path)
        if real is None or not real.is_file():
            return {"path": path, "ok": False, "why": f"target {why or path + ' is not a file'}",
                    "fix": "write it (a runner: $KX_TARGET)"}
        data = real.read_bytes()
        text = data.decode("utf-8", errors="replace")
        return {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "ok": True, "why": "exists",
                "text": text, "headings": headings(text)}

    def guard(self) -> PathGuard:
        """Where kx reads a Read box's file and the target: the plan's :class:`PathGuard`."""
        if self._guard is None:
            self._guard = self._paths() if self._paths else PathGuard.around(
                self.resolve(self.state.root), plan=self.resolve(self.state.path) if self.state.path else None)
        return self._guard

    # --- a tick's evidence ----------------------------------------------------------------

    def kind(self, text: str) -> BoxKind:
        if text not in self._kinds:
            self._kinds[text] = kind_of(text, self.state.plan.influential_files)
        return self._kinds[text]

    def records_tick(self, part: PartState, box: Box, attempt: str | None) -> bool:
        """Whether a tick of ``box`` records anything: an unticked box, one ticked without evidence, or one a
        runner's evidence now backs where a person's override, a rehearsal or a tick accepted unchecked under
        another policy stood."""
        if box.id not in part.ticked:
            return True
        evidence = part.evidence.get(box.id)
        if evidence is None:
            return True
        unchecked = self.policy == "verified" and evidence.get("policy", "verified") != "verified"
        as_text = evidence.get("sources_policy") == "any" and self.sources != "any"
        return attempt is not None and bool(evidence.get("override") or evidence.get("rehearsal") or unchecked or as_text)

    def tick_evidence(self, part: PartState, box: Box, attempt: str | None, sources: list[str]) -> dict[str, Any]:
        """What kx finds for a tick of ``box`` now (a Read box's file is hashed): the tick's ``evidence``."""
        kind = self.kind(box.text)
        evidence: dict[str, Any] = {"kind": kind.kind}
        if kind.kind == "read" and self.resolve is not None:
            real, _ = locate(self.guard(), kind.path)
            evidence.update({"path": kind.path, **(digest_of(real, self.guard()) if real else {"found": False})})
            if real is None and attempt is not None and self.rehearsing(part):
                evidence["rehearsal"] = True
        elif kind.kind == "search":
            evidence.update({"query": kind.query, "sources": list(sources), **self.sources_found(part, sources, attempt)})
        elif kind.kind == "drop" and part.drop is not None:
            evidence["sha256"] = part.drop["sha256"]
        elif kind.kind == "section" and self.resolve is not None:
            heading = self.target_verdict(part, self.state.plan.part(part.id)).get("sections", {}).get(box.id)
            if heading is not None:  # not needed yet (finish checks it), but worth recording where it stood
                evidence.update({"heading": heading.text, "line": heading.line})
        if attempt is None:
            evidence["override"] = True
        elif self.policy != "verified":
            evidence["policy"] = self.policy  # accepted unchecked: audit judges it by this, not a later policy
        return evidence

    def sources_found(self, part: PartState, sources: list[str], attempt: str | None) -> dict[str, Any]:
        """What a Search tick's sources are: files of the root among them hashed (``files``), those in no accepted
        form (``unaccepted``: the tick is refused), or the policy that took them as text (``sources_policy``).
        A rehearsal's text is recorded as the rehearsal it is."""
        if self.sources == "any":
            return {"sources_policy": "any"}
        files: dict[str, str] = {}
        unaccepted = []
        for source in sources:
            if source_form(source):
                continue
            real = locate(self.guard(), source)[0] if self.resolve is not None else None
            if real is not None:
                files[source] = digest_of(real, self.guard())["sha256"]
            else:
                unaccepted.append(source)
        found: dict[str, Any] = {"files": files} if files else {}
        if unaccepted and attempt is not None and self.rehearsing(part):
            return {**found, "rehearsal": True}
        return {**found, "unaccepted": unaccepted} if unaccepted else found

    def may_tick(self, part: PartState, tick: dict[str, Any]) -> None:
        if problem := self.tick_problem(part, tick):
            raise Refused(f"evidence: {problem}", rule="evidence", details=[problem])

    def tick_problem(self, part: PartState, tick: dict[str, Any]) -> str | None:
        """What a tick lacks: sources that are no sources (anyone's), or, under "verified", the evidence a runner's
        tick needs (a person's is an override; a tick with no evidence at all was recorded before kx checked
        ticks); the message says what supplies it."""
        evidence = tick.get("evidence")
        if evidence is None:
            return None
        if unaccepted := evidence.get("unaccepted"):
            problem = f"{quoted(unaccepted[0])} is not a source; give {SOURCE_FORMS}"
        elif tick.get("attempt") is None or self.policy != "verified" or evidence.get("policy", "verified") != "verified":
            return None
        else:
            problem = self.lacking(part, self.kind(tick.get("text", "")), evidence)
        if problem is None:
            return None
        structure = self.state.plan.part(part.id)
        box = structure.box(tick.get("box")) if structure else None
        ref = index_of(structure, box) if box else str(tick.get("box"))
        _, command = how_to(self.kind(tick.get("text", "")), part.id, ref, None, {})
        return f"{part.id} {ref} {_short(tick.get('text', ''))!r}: {problem}; {command}"

    def lacking(self, part: PartState, kind: BoxKind, evidence: dict[str, Any]) -> str | None:
        """What a runner's evidence lacks for its kind of box (None: nothing)."""
        if evidence.get("kind") != kind.kind:
            return f"its evidence is for a {evidence.get('kind')} box, not a {kind.kind} box"
        if kind.kind == "read" and "sha256" not in evidence and not (evidence.get("rehearsal") and self.rehearsing(part)):
            return f"{kind.path} is not in the plan's root (outside .kx/), so there is nothing to read"
        if kind.kind == "search":
            return self.sources_lacking(part, evidence)
        if kind.kind == "drop" and "sha256" not in evidence:
            return "the drop must be recorded first"
        return None

    def sources_lacking(self, part: PartState, evidence: dict[str, Any]) -> str | None:
        """What a Search tick's recorded sources lack now (a replay takes them as they were accepted)."""
        if not evidence.get("sources"):
            return f"a Search box needs at least one source: {SOURCE_FORMS}"
        if self.resolve is None or evidence.get("rehearsal") and self.rehearsing(part):
            return None
        if evidence.get("sources_policy") == "any":
            return None if self.sources == "any" else 'its sources were taken as any text (sources = "any")'
        texts = [s for s in evidence["sources"] if not source_form(s) and s not in evidence.get("files", {})]
        return f"{quoted(texts[0])} is not a source; give {SOURCE_FORMS}" if texts else None

    def rehearsing(self, part: PartState) -> bool:
        """Whether the PART's current attempt is kx's own rehearsal runner (recorded when it started)."""
        return bool(part.started and part.started.get("rehearsal") and part.started.get("attempt") == part.attempt)

    def judging(self, success: dict[str, Any]) -> Rules:
        """The rules a success is judged by: these; replaying history (no files), under the policy the event
        says it was checked under — one recorded before kx recorded it was checked under "ticked" (or "drop")."""
        if self.resolve is not None:
            return self
        policy = success.get("policy") or ("drop" if self.policy == "drop" else "ticked")
        if policy == self.policy or policy not in POLICIES:
            return self
        return Rules(self.state, resolve=None, policy=policy, sources=self.sources, accept_failed=self.accept_failed)

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
        return Rules(self.state, resolve=self.resolve, policy=self.policy, sources=self.sources, accept_failed=covered,
                     paths=self._paths)

    def failed_parts(self, batch: BatchState) -> list[str]:
        return [p.id for p in self.state.members(batch) if p.state == "failed"]

    def not_reviewable(self, batch: BatchState) -> str:
        if batch.state == "approved":
            return f"batch {batch.number} is already approved"
        waiting = [p for p in self.state.members(batch) if p.state in ("pending", "running", "lost")]
        shown = ", ".join(f"{p.id} {p.state}" for p in waiting[:6])
        return (f"batch {batch.number} is {batch.state.replace('_', ' ')}, not awaiting review"
                + (f" ({shown})" if shown else "") + "; review it once every PART has succeeded or failed")


def holds(check: Callable[..., None], *args: Any) -> bool:
    """Whether a rule's check passes (it raises :class:`Refused` when not)."""
    try:
        check(*args)
    except Refused:
        return False
    return True


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class BoxVerdict:
    ref: str
    kind: str
    text: str
    ok: bool
    why: str
    override: str | None = None  # "person" or "rehearsal": counted, and reported as such
    heading: Heading | None = None  # a Section box's: the heading of the target that stands for it

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "kind": self.kind, "ok": self.ok, "why": self.why, "text": self.text,
                **({"override": self.override} if self.override else {}),
                **({"heading": self.heading.text, "line": self.heading.line} if self.heading else {})}


@dataclass
class EvidenceReport:
    """A PART's evidence as the rules see it now: what ``kx check`` prints and ``kx finish`` asks."""

    part: str
    policy: str
    drop: dict[str, Any]
    boxes: list[BoxVerdict]
    target: dict[str, Any]
    total: int
    shown: int = field(default=5, repr=False)

    @property
    def missing(self) -> list[str]:
        missing = [] if self.drop["ok"] else [self.drop["why"]]
        lacking = [b for b in self.boxes if not b.ok]
        if lacking:
            listed = ", ".join(f"{b.ref} {_short(b.text)!r}" + ("" if self.policy == "ticked" else f" ({b.why})")
                               for b in lacking[: self.shown])
            more = f" and {len(lacking) - self.shown} more" if len(lacking) > self.shown else ""
            what = "unticked" if self.policy == "ticked" or all(b.why.startswith("not ticked") for b in lacking) \
                else "without their evidence"
            missing.append(f"{len(lacking)} of {self.total} boxes {what}: {listed}{more}")
        if not self.target["ok"]:
            missing.append(self.target["why"] + (f": {self.target['fix']}" if "fix" in self.target else ""))
        return missing

    @property
    def overrides(self) -> dict[str, str]:
        return {b.ref: b.override for b in self.boxes if b.override}

    def target_record(self) -> dict[str, str] | None:
        """The target as ``RunnerSucceeded`` records it: its path and the sha256 of what was checked."""
        return {"path": self.target["path"], "sha256": self.target["sha256"]} if "sha256" in self.target else None

    def as_dict(self) -> dict[str, Any]:
        target = {k: v for k, v in self.target.items() if k not in ("text", "headings", "sections")}
        return {"part": self.part, "policy": self.policy, "boxes": [b.as_dict() for b in self.boxes],
                "target": target, "drop": self.drop, "missing": self.missing}


def _summary(kind: BoxKind, evidence: dict[str, Any], drop: dict[str, Any] | None) -> str:
    """What a box's evidence holds, in a few words; a drop box's: the drop that counts now (a retry's own)."""
    if kind.kind == "read":
        files = f", {evidence['files']} files" + (" (capped)" if evidence.get("capped") else "") \
            if "files" in evidence else ""
        return f"read {kind.path} (sha256 {evidence['sha256'][:12]}{files})"
    if kind.kind == "search":
        sources = evidence["sources"]
        return f"{len(sources)} source{'s' if len(sources) != 1 else ''}: {_short(sources[0], 40)}"
    if kind.kind == "drop":
        current = (drop or {}).get("sha256", evidence["sha256"])
        then = f"; ticked for {evidence['sha256'][:12]}" if current != evidence["sha256"] else ""
        return f"drop recorded (sha256 {current[:12]}{then})"
    return "ticked"
