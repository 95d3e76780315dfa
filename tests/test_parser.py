from __future__ import annotations

import pytest

from machine.plan.parser import PlanError, parse
from tests.conftest import SEED, SMALL_PLAN


@pytest.fixture(scope="module")
def seed():
    return parse(SEED.read_bytes())


def test_seed_declares_seven_batches_and_holds_two(seed):
    assert [b.number for b in seed.batches] == [1, 2]
    assert [d.number for d in seed.declared] == [1, 2, 3, 4, 5, 6, 7]
    assert seed.declared_parts == set(range(1, 43))
    assert [p.number for p in seed.parts] == list(range(1, 10))
    assert seed.limit == 6 and seed.limit_declared and seed.declared_runners == 42


def test_seed_parts_keep_target_stamp_and_marks(seed):
    part = seed.part("PART-1")
    assert part.title == "Early Fusion VLM Architectures (~700 lines)"
    assert part.header.target == "vlm-mastery/00-early-fusion-architectures.md"
    assert part.header.stamp == "2025-11-16 18:56" and part.header.mark == "‚úì"
    assert part.influenced_by == (1, 5, 8)
    assert part.drop_name == "KNOWLEDGE-DROP-early-fusion-2025-11-14-[TIME].md"
    assert [s.number for s in part.steps] == [0, 1, 2, 3]
    assert len(part.boxes) == 16 and not any(b.ticked for b in part.boxes)
    assert seed.part(4).header.stamp == "2025-11-16 18:55"  # two spaces before the stamp
    assert all(b.ticked for b in seed.part(2).boxes)
    assert seed.tick_glyph == "‚úì"
    assert seed.influential_files[11] == "orchestration/02-ray-distributed-ml.md"


def test_seed_truncated_last_part_is_read(seed):
    last = seed.part(9)
    assert last.batch == 2 and last.boxes[-1].text.startswith("Section 5: ZeRO-3 training")


def test_code_blocks_hold_no_boxes():
    plan = parse(SMALL_PLAN)
    texts = [b.text for p in plan.parts for b in p.boxes]
    assert not any("example inside a fence" in t for t in texts)
    assert not any("indented code" in t for t in texts)
    assert "Section 2a: nested detail" in texts  # a nested list item is a box


def test_steps_and_box_ids():
    plan = parse(SMALL_PLAN)
    part = plan.part(1)
    assert [(b.id, b.step) for b in part.boxes] == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2)]
    assert plan.part(4).boxes[-1].step == 1  # boxes after the last step line belong to it
    assert plan.limit == 2 and plan.part(3).batch == 2
    assert plan.worker_instructions == ("- Create KNOWLEDGE DROPS for every PART",)


@pytest.mark.parametrize("mark", [" ", "x", "X", "✓", "✔", "‚úì", "‚úî"])
def test_every_contract_mark_is_a_checkbox(mark):
    plan = parse(f"# BATCH 1: B\n## PART 1: P\n- [{mark}] PART 1: Create a.md\n- [{mark}] box\n")
    part = plan.part(1)
    assert part.header.mark == mark and part.boxes[0].mark == mark


def test_unknown_marks_are_not_checkboxes():
    plan = parse("# BATCH 1: B\n## PART 1: P\n- [-] dash\n- [ ] real\n")
    assert [b.text for b in plan.part(1).boxes] == ["real"]


def test_bom_and_crlf_columns_point_at_marks():
    text = "\ufeff- [x] stray\r\n# BATCH 1: B\r\n## PART 1: P\r\n- [x] PART 1: Create a.md  \r\n- [ ] one\r\n"
    plan = parse(text.encode())
    part = plan.part(1)
    lines = text.split("\r\n")
    box = part.boxes[0]
    assert lines[box.line][box.column] == " " and box.text == "one"
    assert lines[part.header.line][part.header.column] == "x"


def test_plan_without_batches_is_one_batch():
    plan = parse("## PART 1: P\n- [ ] a\n## PART 2: Q\n- [ ] b\n")
    assert [b.number for b in plan.batches] == [1] and plan.batches[0].parts == (1, 2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"  \n\n", "empty"),
        (b"\x00\x01binary", "binary"),
        ("# BATCH 1: caf\u00e9\n## PART 1: x\n".encode("latin-1"), "not UTF-8"),
        (b"# Just a title\n\nsome text\n- [ ] a box\n", "no PART"),
        (b"# BATCH 1: B\n## PART 1: a\n## PART 1: b\n", "PART 1 twice"),
        (b"# BATCH 1: B\n## PART 1: a\n# BATCH 1: C\n## PART 2: b\n", "BATCH 1 twice"),
    ],
)
def test_unusable_plans_raise_plan_error(raw, message):
    with pytest.raises(PlanError, match=message):
        parse(raw, name="p.md")


def test_duplicates_are_kept_when_not_strict():
    plan = parse(b"# BATCH 1: B\n## PART 1: a\n## PART 1: b\n", strict=False)
    assert [p.number for p in plan.parts] == [1, 1]


HUGE = "100000000000000000000000"  # 10^23, beyond SQLite's integers (2^63 - 1)
LONG = "9" * 5000  # more digits than Python turns into an int by default


@pytest.mark.parametrize(("line", "number"), [
    (f"# BATCH {HUGE}: B", HUGE),
    (f"## PART {HUGE}: P", HUGE),
    (f"## PART {LONG}: P", LONG),
    (f"**Step {HUGE}: Work**", HUGE),
    (f"**Influenced by**: Files 1,{HUGE}", HUGE),
    (f"**Influenced by**: Files 1-{HUGE}", HUGE),
    (f"**Strategy**: 4 runners, {HUGE} at a time", HUGE),
    (f"**Strategy**: {HUGE} runners, 2 at a time", HUGE),
    (f"- **Batch {HUGE}**: PARTs 1-2 (x)", HUGE),
    (f"- **Batch 1**: PARTs 1-{HUGE} (x)", HUGE),
    (f"{HUGE}. `influences/a.md` - a", HUGE),
])
def test_a_number_beyond_sqlites_integers_is_refused_naming_its_line(line, number):
    text = f"# BATCH 1: B\n## PART 1: P\n- [ ] PART 1: Create a.md\n**Step 1: Work**\n- [ ] box\n{line}\n"
    refused_at(text, 6, number)


def test_a_header_box_numbering_its_part_beyond_sqlites_integers_is_refused():
    refused_at(f"# BATCH 1: B\n## PART 1: P\n- [ ] PART {HUGE}: Create a.md\n", 3, HUGE)


def refused_at(text, line, number):
    with pytest.raises(PlanError) as refused:
        parse(text, name="p.md")
    message = str(refused.value)
    assert message.startswith(f"p.md line {line}: ") and "2^63" in message and len(message) < 300, message
    assert (number if len(number) <= 30 else f"{len(number)} digits") in message


def test_the_largest_number_sqlite_holds_is_read():
    top = str(2**63 - 1)
    plan = parse(f"# BATCH {top}: B\n## PART {top}: P\n- [ ] PART {top}: Create a.md\n- [ ] box\n")
    assert plan.batches[0].number == plan.parts[0].number == 2**63 - 1


def test_a_file_list_with_numbers_beyond_any_list_names_no_file():
    from machine.plan.parser import number_list, unlisted_numbers

    written = f"1,{LONG},2-{HUGE},{HUGE}-{LONG}"
    assert number_list(written, listed=[1, 2, 3]) == (1, 2, 3)
    assert unlisted_numbers(written, listed=[1, 2, 3]) == [f"4-{2**63 - 1}"]
