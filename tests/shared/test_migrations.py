"""Versioned SQL migrations: bundled and custom, idempotent, concurrent, checksummed."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import psycopg
import pytest

from etl_shared import (
    ConfigurationError,
    Database,
    Migration,
    apply_migrations,
    bundled_migrations,
    load_migrations,
)
from etl_shared._migrations import check_idempotent


def _recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("select version, name from ops.schema_migrations order by version").fetchall()


def test_bundled_migrations_are_ordered_and_named() -> None:
    migrations = bundled_migrations()
    versions = [m.version for m in migrations]
    assert versions[:2] == [1, 2]
    assert versions == sorted(set(versions))
    assert migrations[0].name == "operations"
    assert all(len(m.checksum) == 64 and m.sql.strip() for m in migrations)


@pytest.mark.integration
def test_apply_on_a_fresh_database_then_nothing(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    expected = [m.version for m in bundled_migrations()]

    assert apply_migrations(db) == expected
    assert apply_migrations(db) == []

    assert [v for v, _ in _recorded(database_url)] == expected
    with psycopg.connect(database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
                " where table_schema in ('ops', 'staging')"
            )
        }
        lock = conn.execute("select holder from ops.locks where name = 'schema_migrations'").fetchone()
    assert {"ops.job_runs", "ops.dbt_node_results", "ops.dq_results", "ops.locks", "staging.pulls"} <= tables
    assert lock == (None,)  # the migration lock was released


@pytest.mark.integration
def test_two_jobs_applying_at_once_both_succeed(database_url: str) -> None:
    expected = [m.version for m in bundled_migrations()]
    barrier = threading.Barrier(2)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def job(index: int) -> None:
        try:
            db = Database(database_url, base_delay_s=0.001)
            barrier.wait(timeout=30)
            results[index] = apply_migrations(db)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(results) == [0, 1]
    # Every version was applied by exactly one of the two jobs...
    assert sorted(results[0] + results[1]) == expected
    # ...and recorded once.
    assert [v for v, _ in _recorded(database_url)] == expected


@pytest.fixture(params=[False, True], ids=["autocommit_before_ddl=off", "autocommit_before_ddl=on"])
def autocommit_before_ddl(request: pytest.FixtureRequest) -> bool:
    """The runner's tests run under both of CockroachDB's DDL transaction behaviours (on PostgreSQL
    "on" is emulated: the runner commits whatever is open before each DDL statement)."""
    return bool(request.param)


def _holders(url: str) -> list[tuple[str | None]]:
    with psycopg.connect(url) as conn:
        return conn.execute("select holder from ops.locks").fetchall()


def _exists(url: str, relation: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()
    return bool(row and row[0])


@pytest.mark.integration
def test_custom_migrations_applied_in_order(database_url: str, autocommit_before_ddl: bool) -> None:
    db = Database(database_url, base_delay_s=0.001)
    migrations = [
        Migration(
            1,
            "create_steps",
            "create schema if not exists app;"
            " create table if not exists app.steps (step int primary key, note text)",
        ),
        Migration(2, "first_step", "insert into app.steps values (1, 'created') on conflict do nothing"),
        # Depends on both earlier versions: fails unless they ran first.
        Migration(
            10,
            "second_step",
            "insert into app.steps select max(step) + 1, 'after' from app.steps on conflict do nothing",
        ),
    ]

    assert apply_migrations(db, migrations[:2], autocommit_before_ddl=autocommit_before_ddl) == [1, 2]
    assert apply_migrations(db, migrations, autocommit_before_ddl=autocommit_before_ddl) == [10]

    assert _recorded(database_url) == [(1, "create_steps"), (2, "first_step"), (10, "second_step")]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select step, note from app.steps order by step").fetchall() == [
            (1, "created"),
            (2, "after"),
        ]


@pytest.mark.integration
def test_a_failure_half_way_records_nothing_and_a_rerun_applies_the_file_from_the_start(
    database_url: str, autocommit_before_ddl: bool
) -> None:
    """Each statement commits on its own, so what ran before the failure stays; the file's row is not
    written, and the next run applies the whole file again (harmless: every statement is idempotent)."""
    db = Database(database_url, base_delay_s=0.001)
    good = Migration(1, "good", "create table if not exists kept (id int)")
    half = Migration(
        2,
        "half",
        "create table if not exists first_half (id int);\n"
        "create index if not exists later_idx on later (id);\n"  # fails: no table later yet
        "create table if not exists second_half (id int);\n",
    )

    with pytest.raises(psycopg.errors.UndefinedTable):
        apply_migrations(db, [good, half], autocommit_before_ddl=autocommit_before_ddl)

    assert _recorded(database_url) == [(1, "good")]
    assert _exists(database_url, "first_half")  # committed before the failure
    assert not _exists(database_url, "second_half")
    assert _holders(database_url) == [(None,)]  # the lock was released

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table later (id int)")  # what was missing
    assert apply_migrations(db, [good, half], autocommit_before_ddl=autocommit_before_ddl) == [2]

    assert _recorded(database_url) == [(1, "good"), (2, "half")]
    assert _exists(database_url, "second_half") and _exists(database_url, "later_idx")


@pytest.mark.integration
def test_xxa00_that_did_not_commit_is_run_again_with_a_warning(
    database_url: str, autocommit_before_ddl: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """CockroachDB's XXA00: the schema change may or may not have committed. Emulated with an event
    trigger that fails the first DDL statement with that SQLSTATE (rolling it back)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create sequence xxa00_once")
        conn.execute(
            "create function xxa00_once() returns event_trigger language plpgsql as $$ begin"
            " if exists (select from pg_event_trigger_ddl_commands() where object_identity = 'public.t')"
            " and nextval('xxa00_once') = 1 then"
            " raise exception 'schema change partly committed' using errcode = 'XXA00'; end if; end $$"
        )
        conn.execute("create event trigger xxa00_once on ddl_command_end execute function xxa00_once()")
    db = Database(database_url, base_delay_s=0.001)
    migration = Migration(1, "table", "create table if not exists t (id int)")

    with caplog.at_level(logging.WARNING, logger="etl_shared._db"):
        assert apply_migrations(db, [migration], autocommit_before_ddl=autocommit_before_ddl) == [1]

    assert _exists(database_url, "t")
    assert _recorded(database_url) == [(1, "table")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "migration V001__table.sql statement 1 (line 1): outcome unknown (SQLSTATE XXA00" in w
        for w in warnings
    ), warnings


@pytest.mark.integration
def test_xxa00_after_the_statement_committed_is_run_again_harmlessly(
    database_url: str, autocommit_before_ddl: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The other side of XXA00: the change did commit and the client still got the error (emulated by
    a DO block that commits its DDL, then raises XXA00 the first time)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create sequence xxa00_once")
    db = Database(database_url, base_delay_s=0.001)
    migration = Migration(
        1,
        "committed",
        "create schema if not exists app;\n"
        "-- idempotent: create ... if not exists, then an error the first time only\n"
        "do $$ begin create table if not exists app.t (id int); commit;"
        " if nextval('xxa00_once') = 1 then raise exception 'partly committed' using errcode = 'XXA00';"
        " end if; end $$;\n"
        "create index if not exists t_idx on app.t (id);\n",
    )

    with caplog.at_level(logging.WARNING, logger="etl_shared._db"):
        assert apply_migrations(db, [migration], autocommit_before_ddl=autocommit_before_ddl) == [1]

    assert _exists(database_url, "app.t") and _exists(database_url, "app.t_idx")
    assert _recorded(database_url) == [(1, "committed")]
    assert any(
        "statement 2 (line 3): outcome unknown (SQLSTATE XXA00" in r.getMessage() for r in caplog.records
    )


@pytest.mark.integration
def test_a_connection_lost_during_a_statement_is_replaced_and_the_statement_run_again(
    database_url: str, autocommit_before_ddl: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The migration's connection is terminated by the server (57P01, as in a node restart) while a
    statement runs: the runner reconnects and runs it again, then goes on with the file."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create sequence kill_once")
    db = Database(database_url, base_delay_s=0.001)
    migration = Migration(
        1,
        "killed",
        "create table if not exists before_kill (id int);\n"
        "-- idempotent: terminates its own connection the first time only\n"
        "do $$ begin if nextval('kill_once') = 1 then perform pg_terminate_backend(pg_backend_pid());"
        " perform pg_sleep(5); end if; end $$;\n"
        "create table if not exists after_kill (id int);\n",
    )

    with caplog.at_level(logging.WARNING, logger="etl_shared._db"):
        assert apply_migrations(db, [migration], autocommit_before_ddl=autocommit_before_ddl) == [1]

    assert _exists(database_url, "before_kill") and _exists(database_url, "after_kill")
    assert _recorded(database_url) == [(1, "killed")]
    assert any("statement 2 (line 3)" in r.getMessage() and "57P01" in r.getMessage() for r in caplog.records)


@pytest.mark.integration
def test_a_non_idempotent_statement_is_refused_before_anything_runs(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    fine = Migration(1, "fine", "create table if not exists fine (id int)")
    bad = Migration(
        2, "bad", "create table if not exists ok (id int);\n\nalter table ok add column note text;\n"
    )

    with pytest.raises(ConfigurationError) as info:
        apply_migrations(db, [fine, bad])

    message = str(info.value)
    assert "V002__bad.sql, line 3" in message
    assert "alter table ok add column note text" in message
    assert "IF NOT EXISTS" in message
    assert not _exists(database_url, "fine")  # the check came before the first statement
    assert _recorded(database_url) == []
    assert _holders(database_url) == [(None,)]


def test_every_bundled_migration_is_idempotent() -> None:
    for migration in bundled_migrations():
        check_idempotent(migration)


@pytest.mark.parametrize(
    "statement",
    [
        "create schema if not exists ops",
        "create table if not exists ops.t (id int primary key, a numeric(10, 2))",
        "CREATE UNIQUE INDEX IF NOT EXISTS t_a ON ops.t (a)",
        "create index concurrently if not exists t_b on ops.t (b)",
        "create or replace function ops.f() returns int language sql as $$ select 1; $$",
        "drop table if exists ops.old",
        "drop materialized view if exists ops.mv",
        "alter table ops.t add column if not exists b text, add column if not exists c numeric(1, 0)",
        "alter table if exists ops.t drop column if exists b",
        "alter table staging.pull_batches alter column data set storage external",
        "alter table ops.t alter column a set not null, alter column a drop default",
        "alter table ops.t drop constraint if exists t_check, add constraint t_check check (a in (1, 2))",
        "insert into ops.t (id) values (1) on conflict (id) do nothing",
        "comment on table ops.t is 'x; y'",
        "grant select on ops.t to etl_qlik",
        "-- idempotent: the block checks the catalog first\ndo $$ begin perform 1; end $$",
    ],
)
def test_idempotent_statement_forms_are_accepted(statement: str) -> None:
    check_idempotent(Migration(1, "fine", statement))


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ("create table ops.t (id int)", "not a statement form known to be idempotent"),
        ("create index t_a on ops.t (a)", "not a statement form known to be idempotent"),
        ("insert into ops.t values (1)", "not a statement form known to be idempotent"),
        ("update ops.t set a = a + 1", "not a statement form known to be idempotent"),
        ("do $$ begin perform 1; end $$", "not a statement form known to be idempotent"),
        ("alter table ops.t add column b text", "action 'add column b text' is not idempotent"),
        ("alter table ops.t add column if not exists b text, drop column c", "action 'drop column c'"),
        ("alter table ops.t rename to u", "action 'rename to u'"),
        ("alter table ops.t add constraint t_check check (a > 0)", "constraint t_check is added without"),
        (
            "alter table ops.u drop constraint if exists t_check;"
            " alter table ops.t add constraint t_check check (a > 0)",
            "constraint t_check is added without",
        ),
    ],
)
def test_other_statements_are_refused_naming_file_line_and_statement(statement: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_idempotent(Migration(7, "refused", statement))
    assert "migration V007__refused.sql, line 1" in str(info.value)
    assert problem in str(info.value)


@pytest.mark.integration
def test_changed_checksum_is_refused(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    apply_migrations(db, [Migration(1, "items", "create table if not exists items (id int)")])

    with pytest.raises(ConfigurationError, match=r"V001__items was changed after it was applied"):
        apply_migrations(db, [Migration(1, "items", "create table if not exists items (id bigint)")])
    assert _holders(database_url) == [(None,)]


def test_load_migrations_sorts_by_version_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "V010__later.sql").write_text("select 10")
    (tmp_path / "V002__earlier.sql").write_text("select 2")
    (tmp_path / "V1000__much_later.sql").write_text("select 1000")
    (tmp_path / "README.md").write_text("not a migration")

    loaded = load_migrations(tmp_path)

    assert [(m.version, m.name, m.sql) for m in loaded] == [
        (2, "earlier", "select 2"),
        (10, "later", "select 10"),
        (1000, "much_later", "select 1000"),
    ]


@pytest.mark.parametrize(
    "bad_name", ["V1__short.sql", "v001__lower.sql", "V001_one_underscore.sql", "V001__Caps.sql"]
)
def test_load_migrations_rejects_a_badly_named_file(tmp_path: Path, bad_name: str) -> None:
    (tmp_path / "V001__fine.sql").write_text("select 1")
    (tmp_path / bad_name).write_text("select 2")
    with pytest.raises(ConfigurationError, match=bad_name):
        load_migrations(tmp_path)


def test_load_migrations_rejects_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "V001__first.sql").write_text("select 1")
    (tmp_path / "V0001__again.sql").write_text("select 1")
    with pytest.raises(ConfigurationError, match="duplicate migration versions"):
        load_migrations(tmp_path)


def test_checksum_follows_the_text() -> None:
    assert Migration(1, "a", "select 1").checksum == Migration(9, "b", "select 1").checksum
    assert Migration(1, "a", "select 1").checksum != Migration(1, "a", "select 2").checksum
