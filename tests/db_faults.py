"""Faults of a real database for the reconnect and retry tests: connections killed by the server, and
commits whose outcome the client does not learn. Nothing is mocked: the server does each of these."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg

from etl_shared import Database, Session

T = TypeVar("T")

#: a server-side error with CockroachDB's "statement completion unknown" SQLSTATE
RAISE_40003 = "do $$ begin raise exception 'result is ambiguous (emulated)' using errcode = '40003'; end $$"


def terminate(admin_url: str, url: str, application_name: str) -> int:
    """Terminate, from a connection of its own, every backend of ``application_name`` connected to the
    database of ``url`` (what a node restart does to them); returns how many there were."""
    database = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        found = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = %s and datname = %s and pid <> pg_backend_pid()",
            (application_name, database),
        ).fetchall()
    return len(found)


class CommittedButUnknownSession(Session):
    """A session whose every transaction commits its first attempt and then hears 40003, as a client of
    CockroachDB does when a node fails while acknowledging the commit: the retry runs against the
    committed result of the first attempt."""

    def transaction(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        name: str = "transaction",
        idempotent: bool = True,
    ) -> T:
        first = True

        def committed_then_unknown(conn: psycopg.Connection[Any]) -> T:
            nonlocal first
            result = work(conn)
            if first:
                first = False
                conn.execute("commit")  # the work is in the database now...
                conn.execute(RAISE_40003)  # ...and the client is told the outcome is unknown
            return result

        return super().transaction(committed_then_unknown, name=name, idempotent=idempotent)


class CommittedButUnknownDatabase(Database):
    """A :class:`Database` whose transactions all go through :class:`CommittedButUnknownSession`."""

    def session(self, *, autocommit: bool = False) -> Session:
        return CommittedButUnknownSession(self, autocommit=autocommit)
