"""History anchored outside the ledger file: the digest, the keyed chain, the ledger's own place.

A hash chain alone cannot catch someone who edits an event and recomputes the
chain and the head: each test makes that rewrite (as `forge` does, with the
triggers dropped and put back) and shows what finds it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from ledger.store import GENESIS, KEYED, chain_hash

KEY = "ledger-key-0123456789"


def ledger_of(project: Path) -> Path:
    return project / ".kx" / "ledger.db"


def head_of(project: Path) -> tuple[int, str]:
    with sqlite3.connect(ledger_of(project)) as conn:
        return conn.execute("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1").fetchone()


def forge(project: Path, position: int, *, keyed_look: bool = False) -> None:
    """Change who made the event at ``position``, then recompute every hash from there and the head with plain
    SHA-256 (as someone without the key can), ``keyed_look``: written with the keyed prefix, as if keyed."""
    conn = sqlite3.connect(ledger_of(project), isolation_level=None)
    triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"))
    for name in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    previous = GENESIS
    rows = conn.execute("SELECT position, stream, version, type, data, recorded_at, hash FROM events"
                        " ORDER BY position").fetchall()
    for at, stream, version, kind, data, recorded_at, digest in rows:
        if at == position:
            data = data.replace('"by":"', '"by":"mallory-', 1)
            assert "mallory" in data
            conn.execute("UPDATE events SET data = ? WHERE position = ?", (data, at))
        if at >= position:
            digest = chain_hash(previous, at, stream, version, kind, data, recorded_at)
            digest = KEYED + digest if keyed_look else digest
            conn.execute("UPDATE events SET hash = ? WHERE position = ?", (digest, at))
        previous = digest
    conn.execute("UPDATE kx_head SET position = ?, hash = ?", (rows[-1][0], previous))
    for sql in triggers.values():
        conn.execute(sql)
    conn.close()


def some_history(kx) -> None:
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0
    assert kx("tick", "PART-1", "1", "2", "--attempt", "PART-1#1").code == 0
    assert kx("fail", "PART-1", "--reason", "no luck", "--attempt", "PART-1#1").code == 0


def tick_position(project: Path) -> int:
    with sqlite3.connect(ledger_of(project)) as conn:
        return conn.execute("SELECT MIN(position) FROM events WHERE type = 'CheckboxTicked'").fetchone()[0]


# --- the digest ------------------------------------------------------------------------------------------


def test_a_rewrite_of_the_chain_and_head_passes_verify_but_not_the_digest(kx, small_plan, project):
    some_history(kx)
    position, digest = head_of(project)
    printed = kx("audit", "digest")
    assert printed.code == 0 and printed.text == f"{position}:{digest}\n"
    assert kx("--json", "audit", "digest").json == {"schema": 1, "position": position, "hash": digest}
    earlier = kx("audit", "digest").text.strip()
    assert kx("audit", "verify", "--digest", earlier).code == 0

    forge(project, tick_position(project))
    assert kx("audit", "verify").code == 0  # the chain and the head agree: nothing inside the file can tell
    checked = kx("--json", "audit", "verify", "--digest", earlier)
    assert checked.code == 1
    assert any(f.startswith(f"digest {position}:{digest[:12]}") and f"position {position}" in f
               for f in checked.json["findings"]), checked.json["findings"]
    assert checked.json["digests"] == [{"position": position, "hash": digest, "ok": False}]


def test_a_digest_beyond_the_ledgers_end_is_a_finding(kx, small_plan, project):
    some_history(kx)
    position, digest = head_of(project)
    result = kx("audit", "verify", "--digest", f"{position + 5}:{digest}", "--digest", f"{position}:{digest}")
    assert result.code == 1 and f"the ledger ends at position {position}" in result.text
    assert result.text.count("digest ") == 1


@pytest.mark.parametrize("digest", ["12", "x:abc", ":abc", "3:", "-1:abc", f"{2**63}:abc", "3:not hex"])
def test_a_malformed_digest_is_bad_input(kx, small_plan, project, digest):
    some_history(kx)
    result = kx("audit", "verify", "--digest", digest)
    assert result.code == 2 and result.err.startswith("kx: error: ") and "POSITION:HASH" in result.err


# --- the keyed chain -------------------------------------------------------------------------------------


def test_with_a_key_the_chain_is_keyed_and_a_rewrite_without_it_is_found(kx, small_plan, project, monkeypatch):
    monkeypatch.setenv("KX_LEDGER_KEY", KEY)
    some_history(kx)
    with sqlite3.connect(ledger_of(project)) as conn:
        hashes = [row[0] for row in conn.execute("SELECT hash FROM events ORDER BY position")]
    assert all(h.startswith(KEYED) and len(h) == len(KEYED) + 64 for h in hashes)
    assert kx("audit", "verify").code == 0
    files = [path.read_bytes() for path in (project / ".kx").rglob("*") if path.is_file()]
    assert not any(KEY.encode() in data for data in files)  # the key is never recorded or logged

    forge(project, tick_position(project), keyed_look=True)  # looks keyed, but is plain SHA-256
    found = kx("--json", "audit", "verify")
    assert found.code == 1
    assert found.json["findings"][0].startswith(f"position {tick_position(project)}: hash chain broken")
    monkeypatch.delenv("KX_LEDGER_KEY")
    unkeyed = kx("--json", "audit", "verify")  # without the key, keyed hashes cannot be checked: it says so
    assert unkeyed.code == 0 and unkeyed.json["keyed"] == {"from": 1, "events": len(hashes), "checked": False}
    assert f"{len(hashes)} keyed events could not be checked without KX_LEDGER_KEY" in kx("audit", "verify").text


def test_a_plain_rewrite_after_keyed_events_is_found_even_without_the_key(kx, small_plan, project, monkeypatch):
    monkeypatch.setenv("KX_LEDGER_KEY", KEY)
    some_history(kx)
    forge(project, tick_position(project))
    for key in (KEY, None):
        if key is None:
            monkeypatch.delenv("KX_LEDGER_KEY")
        result = kx("--json", "audit", "verify")
        assert result.code == 1
        assert any(f.startswith(f"position {tick_position(project)}: hash not keyed") for f in result.json["findings"])


def test_a_keyed_ledger_refuses_writers_without_its_key(kx, small_plan, project, monkeypatch):
    monkeypatch.setenv("KX_LEDGER_KEY", KEY)
    some_history(kx)
    before = head_of(project)
    monkeypatch.delenv("KX_LEDGER_KEY")
    refused = kx("tick", "PART-1", "3")
    assert refused.code == 2 and "KX_LEDGER_KEY" in refused.err and head_of(project) == before
    monkeypatch.setenv("KX_LEDGER_KEY", "another-key-0123456789")
    refused = kx("tick", "PART-1", "3")
    assert refused.code == 2 and "not the key" in refused.err and head_of(project) == before
    monkeypatch.setenv("KX_LEDGER_KEY", KEY)
    assert kx("tick", "PART-1", "3").code == 0 and kx("audit", "verify").code == 0


def test_a_key_set_later_keys_the_events_from_then_on(kx, small_plan, project, monkeypatch):
    some_history(kx)
    plain = head_of(project)[0]
    monkeypatch.setenv("KX_LEDGER_KEY", KEY)
    assert kx("tick", "PART-1", "3").code == 0
    result = kx("--json", "audit", "verify")
    assert result.code == 0 and result.json["keyed"] == {"from": plain + 1, "events": 1, "checked": True}


# --- the ledger's place ----------------------------------------------------------------------------------


def copied_project(kx, project: Path) -> Path:
    some_history(kx)
    elsewhere = project.parent / f"{project.name}-copy"
    shutil.copytree(project, elsewhere)
    return elsewhere


def test_a_ledger_copied_from_another_folder_is_reported_and_never_rendered(kx, small_plan, project, monkeypatch):
    elsewhere = copied_project(kx, project)
    monkeypatch.chdir(elsewhere)
    plan_bytes = (elsewhere / "plan.md").read_bytes()

    status = kx("--json", "status")
    assert status.code == 0
    moved = [f for f in status.json["findings"] if f["code"] == "ledger_moved"]
    assert moved and moved[0]["made_in"] == str(project.resolve()) and moved[0]["here"] == str(elsewhere.resolve())
    assert f"made in {project.resolve()}" in kx("status").text
    verify = kx("audit", "verify")
    assert verify.code == 1 and f"made in {project.resolve()}" in verify.text
    render = kx("render")
    assert render.code == 3 and "kx plan import" in render.err and render.err.count("\n") == 1
    assert (elsewhere / "plan.md").read_bytes() == plan_bytes
    consolidated = kx("consolidate")
    assert consolidated.code == 3 and f"made in {project.resolve()}" in consolidated.err
    assert not (elsewhere / "INDEX.md").exists() and (elsewhere / "plan.md").read_bytes() == plan_bytes

    accepted = kx("plan", "import", "plan.md")  # the documented way to accept the new place
    assert accepted.code == 0 and "re-anchored" in accepted.text
    assert not [f for f in kx("--json", "status").json["findings"] if f["code"] == "ledger_moved"]
    assert kx("audit", "verify").code == 0 and kx("render").code == 0
    monkeypatch.chdir(project)  # the original is untouched by all this
    assert kx("audit", "verify").code == 0


def test_a_ledger_made_before_it_knew_its_place_is_anchored_where_it_is_first_opened(kx, small_plan, project):
    some_history(kx)
    with sqlite3.connect(ledger_of(project)) as conn:
        conn.execute("DELETE FROM kx_meta WHERE key IN ('ledger_id', 'made_in')")
    assert kx("audit", "verify").code == 0
    with sqlite3.connect(ledger_of(project)) as conn:
        meta = dict(conn.execute("SELECT key, value FROM kx_meta"))
    assert meta["made_in"] == str(project.resolve()) and len(meta["ledger_id"]) == 32
