"""A lease lock held in a database row (CockroachDB has no advisory locks).

Acquiring reads the row with ``SELECT ... FOR UPDATE`` and writes the holder and a lease expiry in
one short transaction; the lock is then held without an open transaction, so DDL and batched writes
can run in between. A lease whose holder died is taken over once it expires, or at once when the
holder was a process on this host that no longer exists (a killed local run).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from types import TracebackType
from typing import Any

import psycopg

from ._db import Database
from ._errors import DatabaseError

_log = logging.getLogger(__name__)

BOOTSTRAP_SQL = """
create schema if not exists ops;
create table if not exists ops.locks (
    name text primary key,
    holder text,
    acquired_at timestamptz,
    expires_at timestamptz
)
"""


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseLock:
    """``with LeaseLock(db, "migrations"):`` — waits up to ``wait_s`` for the lease.

    Its transactions are safe to run again after an unknown outcome (40003, a connection lost while
    committing): acquiring finds its own holder id and keeps the lease; renewing and releasing only
    touch a row this holder holds."""

    def __init__(self, db: Database, name: str, *, lease_s: int = 120, wait_s: float = 300.0) -> None:
        self.db = db
        self.name = name
        self.lease_s = lease_s
        self.wait_s = wait_s
        self.holder = holder_id()

    def _try_acquire(self, conn: psycopg.Connection[Any]) -> str | None:
        conn.execute("insert into ops.locks (name) values (%s) on conflict (name) do nothing", (self.name,))
        row = conn.execute(
            "select holder, expires_at > now() from ops.locks where name = %s for update", (self.name,)
        ).fetchone()
        assert row is not None
        current, live = row
        if current == self.holder:
            return None  # an earlier attempt took it and committed, though its commit looked failed
        if current and live and not _holder_is_dead_local_process(current):
            return current
        if current:
            _log.warning("lock %s: taking over the expired or orphaned lease of %s", self.name, current)
        conn.execute(
            "update ops.locks set holder = %s, acquired_at = now(),"
            " expires_at = now() + %s * interval '1 second' where name = %s",
            (self.holder, self.lease_s, self.name),
        )
        return None

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait_s
        delay = 0.1
        while True:
            other = self.db.transaction(self._try_acquire, name=f"lock {self.name}")
            if other is None:
                return
            if time.monotonic() >= deadline:
                raise DatabaseError(f"lock {self.name!r} still held by {other} after {self.wait_s:.0f}s")
            _log.info("lock %s held by %s; waiting", self.name, other)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def renew(self) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            cur = conn.execute(
                "update ops.locks set expires_at = now() + %s * interval '1 second'"
                " where name = %s and holder = %s",
                (self.lease_s, self.name, self.holder),
            )
            if cur.rowcount != 1:
                raise DatabaseError(f"lock {self.name!r} was lost (its lease expired and was taken over)")

        self.db.transaction(work, name=f"renew lock {self.name}")

    def release(self) -> None:
        self.db.transaction(
            lambda conn: conn.execute(
                "update ops.locks set holder = null, expires_at = null where name = %s and holder = %s",
                (self.name, self.holder),
            ),
            name=f"release lock {self.name}",
        )

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.release()
        except Exception:
            if exc is None:
                raise
            _log.exception("could not release lock %s", self.name)
