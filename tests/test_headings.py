"""The heading rule (CONTRACT section 7), on real Section titles of the user's plan: which headings stand for them."""

from __future__ import annotations

import pytest

from machine.state.evidence import kind_of
from machine.state.headings import Heading, headings, main_words, match_sections, words

# Section boxes of the user's plan, as written there (mojibake included)
EARLY = "Section 1: Early fusion principles (merge before processing)"
ARR = "Section 8: **ARR-COC-0-1**: Early fusion for relevance realization (10% section)"
PIXEL = "Section 4: Pixel2Seq paradigm (pixels as tokens)"
ATTENTION = "Section 1: Self-attention vs cross-attention (QKV mechanics) - 100 lines"
FLASH = "Section 2: FlashAttention 1/2/3 (memory hierarchy, 2-8√ó speedup, H100 optimizations) - 150 lines"
QWEN = "Section 3: Qwen3-VL DeepStack (shallow+deep layers injection)"
PIPELINE = "Section 5: Pipeline parallelism (File 2: vision encoder ‚Üí fusion ‚Üí LLM stages)"
EVA = "Section 4: When to use EVA vs smaller encoders"
ROPE2D = "Section 3: 2D RoPE (height√ówidth for vision)"


def stands(box_text: str, heading: str) -> bool:
    return bool(match_sections([kind_of(box_text)], [Heading(1, heading)]))


@pytest.mark.parametrize(("box", "heading"), [
    (EARLY, "Section 1: Early fusion principles (merge before processing)"),  # as the plan writes it
    (EARLY, "Section 1: Early fusion principles"),  # no parenthesis
    (EARLY, "1. Early fusion principles"),
    (EARLY, "1) Early Fusion Principles"),
    (EARLY, "Section 1 - Early fusion principles"),  # a dash after the number
    (EARLY, "Section 1 — early fusion principles"),
    (EARLY, "Principles of early fusion"),  # reordered, a stop word more, no number
    (EARLY, "**Section 1**: Early-Fusion Principles"),  # bold, a hyphen for a space
    (ARR, "Section 8: ARR-COC-0-1: Early fusion for relevance realization"),
    (ARR, "8. Relevance realization with early fusion (ARR-COC-0-1)"),
    (PIXEL, "Section 4: Pixel2Seq Paradigm"),
    (ATTENTION, "Section 1: Self-attention vs cross-attention (QKV mechanics)"),
    (ATTENTION, "Self attention and cross attention"),
    (FLASH, "Section 2: FlashAttention 1/2/3"),
    (QWEN, "3. Qwen3-VL DeepStack"),
    (PIPELINE, "Section 5: Pipeline parallelism"),
    (EVA, "When to use EVA, or smaller encoders?"),
    (ROPE2D, "Section 3: 2D RoPE"),
    ("Section 2: Café au lait", "Section 2: cafe au lait"),  # accents aside
])
def test_a_heading_that_carries_the_title_stands_for_the_box(box, heading):
    assert stands(box, heading)


@pytest.mark.parametrize(("box", "heading"), [
    (EARLY, "Section 1: Late fusion principles"),  # a main word missing
    (EARLY, "Section 2: Early fusion principles"),  # another section's number
    (EARLY, "11. Early fusion principles"),
    (ARR, "Section 8: realization"),
    (ARR, "Section 8: Early fusion for relevance realization"),  # the identifier missing
    (PIXEL, "Section 4: paradigm shift"),
    (FLASH, "Section 2: FlashAttention 1/2"),  # 1/2/3 is one word
    (QWEN, "Section 3: Qwen3 DeepStack"),
    (PIPELINE, "File 2: distributed-training/01-deepspeed-pipeline-parallelism.md"),  # a path is no title
    (PIPELINE, "Section 5: distributed-training/01-deepspeed-pipeline-parallelism.md"),
    (ROPE2D, "Section 3: 3D RoPE"),
    ("Section 1: item 4.0.1", "Section 1: item 4.0.2"),  # numbers and versions are words
])
def test_a_heading_that_does_not_carry_it_does_not(box, heading):
    assert not stands(box, heading)


def test_one_heading_stands_for_one_box_only():
    boxes = [kind_of("Section 1: item 4.0.1"), kind_of("Section 2: item 4.0.2")]
    assert match_sections(boxes, [Heading(3, "Section 2: item 4.0.2")]) == {1: Heading(3, "Section 2: item 4.0.2")}
    twins = [kind_of("Section 1: Production deployment"), kind_of("Section 2: Production deployment")]
    assert list(match_sections(twins, [Heading(1, "Production deployment")])) == [0]


def test_the_closest_heading_wins_whatever_comes_first():
    boxes = [kind_of("Section 3: Search strategies (web)"), kind_of("Section 4: Search")]
    found = [Heading(2, "Search: strategies for the web"), Heading(9, "Section 3: Search strategies")]
    assert match_sections(boxes, found) == {0: found[1], 1: found[0]}  # exact and numbered beats loose


def test_every_box_some_heading_qualifies_for_gets_one():
    boxes = [kind_of("Section 1: Training efficiency"), kind_of("Section 2: Efficiency")]
    found = [Heading(1, "Efficiency and training"), Heading(5, "Efficiency")]
    assert match_sections(boxes, found) == {0: found[0], 1: found[1]}


def test_a_title_without_main_words_is_stood_for_by_its_number():
    assert stands("Section 3: The", "3. Anything at all")
    assert not stands("Section 3: The", "Anything at all")
    assert not stands("Section 3: The", "4. Anything at all")


def test_headings_carry_their_lines_and_skip_code():
    text = "# T\n```\n## Section 1: Fake\n```\n\n## **Section 1**: Self-attention vs cross-attention\n### Deep ###\n"
    assert headings(text) == [Heading(1, "T"), Heading(6, "Section 1: Self-attention vs cross-attention"),
                              Heading(7, "Deep")]


def test_words_keep_identifiers_whole_and_leave_paths_out():
    assert words("ARR-COC-0-1: Self-attention, v4.0.1 in notes/a-b.md and README.md") == [
        "arr-coc-0-1", "self", "attention", "v4.0.1", "in", "and"]
    assert main_words(kind_of(ARR).title) == ("arr-coc-0-1", "early", "fusion", "relevance", "realization")
