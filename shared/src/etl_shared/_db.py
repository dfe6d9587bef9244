"""Database access with psycopg 3: connections, retried transactions, COPY batch writing.

CockroachDB runs every transaction SERIALIZABLE and asks clients to retry on SQLSTATE 40001; the
embedded PostgreSQL is configured the same way. All writes go through :meth:`Database.transaction` (or a
:class:`Session`'s), which also reconnects when the connection is lost (a node restarting in a rolling
upgrade) and runs the transaction again from the start; docs/cockroachdb.md, "Reconnect and retry".
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from ._errors import (
    ConfigurationError,
    DatabaseError,
    is_connection_lost,
    is_outcome_unknown,
    is_timeout,
    is_transient_database_error,
    timeout_advice,
)
from ._logging import redact, register_url_password, split_url_credentials

_log = logging.getLogger(__name__)
T = TypeVar("T")


def session_options(*, lock_timeout_s: float = 0, statement_timeout_s: float = 0) -> str:
    """The ``options`` startup parameter that sets the job's timeouts on a new connection:
    ``-c lock_timeout=<ms> -c statement_timeout=<ms>`` (0 = none). PostgreSQL and CockroachDB both
    take session variables this way (CockroachDB's connection parameters page, ``options``), so the
    timeouts hold from the first statement of every connection, a replaced one included, and need no
    ``SET`` that a reconnect could lose. Milliseconds as plain integers: both servers read them so."""
    parts = []
    if lock_timeout_s:
        parts.append(f"-c lock_timeout={round(lock_timeout_s * 1000)}")
    if statement_timeout_s:
        parts.append(f"-c statement_timeout={round(statement_timeout_s * 1000)}")
    return " ".join(parts)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and errors, whatever characters the password
    holds (an unencoded ``@``, ``/``, ``?`` or ``#`` too: see split_url_credentials)."""
    parts = split_url_credentials(url)
    if parts is None:
        return url
    return f"{parts[0]}***{parts[2]}"


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
        lock_timeout_s: float = 0,
        statement_timeout_s: float = 0,
    ) -> None:
        self.url = url
        register_url_password(url)  # whatever a driver's error shows of it: redact() hides
        self.application_name = application_name
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.connect_timeout_s = connect_timeout_s
        #: server-side timeouts of every connection (0 = none); a job sets them from its settings
        self.lock_timeout_s = lock_timeout_s
        self.statement_timeout_s = statement_timeout_s

    def __repr__(self) -> str:
        return f"Database({redact_url(self.url)!r})"

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.attempts, self.base_delay_s, self.max_delay_s)

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        try:
            return self.open_connection(autocommit=autocommit)
        except (psycopg.ProgrammingError, UnicodeDecodeError) as exc:  # the URL is unreadable: no retry helps
            raise ConfigurationError(
                f"invalid database URL {redact_url(self.url)}: {redact(_first_line(exc))}"
                " (percent-encode @ : / ? # % and spaces in the password)"
            ) from None
        except psycopg.OperationalError as exc:
            raise DatabaseError(
                f"cannot connect to {redact_url(self.url)}: {redact(_first_line(exc))}"
            ) from exc

    def open_connection(self, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        """A new connection; psycopg's own error when that fails (the retry loops tell a server that is
        restarting from one that refuses)."""
        options = self.options
        return psycopg.connect(
            self.url,
            autocommit=autocommit,
            application_name=self.application_name,
            connect_timeout=self.connect_timeout_s,
            **({"options": options} if options else {}),
        )

    @property
    def options(self) -> str:
        """The ``options`` startup parameter of this database's connections (see session_options),
        after any ``options`` the URL itself carries (a later ``-c`` of the same name wins)."""
        ours = session_options(
            lock_timeout_s=self.lock_timeout_s, statement_timeout_s=self.statement_timeout_s
        )
        if not ours:
            return ""
        try:
            given = str(conninfo_to_dict(self.url).get("options") or "")
        except psycopg.ProgrammingError:
            given = ""
        return f"{given} {ours}".strip()

    def session(self, *, autocommit: bool = False) -> Session:
        """A connection kept for many transactions and replaced when it is lost (see :class:`Session`)."""
        return Session(self, autocommit=autocommit)

    def transaction(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        name: str = "transaction",
        idempotent: bool = True,
    ) -> T:
        """Run ``work(conn)`` in its own transaction on a fresh connection, retried from the start with
        jittered exponential backoff on serialization failures (40001), deadlocks, and a lost connection
        (08xxx, 57P01: then on a new connection).

        ``work`` must be safe to run again from the start. With ``idempotent`` (the default) it must also
        be safe to run again after it *did* commit: the outcome of a COMMIT that fails with 40003 or
        loses its connection is unknown, and the transaction is then run again (so ``insert ... on
        conflict do nothing``, upserts, or a check whether the earlier attempt committed). With
        ``idempotent=False`` such an outcome raises :class:`DatabaseError` instead of retrying."""
        with self.session() as session:
            return session.transaction(work, name=name, idempotent=idempotent)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transaction is tried: ``attempts`` in all, jittered exponential
    backoff from ``base_delay_s`` up to ``max_delay_s`` between them."""

    attempts: int = 10
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt ``attempt`` (1-based)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311


class Session:
    """One connection of a :class:`Database` used for many transactions (a pull's batches: opening a
    connection per batch costs more than the batch), opened on first use and replaced when it is lost.

    ``setup`` runs on every new connection (session settings, which a replaced connection would not
    have)."""

    def __init__(
        self,
        db: Database,
        *,
        autocommit: bool = False,
        setup: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> None:
        self.db = db
        self.autocommit = autocommit
        self.setup = setup
        self._conn: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        """The session's connection, a new one when there is none or the last one was lost."""
        if self._conn is None or self._conn.closed:
            self.discard()
            conn = self.db.open_connection(autocommit=self.autocommit)
            try:
                if self.setup is not None:
                    self.setup(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def discard(self) -> None:
        """Forget the connection (closing what is left of it): the next use opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    close = discard

    def _lost(self, exc: psycopg.Error) -> None:
        self.discard()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def transaction(
        self,
        work: Callable[[psycopg.Connection[Any]], T],
        *,
        name: str = "transaction",
        idempotent: bool = True,
    ) -> T:
        """As :meth:`Database.transaction`, on this session's connection."""
        retrying = _Retrying(
            name, self.db.retry_policy, idempotent=idempotent, target=redact_url(self.db.url)
        )
        return retrying.run(self.connection, self._lost, _in_transaction(work))

    def execute(self, statement: Any, params: Any = None, *, name: str) -> None:
        """Run one statement in its own implicit transaction (the session must be ``autocommit``): DDL,
        which must not share a transaction with anything (CockroachDB's ``autocommit_before_ddl``).

        The statement must be idempotent: a lost connection, 40003 or XXA00 leaves its outcome unknown,
        and it is then run again (with a warning)."""
        if not self.autocommit:
            raise ValueError("Session.execute runs statements alone: open the session with autocommit=True")

        def once(conn: psycopg.Connection[Any], attempt: _Attempt) -> None:
            attempt.committing = True  # an implicit transaction commits with the statement itself
            conn.execute(statement, params)

        retrying = _Retrying(name, self.db.retry_policy, idempotent=True, target=redact_url(self.db.url))
        retrying.run(self.connection, self._lost, once)


def run_transaction(
    conn: psycopg.Connection[Any],
    work: Callable[[psycopg.Connection[Any]], T],
    *,
    name: str = "transaction",
    attempts: int = 6,
    base_delay_s: float = 0.05,
    max_delay_s: float = 2.0,
    idempotent: bool = True,
) -> T:
    """Run ``work`` inside ``conn.transaction()``, retrying transient failures on the same
    connection while it is usable. The caller owns ``conn``, so a lost connection is not replaced
    here: it raises :class:`DatabaseError` (use :meth:`Database.transaction` or a :class:`Session` to
    reconnect). ``idempotent`` as for :meth:`Database.transaction`."""

    def lost(exc: psycopg.Error) -> None:
        raise DatabaseError(
            f"{name}: connection lost: {exc.sqlstate or 'no SQLSTATE'} {_first_line(exc)}"
        ) from exc

    retrying = _Retrying(name, RetryPolicy(attempts, base_delay_s, max_delay_s), idempotent=idempotent)
    return retrying.run(lambda: conn, lost, _in_transaction(work))


class _Attempt:
    """What one attempt got to: ``committing`` once the work is done and only the commit is left (a
    failure from then on leaves the outcome unknown)."""

    committing = False


def _in_transaction(
    work: Callable[[psycopg.Connection[Any]], T],
) -> Callable[[psycopg.Connection[Any], _Attempt], T]:
    def once(conn: psycopg.Connection[Any], attempt: _Attempt) -> T:
        with conn.transaction():
            result = work(conn)
            attempt.committing = True  # leaving the block sends COMMIT
        return result

    return once


class _Retrying:
    """The retry loop shared by :meth:`Session.transaction`, :meth:`Session.execute` and
    :func:`run_transaction`: which failures are tried again, on which connection, after what pause.

    - 40001, 40P01, 53xxx: the transaction did not commit; again, on the same connection.
    - a lost connection (08xxx, 57P01-57P03, a closed socket) or a failed reconnect: ``lost()`` (a new
      connection next time); if it happened while committing, as for 40003 below.
    - 40003, XXA00: the outcome is unknown. Idempotent work is run again; other work raises
      :class:`DatabaseError` saying so, since a retry could apply it twice.
    - anything else is raised as it is.
    """

    def __init__(self, name: str, policy: RetryPolicy, *, idempotent: bool, target: str = "") -> None:
        self.name = name
        self.policy = policy
        self.idempotent = idempotent
        self.target = target

    def run(
        self,
        connection: Callable[[], psycopg.Connection[Any]],
        lost: Callable[[psycopg.Error], None],
        once: Callable[[psycopg.Connection[Any], _Attempt], T],
    ) -> T:
        attempts = self.policy.attempts
        for number in range(1, attempts + 1):
            attempt = _Attempt()
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = connection()
                return once(conn, attempt)
            except psycopg.Error as exc:
                what = self._classify(exc, conn, attempt)
                sqlstate = exc.sqlstate or "none"
                if what == "unknown" and not self.idempotent:
                    raise DatabaseError(
                        f"{self.name}: the outcome is unknown (SQLSTATE {sqlstate}: {_first_line(exc)}): it may"
                        " or may not have committed, and it is not retried because running it twice is not"
                        " safe; check whether it took effect before running it again"
                    ) from exc
                if what == "fatal":
                    if is_timeout(exc):
                        raise DatabaseError(
                            f"{self.name}: SQLSTATE {sqlstate}: {_first_line(exc)}: {timeout_advice(str(exc))}"
                        ) from exc
                    raise
                if what in ("lost", "unknown") and (conn is None or conn.closed):
                    lost(exc)
                if number == attempts:
                    if conn is None:
                        raise DatabaseError(
                            f"{self.name}: cannot connect{' to ' + self.target if self.target else ''}"
                            f" after {attempts} attempts: {_first_line(exc)}"
                        ) from exc
                    raise DatabaseError(
                        f"{self.name}: gave up after {attempts} attempts: {exc.sqlstate} {_first_line(exc)}"
                    ) from exc
                delay = self.policy.delay(number)
                self._log("connect" if conn is None else what, exc, sqlstate, number, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _classify(exc: psycopg.Error, conn: psycopg.Connection[Any] | None, attempt: _Attempt) -> str:
        if is_outcome_unknown(exc):
            return "unknown"
        if conn is None or is_connection_lost(exc, conn):
            return "unknown" if attempt.committing else "lost"
        if is_transient_database_error(exc):
            return "transient"
        return "fatal"

    def _log(self, what: str, exc: psycopg.Error, sqlstate: str, number: int, delay: float) -> None:
        left = self.policy.attempts - 1
        extra = {"sqlstate": sqlstate, "attempt": number, "transaction": self.name}
        if what == "connect":
            _log.warning(
                "%s: cannot connect (SQLSTATE %s: %s); retry %d/%d in %.2fs",
                self.name,
                sqlstate,
                _first_line(exc),
                number,
                left,
                delay,
                extra=extra,
            )
        elif what == "lost":
            _log.warning(
                "%s: connection lost (SQLSTATE %s: %s), reconnecting; retry %d/%d in %.2fs",
                self.name,
                sqlstate,
                _first_line(exc),
                number,
                left,
                delay,
                extra=extra,
            )
        elif what == "unknown":
            _log.warning(
                "%s: outcome unknown (SQLSTATE %s: %s), it may have committed; running it again"
                " (it is idempotent); retry %d/%d in %.2fs",
                self.name,
                sqlstate,
                _first_line(exc),
                number,
                left,
                delay,
                extra=extra,
            )
        else:
            _log.warning(
                "%s: transient failure %s, retry %d/%d in %.2fs",
                self.name,
                sqlstate,
                number,
                left,
                delay,
                extra=extra,
            )


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
