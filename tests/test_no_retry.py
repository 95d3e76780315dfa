"""A failure that says it cannot succeed unchanged (``kx fail --no-retry``) is recorded so, and kx run leaves it to
a person instead of retrying it."""

from __future__ import annotations


def test_kx_run_retries_a_failure_but_not_one_that_cannot_succeed_unchanged(kx, small_plan):
    from machine.acts.workspace import Workspace
    from runners.supervisor.loop import RunOptions, Supervisor

    assert kx("plan", "import", "plan.md").code == 0
    for part in ("PART-1", "PART-2"):
        assert kx("start", part).code == 0
    refused = kx("fail", "PART-1", "--reason", "the prompt cannot fit the model's window", "--no-retry",
                 "--attempt", "PART-1#1")
    assert refused.code == 0 and "(kx run will not retry it)" in refused.err + refused.text
    assert kx("fail", "PART-2", "--reason", "the server was down", "--attempt", "PART-2#1").code == 0
    failed = {e["data"]["part"]: e["data"] for e in kx("--json", "events").json["events"] if e["type"] == "RunnerFailed"}
    assert failed["PART-1"]["retry"] is False and "retry" not in failed["PART-2"]

    workspace = Workspace.open()
    supervisor = Supervisor(workspace, RunOptions(command=["true"], retries=3, backoff=0), progress=None)
    assert supervisor._settle(workspace.state()) == "acted"  # PART-2 goes back to pending
    assert supervisor._settle(workspace.state()) is None  # PART-1 stays failed, for a review
    parts = {p["id"]: p["state"] for p in kx("--json", "status").json["batches"][0]["parts"]}
    assert (parts["PART-1"], parts["PART-2"]) == ("failed", "pending")
    assert kx("retry", "PART-1").code == 0  # a person may still retry it
