"""``kx status`` on a terminal: a bar per batch, colours unless NO_COLOR; piped, the plain listing stays."""

from __future__ import annotations

import pytest

from cli.terminal import bar_cells
from tests.conftest import drawn, golden, on_a_terminal


@pytest.mark.slow
def test_on_a_terminal_a_bar_per_batch_and_no_colour_with_no_color(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    plain = on_a_terminal(project, "status", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain
    golden("seed-status-terminal.txt", plain)
    coloured = on_a_terminal(project, "status")
    assert "\x1b[32m██████" in coloured and "\x1b[0m" in coloured
    assert "\x1b[" not in on_a_terminal(project, "status", env={"TERM": "dumb"})


@pytest.mark.slow
def test_piped_status_and_json_stay_as_they_were(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert on_a_terminal(project, "--json", "status").startswith('{"schema": 1, "plan": "plan"')
    golden("seed-status.txt", kx("status").text)


def view_of(*states_per_batch: list[str]) -> dict:
    batches = [{"number": n, "title": f"Batch {n} " + "long title " * 12, "state": "running",
                "parts": [{"id": f"PART-{n}{i}", "state": s, "ticked": 1, "total": 4, "attempt": f"PART-{n}{i}#2"}
                          for i, s in enumerate(states)]}
               for n, states in enumerate(states_per_batch, 1)]
    return {"plan": "p", "title": "T", "path": "p.md", "limit": 6, "running": [], "batches": batches,
            "found": {"parts": 9, "batches": 2}, "declared": {"parts": 0, "batches": 0}, "consolidated": False}


def test_the_table_fits_the_width_and_names_the_parts_to_look_at():
    view = view_of(["succeeded"] * 98 + ["failed", "running"], ["pending", "lost"])
    text = drawn(view, 90)
    lines = text.splitlines()
    assert all(len(line) <= 90 for line in lines), lines
    assert "failed PART-198#2 1/4 · running PART-199#2 1/4" in text
    assert lines[3].endswith("…") and "98/100" in lines[3]
    assert "lost PART-21#2 1/4" in text


def test_wide_characters_count_as_the_cells_they_take():
    from rich.cells import cell_len

    view = view_of(["succeeded", "failed"])
    view["batches"][0]["title"] = "視覚言語モデル " * 12
    lines = drawn(view, 80).splitlines()
    assert all(cell_len(line) <= 80 for line in lines), lines
    assert lines[3].endswith("…") and cell_len(lines[3]) >= 79


def test_bar_cells_keep_every_state_visible_and_fill_the_width():
    cells = bar_cells({"succeeded": 998, "running": 1, "lost": 0, "failed": 1, "pending": 0}, 20)
    assert sum(cells.values()) == 20 and cells["running"] == cells["failed"] == 1 and cells["lost"] == 0
    assert bar_cells({"succeeded": 0, "pending": 0}, 12) == {"pending": 12}
