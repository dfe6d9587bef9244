"""The project's exception hierarchy and its one mapping to process exit codes.

Every error says whether a rerun can help: operators (and Control-M's rerun policy) act on the exit
code alone. See docs/exit-codes.md.
"""

from __future__ import annotations

from typing import Any

import psycopg

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_CONFIGURATION = 2
EXIT_SOURCE = 3
EXIT_DATA_QUALITY = 4
EXIT_DATABASE = 5


class EtlError(Exception):
    """Root of every error the platform raises on purpose."""

    exit_code: int = EXIT_UNEXPECTED
    retryable: bool = False
    #: the source and entity the error concerns, when one does: the job's ERROR line carries them
    source: str | None = None
    entity: str | None = None


class ConfigurationError(EtlError):
    """Settings, source configuration or command-line usage is wrong; fix it before rerunning."""

    exit_code = EXIT_CONFIGURATION


class SourceError(EtlError):
    """A source could not be read."""

    exit_code = EXIT_SOURCE


class SourceTransientError(SourceError):
    """The source failed in a way a later rerun may not see (timeouts, 429/5xx, resets)."""

    retryable = True


class SourceFatalError(SourceError):
    """The source answered, but with something unusable (bad credentials, 404, malformed data)."""


class DataQualityError(EtlError):
    """A data-quality gate failed: data was quarantined above its threshold or an error test failed."""

    exit_code = EXIT_DATA_QUALITY


class DatabaseError(EtlError):
    """The target database failed."""

    exit_code = EXIT_DATABASE
    retryable = True


class TransformError(EtlError):
    """A dbt model failed to build for a reason other than the database being unavailable."""


def exit_code_for(exc: BaseException) -> int:
    """Map any exception to the documented exit code (the only place this decision is made)."""
    if isinstance(exc, EtlError):
        return exc.exit_code
    if isinstance(exc, psycopg.OperationalError):
        return EXIT_DATABASE
    if isinstance(exc, psycopg.Error):
        return EXIT_DATABASE if _is_transient_sqlstate(getattr(exc, "sqlstate", None)) else EXIT_UNEXPECTED
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return EXIT_UNEXPECTED


def _is_transient_sqlstate(sqlstate: str | None) -> bool:
    # 40001 serialization failure, 40P01 deadlock, 08xxx connection, 57P01 admin shutdown,
    # 53xxx insufficient resources.
    if not sqlstate:
        return False
    return sqlstate in {"40001", "40P01", "57P01", "57P02", "57P03"} or sqlstate[:2] in {"08", "53"}


def is_transient_database_error(exc: BaseException) -> bool:
    """True when retrying the same transaction may succeed."""
    if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
        return True
    return isinstance(exc, psycopg.Error) and _is_transient_sqlstate(getattr(exc, "sqlstate", None))


#: 40003 statement_completion_unknown: CockroachDB could not tell whether the statement (or COMMIT)
#: took effect; XXA00: a schema change failed after its transaction committed (CockroachDB's "partly
#: committed"). After either, the work may or may not be in the database.
OUTCOME_UNKNOWN_SQLSTATES = frozenset({"40003", "XXA00"})


def is_outcome_unknown(exc: BaseException) -> bool:
    """True when the server could not say whether what failed was committed (40003, XXA00)."""
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) in OUTCOME_UNKNOWN_SQLSTATES


#: 57014 query_canceled (the server's ``statement_timeout``; PostgreSQL and CockroachDB alike) and
#: 55P03 lock_not_available (``lock_timeout``, or NOWAIT): the statement was stopped after waiting or
#: running too long. Not retried inside the job (it would wait as long again); the job ends with the
#: database exit code, and a rerun once the blocker is gone succeeds (docs/runbook.md).
TIMEOUT_SQLSTATES = frozenset({"57014", "55P03"})

#: The same failures as dbt reports them (it has only the message): PostgreSQL says "canceling
#: statement due to statement timeout" / "... lock timeout", "could not obtain lock"; CockroachDB
#: "query execution canceled due to statement timeout", "canceling statement due to lock timeout".
_TIMEOUT_HINTS = (
    "due to statement timeout",
    "due to lock timeout",
    "could not obtain lock",
    "lock timeout",
    "sqlstate 57014",
    "sqlstate 55p03",
)


def is_timeout(exc: BaseException) -> bool:
    """True for a statement stopped by ``statement_timeout`` or ``lock_timeout`` (57014, 55P03)."""
    return isinstance(exc, psycopg.Error) and getattr(exc, "sqlstate", None) in TIMEOUT_SQLSTATES


def is_timeout_message(message: str | None) -> bool:
    """True when an error message (dbt's, which carries no SQLSTATE) reports a statement or lock
    timeout."""
    text = (message or "").lower()
    return any(hint in text for hint in _TIMEOUT_HINTS)


def timeout_advice(message: str) -> str:
    """What an operator reads after a timeout: which setting stopped it and what to do."""
    if "lock" in message.lower() or "55p03" in message.lower():
        return (
            "waited longer than ETL_LOCK_TIMEOUT_S for a lock another session holds (the blocker was logged"
            " while the job waited); rerun once it is released (docs/runbook.md, 'A lock or statement timeout')"
        )
    return (
        "a statement ran longer than ETL_STATEMENT_TIMEOUT_S; rerun, and raise the setting if the statement"
        " legitimately needs longer (docs/runbook.md, 'A lock or statement timeout')"
    )


def is_connection_lost(exc: BaseException, conn: psycopg.Connection[Any] | None = None) -> bool:
    """True when the connection is gone and only a new one can go on: SQLSTATE class 08 (connection
    exception), 57P01-57P03 (the server shut down or is starting: a node restart in a rolling upgrade),
    an OperationalError without a SQLSTATE (the socket closed under the client), or ``conn`` closed."""
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate and (sqlstate[:2] == "08" or sqlstate in {"57P01", "57P02", "57P03"}):
        return True
    if isinstance(exc, psycopg.OperationalError) and sqlstate is None:
        return True
    return conn is not None and conn.closed
