"""kx's global options (--ledger, --plan, --json, -v) work before and after the command's name; the later wins."""

from __future__ import annotations

import json

import pytest

from tests.conftest import event_count, kx_subprocess


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


@pytest.mark.parametrize("args", [
    ("status",), ("next",), ("plan", "list"), ("plan", "lint"), ("audit", "history", "PART-1"), ("audit", "verify"),
    ("events",), ("brief", "PART-1"), ("check", "PART-1"),
])
def test_json_after_the_command_is_the_same_as_before_it(kx, plan, args):
    before, after = kx("--json", *args), kx(*args, "--json")
    assert after.code == before.code, after.err
    assert json.loads(after.out) == json.loads(before.out)
    assert json.loads(after.out)["schema"] == 1


def test_json_between_a_group_and_its_subcommand(kx, plan):
    assert kx("plan", "--json", "list").json["plans"][0]["id"] == "plan"
    assert kx("audit", "--json", "history", "PART-1").json["part"] == "PART-1"


def test_plan_after_the_command_picks_the_plan_and_the_later_one_wins(kx, plan):
    assert kx("status", "--plan", "plan", "--json").json["plan"] == "plan"
    unknown = kx("status", "--plan", "nope")
    assert unknown.code == 4 and unknown.err.startswith("kx: error: no plan 'nope' in the ledger")
    assert kx("--plan", "nope", "status", "--plan", "plan").code == 0
    assert kx("--plan", "plan", "status", "--plan", "nope").code == 4
    assert kx("--plan", "nope", "plan", "--plan", "plan", "list").code == 0


def test_ledger_after_the_command(kx, plan, project):
    missing = kx("status", "--ledger", "elsewhere.db")
    assert missing.code == 2 and "elsewhere.db" in missing.err and missing.err.count("\n") == 1
    assert kx("status", "--ledger", str(project / ".kx" / "ledger.db"), "--json").json["plan"] == "plan"
    assert kx("--ledger", "elsewhere.db", "status", "--ledger", ".kx/ledger.db").code == 0


def test_an_act_takes_them_after_its_arguments_and_appends_as_before(kx, plan, project):
    before = event_count(project)
    started = kx("start", "PART-1", "--json", "--plan", "plan")
    assert started.code == 0 and started.json == {"schema": 1, "part": "PART-1", "attempt": "PART-1#1"}
    assert event_count(project) == before + 1
    refused = kx("start", "PART-1", "--json")
    assert refused.code == 3 and refused.json["error"]["code"] == 3
    assert event_count(project) == before + 1


@pytest.mark.slow
def test_verbose_after_the_command_logs_as_before_it(kx, plan, project):
    assert "appended" not in kx_subprocess("start", "PART-1", cwd=project).stderr.decode()
    assert "appended" in kx_subprocess("-v", "start", "PART-2", cwd=project).stderr.decode()
    assert "appended" in kx_subprocess("fail", "PART-1", "--reason", "x", "--verbose", cwd=project).stderr.decode()
    assert "Traceback" in kx("start", "PART-9", "-v").err


def test_no_command_has_its_own_option_of_a_global_name(kx, plan):
    from cli.main import GLOBAL_OPTIONS
    from tests.test_help_examples import COMMANDS

    global_opts = {opt for option in GLOBAL_OPTIONS for opt in option.opts}
    clashes = [(path, opt) for path, command in COMMANDS for param in command.params for opt in param.opts
               if opt in global_opts and path != ()]
    assert clashes == []
    unknown = kx("mcp", "--plan", "nope")  # kx mcp's own --ledger and --plan were these, with the same meaning
    assert unknown.code == 4 and "no plan 'nope'" in unknown.err
