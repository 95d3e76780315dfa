"""`kx events` names its columns: a stream's version is not an attempt's number."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def plan(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    assert kx("fail", "PART-1", "--reason", "no luck").code == 0
    assert kx("retry", "PART-1").code == 0
    assert kx("start", "PART-1").code == 0  # PART-1#2: the stream part:plan:PART-1 is at version 4 by now
    return small_plan


def test_the_table_has_a_header_and_keeps_stream_and_version_apart(kx, plan):
    lines = kx("events").text.splitlines()
    assert lines[0].split() == ["position", "recorded_at", "type", "stream", "version", "data"]
    assert not any(re.search(r"(plan|part|batch):\S*#\d", line) for line in lines)  # no stream#version
    last = lines[-1].split(maxsplit=5)
    assert last[2:5] == ["RunnerStarted", "part:plan:PART-1", "4"]
    assert '"attempt": "PART-1#2"' in last[5]
    widths = {line.index(" part:plan:PART-1 ") for line in lines if " part:plan:PART-1 " in line}
    assert len(widths) == 1  # the columns line up


def test_the_header_comes_once_and_not_without_events(kx, plan):
    lines = kx("events", "--since", "2").text.splitlines()
    assert lines[0].startswith("position".rjust(8)) and sum("recorded_at" in line for line in lines) == 1
    assert kx("events", "--since", "999").text == ""


def test_json_keeps_the_contract_fields(kx, plan):
    event = kx("--json", "events").json["events"][-1]
    assert {"position", "stream", "version", "type", "data", "recorded_at"} <= set(event)
    assert (event["stream"], event["version"], event["data"]["attempt"]) == ("part:plan:PART-1", 4, "PART-1#2")


def test_help_says_which_is_which(kx):
    text = " ".join(kx("events", "--help").text.split())
    assert "version" in text and "not an attempt" in text
    assert "PART-7#1" in text and "first attempt" in text
