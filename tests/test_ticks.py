"""The tick events: one definition, validated by pydantic where events are loaded, no pydantic for `kx tick`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ledger.events.checkboxes import CheckboxTicked, CheckboxUnticked
from ledger.events.models import load

names = st.text(min_size=1, max_size=12)
optional = st.none() | names


@settings(derandomize=True, max_examples=200)
@given(st.booleans(), names, names, st.integers(0, 10**6), st.text(max_size=40), optional, optional)
def test_tick_events_round_trip_through_the_ledgers_validation(ticked, plan, part, box, text, attempt, by):
    event = (CheckboxTicked if ticked else CheckboxUnticked)(plan=plan, part=part, box=box, text=text,
                                                             attempt=attempt, by=by)
    loaded = load(event.type, event.data())
    assert loaded == event and type(loaded) is type(event)
    assert (loaded.stream, loaded.schema_version) == (f"part:{plan}:{part}", 1)


@pytest.mark.parametrize("data", [{"plan": "p", "part": "PART-1", "text": "t"},
                                  {"plan": "p", "part": "PART-1", "box": 1, "text": "t", "colour": "red"},
                                  {"plan": "p", "part": "PART-1", "box": "one", "text": "t"}])
def test_loading_refuses_tick_data_that_does_not_fit(data):
    with pytest.raises(ValidationError):
        load("CheckboxTicked", data)


@pytest.mark.slow
def test_the_tick_command_does_not_import_pydantic(kx, small_plan):
    import subprocess
    import sys

    kx("plan", "import", "plan.md")
    probe = ("import sys; from cli.errors import run_guarded; from cli.main import cli;"
             " code = run_guarded(cli, ['tick', 'PART-1', '1']);"
             " print(code, sorted(m for m in ('pydantic', 'structlog', 'rich', 'transitions', 'sqlite_utils',"
             " 'markdown_it') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=small_plan.parent, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr
