"""A configuration checked once is not checked again until it, or the code that checks it, changes.

``.kx/config.checked.json`` keeps the settings every act reads (evidence and sources policies, time zone, lease),
keyed by the SHA-256 of ``config.toml`` and of the checking code, so that a command with a configuration need not
import pydantic to read it. Anything else a command asks for is checked from the file again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from machine.state import checked_config
from tests.conftest import event_count

CACHE = (".kx", "config.checked.json")


def configure(project, text: str) -> None:
    (project / ".kx" / "config.toml").write_text(text)


def cache_of(project) -> dict:
    return json.loads(project.joinpath(*CACHE).read_text())


@pytest.fixture
def imported(kx, small_plan):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    return small_plan.parent


def test_the_first_command_checks_the_configuration_and_keeps_what_acts_read(kx, imported):
    configure(imported, '[defaults]\nevidence = "ticked"\ntimezone = "Europe/Berlin"\nretries = 3\n')
    assert kx("status").code == 0
    kept = cache_of(imported)
    assert kept["plans"]["plan"] == {"evidence": "ticked", "require_all_ticked": None, "sources": None,
                                     "timezone": "Europe/Berlin", "lease_seconds": None}
    assert set(kept) == {"format", "config_sha256", "code_sha256", "plans"}


def test_a_kept_configuration_is_used_and_an_edit_is_seen_at_once(kx, imported):
    configure(imported, '[defaults]\nsources = "any"\n')
    assert kx("status").code == 0
    ticked = kx("tick", "PART-1", "2")
    assert ticked.code == 0, ticked.err
    configure(imported, '[defaults]\nsources = "many"\n')  # same size, same second: the content decides
    before = event_count(imported)
    refused = kx("tick", "PART-1", "3")
    assert refused.code == 2 and "sources" in refused.err and refused.err.count("\n") == 1, refused.err
    assert event_count(imported) == before


def test_a_configuration_that_fails_its_check_is_not_kept(kx, imported):
    configure(imported, '[defaults]\nevidence = "maybe"\n')
    assert kx("status").code == 2
    assert not imported.joinpath(*CACHE).exists()


@pytest.mark.parametrize("forged", ["config_sha256", "code_sha256", "format"])
def test_a_kept_entry_for_other_text_or_other_checking_code_is_not_trusted(kx, imported, forged):
    configure(imported, '[defaults]\nsources = "checked"\n')
    assert kx("status").code == 0
    kept = cache_of(imported)
    kept["plans"]["plan"]["sources"] = "any"
    kept[forged] = "0" * 64 if forged != "format" else 0
    imported.joinpath(*CACHE).write_text(json.dumps(kept))
    config = checked_config.load(imported / ".kx", "plan")
    assert config.sources_policy == "checked"
    assert cache_of(imported)["plans"]["plan"]["sources"] == "checked"  # checked again and kept anew


@pytest.mark.parametrize("damage", ["not json", "[]", '{"plans": 3}', "folder", "fifo", "link"])
def test_a_damaged_cache_is_checked_anew_and_never_blocks(kx, imported, damage, tmp_path):
    configure(imported, '[defaults]\nevidence = "drop"\n')
    path = imported.joinpath(*CACHE)
    if damage == "folder":
        path.mkdir()
    elif damage == "fifo":
        os.mkfifo(path)
    elif damage == "link":
        outside = tmp_path / "elsewhere.json"
        outside.write_text("{}")
        path.symlink_to(outside)
    else:
        path.write_text(damage)
    config = checked_config.load(imported / ".kx", "plan")
    assert config.evidence_policy == "drop"
    if damage == "link":
        assert (tmp_path / "elsewhere.json").read_text() == "{}"  # replaced, never written through
        assert not path.is_symlink()


def test_settings_acts_do_not_keep_are_checked_from_the_file(kx, imported):
    configure(imported, '[defaults]\nretries = 4\nrunner = ["rehearse"]\n')
    assert kx("status").code == 0
    config = checked_config.load(imported / ".kx", "plan")
    assert (config.retries, config.runner) == (4, ["rehearse"])


@pytest.mark.slow
def test_a_tick_with_a_checked_configuration_does_not_import_pydantic(kx, imported):
    configure(imported, '[defaults]\nevidence = "ticked"\n')
    assert kx("status").code == 0
    probe = ("import sys; from cli.errors import run_guarded; from cli.main import cli;"
             " code = run_guarded(cli, ['tick', 'PART-1', '1']);"
             " print(code, sorted(m for m in ('pydantic', 'structlog', 'rich', 'transitions') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=imported, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr


def test_the_cache_is_written_without_waiting_for_the_disk(kx, imported, monkeypatch):
    configure(imported, '[defaults]\ntimezone = "UTC"\n')

    def no_fsync(fd):
        raise AssertionError("a cache a crash may lose is not fsynced")

    monkeypatch.setattr(os, "fsync", no_fsync)
    assert checked_config.load(imported / ".kx", "plan").timezone == "UTC"
    assert cache_of(imported)["plans"]["plan"]["timezone"] == "UTC"


def test_without_the_checking_code_at_hand_every_command_checks_the_file(kx, imported, monkeypatch):
    configure(imported, '[defaults]\nevidence = "ticked"\n')
    monkeypatch.setattr(checked_config, "_CHECKING_CODE", imported / "no-such-source.py")
    checked_config._code_digest.cache_clear()
    try:
        assert checked_config.load(imported / ".kx", "plan").evidence_policy == "ticked"
        assert not imported.joinpath(*CACHE).exists()
    finally:
        checked_config._code_digest.cache_clear()
