"""A runner is run as an argument list, never by a shell: a $KX_... in its spec would stay literal, so kx refuses it
at the start of `kx run` / `kx resume` and says how to write it."""

from __future__ import annotations

import pytest

from ledger.errors import BadInput
from runners.spec import runner_command
from tests.conftest import event_count


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    return small_plan


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_literal_kx_variable_on_the_command_line_is_refused_with_the_way_to_write_it(kx, plan, project, command):
    before = event_count(project)
    result = kx(command, "--runner", "cat $KX_BRIEF", "--review", "auto")
    assert result.code == 2
    assert result.err == (
        "kx: error: the runner 'cat $KX_BRIEF' is not run by a shell, so $KX_BRIEF would reach it as those very"
        " characters; let a shell expand it from the runner's environment: --runner 'sh -c \"cat $KX_BRIEF\"'\n")
    assert event_count(project) == before
    assert not (project / ".kx" / "attempts").exists()


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_braces_and_a_variable_inside_an_argument_too(kx, plan):
    result = kx("run", "--runner", 'llm -m gpt "Read ${KX_BRIEF} and write $KX_TARGET"')
    assert result.code == 2 and "${KX_BRIEF}" in result.err and result.err.count("\n") == 1
    assert "sh -c" in result.err


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_quotes_in_the_spec_get_a_general_hint(kx, plan):
    result = kx("run", "--runner", "llm \"it's at $KX_BRIEF\"")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "wrap the command in sh -c '...'" in result.err


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_the_runner_in_the_config_is_checked_too(kx, plan, project):
    (project / ".kx" / "config.toml").write_text('[defaults]\nrunner = ["cat", "$KX_BRIEF"]\n', encoding="utf-8")
    result = kx("run", "--review", "auto")
    assert result.code == 2
    assert result.err.endswith(""": runner = ["sh", "-c", "cat $KX_BRIEF"]\n"""), result.err


@pytest.mark.parametrize("spec, argv", [
    ("sh -c 'cat \"$KX_BRIEF\" > \"$KX_TARGET\"'", ["sh", "-c", 'cat "$KX_BRIEF" > "$KX_TARGET"']),
    ("/bin/bash -lc 'my-agent --brief \"$KX_BRIEF\"'", ["/bin/bash", "-lc", 'my-agent --brief "$KX_BRIEF"']),
    ("bash -o pipefail -c 'cat $KX_BRIEF | agent'", ["bash", "-o", "pipefail", "-c", "cat $KX_BRIEF | agent"]),
    ("env FOO=1 sh -c 'cat $KX_BRIEF'", ["env", "FOO=1", "sh", "-c", "cat $KX_BRIEF"]),
    ("echo costs $5 and $HOME", ["echo", "costs", "$5", "and", "$HOME"]),
])
def test_a_shell_script_may_name_them(spec, argv):
    assert runner_command(spec) == argv


def test_an_argument_after_the_script_is_not_expanded_by_it():
    with pytest.raises(BadInput, match=r"\$KX_PART"):
        runner_command("sh -c 'agent \"$1\"' agent $KX_PART")
