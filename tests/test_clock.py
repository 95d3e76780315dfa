"""The one clock: a bad KX_NOW is one line and exit 2; recorded_at never goes back."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from ledger import clock
from ledger.errors import BadInput
from ledger.events.models import CheckboxTicked
from ledger.store import Ledger
from tests.conftest import event_count, kx_subprocess

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def ledger(tmp_path):
    store = Ledger.open(tmp_path / ".kx" / "ledger.db", create=True)
    yield store
    store.close()


def tick(box=1):
    return CheckboxTicked(plan="p", part="PART-1", box=box, text="a box", by="alice")


def test_a_bad_kx_now_is_bad_input(monkeypatch):
    monkeypatch.setenv("KX_NOW", "garbage")
    with pytest.raises(BadInput, match="KX_NOW"):
        clock.now()


@pytest.mark.slow
@pytest.mark.parametrize("args", [["start", "PART-1"], ["status"], ["-v", "--json", "tick", "PART-1", "1"]])
def test_a_bad_kx_now_is_one_line_and_exit_2(kx, small_plan, project, args):
    assert kx("plan", "import", "plan.md").code == 0
    before = event_count(project)
    result = kx_subprocess(*args, cwd=project, env={"KX_NOW": "garbage"})
    lines = [line for line in result.stderr.decode().splitlines() if line.startswith("kx: error:")]
    assert result.returncode == 2, result.stderr
    assert lines == ["kx: error: KX_NOW='garbage' is not an ISO-8601 time (e.g. 2025-11-20T10:00:00Z);"
                     " fix or unset it"]
    if "-v" not in args:
        assert result.stderr.decode().splitlines() == lines
    assert event_count(project) == before


def test_recorded_at_never_goes_back_when_the_system_clock_does(ledger, frozen_time):
    first = ledger.append([tick()])[0].recorded_at
    frozen_time.move_to("2025-11-20T09:00:00Z")  # an hour back
    second = ledger.append([tick(2)])[0].recorded_at
    assert second == first and ISO.match(second)
    frozen_time.move_to("2025-11-20T11:00:00.5Z")
    assert ledger.append([tick(3)])[0].recorded_at == "2025-11-20T11:00:00.500000Z"
    stored = [r.recorded_at for r in ledger.read()]
    assert stored == sorted(stored) == [first, first, "2025-11-20T11:00:00.500000Z"]


def test_a_kx_now_before_the_last_event_stamps_no_earlier(kx, small_plan, project, monkeypatch):
    assert kx("plan", "import", "plan.md").code == 0  # at 2025-11-20T10:00:00Z (frozen)
    monkeypatch.setenv("KX_NOW", "2025-11-20T11:00:00Z")
    assert kx("tick", "PART-1", "1").code == 0
    monkeypatch.setenv("KX_NOW", "2025-11-20T08:00:00Z")  # set back, before the import
    assert kx("tick", "PART-1", "2").code == 0
    monkeypatch.delenv("KX_NOW")
    stamps = [e["recorded_at"] for e in kx("--json", "events").json["events"]]
    assert stamps == ["2025-11-20T10:00:00.000000Z", "2025-11-20T11:00:00.000000Z", "2025-11-20T11:00:00.000000Z"]
    # the plan as it was at 10:30 had no box ticked: the second tick came after the first
    assert "[x]" not in kx("replay", "--at", "2025-11-20T10:30:00Z").text
    assert kx("replay", "--at", "2025-11-20T11:00:00Z").text.count("[x]") == 2


def test_the_clock_going_back_within_a_process_keeps_the_iso_form(ledger, frozen_time):
    frozen_time.move_to("2025-11-20T10:00:00.123456Z")
    ledger.append([tick()])
    frozen_time.tick(delta=timedelta(seconds=-30))
    (row,) = ledger.append([tick(2)])
    assert row.recorded_at == "2025-11-20T10:00:00.123456Z"
