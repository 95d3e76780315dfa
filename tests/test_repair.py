"""``kx render --repair``: mojibake (UTF-8 read as Mac Roman or Windows-1252) mended back, nothing else touched."""

from __future__ import annotations

import pytest

from tests.conftest import event_count


def mac_roman(text: str) -> str:
    """``text``'s UTF-8 bytes read as Mac Roman: the mojibake of the seed plan."""
    return text.encode("utf-8").decode("mac_roman")


ACCENTS = "Café naïve — “quoted” «Œuvre» Zürich straße résumé, 2×3 ≠ 5 ½"  # real text: must stay as it is

TRUE_PLAN = f"""\
# Knowledge Expansion: Mended ✓

## 🚀 HOW TO EXECUTE

- ✅ **4 runners**: Safest — {ACCENTS}
- ⚠️ **8+ runners**: Not recommended

# BATCH 1: Foundations → first

## PART 1: Alpha Topic

- [✓] PART 1: Create topics/00-alpha.md (Completed 2025-11-14 10:00)

**Step 1: Create Knowledge File**
- [✓] Section 1: Alpha overview (vision → LLM)
- [✓] Section 2: Alpha details ({ACCENTS})

## PART 2: Beta Topic

- [ ] PART 2: Create topics/01-beta.md

**Step 1: Create Knowledge File**
- [✓] Section 1: Beta overview (~200× compression)
- [ ] Section 2: Beta details → more
- [ ] Section 3: Beta café
"""

GLYPHS = ("✓", "🚀", "✅", "⚠️", "→", "×")


def in_the_file(text: str) -> str:
    """``text`` as the seed's editor saved it: every glyph of GLYPHS as mojibake, the accents as they are."""
    for glyph in GLYPHS:
        text = text.replace(glyph, mac_roman(glyph))
    return text.replace(mac_roman("×") + "3 ≠", "×3 ≠")  # ACCENTS' own × is real text


def _project(project, kx, newline="\n", bom=""):
    raw = (bom + in_the_file(TRUE_PLAN)).replace("\n", newline).encode("utf-8")
    (project / "plan.md").write_bytes(raw)
    assert kx("plan", "import", "plan.md").code == 0
    return raw


def test_the_sample_holds_mojibake_and_real_accents():
    file = in_the_file(TRUE_PLAN)
    assert "‚úì" in file and "‚úÖ" in file and "üöÄ" in file and ACCENTS in file


def test_plain_render_keeps_writing_the_files_own_glyph(kx, project):
    _project(project, kx)
    assert kx("tick", "PART-2", "2").code == 0
    assert kx("render").code == 0
    text = (project / "plan.md").read_text(encoding="utf-8")
    assert f"- [‚úì] Section 2: Beta details {mac_roman('→')} more" in text
    assert text == in_the_file(TRUE_PLAN).replace("- [ ] Section 2: Beta", "- [✓] Section 2: Beta").replace(
        "✓", mac_roman("✓"))


def test_repair_check_says_what_it_would_mend_and_writes_nothing(kx, project):
    raw = _project(project, kx)
    before = event_count(project)
    result = kx("--json", "render", "--repair", "--check")
    assert result.code == 1
    mended = {(r["from"], r["to"]): r["count"] for r in result.json["repaired"]}
    assert mended == {(mac_roman("✓"), "✓"): 5, (mac_roman("🚀"), "🚀"): 1, (mac_roman("✅"), "✅"): 1,
                      (mac_roman("⚠️"), "⚠️"): 1, (mac_roman("→"), "→"): 3, (mac_roman("×"), "×"): 1}
    assert (project / "plan.md").read_bytes() == raw and event_count(project) == before
    text = kx("render", "--repair", "--check")
    assert text.code == 1
    assert f"{mac_roman('✓')} → ✓ ×5" in text.text and "kx render --repair" in text.text


@pytest.mark.parametrize(("newline", "bom"), [("\n", ""), ("\r\n", "\ufeff")])
def test_repair_mends_the_mojibake_and_keeps_every_other_byte(kx, project, newline, bom):
    _project(project, kx, newline, bom)
    assert kx("tick", "PART-2", "2").code == 0
    result = kx("--json", "render", "--repair")
    assert result.code == 0 and result.json["written"]
    wanted = bom + TRUE_PLAN.replace("- [ ] Section 2: Beta", "- [✓] Section 2: Beta")
    assert (project / "plan.md").read_bytes() == wanted.replace("\n", newline).encode("utf-8")
    assert kx("render", "--check").code == 0  # the mended boxes are still the ledger's boxes
    assert kx("render", "--repair", "--check").code == 0
    assert not [f for f in kx("--json", "plan", "lint", "plan.md").json["findings"] if f["code"] == "mojibake"]
    assert kx("tick", "PART-2", "3").code == 0 and kx("render").code == 0  # a new tick: the mended glyph
    assert "- [✓] Section 3: Beta café" in (project / "plan.md").read_text(encoding="utf-8")
    revised = kx("--json", "plan", "import", "plan.md").json
    assert revised["action"] == "revised" and revised["carried"] == 5 and revised["dropped"] == []


def test_mend_only_touches_runs_that_round_trip():
    from machine.plan.mojibake import repair

    assert repair(ACCENTS).text == ACCENTS
    assert repair("nothing to do").counts == {}
    windows = "✓ done".encode("utf-8").decode("cp1252")  # 'âœ“ done'
    assert repair(f"{windows}; {ACCENTS}").text == f"✓ done; {ACCENTS}"
    mixed = repair(f"{mac_roman('✅')} ok, {mac_roman('✓')}{mac_roman('✓')} and {mac_roman('🚀')}")
    assert mixed.text == "✅ ok, ✓✓ and 🚀"
    assert mixed.counts == {(mac_roman("✅"), "✅"): 1, (mac_roman("✓✓"), "✓✓"): 1, (mac_roman("🚀"), "🚀"): 1}
