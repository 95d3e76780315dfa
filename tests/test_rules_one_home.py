"""Each rule has one home (machine/rules.py) and the machines drive the fold: change one, and every place
that enforces it — the act, `kx next`, the supervisor's launches, `kx audit verify` — changes with it."""

from __future__ import annotations

import pytest

from ledger.errors import Refused
from ledger.events.models import RunnerLost
from ledger.store import Ledger
from machine.acts.workspace import Workspace
from machine.state.rules import Rules


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


def append_behind_kx(project, *events):
    ledger = Ledger.open(project / ".kx" / "ledger.db")
    ledger.append(list(events))
    ledger.close()


def supervisor_launches() -> list[str]:
    """The PARTs one turn of `kx run`'s loop would hand to runners now."""
    from runners.supervisor.loop import RunOptions, Supervisor

    spawned: list[str] = []

    class Recorder:
        def spawn(self, plan_id, part):
            spawned.append(part)

    supervisor = Supervisor(Workspace.open(), RunOptions(command=["true"]), progress=None)
    supervisor.executor = Recorder()
    supervisor._launch(supervisor.ws.state())
    return spawned


def test_an_impossible_transition_in_history_is_a_finding_and_changes_nothing(kx, plan, project):
    append_behind_kx(project, RunnerLost(plan="plan", part="PART-1", attempt="PART-1#1", reason="made up"))
    assert kx("audit", "rebuild").code == 0
    status = kx("--json", "status").json
    assert status["batches"][0]["parts"][0]["state"] == "pending"  # not overwritten with "lost"
    result = kx("--json", "audit", "verify")
    assert result.code == 1
    assert any("PART-1" in f and "lose" in f and "pending" in f for f in result.json["findings"])


def test_the_batch_machine_derives_batch_states_from_its_facts(kx, plan, project):
    assert [b["state"] for b in kx("--json", "status").json["batches"]] == ["open", "locked"]
    assert kx("start", "PART-1").code == 0
    assert [b["state"] for b in kx("--json", "status").json["batches"]] == ["running", "locked"]
    for part in ("PART-1", "PART-2"):
        attempt = ["--attempt", "PART-1#1"] if part == "PART-1" else []
        if part == "PART-2":
            assert kx("start", part).code == 0
            attempt = ["--attempt", "PART-2#1"]
        assert kx("fail", part, "--reason", "no", *attempt).code == 0
    assert [b["state"] for b in kx("--json", "status").json["batches"]] == ["awaiting_review", "locked"]
    assert kx("review", "1", "--approve", "--accept-failed").code == 0
    assert [b["state"] for b in kx("--json", "status").json["batches"]] == ["approved", "open"]


def test_the_gate_in_its_one_home_governs_acts_next_audit_and_the_supervisor(kx, plan, project, monkeypatch):
    assert kx("start", "PART-1").code == 0  # recorded under the real gate

    def closed(self, part):
        raise Refused(f"gate: closed for {part.id}", rule="gate")

    monkeypatch.setattr(Rules, "gate", closed)
    refused = kx("start", "PART-2")
    assert refused.code == 3 and "gate: closed for PART-2" in refused.err
    assert kx("--json", "next").json["parts"] == []
    assert any("gate: closed for PART-1" in f for f in kx("--json", "audit", "verify").json["findings"])
    assert kx("tick", "PART-2", "1").code == 3  # a person's act goes through the gate too
    assert supervisor_launches() == []


def test_the_limit_in_its_one_home_governs_acts_next_audit_and_the_supervisor(kx, plan, project, monkeypatch):
    assert kx("start", "PART-1").code == 0
    assert supervisor_launches() == ["PART-2"]
    monkeypatch.setattr(Rules, "free_slots", lambda self, starting=0, limit=None: 0)
    assert kx("start", "PART-2").code == 3
    assert kx("--json", "next").json["parts"] == []
    assert any("limit:" in f for f in kx("--json", "audit", "verify").json["findings"])
    assert supervisor_launches() == []


def test_refusals_name_commands_that_exist(kx, plan):
    assert kx("start", "PART-1").code == 0
    again = kx("start", "PART-1")
    assert again.code == 3
    assert "possible: 'kx finish PART-1', 'kx fail PART-1 --reason TEXT'" in again.err
    assert "send back" not in again.err and "succeed" not in again.err
