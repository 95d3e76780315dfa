"""kx's writers take their turn on a lock file beside the ledger before SQLite's write lock (ledger/writers.py)."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest
from freezegun import freeze_time

from ledger import writers
from ledger.store import Ledger
from ledger.writers import lock_path


@pytest.fixture
def ledger(tmp_path):
    opened = Ledger.open(tmp_path / ".kx" / "ledger.db", create=True)
    yield opened
    opened.close()


def lock_is_free(path) -> bool:
    """Whether another open file could take the lock now."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_transaction_holds_the_lock_file_beside_the_ledger(ledger):
    path = lock_path(ledger.path)
    assert path.name == "ledger.db-lock" and path.parent == ledger.path.parent
    with ledger.transaction():
        assert not lock_is_free(path)
        with ledger.transaction():  # a nested transaction is the same turn
            assert not lock_is_free(path)
        assert not lock_is_free(path)
    assert lock_is_free(path)


def test_the_lock_is_let_go_when_the_transaction_fails(ledger):
    with pytest.raises(RuntimeError), ledger.transaction():
        raise RuntimeError("the act failed")
    assert lock_is_free(lock_path(ledger.path))
    assert not ledger.in_transaction


def test_two_ledgers_open_in_one_process_take_turns(ledger):
    other = Ledger.open(ledger.path)
    order: list[str] = []
    first_in = threading.Event()

    def second():
        first_in.wait()
        with other.transaction():
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with ledger.transaction():
        first_in.set()
        thread.join(timeout=0.3)  # it waits for this turn to end
        order.append("first")
    thread.join(timeout=30)
    other.close()
    assert order == ["first", "second"]


def test_the_lock_file_is_not_handed_to_child_processes(ledger):
    with ledger.transaction():
        assert not os.get_inheritable(ledger.writers._fd)


def test_a_link_at_the_lock_files_name_is_not_followed(tmp_path):
    outside = tmp_path / "elsewhere"
    folder = tmp_path / ".kx"
    folder.mkdir()
    (folder / "ledger.db-lock").symlink_to(outside)
    opened = Ledger.open(folder / "ledger.db", create=True)  # its transactions wait in SQLite's way alone
    with opened.transaction():
        opened.conn.execute("INSERT INTO kx_meta (key, value) VALUES ('probe', '1')")
    assert opened.meta("probe") == "1"
    assert not outside.exists()
    opened.close()


def test_a_frozen_clock_cannot_make_a_writer_wait_forever(ledger, monkeypatch):
    monkeypatch.setattr(writers, "PATIENCE_S", 0.01)  # its wait counts its sleeps, not a clock's time
    holder = os.open(lock_path(ledger.path), os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another writer's turn that never ends (SQLite's lock is free)
    try:
        with freeze_time("2025-11-20T10:00:00Z"), ledger.transaction():
            ledger.conn.execute("INSERT INTO kx_meta (key, value) VALUES ('probe', '1')")
    finally:
        os.close(holder)
    assert ledger.meta("probe") == "1"


def test_an_act_reads_the_plans_config_before_it_waits_for_the_lock(kx, small_plan, project, monkeypatch):
    import sqlite3

    from ledger import store

    assert kx("plan", "import", "plan.md").code == 0
    (project / ".kx" / "config.toml").write_text("[defaults]\nlease_seconds = -1\n")
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.2)
    writer = sqlite3.connect(project / ".kx" / "ledger.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another program holds SQLite's write lock
    try:
        result = kx("start", "PART-1")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.code == 2 and "lease_seconds" in result.err and "locked" not in result.err


def test_a_ledger_opened_by_a_relative_path_keeps_its_lock_file_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Ledger.open("ledger.db", create=True).close()
    opened = Ledger.open("ledger.db")  # no transaction yet: its lock file is not open
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with opened.transaction():
        assert not lock_is_free(tmp_path / "ledger.db-lock")
    opened.close()
    assert not (elsewhere / "ledger.db-lock").exists()


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_something_else_at_the_lock_files_name_is_left_alone(tmp_path, kind):
    folder = tmp_path / ".kx"
    folder.mkdir()
    lock = folder / "ledger.db-lock"
    os.mkfifo(lock) if kind == "fifo" else lock.mkdir()  # a FIFO opened for reading would wait for a writer
    opened = Ledger.open(folder / "ledger.db", create=True)
    with opened.transaction():
        opened.conn.execute("INSERT INTO kx_meta (key, value) VALUES ('probe', '1')")
    assert opened.meta("probe") == "1" and opened.writers._fd is None
    opened.close()


def test_a_ledger_left_unclosed_lets_its_lock_file_go(tmp_path):
    import gc

    def open_and_write() -> int:
        opened = Ledger.open(tmp_path / "ledger.db", create=True)
        with opened.transaction():
            pass
        return opened.writers._fd

    fd = open_and_write()  # the ledger is gone, not closed: as a command run in a long-lived process leaves it
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)
