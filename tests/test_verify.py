"""`kx audit verify` replays every event, ticks included, through Rules.check; its two passes agree however run."""

from __future__ import annotations

import sqlite3

import pytest

from ledger.events.checkboxes import CheckboxTicked
from ledger.events.models import PlanConsolidated
from ledger.store import Ledger
from machine.acts.audit import verify
from machine.acts.workspace import Workspace


@pytest.fixture
def plan(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    assert kx("tick", "PART-1", "1", "--attempt", "PART-1#1").code == 0
    return project


def append_past_the_rules(project, *events):
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append(list(events))
    ledger.close()


def test_ticks_are_judged_by_every_rule_of_rules_check(kx, plan):
    append_past_the_rules(plan, PlanConsolidated(plan="plan", by="someone"),
                          CheckboxTicked(plan="plan", part="PART-2", box=1, text="x", by="someone"),
                          CheckboxTicked(plan="plan", part="PART-1", box=2, text="y", attempt="PART-1#7"))
    findings = kx("--json", "audit", "verify").json["findings"]
    assert any("(PlanConsolidated None): consolidation waits until every batch is approved" in f for f in findings)
    closed = [f for f in findings if "is consolidated (by someone) and closed to changes" in f]
    assert [f.split(":")[0] for f in closed] == ["position 5 (CheckboxTicked PART-2)",
                                                "position 6 (CheckboxTicked PART-1)"]


@pytest.mark.slow
def test_the_chain_checked_in_a_second_process_finds_what_one_process_finds(kx, plan, monkeypatch):
    append_past_the_rules(plan, CheckboxTicked(plan="plan", part="PART-1", box=2, text="y", attempt="PART-1#7"))
    with sqlite3.connect(plan / ".kx" / "ledger.db") as conn:  # damaged data, a broken link, a version jump
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("UPDATE events SET data = '{not json' WHERE position = 3")
        conn.execute("UPDATE events SET version = 9 WHERE position = 4")
    workspace = Workspace.open(str(plan / ".kx" / "ledger.db"))
    apart, together = verify(workspace, parallel_from=0), verify(workspace, parallel_from=10**9)
    workspace.ledger.close()
    assert apart == together
    assert any("hash chain broken" in f for f in apart["findings"])
    assert any("jumps to version 9" in f for f in apart["findings"])
    assert any("position 3 (CheckboxTicked): data is not JSON" in f for f in apart["findings"])
    assert apart["events"] == 4


def test_an_import_and_a_revision_ask_rules_check_of_their_events(kx, small_plan, project, monkeypatch):
    from machine.state.rules import Rules

    asked = []
    check = Rules.check
    monkeypatch.setattr(Rules, "check", lambda self, kind, data: asked.append(kind) or check(self, kind, data))
    assert kx("plan", "import", "plan.md").code == 0
    assert asked == ["PlanImported"]
    small_plan.write_text(small_plan.read_text().replace("- [ ] Section 1: Alpha overview",
                                                         "- [x] Section 1: Alpha overview"))
    assert kx("plan", "import", "plan.md").code == 0
    assert asked == ["PlanImported", "PlanRevised", "CheckboxTicked"]
