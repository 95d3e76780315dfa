"""Property tests (hypothesis, derandomized and bounded by count): the parser and the import of any plan, and
the acts on a generated plan as a state machine, checked after every step."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ledger.derived import sql_views
from ledger.errors import Refused
from machine.acts import lifecycle
from machine.acts.audit import verify
from machine.acts.context import Act
from machine.acts.importer import import_plan
from machine.acts.ticks import tick as tick_act
from machine.acts.workspace import Workspace
from machine.app import replay
from machine.outputs.plan_file import render_file
from machine.plan.parser import PlanError, parse
from machine.state.fold import PlanState

SETTINGS = settings(derandomize=True, deadline=None)
MARKS = [" ", "x", "X", "✓", "✔", "‚úì", "‚úî"]
text_piece = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\n\r\x85\u2028\u2029"),
                     min_size=1, max_size=20).map(lambda s: s.strip() or "t")


@st.composite
def plans(draw) -> str:
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    if draw(st.booleans()):
        lines.append(f"# {draw(text_piece)}")
    if draw(st.booleans()):
        lines.append(f"**Strategy**: 9 runners, {draw(st.integers(1, 9))} at a time")
    number = 0
    for batch in range(1, draw(st.integers(1, 3)) + 1):
        lines.append(f"# BATCH {batch}: {draw(text_piece)}")
        for _ in range(draw(st.integers(1, 3))):
            number += 1
            lines.append(f"## PART {number}: {draw(text_piece)}")
            stamp = " (Completed 2025-11-16 18:56)" if draw(st.booleans()) else ""
            lines.append(f"- [{draw(st.sampled_from(MARKS))}] PART {number}: Create t/{number}.md{stamp}")
            for step in range(draw(st.integers(0, 3))):
                lines.append(f"**Step {step}: {draw(text_piece)}**")
                for _ in range(draw(st.integers(0, 4))):
                    indent = draw(st.sampled_from(["", "  ", "    "]))
                    trailing = draw(st.sampled_from(["", " ", "\t "]))
                    lines.append(f"{indent}- [{draw(st.sampled_from(MARKS))}] {draw(text_piece)}{trailing}")
                if draw(st.integers(0, 4)) == 0:
                    lines += ["```", f"- [{draw(st.sampled_from(MARKS))}] fenced {draw(text_piece)}", "```"]
                if draw(st.integers(0, 4)) == 0:
                    lines += ["", "Code:", "", f"    - [x] indented {draw(text_piece)}", ""]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return ("\ufeff" if draw(st.booleans()) else "") + text


def import_into(folder: Path, text: str):
    """A workspace in ``folder`` with ``text`` imported as its plan.md."""
    (folder / "plan.md").write_bytes(text.encode("utf-8"))
    workspace = Workspace.open(str(folder / ".kx" / "ledger.db"), create=True)
    import_plan(lambda: workspace, folder / "plan.md", root=folder)
    return workspace


@SETTINGS
@given(plans())
def test_import_then_replay_is_the_identity(text):
    with tempfile.TemporaryDirectory(prefix="kx-prop-") as folder:
        workspace = import_into(Path(folder), text)
        assert replay(workspace).encode("utf-8") == text.encode("utf-8")
        workspace.ledger.close()


@SETTINGS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_the_parser_raises_only_its_own_error(data):
    try:
        parse(data)
    except PlanError:
        pass


@SETTINGS
@given(st.lists(st.sampled_from(["## PART 1: x", "# BATCH 2: y", "- [ ] a", "- [x] PART 1: Create a.md", "```",
                                 "    - [ ] c", "**Step 1: s**", "", "~~~", "- [‚úì] b"]), max_size=25),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_parser_on_plan_like_noise(lines, newline):
    try:
        plan = parse(newline.join(lines))
    except PlanError:
        return
    for part in plan.parts:
        assert all(part.line <= box.line < part.end_line for box in part.boxes)




# --- the acts as a state machine ---------------------------------------------------------------------------------

SOURCES = ("sources/alpha.md", "sources/beta.md")  # the files the generated Read boxes name
BOXES = {"section": "Section {n}: Topic {n}", "read": "Read {source}", "search": 'Search: "topic {n}"',
         "other": "Outline topic {n}"}
FOUND = ["https://example.org/found"]  # a search's sources
PERSON = "prop"


@st.composite
def small_plans(draw) -> str:
    """A plan of two or three batches of one to three PARTs, one to three running at a time; each PART's boxes
    of every kind kx checks, then its drop."""
    limit = draw(st.integers(1, 3))
    shape = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3))
    lines = ["# Knowledge Expansion: Generated", "",
             f"**Strategy**: {sum(shape)} runners, {limit} at a time ({len(shape)} batches)", ""]
    number = 0
    for batch, parts in enumerate(shape, 1):
        lines += [f"# BATCH {batch}: Batch {batch}", ""]
        for _ in range(parts):
            number += 1
            kinds = draw(st.lists(st.sampled_from(sorted(BOXES)), min_size=1, max_size=4))
            lines += [f"## PART {number}: Topic {number}", "", f"- [ ] PART {number}: Create topics/{number:02d}.md",
                      "", "**Step 1: Create Knowledge File**"]
            lines += [f"- [ ] {BOXES[kind].format(n=n, source=SOURCES[n % 2])}" for n, kind in enumerate(kinds, 1)]
            lines += [f"- [ ] Create KNOWLEDGE-DROP-topic-{number}-2025-11-14-[TIME].md", ""]
    return "\n".join(lines)


class ActsOnAPlan(RuleBasedStateMachine):
    """The acts on a generated plan, by a person or by the PART's attempt (its current one or not). An act the
    rules refuse appends nothing; after every step the read model, a fold from scratch and a replay of the events
    agree, the rules hold, the SQL views say what the fold does, the rendered file is the replayed one and the
    audit finds nothing."""

    def __init__(self):
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="kx-acts-"))
        self.workspace = None
        self.drops = 0

    @initialize(text=small_plans())
    def import_the_plan(self, text):
        for source in SOURCES:
            (self.folder / source).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / source).write_text(f"# {source}\n")
        self.workspace = import_into(self.folder, text)
        self.plan = self.workspace.state().plan

    def teardown(self):
        if self.workspace is not None:
            self.workspace.ledger.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- what is acted on, and by whom -------------------------------------------------------

    def part(self, index: int):
        """The ``index``-th PART counted from the first batch not approved: small numbers pick PARTs that can move."""
        ahead = self.ahead()
        parts = sorted(self.plan.parts, key=lambda part: part.batch < ahead)  # stable: the earlier batches last
        return parts[index % len(parts)]

    def batch(self, index: int):
        """The ``index``-th batch counted from the first not approved."""
        ahead = self.ahead()
        batches = sorted(self.plan.batches, key=lambda batch: batch.number < ahead)
        return batches[index % len(batches)]

    def ahead(self) -> int:
        """The number of the first batch not approved (the first, when all are)."""
        state = self.workspace.state()
        return next((b.number for b in self.plan.batches if state.batches[b.number].state != "approved"), 1)

    def actor(self, part_id: str | None = None, runner: bool = False):
        """A person, or the PART's latest attempt (current or not) when ``runner``."""
        attempt = self.workspace.state().parts[part_id].attempt if runner else None
        return Act(attempt=attempt) if attempt else Act(by=PERSON)

    def act(self, do) -> bool:
        """Do an act; False when the rules refused it, which must have appended nothing. A start recorded must
        have been allowed by the state before it: a free slot, and every earlier batch approved."""
        before = self.workspace.state()
        try:
            do()
        except Refused:
            assert self.workspace.ledger.count() == before.position
            return False
        for event in self.workspace.ledger.read(since=before.position, types=["RunnerStarted"]):
            batch = before.parts[event.data["part"]].batch
            assert len(before.running()) < before.limit, f"{event.data['attempt']} started over the limit"
            assert all(before.batches[b.number].state == "approved" for b in self.plan.batches if b.number < batch), \
                f"{event.data['attempt']} started before every batch ahead of {batch} was approved"
        return True

    def write_target(self, part) -> None:
        """The PART's knowledge file, with a heading for every Section box."""
        path = self.folder / part.header.target
        path.parent.mkdir(parents=True, exist_ok=True)
        headings = [f"## {box.text}\n\nKnowledge.\n" for box in part.boxes if box.text.startswith("Section")]
        path.write_text("\n".join([f"# {part.title}\n", *headings]))

    def new_drop(self) -> Path:
        """A drop file of its own: a recorded drop is never rewritten (the audit would say so)."""
        self.drops += 1
        path = self.folder / "drops" / f"drop-{self.drops}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"drop {self.drops}\n")
        return path

    # --- the acts ------------------------------------------------------------------------------

    @rule(index=st.integers(0, 8))
    def start(self, index):
        self.act(lambda: lifecycle.start(self.workspace, self.part(index).id, self.actor()))

    @rule(index=st.integers(0, 8), box=st.integers(0, 5), tick=st.booleans(), sources=st.booleans(),
          runner=st.booleans())
    def tick(self, index, box, tick, sources, runner):
        part = self.part(index)
        ref = str(box % len(part.boxes) + 1)
        self.act(lambda: tick_act(self.workspace, part.id, [ref], self.actor(part.id, runner), ticked=tick,
                                  sources=FOUND if sources else ()))

    @rule(index=st.integers(0, 8), runner=st.booleans())
    def drop(self, index, runner):
        part = self.part(index).id
        self.act(lambda: lifecycle.drop(self.workspace, part, self.new_drop(), self.actor(part, runner)))

    @rule(index=st.integers(0, 8), runner=st.booleans(), written=st.booleans())
    def finish(self, index, runner, written):
        part = self.part(index)
        if written:
            self.write_target(part)
        self.act(lambda: lifecycle.finish(self.workspace, part.id, self.actor(part.id, runner)))

    @rule(index=st.integers(0, 8), started=st.booleans())
    def complete(self, index, started):
        """What an attempt that succeeds does (``started``: from its start)."""
        self.succeed(self.part(index), started)

    @rule()
    def complete_the_batch_ahead(self):
        """Each pending PART of the first batch not approved started and completed in turn."""
        for number in self.plan.batch(self.ahead()).parts:
            if self.workspace.state().parts[f"PART-{number}"].state == "pending":
                self.succeed(self.plan.part(number), started=True)

    def succeed(self, part, started: bool) -> None:
        """The PART started (if ``started``), then its attempt's knowledge file, its drop, every box ticked and the
        finish; up to the first act the rules refuse."""
        if started and not self.act(lambda: lifecycle.start(self.workspace, part.id, self.actor())):
            return
        runner = self.actor(part.id, True)
        self.write_target(part)
        refs = [str(n) for n in range(1, len(part.boxes) + 1)]
        steps = [lambda: lifecycle.drop(self.workspace, part.id, self.new_drop(), runner),
                 lambda: tick_act(self.workspace, part.id, refs, runner, sources=FOUND),
                 lambda: lifecycle.finish(self.workspace, part.id, runner)]
        all(self.act(step) for step in steps)

    @rule(index=st.integers(0, 8), runner=st.booleans())
    def fail(self, index, runner):
        part = self.part(index).id
        self.act(lambda: lifecycle.fail(self.workspace, part, "boom", self.actor(part, runner)))

    @rule(index=st.integers(0, 8))
    def lose(self, index):
        part = self.part(index).id
        attempt = self.workspace.state().parts[part].attempt or f"{part}#1"
        self.act(lambda: lifecycle.lose(self.workspace, part, attempt, "gone"))

    @rule(index=st.integers(0, 8))
    def retry(self, index):
        self.act(lambda: lifecycle.retry(self.workspace, self.part(index).id, self.actor()))

    @rule(indexes=st.lists(st.integers(0, 8), min_size=1, max_size=2))
    def reopen(self, indexes):
        parts = [self.part(index).id for index in indexes]
        self.act(lambda: lifecycle.reopen(self.workspace, parts, "again", self.actor()))

    @rule(index=st.integers(0, 2), approve=st.booleans(), sent=st.integers(0, 2), accept_failed=st.booleans())
    def review(self, index, approve, sent, accept_failed):
        """Approve a batch, or reject it sending one of its PARTs back."""
        batch = self.batch(index)
        parts = [] if approve else [f"PART-{batch.parts[sent % len(batch.parts)]}"]
        self.act(lambda: lifecycle.review(self.workspace, batch.number, approve=approve, parts=parts, note=None,
                                          act=self.actor(), accept_failed=accept_failed))

    # --- what holds after every step --------------------------------------------------------------

    @invariant()
    def the_read_model_a_fold_and_a_replay_agree(self):
        loaded = self.workspace.state()
        folded = self.workspace.state(until=loaded.position)  # from the first event
        replayed = PlanState(loaded.id, timezone=loaded.timezone)
        for event in self.workspace.ledger.read(plan=loaded.id):
            replayed.apply(event)
        assert loaded == folded == replayed

    @invariant()
    def the_limit_holds(self):
        state = self.workspace.state()
        assert len(state.running()) <= state.limit

    @invariant()
    def the_sql_views_say_what_the_fold_does(self):
        state = self.workspace.state()
        conn = self.workspace.ledger.conn
        folded = {p.id: (p.state, len(p.ticked), p.attempts, p.attempt, (p.drop or {}).get("sha256"))
                  for p in state.parts.values()}
        viewed = {r["part"]: (r["state"], r["ticked"], r["attempts"], r["attempt"], r["drop_sha256"])
                  for r in sql_views.rows(conn, "part_states", state.id)}
        assert viewed == folded
        running = {r["attempt"] for r in sql_views.rows(conn, "attempts", state.id) if r["outcome"] == "running"}
        assert running == {p.attempt for p in state.running()}

    @invariant()
    def the_rendered_file_is_the_replayed_one_and_the_audit_finds_nothing(self):
        render_file(self.workspace)
        assert (self.folder / "plan.md").read_bytes() == replay(self.workspace).encode("utf-8")
        assert verify(self.workspace)["findings"] == []


# Found histories are not shrunk: shrinking one re-runs every invariant thousands of times (minutes), and hypothesis
# prints the history it found step by step.
ACTS = settings(SETTINGS, max_examples=40, stateful_step_count=30, phases=[Phase.explicit, Phase.generate])


def test_the_acts_keep_the_state_the_rules_and_the_views_in_step():
    run_state_machine_as_test(ActsOnAPlan, settings=ACTS)
