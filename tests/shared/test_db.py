"""Database access on a real PostgreSQL: retried transactions, errors, COPY writing."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from etl_shared import CopyWriter, Database, DatabaseError, redact_url, run_transaction

pytestmark = pytest.mark.integration


def _fast(url: str, attempts: int = 6) -> Database:
    return Database(url, attempts=attempts, base_delay_s=0.001, max_delay_s=0.01)


def test_server_runs_serializable_by_default(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("show default_transaction_isolation").fetchone()
        version = conn.execute("select version()").fetchone()
        assert version is not None
        if "CockroachDB" not in version[0]:  # the embedded server's other setting (EmbeddedPostgres.SETTINGS)
            assert conn.execute("show max_wal_size").fetchone() == ("4GB",)
    assert row == ("serializable",)


def test_transaction_commits_and_returns_the_result(database_url: str) -> None:
    db = _fast(database_url)

    def work(conn: psycopg.Connection[Any]) -> int:
        conn.execute("create table items (id int primary key, name text)")
        conn.execute("insert into items values (1, 'one'), (2, 'two')")
        return 2

    assert db.transaction(work) == 2
    with psycopg.connect(database_url) as other:
        assert other.execute("select id, name from items order by id").fetchall() == [(1, "one"), (2, "two")]


def test_serialization_failure_is_retried(database_url: str) -> None:
    """Write skew: both transactions read the same predicate and each inserts a row the other's
    predicate covers; the second commits first, so the first fails with 40001 and is run again."""
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("create table on_call (doctor text primary key, shift int not null)")
    db = _fast(database_url)
    seen: list[int] = []

    def work(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("select count(*) from on_call where shift = 1").fetchone()
        assert row is not None
        seen.append(row[0])
        if len(seen) == 1:
            with psycopg.connect(database_url) as other, other.transaction():
                iso = other.execute("show transaction_isolation").fetchone()
                assert iso == ("serializable",)
                other.execute("select count(*) from on_call where shift = 1")
                other.execute("insert into on_call values ('bob', 1)")
        conn.execute("insert into on_call values ('alice', 1)")
        return row[0]

    result = db.transaction(work, name="write skew")

    assert seen == [0, 1]  # ran twice; the second attempt sees bob's committed row
    assert result == 1
    with psycopg.connect(database_url) as check:
        assert check.execute("select doctor from on_call order by doctor").fetchall() == [
            ("alice",),
            ("bob",),
        ]


def test_non_transient_error_is_not_retried(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("create table items (id int primary key)")
        setup.execute("insert into items values (1)")
    db = _fast(database_url)
    calls = 0

    def work(conn: psycopg.Connection[Any]) -> None:
        nonlocal calls
        calls += 1
        conn.execute("insert into items values (2)")
        conn.execute("insert into items values (1)")

    with pytest.raises(psycopg.errors.UniqueViolation):
        db.transaction(work)
    assert calls == 1
    with psycopg.connect(database_url) as check:
        # The whole transaction was rolled back, including the row that was valid.
        assert check.execute("select id from items").fetchall() == [(1,)]


def test_gives_up_after_the_configured_attempts(database_url: str) -> None:
    db = _fast(database_url, attempts=3)
    calls = 0

    def work(conn: psycopg.Connection[Any]) -> None:
        nonlocal calls
        calls += 1
        raise psycopg.errors.SerializationFailure("could not serialize access")

    with pytest.raises(DatabaseError, match="gave up after 3 attempts: 40001") as info:
        db.transaction(work, name="always failing")
    assert calls == 3
    assert "always failing" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.errors.SerializationFailure)
    assert info.value.exit_code == 5


def test_run_transaction_on_an_existing_connection(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        calls = 0

        def work(c: psycopg.Connection[Any]) -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            c.execute("create table done (x int)")
            return "ok"

        assert run_transaction(conn, work, attempts=2, base_delay_s=0.001) == "ok"
        assert calls == 2
    with psycopg.connect(database_url) as check:
        assert check.execute("select to_regclass('done') is not null").fetchone() == (True,)


def test_connect_to_a_bad_url_redacts_the_password() -> None:
    url = "postgresql://etl:Very-Secret-42@127.0.0.1:1/etl"
    db = Database(url, connect_timeout_s=2)
    with pytest.raises(DatabaseError) as info:
        db.connect()
    message = str(info.value)
    assert "Very-Secret-42" not in message
    assert "postgresql://etl:***@127.0.0.1:1/etl" in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert "Very-Secret-42" not in repr(db)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://etl:pw@db:26257/etl", "postgresql://etl:***@db:26257/etl"),
        ("postgresql://etl:p%40ss@db/etl?sslmode=require", "postgresql://etl:***@db/etl?sslmode=require"),
        ("postgresql://etl@db/etl", "postgresql://etl@db/etl"),
        ("postgresql://postgres:@/t1?host=/tmp/pg", "postgresql://postgres:@/t1?host=/tmp/pg"),
        ("postgresql:///etl", "postgresql:///etl"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_copy_writer_writes_json_bytes_and_nulls(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("create schema raw")
        setup.execute('create table raw.payloads (id int primary key, "Doc" jsonb, body bytea, note text)')
    writer = CopyWriter("raw.payloads", ["id", "Doc", "body", "note"])
    document = {"name": "Zoë", "tags": ["a", "b"], "nested": {"n": 1.5, "tab": "a\tb", "nl": "x\ny"}}
    rows = [
        (1, json.dumps(document), b"\x00\x01\xff\\binary", "first"),
        (2, "[]", b"", None),
        (3, None, None, "back\\slash\ttab"),
    ]

    written = _fast(database_url).transaction(lambda conn: writer.write(conn, iter(rows)))

    assert written == 3
    with psycopg.connect(database_url) as check:
        stored = check.execute('select id, "Doc", body, note from raw.payloads order by id').fetchall()
    assert stored == [
        (1, document, b"\x00\x01\xff\\binary", "first"),
        (2, [], b"", None),
        (3, None, None, "back\\slash\ttab"),
    ]


def test_copy_writer_writes_nothing_for_no_rows(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("create table plain (id int)")
    written = _fast(database_url).transaction(lambda conn: CopyWriter("plain", ["id"]).write(conn, []))
    assert written == 0


# ---------------------------------------------------------------------------------------------------
# Reconnect and retry: the server kills the connection (as a node restart does), or the commit's
# outcome is unknown (40003). Nothing is mocked: the server terminates the backend or raises.


def _terminate(database_url: str, pid: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)


def _items(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as check:
        return check.execute("select id, name from items order by id").fetchall()


@pytest.fixture
def items_table(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute("create table items (id int primary key, name text)")
    return database_url


def test_a_connection_killed_mid_transaction_is_replaced_and_the_transaction_run_again(
    items_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = _fast(items_table)
    pids: list[int] = []

    def work(conn: psycopg.Connection[Any]) -> int:
        pids.append(conn.info.backend_pid)
        conn.execute("insert into items values (1, 'one')")
        if len(pids) == 1:
            _terminate(items_table, conn.info.backend_pid)  # from a second connection, mid-transaction
        conn.execute("insert into items values (2, 'two')")
        return len(pids)

    assert db.transaction(work, name="write two items") == 2

    assert pids[0] != pids[1]  # the second attempt ran on a new connection
    assert _items(items_table) == [(1, "one"), (2, "two")]  # exactly as an undisturbed run
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage().startswith("write two items: connection lost (SQLSTATE 57P01")
    assert "reconnecting" in warning.getMessage()


def _killed_before_commit(database_url: str) -> Any:
    """Work whose first attempt loses its connection after its last statement: the COMMIT fails, and the
    client cannot tell whether it took effect (here it did not)."""
    calls: list[int] = []

    def work(conn: psycopg.Connection[Any]) -> None:
        calls.append(1)
        conn.execute("insert into items values (1, 'one') on conflict (id) do nothing")
        if len(calls) == 1:
            _terminate(database_url, conn.info.backend_pid)

    return work


def test_a_connection_lost_at_commit_is_an_unknown_outcome_retried_when_idempotent(
    items_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    _fast(items_table).transaction(_killed_before_commit(items_table), name="idempotent write")

    assert _items(items_table) == [(1, "one")]
    assert "idempotent write: outcome unknown (SQLSTATE" in caplog.text


def test_an_unknown_outcome_of_a_non_idempotent_transaction_is_not_retried(items_table: str) -> None:
    with pytest.raises(DatabaseError, match=r"write once: the outcome is unknown .* not retried") as info:
        _fast(items_table).transaction(
            _killed_before_commit(items_table), name="write once", idempotent=False
        )
    assert info.value.exit_code == 5
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def test_40003_after_a_commit_runs_idempotent_work_again_against_its_own_result(
    items_table: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The first attempt commits, and the client is told 40003: the retry finds its own row."""
    from db_faults import CommittedButUnknownDatabase

    db = CommittedButUnknownDatabase(items_table, base_delay_s=0.001)
    written: list[int] = []

    def work(conn: psycopg.Connection[Any]) -> None:
        written.append(
            conn.execute("insert into items values (1, 'one') on conflict (id) do nothing").rowcount
        )

    db.transaction(work, name="keyed insert")

    assert written == [1, 0]  # the second attempt found the row of the first
    assert _items(items_table) == [(1, "one")]
    assert "keyed insert: outcome unknown (SQLSTATE 40003" in caplog.text


def test_40003_of_a_non_idempotent_transaction_raises_and_says_it_may_have_committed(
    items_table: str,
) -> None:
    from db_faults import CommittedButUnknownDatabase

    db = CommittedButUnknownDatabase(items_table, base_delay_s=0.001)
    with pytest.raises(DatabaseError, match=r"SQLSTATE 40003.*may or may not have committed"):
        db.transaction(lambda conn: conn.execute("insert into items values (1, 'one')"), idempotent=False)
    assert _items(items_table) == [(1, "one")]  # it had: a retry would have failed or written twice


def test_run_transaction_cannot_replace_a_connection_it_does_not_own(items_table: str) -> None:
    with psycopg.connect(items_table) as conn:
        _terminate(items_table, conn.info.backend_pid)
        with pytest.raises(DatabaseError, match="copy: connection lost: 57P01") as info:
            run_transaction(conn, lambda c: c.execute("select 1"), name="copy", base_delay_s=0.001)
    assert isinstance(info.value.__cause__, psycopg.errors.AdminShutdown)


def test_a_database_that_stays_unreachable_fails_after_the_attempts(caplog: pytest.LogCaptureFixture) -> None:
    db = Database(
        "postgresql://etl:Very-Secret-42@127.0.0.1:1/etl", attempts=3, base_delay_s=0.001, connect_timeout_s=2
    )
    with pytest.raises(
        DatabaseError, match=r"audit start: cannot connect to postgresql://etl:\*\*\*@.* after 3"
    ) as info:
        db.transaction(lambda conn: None, name="audit start")
    assert "Very-Secret-42" not in str(info.value)
    assert caplog.text.count("audit start: cannot connect") == 2


def test_a_session_keeps_its_connection_and_replaces_it_when_lost(items_table: str) -> None:
    db = _fast(items_table)

    def pid(conn: psycopg.Connection[Any]) -> int:
        return conn.info.backend_pid

    with db.session() as session:
        first = session.transaction(pid)
        assert session.transaction(pid) == first
        _terminate(items_table, first)
        second = session.transaction(pid)
        assert second != first
        assert session.transaction(pid) == second


def test_session_execute_runs_statements_alone(items_table: str) -> None:
    db = _fast(items_table)
    with pytest.raises(ValueError, match="autocommit"):
        db.session().execute("select 1", name="x")
    with db.session(autocommit=True) as session:
        session.execute("create index if not exists items_name on items (name)", name="index")
        session.execute("insert into items values (%s, %s) on conflict do nothing", (5, "five"), name="row")
    assert _items(items_table) == [(5, "five")]


def test_every_connection_carries_the_lock_and_statement_timeouts(database_url: str) -> None:
    db = Database(database_url, attempts=2, lock_timeout_s=2.5, statement_timeout_s=3600)
    with db.connect(autocommit=True) as conn:
        assert conn.execute("show lock_timeout").fetchone() == ("2500ms",)
        assert conn.execute("show statement_timeout").fetchone() == ("1h",)
    with db.session() as session:  # a session's (and a replaced) connection too
        assert session.connection().execute("show lock_timeout").fetchone() == ("2500ms",)
    # options the URL carries are kept
    separator = "&" if "?" in database_url else "?"
    with_options = Database(
        f"{database_url}{separator}options=-c%20work_mem%3D8MB", lock_timeout_s=1, statement_timeout_s=0
    )
    with with_options.connect() as conn:
        assert conn.execute("show work_mem").fetchone() == ("8MB",)
        assert conn.execute("show lock_timeout").fetchone() == ("1s",)
        assert conn.execute("show statement_timeout").fetchone() == ("0",)


def test_a_statement_or_lock_timeout_is_a_database_error_and_not_retried(database_url: str) -> None:
    from etl_shared._errors import exit_code_for

    db = Database(database_url, attempts=5, lock_timeout_s=0.5, statement_timeout_s=1)
    with pytest.raises(DatabaseError, match=r"57014.*ETL_STATEMENT_TIMEOUT_S") as slow:
        db.transaction(lambda conn: conn.execute("select pg_sleep(30)"), name="slow")
    assert exit_code_for(slow.value) == 5

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table held (id int primary key)")
    calls = []
    with psycopg.connect(database_url) as blocker:
        blocker.execute("lock table held in access exclusive mode")

        def work(conn: psycopg.Connection[Any]) -> None:
            calls.append(1)
            conn.execute("select count(*) from held")

        with pytest.raises(DatabaseError, match=r"55P03.*ETL_LOCK_TIMEOUT_S"):
            db.transaction(work, name="blocked")
        blocker.rollback()
    assert calls == [1]  # not retried: it would only wait as long again
