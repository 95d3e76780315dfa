"""Evidence kx checks itself (CONTRACT section 7): box kinds, a tick's evidence, the target at finish, kx check."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from machine.plan.parser import parse
from machine.plan.paths import PathGuard
from machine.state.evidence import BoxKind, digest_of, kind_of
from tests.conftest import SEED, event_count, write_target

# --- box kinds -------------------------------------------------------------------------

# r read, s search, n section, c cite, d drop: PARTs 1-9 of the seed plan, box by box
SEED_KINDS = {1: "rrssss" + "n" * 8 + "cd", 9: "rssss" + "n" * 5}
SEED_KINDS.update({n: "rrssss" + "n" * 8 + "cd" for n in range(2, 7)})
SEED_KINDS.update({n: "rssss" + "n" * 8 + "cd" for n in (7, 8)})
LETTERS = {"r": "read", "s": "search", "n": "section", "c": "cite", "d": "drop", "o": "other"}


def test_every_box_of_the_seed_plan_gets_its_kind():
    plan = parse(SEED.read_bytes())
    files = plan.influential_files
    for part in plan.parts:
        kinds = [kind_of(b.text, files).kind for b in part.boxes]
        assert kinds == [LETTERS[c] for c in SEED_KINDS[part.number]], part.id
    boxes = {(p.number, i + 1): kind_of(b.text, files) for p in plan.parts for i, b in enumerate(p.boxes)}
    assert boxes[1, 1] == BoxKind("read", path="vision-language-architectures/") and boxes[1, 1].folder
    assert boxes[4, 1].path == "ovis-2-5-oracle/"
    assert boxes[6, 1].path == "vision-language/02-rope-multiaxis-encoding.md"  # "(M-RoPE) - Files don't exist yet"
    assert boxes[1, 3] == BoxKind("search", query="early fusion vision-language models 2024")
    assert boxes[1, 14] == BoxKind("section", number="8",
                                   title="ARR-COC-0-1: Early fusion for relevance realization (10% section)")
    assert boxes[1, 15].files == (1, 5, 8) and boxes[5, 15].files == (1, 5, 13)  # **CITE** and **CITED**
    assert boxes[5, 16].kind == "drop"  # "Created KNOWLEDGE-DROP-..."


@pytest.mark.parametrize(("text", "kind"), [
    ("Read influences/00-alpha.md", BoxKind("read", path="influences/00-alpha.md")),
    ("Read `notes/a.md`, then think", BoxKind("read", path="notes/a.md")),
    ("Read relevant files first", BoxKind("other")),
    ("Search: early fusion", BoxKind("search", query="early fusion")),
    ("Search one", BoxKind("other")),
    ("Section 2a: nested detail", BoxKind("section", number="2a", title="nested detail")),
    ("CITE: Files 1-4", BoxKind("cite", files=(1, 2, 3, 4))),
    ("Create KNOWLEDGE-DROP-alpha-2025-11-14-[TIME].md", BoxKind("drop")),
    ("Review the draft", BoxKind("other")),
])
def test_box_kinds_from_their_text(text, kind):
    assert kind_of(text, {1: "a", 2: "b", 3: "c", 4: "d"}) == kind


def test_a_cites_file_ranges_are_bounded_by_the_plans_list():
    assert kind_of("CITE: Files 1-400, 3", {1, 2, 16}).files == (1, 2, 16, 3)
    assert kind_of("CITE: Files 1-99999999").files == ()  # no list: a range names no file


def test_a_folders_hash_covers_its_files_paths_and_contents(tmp_path):
    root = tmp_path / "root"
    (root / "notes" / "deep").mkdir(parents=True)
    (root / "notes" / "a.md").write_text("a")
    (root / "notes" / "deep" / "b.md").write_text("b")
    (tmp_path / "outside.md").write_text("secret")
    (root / "notes" / "out.md").symlink_to(tmp_path / "outside.md")  # leaves the root: not read
    (root / ".kx").mkdir()
    (root / ".kx" / "ledger.db").write_text("x")  # kx's folder: not read, even by a Read of the whole root
    guard = PathGuard.around(root)
    lines = "".join(f"{p}\0{hashlib.sha256(c).hexdigest()}\n" for p, c in (("a.md", b"a"), ("deep/b.md", b"b")))
    assert digest_of(root, guard)["files"] == 2
    first = digest_of(root / "notes", guard)
    assert first == {"sha256": hashlib.sha256(lines.encode()).hexdigest(), "files": 2}
    (root / "notes" / "deep" / "b.md").write_text("changed")
    assert digest_of(root / "notes", guard)["sha256"] != first["sha256"]
    assert digest_of(root / "notes", guard, cap=1) == {**digest_of(root / "notes", guard, cap=1), "files": 1,
                                                       "capped": True}
    assert digest_of(root / "notes" / "a.md", guard) == {"sha256": hashlib.sha256(b"a").hexdigest()}


def test_a_folder_with_symlink_loops_and_unreadable_entries_is_hashed_over_the_rest(tmp_path, monkeypatch):
    import os

    from machine.state import evidence

    notes = tmp_path / "notes"
    (notes / "locked").mkdir(parents=True)
    (notes / "a.md").write_text("a")
    (notes / "secret.md").write_text("s")
    (notes / "loop").symlink_to("loop")
    (notes / "one").symlink_to("two")
    (notes / "two").symlink_to("one")
    (notes / "gone.md").symlink_to("nowhere.md")  # a dangling link is no file, and no problem
    guard = PathGuard.around(tmp_path)
    clean = digest_of(notes, guard)
    assert clean["files"] == 2 and clean["skipped"] == ["loop (a symlink loop)", "one (a symlink loop)",
                                                        "two (a symlink loop)"]

    real_hash, real_scandir = evidence.sha256_of, os.scandir

    def unreadable(path):
        if path.name == "secret.md":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    def locked(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(evidence, "sha256_of", unreadable)
    monkeypatch.setattr(os, "scandir", locked)
    digest = digest_of(notes, guard)
    assert digest["files"] == 1 and digest["skipped"] == [
        "locked/ (cannot be read: Permission denied)", "loop (a symlink loop)", "one (a symlink loop)",
        "secret.md (cannot be read: Permission denied)", "two (a symlink loop)"]
    assert digest["sha256"] == hashlib.sha256(f"a.md\0{hashlib.sha256(b'a').hexdigest()}\n".encode()).hexdigest()


def test_a_read_folder_with_a_symlink_loop_is_ticked_and_a_looping_read_path_refused_in_one_line(kx, running):
    (running / "notes" / "loop").symlink_to("loop")
    (running / "linked.md").symlink_to("linked.md")
    result = kx("--json", "tick", "PART-1", "0.2", *A)
    assert result.code == 0, result.err
    assert result.json["evidence"]["2"]["skipped"] == ["loop (a symlink loop)"]
    assert result.json["evidence"]["2"]["files"] == 1
    looping = kx("tick", "PART-1", "0.1", "0.3", *A)
    assert looping.code == 3 and looping.err.count("\n") == 1 and "'Read linked.md'" in looping.err
    assert kx("tick", "PART-1", "0.1", *A).code == 0  # the other box, on its own
    assert kx("check", "PART-1").code == 1 and kx("brief", "PART-1").code == 0


# --- refusals: one line, the command that supplies what is missing, nothing appended -----------

PLAN = """# BATCH 1: Evidence

**Files**:
1. `influences/a.md` - a
2. `influences/b.md` - b

## PART 1: Q-Former

- [ ] PART 1: Create topics/qformer.md

**Step 0: Check**
- [ ] Read influences/a.md
- [ ] Read notes/
- [ ] Read linked.md

**Step 1: Research**
- [ ] Search: "BLIP-2 Q-Former"

**Step 2: Write**
- [ ] Section 1: Overview
- [ ] Section 2: BLIP-2 Q-Former (learnable queries)
- [ ] **CITE**: Files 1-2 explicitly
- [ ] Review it

**Step 3: Drop**
- [ ] Create KNOWLEDGE-DROP-qformer-2025-11-14-[TIME].md
"""
A = ["--attempt", "PART-1#1"]


@pytest.fixture
def running(kx, project):
    (project / "plan.md").write_text(PLAN)
    for name in ("influences/a.md", "influences/b.md", "notes/one.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"{name}\n")
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    return project


def link_out(project):
    """``linked.md`` made, after the import checked the plan's paths, a symlink out of the root."""
    outside = project.parent / f"{project.name}-outside.md"
    outside.write_text("not the plan's")
    (project / "linked.md").symlink_to(outside)


def ready_but(kx, project, *, skip=(), target=True):
    """Everything for PART-1's finish but what the row leaves out (Read box 0.3 a person's override)."""
    assert kx("tick", "PART-1", "0.1", "0.2", "1.1", "2.1", "2.2", "2.3", "2.4", "--source", "https://arxiv.org/x",
              *A).code == 0
    assert kx("tick", "PART-1", "0.3", "--by", "rita").code == 0
    (project / "drop.md").write_text("drop\n")
    assert kx("drop", "PART-1", "drop.md", *A).code == 0
    assert kx("tick", "PART-1", "3.1", *A).code == 0
    if target:
        write_target(kx, project, "PART-1", skip=skip)


def cites_one_file(kx, project):
    ready_but(kx, project)
    path = project / "topics" / "qformer.md"
    path.write_text(path.read_text().replace("- File 2\n", ""))


def target_escapes(kx, project):
    ready_but(kx, project, target=False)
    link_out(project)
    (project / "topics").mkdir()
    (project / "topics" / "qformer.md").symlink_to(project / "linked.md")


REFUSALS = [
    # name, prepare, argv, exit code, what the one line says
    ("read of a missing file", None, ["tick", "PART-1", "0.1", *A], 3,
     "influences/a.md is not in the plan's root", lambda p: (p / "influences" / "a.md").unlink()),
    ("read through a symlink out of the root", None, ["tick", "PART-1", "0.3", *A], 3,
     "linked.md is not in the plan's root", link_out),
    ("search without a source", None, ["tick", "PART-1", "1.1", *A], 3,
     "needs at least one source: an http(s) URL with a host, a DOI (10.1234/...), an arXiv id (arXiv:2103.00020 or"
     " 2103.00020) or a file inside the plan's root; kx tick PART-1 1.1 --source URL", None),
    ("a source that is no source", None, ["tick", "PART-1", "1.1", "--source", "trust me, I searched", *A], 3,
     "'trust me, I searched' is not a source; give an http(s) URL with a host", None),
    ("a person's source that is no source", None, ["tick", "PART-1", "1.1", "--source", "no results found", "--by",
                                                    "rita"], 3, "'no results found' is not a source", None),
    ("a source without a host", None, ["tick", "PART-1", "1.1", "--source", "https:///x", *A], 3,
     "'https:///x' is not a source", None),
    ("a file source outside the root", None, ["tick", "PART-1", "1.1", "--source", "../elsewhere.md", *A], 3,
     "'../elsewhere.md' is not a source", None),
    ("an empty source", None, ["tick", "PART-1", "1.1", "--source", " ", *A], 2, "a source is empty", None),
    ("drop box before the drop", None, ["tick", "PART-1", "3.1", *A], 3,
     "the drop must be recorded first; kx drop PART-1 FILE, then kx tick PART-1 3.1", None),
    ("finish without the target", lambda kx, p: ready_but(kx, p, target=False), ["finish", "PART-1", *A], 3,
     "target topics/qformer.md does not exist in the plan's root", None),
    ("finish with the wrong section heading", lambda kx, p: ready_but(kx, p, skip=("2.2",)),
     ["finish", "PART-1", *A], 3,
     "has no heading for it; write '## Section 2: BLIP-2 Q-Former (learnable queries)' in topics/qformer.md", None),
    ("finish without a cited file", cites_one_file, ["finish", "PART-1", *A], 3,
     "does not name File 2 (influences/b.md)", None),
    ("finish with a target that leaves the root", target_escapes, ["finish", "PART-1", *A], 3,
     "target topics/qformer.md is outside the plan's root", None),
]


@pytest.mark.parametrize(("name", "prepare", "argv", "code", "message", "world"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_evidence_refusals(kx, running, name, prepare, argv, code, message, world):
    if prepare:
        prepare(kx, running)
    if world:
        world(running)
    if name == "finish with the wrong section heading":  # a heading with the number, not the title's words
        with open(running / "topics" / "qformer.md", "a") as target:
            target.write("## Section 2: VisualBERT\n")
    before = event_count(running)
    for as_json in (False, True):
        result = kx(*(["--json"] if as_json else []), *argv)
        assert result.code == code, result.err
        assert result.err.startswith("kx: error: ") and result.err.count("\n") == 1, result.err
        assert message in result.err, result.err
    assert event_count(running) == before


@pytest.mark.parametrize("source", ["https://arxiv.org/abs/2103.00020", "http://127.0.0.1:8080/search?q=x",
                                    "10.1145/3290605.3300857", "doi:10.1000/xyz", "arXiv:2103.00020", "2103.00020v2",
                                    "arXiv:hep-th/9901001"])
def test_a_search_tick_takes_urls_dois_and_arxiv_ids(kx, running, source):
    ticked = kx("--json", "tick", "PART-1", "1.1", "--source", source, *A)
    assert ticked.code == 0, ticked.err
    assert ticked.json["evidence"]["4"] == {"kind": "search", "query": "BLIP-2 Q-Former", "sources": [source]}


def test_a_file_of_the_root_is_a_source_hashed_like_a_read(kx, running):
    ticked = kx("--json", "tick", "PART-1", "1.1", "--source", "notes/one.md", *A).json
    digest = hashlib.sha256((running / "notes" / "one.md").read_bytes()).hexdigest()
    assert ticked["evidence"]["4"]["files"] == {"notes/one.md": digest}
    assert kx("--json", "check", "PART-1").json["boxes"][3]["ok"]


def test_sources_any_takes_text_and_says_so_until_the_policy_changes_back(kx, running):
    (running / ".kx" / "config.toml").write_text('[defaults]\nsources = "any"\n')
    ticked = kx("--json", "tick", "PART-1", "1.1", "--source", "found in the library", *A)
    assert ticked.code == 0 and ticked.json["evidence"]["4"]["sources_policy"] == "any"
    assert kx("--json", "check", "PART-1").json["boxes"][3]["ok"]
    (running / ".kx" / "config.toml").write_text('[defaults]\nsources = "checked"\n')
    box = kx("--json", "check", "PART-1").json["boxes"][3]
    assert not box["ok"] and 'taken as any text (sources = "any")' in box["why"]
    again = kx("--json", "tick", "PART-1", "1.1", "--source", "https://example.org/paper", *A)
    assert again.code == 0 and again.json["boxes"] == [4]  # a runner may tick it again, with a real source
    (running / ".kx" / "config.toml").write_text('[defaults]\nsources = "maybe"\n')
    assert kx("status").code == 2


def test_a_section_tick_and_check_name_the_heading_and_its_line(kx, running):
    (running / "topics").mkdir()
    (running / "topics" / "qformer.md").write_text("# Q-Former\n\n## Overview\n\ntext\n\n### 2. BLIP-2 Q-Former\n")
    ticked = kx("--json", "tick", "PART-1", "2.1", "2.2", *A).json["evidence"]
    assert ticked == {"5": {"kind": "section", "heading": "Overview", "line": 3},
                      "6": {"kind": "section", "heading": "2. BLIP-2 Q-Former", "line": 7}}
    boxes = {b["ref"]: b for b in kx("--json", "check", "PART-1").json["boxes"]}
    assert (boxes["2.2"]["heading"], boxes["2.2"]["line"], boxes["2.2"]["ok"]) == ("2. BLIP-2 Q-Former", 7, True)
    assert "heading '2. BLIP-2 Q-Former' (line 7)" in kx("check", "PART-1").text


def test_a_refused_tick_names_every_box_that_lacks_its_evidence(kx, running):
    result = kx("tick", "PART-1", "0.3", "1.1", "3.1", *A)
    assert result.code == 3 and all(f"PART-1 {ref} '" in result.err for ref in ("0.3", "1.1", "3.1"))


# --- the whole way, on the small plan ------------------------------------------------------


def history(kx, part):
    return kx("--json", "audit", "history", part).json["events"]


def test_a_runner_earns_success_box_by_box_on_the_small_plan(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    kx("start", "PART-1")
    ticked = kx("--json", "tick", "PART-1", "0.1", *["--attempt", "PART-1#1"]).json
    read = (project / "influences" / "00-alpha.md").read_bytes()
    assert ticked["evidence"] == {"1": {"kind": "read", "path": "influences/00-alpha.md",
                                        "sha256": hashlib.sha256(read).hexdigest()}}
    assert kx("tick", "PART-1", "1.1", "1.2", "1.3", "--attempt", "PART-1#1").code == 0
    check = kx("--json", "check", "PART-1")
    assert check.code == 1 and not check.json["ok"]
    assert set(check.json) >= {"schema", "part", "ok", "boxes", "target", "drop"}
    assert [(b["ref"], b["kind"], b["ok"]) for b in check.json["boxes"]] == [
        ("0.1", "read", True), ("1.1", "section", True), ("1.2", "section", True), ("1.3", "section", True),
        ("2.1", "drop", False)]
    assert not check.json["target"]["ok"] and not check.json["drop"]["ok"]
    assert "2.1" in kx("check", "PART-1").text.splitlines()[5]  # one line per box
    target = write_target(kx, project, "PART-1")
    (project / "drop.md").write_text("alpha drop\n")
    kx("drop", "PART-1", "drop.md", "--attempt", "PART-1#1")
    kx("tick", "PART-1", "2.1", "--attempt", "PART-1#1")
    assert kx("check", "PART-1").code == 0
    assert kx("finish", "PART-1", "--attempt", "PART-1#1").code == 0
    success = history(kx, "PART-1")[-1]["data"]
    assert success["target"] == {"path": "topics/00-alpha.md", "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    assert success["policy"] == "verified" and "overrides" not in success
    # a person's ticks are overrides, counted and reported as such
    kx("start", "PART-2")
    assert kx("tick", "PART-2", "1", "2", "3", "--by", "rita").code == 0
    assert all(e["data"]["evidence"]["override"] for e in history(kx, "PART-2")[-3:])
    (project / "topics" / "01-beta.md").write_text("# Beta, no headings\n")
    (project / "drop2.md").write_text("beta drop\n")
    kx("drop", "PART-2", "drop2.md", "--attempt", "PART-2#1")
    finished = kx("--json", "finish", "PART-2", "--attempt", "PART-2#1")
    assert finished.code == 0 and finished.json["overrides"] == {"1.1": "person", "1.2": "person", "2.1": "person"}
    assert "a person's override 1.1, 1.2, 2.1" in finished.json["message"]
    assert kx("audit", "verify").code == 0


def test_an_untick_clears_the_boxs_evidence(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1")
    assert kx("--json", "brief", "PART-1").json["boxes"][0]["evidence"]["kind"] == "read"
    kx("untick", "PART-1", "0.1", "--attempt", "PART-1#1")
    assert kx("--json", "brief", "PART-1").json["boxes"][0]["evidence"] is None
    assert kx("audit", "verify").code == 0


def test_a_runners_evidence_replaces_a_persons_override_once(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("tick", "PART-1", "0.1", "--by", "rita")
    assert kx("--json", "tick", "PART-1", "0.1", "--attempt", "PART-1#1").json["recorded"] == ["CheckboxTicked"]
    assert kx("--json", "tick", "PART-1", "0.1", "--attempt", "PART-1#1").json["recorded"] == []
    assert "override" not in kx("--json", "brief", "PART-1").json["boxes"][0]["evidence"]


def test_check_with_a_stale_attempt_is_blocked(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    result = kx("--json", "check", "PART-1", "--attempt", "PART-1#7")
    assert result.code == 1 and "stale attempt" in result.json["blocked"][0]


@pytest.mark.parametrize(("policy", "finishes"), [("ticked", True), ("drop", True), ("verified", False)])
def test_the_evidence_policy_says_what_finish_needs(kx, small_plan, project, policy, finishes):
    kx("plan", "import", "plan.md")
    (project / ".kx" / "config.toml").write_text(f'[plans.plan]\nevidence = "{policy}"\n')
    kx("start", "PART-2")
    a = ["--attempt", "PART-2#1"]
    (project / "drop.md").write_text("beta drop\n")
    kx("drop", "PART-2", "drop.md", *a)
    if policy != "drop":
        assert kx("tick", "PART-2", "1", "2", "3", *a).code == 0  # no target written
    assert (kx("finish", "PART-2", *a).code == 0) is finishes
    assert kx("audit", "verify").code == 0


def test_under_ticked_a_runners_read_of_a_missing_file_is_recorded_as_not_found(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    (project / ".kx" / "config.toml").write_text('[defaults]\nevidence = "ticked"\n')
    (project / "influences" / "00-alpha.md").unlink()
    kx("start", "PART-1")
    result = kx("--json", "tick", "PART-1", "0.1", "--attempt", "PART-1#1")
    assert result.json["evidence"]["1"] == {"kind": "read", "path": "influences/00-alpha.md", "found": False,
                                            "policy": "ticked"}


def test_a_tick_accepted_under_an_earlier_policy_is_judged_by_it_not_by_todays(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    config = project / ".kx" / "config.toml"
    config.write_text('[defaults]\nevidence = "ticked"\n')
    (project / "influences" / "00-alpha.md").unlink()
    kx("start", "PART-1")
    assert kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1").code == 0
    config.write_text('[defaults]\nevidence = "verified"\n')
    assert kx("audit", "verify").code == 0  # the tick broke no rule when it was recorded
    box = kx("--json", "check", "PART-1").json["boxes"][0]
    assert box["ok"] is False  # but it is no evidence for a success under "verified"
    assert kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1").code == 3  # nor may it be ticked so again


def test_a_rehearsal_attempt_may_tick_a_read_box_whose_file_is_missing(kx, small_plan, project):
    from machine.acts.lifecycle import Act, start
    from machine.acts.workspace import Workspace

    kx("plan", "import", "plan.md")
    (project / "influences" / "00-alpha.md").unlink()
    kx("start", "PART-1")  # an attempt that is not a rehearsal may not
    assert kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1").code == 3
    kx("fail", "PART-1", "--reason", "no sources", "--attempt", "PART-1#1")
    kx("retry", "PART-1")
    start(Workspace.open(), "PART-1", Act(by="kx run"), runner=["python", "-m", "runners.rehearse"], rehearsal=True)
    result = kx("--json", "tick", "PART-1", "0.1", "--attempt", "PART-1#2")
    assert result.json["evidence"]["1"] == {"kind": "read", "path": "influences/00-alpha.md", "found": False,
                                            "rehearsal": True}
    boxes = kx("--json", "check", "PART-1").json["boxes"]
    assert boxes[0]["override"] == "rehearsal" and "nothing was read" in boxes[0]["why"]
    assert kx("audit", "verify").code == 0


# --- the fold and the audit -------------------------------------------------------------------


def test_only_ticks_with_evidence_are_parsed_by_the_lean_fold(kx, small_plan, project):
    from ledger.events.checkboxes import CheckboxTicked
    from ledger.store import Ledger

    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1")
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append([CheckboxTicked(plan="plan", part="PART-1", box=2, text="Section 1: Alpha overview",
                                  attempt="PART-1#1")])  # as an older kx recorded ticks
    rows = [(kind, data) for _, _, _, kind, _, data, _, _ in ledger.scan("plan") if kind == "CheckboxTicked"]
    ledger.close()
    assert json.loads(rows[0][1])["evidence"]["kind"] == "read" and rows[1][1] is None
    assert kx("audit", "rebuild").code == 0 and kx("audit", "verify").code == 0


def test_verify_finds_a_runners_tick_without_its_evidence(kx, small_plan, project):
    from ledger.events.checkboxes import CheckboxTicked
    from ledger.store import Ledger

    (project / "plan.md").write_text((project / "plan.md").read_text().replace(
        "- [ ] Section 1: Beta overview", '- [ ] Search: "beta"'))
    kx("plan", "import", "plan.md")
    kx("start", "PART-2")
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append([CheckboxTicked(plan="plan", part="PART-2", box=1, text='Search: "beta"', attempt="PART-2#1",
                                  evidence={"kind": "search", "query": "beta", "sources": []})])
    ledger.close()
    findings = kx("--json", "audit", "verify").json["findings"]
    assert len(findings) == 1 and "needs at least one source" in findings[0]


def test_a_success_recorded_before_kx_checked_evidence_still_verifies(kx, small_plan, project):
    from ledger.events.checkboxes import CheckboxTicked
    from ledger.events.models import DropRecorded, RunnerStarted, RunnerSucceeded
    from ledger.store import Ledger

    kx("plan", "import", "plan.md")
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ticks = [CheckboxTicked(plan="plan", part="PART-2", box=n, text="t", attempt="PART-2#1") for n in (1, 2, 3)]
    (project / "d.md").write_bytes(b"x")  # the drop is there as recorded: audit verify hashes it again
    drop_sha = hashlib.sha256(b"x").hexdigest()
    ledger.append([RunnerStarted(plan="plan", part="PART-2", attempt="PART-2#1"), *ticks,
                   DropRecorded(plan="plan", part="PART-2", attempt="PART-2#1", path="d.md", sha256=drop_sha, size=1),
                   RunnerSucceeded(plan="plan", part="PART-2", attempt="PART-2#1")])  # no policy: checked as "ticked"
    ledger.close()
    assert kx("audit", "rebuild").code == 0
    assert kx("--json", "audit", "verify").json["findings"] == []


def test_the_brief_says_each_boxs_kind_evidence_and_command(kx, small_plan):
    kx("plan", "import", "plan.md")
    brief = kx("--json", "brief", "PART-1").json
    assert [(b["kind"], b["command"]) for b in brief["boxes"]][1:] == [
        ("section", "write '## Section 1: Alpha overview' in topics/00-alpha.md, then kx tick PART-1 1.1"),
        ("section", "write '## Section 2: Alpha details' in topics/00-alpha.md, then kx tick PART-1 1.2"),
        ("section", "write '## Section 2a: nested detail' in topics/00-alpha.md, then kx tick PART-1 1.3"),
        ("drop", "kx drop PART-1 FILE, then kx tick PART-1 2.1")]
    text = kx("brief", "PART-1").text
    assert "--source URL" in text and "kx check PART-1" in text
    assert "  - read: needs influences/00-alpha.md inside the plan's root" in text


def test_the_read_model_keeps_evidence_as_the_fold_does(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    kx("start", "PART-1")
    kx("tick", "PART-1", "0.1", "--attempt", "PART-1#1")
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        detail = json.loads(conn.execute("SELECT detail FROM kx_parts WHERE part = 'PART-1'").fetchone()[0])
    assert detail["evidence"]["1"]["kind"] == "read"
    assert kx("audit", "verify").code == 0


def test_an_unknown_evidence_policy_is_bad_input(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    (project / ".kx" / "config.toml").write_text('[defaults]\nevidence = "trust-me"\n')
    result = kx("finish", "PART-1")
    assert result.code == 2 and "evidence = 'trust-me': input should be 'verified', 'ticked' or 'drop'" in result.err
