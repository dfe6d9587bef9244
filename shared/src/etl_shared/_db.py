"""Database access with psycopg 3: connections, retried transactions, COPY batch writing.

CockroachDB runs every transaction SERIALIZABLE and asks clients to retry on SQLSTATE 40001; the
embedded PostgreSQL is configured the same way. All writes go through :meth:`Database.transaction`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from ._errors import DatabaseError, is_transient_database_error

_log = logging.getLogger(__name__)
T = TypeVar("T")


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url


class Database:
    """A connection factory for one database, plus the retrying transaction helper."""

    def __init__(
        self,
        url: str,
        *,
        application_name: str = "etl",
        attempts: int = 10,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        connect_timeout_s: int = 10,
    ) -> None:
        self.url = url
        self.application_name = application_name
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.connect_timeout_s = connect_timeout_s

    def __repr__(self) -> str:
        return f"Database({redact_url(self.url)!r})"

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url,
                autocommit=autocommit,
                application_name=self.application_name,
                connect_timeout=self.connect_timeout_s,
            )
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to {redact_url(self.url)}: {_first_line(exc)}") from exc

    def transaction(self, work: Callable[[psycopg.Connection[Any]], T], *, name: str = "transaction") -> T:
        """Run ``work(conn)`` in its own transaction on a fresh connection, retrying on
        serialization failures (40001), deadlocks and dropped connections with jittered
        exponential backoff. ``work`` must be safe to run again from the start."""
        with self.connect() as conn:
            return run_transaction(
                conn,
                work,
                name=name,
                attempts=self.attempts,
                base_delay_s=self.base_delay_s,
                max_delay_s=self.max_delay_s,
            )


def run_transaction(
    conn: psycopg.Connection[Any],
    work: Callable[[psycopg.Connection[Any]], T],
    *,
    name: str = "transaction",
    attempts: int = 6,
    base_delay_s: float = 0.05,
    max_delay_s: float = 2.0,
) -> T:
    """Run ``work`` inside ``conn.transaction()``, retrying transient failures on the same
    connection while it is usable."""
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                return work(conn)
        except psycopg.Error as exc:
            if not is_transient_database_error(exc) or conn.closed:
                if conn.closed and is_transient_database_error(exc):
                    raise DatabaseError(f"{name}: connection lost: {_first_line(exc)}") from exc
                raise
            if attempt == attempts:
                raise DatabaseError(
                    f"{name}: gave up after {attempts} attempts: {exc.sqlstate} {_first_line(exc)}"
                ) from exc
            delay = min(max_delay_s, base_delay_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311
            _log.warning(
                "%s: transient failure %s, retry %d/%d in %.2fs",
                name,
                exc.sqlstate,
                attempt,
                attempts - 1,
                delay,
                extra={"sqlstate": exc.sqlstate, "attempt": attempt},
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def is_cockroachdb(conn: psycopg.Connection[Any]) -> bool:
    """True when the server is CockroachDB (dialect-specific migrations, dbt's hidden-column macro)."""
    row = conn.execute("select version()").fetchone()
    return bool(row and "cockroachdb" in str(row[0]).lower())


class CopyWriter:
    """Writes rows into one table with ``COPY ... FROM STDIN`` (never row-by-row INSERT).

    Values are passed as Python objects; psycopg encodes them (a ``str`` holding JSON is accepted
    by a jsonb column)."""

    def __init__(self, table: str, columns: Sequence[str]) -> None:
        schema, _, name = table.rpartition(".")
        ident = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        self.statement = sql.SQL("copy {} ({}) from stdin").format(
            ident, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )

    def write(self, conn: psycopg.Connection[Any], rows: Iterable[Sequence[Any]]) -> int:
        count = 0
        with conn.cursor() as cur, cur.copy(self.statement) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
