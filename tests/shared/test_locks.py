"""The lease lock held in ``ops.locks`` (CockroachDB has no advisory locks)."""

from __future__ import annotations

import logging
import socket
import subprocess
from typing import Any

import psycopg
import pytest

from etl_shared import Database, DatabaseError, LeaseLock
from etl_shared._locks import BOOTSTRAP_SQL

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url: str) -> Database:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in BOOTSTRAP_SQL.split(";"):
            conn.execute(statement)
    return Database(database_url, base_delay_s=0.001)


def _lock_row(db: Database, name: str) -> tuple[Any, ...] | None:
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            "select holder, expires_at > now() from ops.locks where name = %s", (name,)
        ).fetchone()


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_acquire_and_release(db: Database) -> None:
    with LeaseLock(db, "loads", lease_s=60) as lock:
        assert lock.holder.startswith(socket.gethostname() + ":")
        assert _lock_row(db, "loads") == (lock.holder, True)
    assert _lock_row(db, "loads") == (None, None)


def test_released_lock_can_be_taken_again(db: Database) -> None:
    with LeaseLock(db, "loads"):
        pass
    with LeaseLock(db, "loads", wait_s=0) as second:
        assert _lock_row(db, "loads") == (second.holder, True)


def test_locks_with_different_names_are_independent(db: Database) -> None:
    with LeaseLock(db, "a") as first, LeaseLock(db, "b", wait_s=0) as second:
        assert _lock_row(db, "a") == (first.holder, True)
        assert _lock_row(db, "b") == (second.holder, True)


def test_second_holder_times_out_naming_the_holder(db: Database) -> None:
    first = LeaseLock(db, "loads", lease_s=60)
    first.acquire()
    second = LeaseLock(db, "loads", wait_s=0.2)
    with pytest.raises(DatabaseError, match="still held by") as info:
        second.acquire()
    assert first.holder in str(info.value)
    assert _lock_row(db, "loads") == (first.holder, True)
    # Releasing by a non-holder does not free someone else's lease.
    second.release()
    assert _lock_row(db, "loads") == (first.holder, True)
    first.release()
    assert _lock_row(db, "loads") == (None, None)


def test_expired_lease_is_taken_over(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    first = LeaseLock(db, "loads", lease_s=60)
    first.acquire()
    with db.connect(autocommit=True) as conn:
        conn.execute("update ops.locks set expires_at = now() - interval '1 minute' where name = 'loads'")

    second = LeaseLock(db, "loads", wait_s=0)
    with caplog.at_level(logging.WARNING, logger="etl_shared._locks"):
        second.acquire()

    assert _lock_row(db, "loads") == (second.holder, True)
    assert any(first.holder in r.getMessage() and "taking over" in r.getMessage() for r in caplog.records)
    # The old holder finds out when it renews: its lease was stolen.
    with pytest.raises(DatabaseError, match="was lost"):
        first.renew()
    # ... and its release leaves the new holder's lease alone.
    first.release()
    assert _lock_row(db, "loads") == (second.holder, True)


def test_lease_of_a_dead_local_process_is_taken_over_at_once(db: Database) -> None:
    dead_holder = f"{socket.gethostname()}:{_dead_pid()}:deadbeef"
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "insert into ops.locks values ('loads', %s, now(), now() + interval '1 hour')", (dead_holder,)
        )
    lock = LeaseLock(db, "loads", wait_s=0)
    lock.acquire()
    assert _lock_row(db, "loads") == (lock.holder, True)


def test_live_lease_of_another_host_is_respected(db: Database) -> None:
    foreign = f"other-host-{socket.gethostname()}:{_dead_pid()}:cafe0001"
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "insert into ops.locks values ('loads', %s, now(), now() + interval '1 hour')", (foreign,)
        )
    with pytest.raises(DatabaseError, match=foreign):
        LeaseLock(db, "loads", wait_s=0).acquire()


def test_renew_extends_the_lease(db: Database) -> None:
    lock = LeaseLock(db, "loads", lease_s=5)
    lock.acquire()
    lock.lease_s = 3600
    lock.renew()
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select expires_at > now() + interval '30 minutes' from ops.locks where name = 'loads'"
        ).fetchone()
    assert row == (True,)


def test_renew_after_release_raises(db: Database) -> None:
    lock = LeaseLock(db, "loads")
    lock.acquire()
    lock.release()
    with pytest.raises(DatabaseError, match="was lost"):
        lock.renew()


def test_lock_is_released_when_the_block_raises(db: Database) -> None:
    with pytest.raises(RuntimeError, match="inside"), LeaseLock(db, "loads"):
        raise RuntimeError("inside")
    assert _lock_row(db, "loads") == (None, None)


def test_a_holder_with_this_pid_but_another_process_token_is_dead(db: Database) -> None:
    """An earlier process with this pid (pid 1 of a restarted container) left the lease: taken over at once."""
    import os
    import socket

    earlier = f"{socket.gethostname()}:{os.getpid()}:deadbeef.0123abcd"
    LeaseLock(db, "loads").acquire()  # creates the row
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "update ops.locks set holder = %s, expires_at = now() + interval '1 hour' where name = 'loads'",
            (earlier,),
        )
    lock = LeaseLock(db, "loads", wait_s=0)
    lock.acquire()
    assert lock.took_over == earlier
    assert _lock_row(db, "loads") == (lock.holder, True)


def test_a_busy_lease_names_its_holder_and_since_when(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    from etl_shared import LeaseBusy

    first = LeaseLock(db, "loads", lease_s=60, holder="elsewhere:1:job 42")
    first.acquire()
    with caplog.at_level("INFO"), pytest.raises(LeaseBusy) as info:
        LeaseLock(db, "loads", wait_s=0.3).acquire()
    assert info.value.holder == "elsewhere:1:job 42" and info.value.since is not None
    assert f"since {info.value.since}" in str(info.value)
    waiting = [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]
    assert waiting and waiting[0].startswith("lock loads held by elsewhere:1:job 42 since ")
    first.release()
