"""A lease lock held in a database row (CockroachDB has no advisory locks).

Acquiring reads the row with ``SELECT ... FOR UPDATE`` and writes the holder and a lease expiry in
one short transaction; the lock is then held without an open transaction, so DDL and batched writes
can run in between. A lease whose holder died is taken over once it expires, or at once when the
holder was a process on this host that no longer exists (a killed local run).
"""

from __future__ import annotations

import functools
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


@functools.cache
def process_token() -> str:
    """A random token of this process: tells it from an earlier process with the same pid (pid 1 of a
    restarted container)."""
    return uuid.uuid4().hex[:8]


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{process_token()}.{uuid.uuid4().hex[:8]}"


def _holder_is_dead_local_process(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text, _, tail = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        # this process's pid but another process's token: an earlier process of the same container
        # (pid 1 again after a restart), gone
        return not tail.startswith(process_token())
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseBusy(DatabaseError):
    """The lease was still held by another live holder when the wait ended (exit 5: rerun later)."""

    def __init__(self, message: str, *, holder: str, since: Any) -> None:
        super().__init__(message)
        self.holder = holder
        self.since = since


class LeaseLost(DatabaseError):
    """A lease this holder held expired and was taken over by another holder."""


#: While waiting, the holder is logged when the wait starts, when the holder changes, and this often.
_WAIT_LOG_EVERY_S = 30.0


class LeaseLock:
    """``with LeaseLock(db, "migrations"):`` — waits up to ``wait_s`` for the lease.

    Its transactions are safe to run again after an unknown outcome (40003, a connection lost while
    committing): acquiring finds its own holder id and keeps the lease; renewing and releasing only
    touch a row this holder holds."""

    def __init__(
        self,
        db: Database,
        name: str,
        *,
        lease_s: int = 120,
        wait_s: float = 300.0,
        holder: str | None = None,
    ) -> None:
        self.db = db
        self.name = name
        self.lease_s = lease_s
        self.wait_s = wait_s
        #: ``host:pid:...`` (holder_id's form: a dead local holder is recognised by it)
        self.holder = holder or holder_id()
        #: the holder this lock took the lease over from (expired, or a dead local process), if any
        self.took_over: str | None = None

    def _try_acquire(self, conn: psycopg.Connection[Any]) -> tuple[str, Any] | None:
        conn.execute("insert into ops.locks (name) values (%s) on conflict (name) do nothing", (self.name,))
        row = conn.execute(
            "select holder, expires_at > now(), acquired_at from ops.locks where name = %s for update",
            (self.name,),
        ).fetchone()
        assert row is not None
        current, live, since = row
        if current == self.holder:
            return None  # an earlier attempt took it and committed, though its commit looked failed
        if current and live and not _holder_is_dead_local_process(current):
            return current, since
        self.took_over = current
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
        logged: tuple[str | None, float] = (None, 0.0)
        while True:
            found = self.db.transaction(self._try_acquire, name=f"lock {self.name}")
            if found is None:
                return
            other, since = found
            if time.monotonic() >= deadline:
                raise LeaseBusy(
                    f"lock {self.name!r} still held by {other} (since {since}) after {self.wait_s:.0f}s",
                    holder=other,
                    since=since,
                )
            if other != logged[0] or time.monotonic() - logged[1] >= _WAIT_LOG_EVERY_S:
                _log.info(
                    "lock %s held by %s since %s; waiting up to %.0fs",
                    self.name,
                    other,
                    since,
                    self.wait_s,
                    extra={"lock": self.name, "holder": other, "since": str(since)},
                )
                logged = (other, time.monotonic())
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
                raise LeaseLost(f"lock {self.name!r} was lost (its lease expired and was taken over)")

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
