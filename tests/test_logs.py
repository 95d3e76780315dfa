"""kx's log: JSON lines (info and up) in ``.kx/kx.log``, every level on stderr with ``-v``, the time from kx's
clock, secrets redacted, and a log that cannot be written never failing a command."""

from __future__ import annotations

import json

import pytest

from tests.conftest import kx_subprocess

FROZEN_STAMP = "2025-11-20T10:00:00.000000Z"


def logged(project) -> list[dict]:
    return [json.loads(line) for line in (project / ".kx" / "kx.log").read_text().splitlines()]


def test_the_log_file_takes_info_and_up_as_json_with_the_frozen_time(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-9").code == 4
    lines = logged(project)
    assert [(line["level"], line["event"]) for line in lines] == [("info", "plan imported"),
                                                                 ("error", "command failed")]
    assert {line["ts"] for line in lines} == {FROZEN_STAMP}
    assert lines[0]["plan"] == "plan" and lines[1]["code"] == 4  # the fields as given


def test_verbose_writes_every_level_to_stderr_and_keeps_the_file_at_info(kx, small_plan, project):
    result = kx("-v", "plan", "import", "plan.md")
    assert "[debug    ] appended" in result.err and "[info     ] plan imported" in result.err
    assert f"ts={FROZEN_STAMP}" in result.err
    assert [line["event"] for line in logged(project)] == ["plan imported"]


@pytest.mark.slow
def test_a_subprocess_logs_at_kx_now(small_plan, project):
    result = kx_subprocess("-v", "plan", "import", "plan.md", cwd=project)  # KX_NOW is the frozen time
    assert result.returncode == 0 and f"ts={FROZEN_STAMP}" in result.stderr.decode()
    assert logged(project)[0]["ts"] == FROZEN_STAMP


def test_a_log_that_cannot_be_written_fails_no_command(kx, small_plan, project):
    (project / ".kx" / "kx.log").mkdir(parents=True)  # in the way of the file
    result = kx("-v", "plan", "import", "plan.md")
    assert result.code == 0 and "plan imported" in result.err
    assert kx("start", "PART-1").code == 0
