"""The pydantic-free tick events equal the pydantic models' events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.events import CheckboxTicked, CheckboxUnticked
from ledger.ticks import tick_event

names = st.text(min_size=1, max_size=12)
optional = st.none() | names


@settings(derandomize=True, max_examples=200)
@given(st.booleans(), names, names, st.integers(0, 10**6), st.text(max_size=40), optional, optional)
def test_fast_tick_events_match_the_models(ticked, plan, part, box, text, attempt, by):
    fast = tick_event(ticked, plan=plan, part=part, box=box, text=text, attempt=attempt, by=by)
    model = (CheckboxTicked if ticked else CheckboxUnticked)(plan=plan, part=part, box=box, text=text,
                                                             attempt=attempt, by=by)
    assert (fast.type, fast.stream, fast.schema_version, fast.data()) == (
        model.type, model.stream, model.schema_version, model.data())


def test_the_tick_command_does_not_import_pydantic(kx, small_plan):
    import subprocess
    import sys

    kx("plan", "import", "plan.md")
    probe = ("import sys; from cli.errors import run_guarded; from cli.main import cli;"
             " code = run_guarded(cli, ['tick', 'PART-1', '1']);"
             " print(code, sorted(m for m in ('pydantic', 'structlog', 'transitions', 'sqlite_utils', 'markdown_it')"
             " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=small_plan.parent, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr
