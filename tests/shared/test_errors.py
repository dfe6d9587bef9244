"""The exception hierarchy and its one mapping to exit codes (docs/exit-codes.md)."""

from __future__ import annotations

import psycopg
import pytest

from etl_shared import (
    EXIT_CONFIGURATION,
    EXIT_DATA_QUALITY,
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_UNEXPECTED,
    ConfigurationError,
    DatabaseError,
    DataQualityError,
    EtlError,
    JobTerminated,
    SourceError,
    SourceFatalError,
    SourceTransientError,
    TransformError,
    exit_code_for,
    is_connection_lost,
    is_outcome_unknown,
    is_transient_database_error,
)


def test_exit_code_constants_match_the_design() -> None:
    assert (EXIT_OK, EXIT_UNEXPECTED, EXIT_CONFIGURATION, EXIT_SOURCE, EXIT_DATA_QUALITY, EXIT_DATABASE) == (
        0,
        1,
        2,
        3,
        4,
        5,
    )


@pytest.mark.parametrize(
    ("exc", "code", "retryable"),
    [
        (EtlError("x"), 1, False),
        (ConfigurationError("x"), 2, False),
        (SourceError("x"), 3, False),
        (SourceTransientError("x"), 3, True),
        (SourceFatalError("x"), 3, False),
        (DataQualityError("x"), 4, False),
        (DatabaseError("x"), 5, True),
        (TransformError("x"), 1, False),
        (JobTerminated("x"), 143, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_exit_code_and_retryable_of_every_project_error(exc: EtlError, code: int, retryable: bool) -> None:
    assert isinstance(exc, EtlError)
    assert exit_code_for(exc) == code
    assert exc.exit_code == code
    assert exc.retryable is retryable


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValueError("boom"), EXIT_UNEXPECTED),
        (RuntimeError("boom"), EXIT_UNEXPECTED),
        (KeyError("k"), EXIT_UNEXPECTED),
        (KeyboardInterrupt(), 130),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_exit_code_of_foreign_exceptions(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


@pytest.mark.parametrize(
    ("exc", "sqlstate", "code", "transient"),
    [
        # Connection-level failures without a SQLSTATE (server gone, refused): a rerun may help.
        (psycopg.OperationalError("connection refused"), None, EXIT_DATABASE, True),
        (psycopg.errors.SerializationFailure(), "40001", EXIT_DATABASE, True),
        (psycopg.errors.DeadlockDetected(), "40P01", EXIT_DATABASE, True),
        (psycopg.errors.ConnectionFailure(), "08006", EXIT_DATABASE, True),
        (psycopg.errors.AdminShutdown(), "57P01", EXIT_DATABASE, True),
        (psycopg.errors.DiskFull(), "53100", EXIT_DATABASE, True),
        (psycopg.errors.TooManyConnections(), "53300", EXIT_DATABASE, True),
        # An operational error with a SQLSTATE that a retry of the same transaction will not fix.
        (psycopg.errors.QueryCanceled(), "57014", EXIT_DATABASE, False),
        # Errors in what we sent: a rerun gives the same result.
        (psycopg.errors.UniqueViolation(), "23505", EXIT_UNEXPECTED, False),
        (psycopg.errors.SyntaxError(), "42601", EXIT_UNEXPECTED, False),
        (psycopg.errors.UndefinedTable(), "42P01", EXIT_UNEXPECTED, False),
        (psycopg.errors.NotNullViolation(), "23502", EXIT_UNEXPECTED, False),
        (psycopg.InterfaceError("bad use of the driver"), None, EXIT_UNEXPECTED, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_psycopg_errors_by_sqlstate(
    exc: psycopg.Error, sqlstate: str | None, code: int, transient: bool
) -> None:
    assert exc.sqlstate == sqlstate
    assert exit_code_for(exc) == code
    assert is_transient_database_error(exc) is transient


@pytest.mark.parametrize(
    "exc",
    [ValueError("40001"), DatabaseError("40001 serialization failure"), TimeoutError(), KeyboardInterrupt()],
    ids=lambda value: type(value).__name__,
)
def test_non_psycopg_errors_are_never_transient_database_errors(exc: BaseException) -> None:
    assert is_transient_database_error(exc) is False


def test_hierarchy_groups_source_errors() -> None:
    assert issubclass(SourceTransientError, SourceError)
    assert issubclass(SourceFatalError, SourceError)
    assert not issubclass(DataQualityError, SourceError)


@pytest.mark.parametrize(
    ("exc", "lost", "unknown"),
    [
        (psycopg.errors.AdminShutdown("terminating connection"), True, False),
        (psycopg.errors.ConnectionFailure("connection failure"), True, False),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True, False),
        (psycopg.errors.StatementCompletionUnknown("result is ambiguous"), False, True),
        (psycopg.errors.SerializationFailure("restart transaction"), False, False),
        (psycopg.errors.UniqueViolation("duplicate key"), False, False),
        (ValueError("not a database error"), False, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_lost_connections_and_unknown_outcomes_are_told_apart(
    exc: BaseException, lost: bool, unknown: bool
) -> None:
    assert is_connection_lost(exc) is lost
    assert is_outcome_unknown(exc) is unknown
