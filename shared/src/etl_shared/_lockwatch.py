"""The lock-wait watch: while a job runs, a statement of it that has waited for a lock longer than a few
seconds is logged together with the session that blocks it.

``lock_timeout`` (ETL_LOCK_TIMEOUT_S) ends such a wait with SQLSTATE 55P03 and the job with exit 5,
but only after the whole timeout, and the error names no blocker. The watch is a thread with its own
connection that polls the server's views of who waits for whom and logs, once the wait passes
ETL_LOCK_WAIT_LOG_S (and every 30 s after while it goes on), a warning with the waiting statement and
the blocker's process id, user, application and statement: what an operator needs to decide whether to
end the other session or let the job time out. It reads only; it never cancels anything.

- PostgreSQL: ``pg_stat_activity`` with ``pg_blocking_pids()`` and ``pg_locks`` (lock mode, relation and
  ``waitstart``). Any role sees the blocker's pid, user and application name; its statement only with
  ``pg_read_all_stats`` (otherwise "<insufficient privilege>").
- CockroachDB: ``crdb_internal.cluster_locks`` (a waiter is a row with ``granted = false``, the holder
  the granted row of the same key) with ``cluster_transactions`` and ``cluster_sessions``. These need the
  system privilege VIEWACTIVITYREDACTED (the database setup grants it; constants in statements redacted).

The job's sessions are found by application name: each job's connections carry its zone and process id
(``etl-<zone>:<pid>``, dbt's ``etl-<zone>-dbt:<pid>``), so parallel staging jobs report their own waits
only. A watch that cannot read the views says so once and goes on polling (the timeout still holds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from ._db import Database, is_cockroachdb

_log = logging.getLogger(__name__)

REPEAT_S = 30.0  # a wait that goes on is logged again this often

_POSTGRES_WAITS = """
select
    waiting.pid,
    waiting.application_name,
    extract(epoch from now() - coalesce(wait.waitstart, waiting.query_start))::float8 as waited_s,
    left(waiting.query, 500),
    blocker.pid,
    blocker.usename,
    blocker.application_name,
    blocker.state,
    left(blocker.query, 500),
    extract(epoch from now() - blocker.xact_start)::float8 as blocker_transaction_s,
    wait.mode,
    wait.relation::regclass::text
from pg_stat_activity as waiting
inner join pg_locks as wait on wait.pid = waiting.pid and not wait.granted
cross join lateral unnest(pg_blocking_pids(waiting.pid)) as blocking (pid)
left join pg_stat_activity as blocker on blocker.pid = blocking.pid
where waiting.application_name = any(%(applications)s)
    and waiting.datname = current_database()
    and coalesce(wait.waitstart, waiting.query_start) < now() - %(after_s)s * interval '1 second'
order by waiting.pid, blocker.pid
"""

_COCKROACH_WAITS = """
select
    waiter_session.pg_backend_pid,
    waiter_txn.application_name,
    extract(epoch from waiter.duration)::float8 as waited_s,
    left(waiter_session.active_queries, 500),
    holder_session.pg_backend_pid,
    holder_session.user_name,
    holder_session.application_name,
    holder_session.status,
    left(coalesce(nullif(holder_session.active_queries, ''), holder_session.last_active_query), 500),
    extract(epoch from now() - holder_txn.start)::float8 as blocker_transaction_s,
    holder.lock_strength,
    holder.schema_name || '.' || holder.table_name
from crdb_internal.cluster_locks as waiter
inner join crdb_internal.cluster_locks as holder
    on holder.range_id = waiter.range_id and holder.lock_key = waiter.lock_key and holder.granted
inner join crdb_internal.cluster_transactions as waiter_txn on waiter_txn.id = waiter.txn_id
left join crdb_internal.cluster_sessions as waiter_session on waiter_session.session_id = waiter_txn.session_id
left join crdb_internal.cluster_transactions as holder_txn on holder_txn.id = holder.txn_id
left join crdb_internal.cluster_sessions as holder_session on holder_session.session_id = holder_txn.session_id
where not waiter.granted
    and waiter_txn.application_name = any(%(applications)s)
    and waiter.duration > %(after_s)s * interval '1 second'
order by 1 nulls last, 5 nulls last
"""


@dataclass(frozen=True)
class LockWait:
    """One statement of the job waiting for a lock, and one session it waits for."""

    pid: int | None
    application: str
    waited_s: float
    statement: str
    blocker_pid: int | None
    blocker_user: str | None
    blocker_application: str | None
    blocker_state: str | None
    blocker_statement: str | None
    blocker_transaction_s: float | None
    lock_mode: str | None
    relation: str | None

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.pid, self.blocker_pid, self.statement)


class LockWatch:
    """Polls for the job's lock waits from a connection of its own and logs them (module docstring).

    ``with LockWatch(db, applications=[...], after_s=5):`` around the job's work; ``check()`` polls once
    (the thread calls it every ``after_s / 2`` seconds, at least every second)."""

    def __init__(self, db: Database, *, applications: Sequence[str], after_s: float) -> None:
        # The watch's own connection: never waits long itself, and is not one of the watched.
        self.db = Database(
            db.url,
            application_name=f"{db.application_name}-lockwatch",
            attempts=1,
            lock_timeout_s=2,
            statement_timeout_s=10,
        )
        self.applications = list(applications)
        self.after_s = after_s
        self._logged: dict[tuple[Any, ...], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._query: str | None = None
        self._unreadable = False

    def __enter__(self) -> LockWatch:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="etl-lockwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._close()

    def _run(self) -> None:
        interval = max(1.0, min(self.after_s / 2, 5.0))
        while not self._stop.wait(interval):
            try:
                self.check()
            except Exception as exc:  # the watch must never end the job; the timeout still holds
                self._close()
                _log.debug("lock watch: poll failed: %s", exc)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                _log.debug("lock watch: closing its connection failed: %s", exc)

    def waits(self) -> list[LockWait]:
        """The job's statements waiting for a lock longer than ``after_s`` now, with their blockers."""
        if self._conn is None or self._conn.closed:
            self._conn = self.db.open_connection(autocommit=True)
            self._query = _COCKROACH_WAITS if is_cockroachdb(self._conn) else _POSTGRES_WAITS
        assert self._query is not None
        try:
            rows = self._conn.execute(
                self._query, {"applications": self.applications, "after_s": self.after_s}
            ).fetchall()
        except psycopg.errors.InsufficientPrivilege as exc:
            if not self._unreadable:
                self._unreadable = True
                _log.warning(
                    "lock watch: this role may not read who holds the locks (%s); a lock wait ends at"
                    " ETL_LOCK_TIMEOUT_S without naming the blocker (docs/database-setup.md)",
                    str(exc).strip().splitlines()[0],
                )
            return []
        return [LockWait(*row) for row in rows]

    def check(self) -> list[LockWait]:
        """Poll once; log each wait first seen, and each one that goes on every REPEAT_S; return the
        waits logged now."""
        now = time.monotonic()
        current = self.waits()
        logged = []
        for wait in current:
            last = self._logged.get(wait.key)
            if last is not None and now - last < REPEAT_S:
                continue
            self._logged[wait.key] = now
            logged.append(wait)
            _log.warning(
                "a statement of this job has waited %.0fs for a lock (%s on %s) held by session pid %s"
                " (user %s, application %r, %s, transaction open %ss): %s; it ends at ETL_LOCK_TIMEOUT_S"
                " unless the blocker finishes first (docs/runbook.md, 'A lock or statement timeout')",
                wait.waited_s,
                wait.lock_mode or "a lock",
                wait.relation or "a row",
                wait.blocker_pid,
                wait.blocker_user,
                wait.blocker_application,
                wait.blocker_state or "state unknown",
                "?" if wait.blocker_transaction_s is None else f"{wait.blocker_transaction_s:.0f}",
                (wait.blocker_statement or "statement not visible").strip()[:300],
                extra={
                    "lock_wait": {
                        "pid": wait.pid,
                        "application": wait.application,
                        "waited_s": round(wait.waited_s, 1),
                        "statement": wait.statement[:300] if wait.statement else None,
                        "lock_mode": wait.lock_mode,
                        "relation": wait.relation,
                    },
                    "blocker": {
                        "pid": wait.blocker_pid,
                        "user": wait.blocker_user,
                        "application": wait.blocker_application,
                        "state": wait.blocker_state,
                        "statement": wait.blocker_statement,
                        "transaction_s": wait.blocker_transaction_s,
                    },
                },
            )
        seen = {w.key for w in current}
        for key in [k for k in self._logged if k not in seen]:
            del self._logged[key]
        return logged
