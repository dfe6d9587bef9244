"""Versioned SQL migrations: bundled and custom, idempotent, concurrent, checksummed."""

from __future__ import annotations

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


@pytest.mark.integration
def test_custom_migrations_applied_in_order(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    migrations = [
        Migration(
            1, "create_steps", "create schema app; create table app.steps (step int primary key, note text)"
        ),
        Migration(2, "first_step", "insert into app.steps values (1, 'created')"),
        # Depends on both earlier versions: fails unless they ran first.
        Migration(10, "second_step", "insert into app.steps select max(step) + 1, 'after' from app.steps"),
    ]

    assert apply_migrations(db, migrations[:2]) == [1, 2]
    assert apply_migrations(db, migrations) == [10]

    assert _recorded(database_url) == [(1, "create_steps"), (2, "first_step"), (10, "second_step")]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select step, note from app.steps order by step").fetchall() == [
            (1, "created"),
            (2, "after"),
        ]


@pytest.mark.integration
def test_failing_migration_is_rolled_back_and_not_recorded(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    good = Migration(1, "good", "create table kept (id int)")
    bad = Migration(2, "bad", "create table half (id int); select * from no_such_table")

    with pytest.raises(psycopg.errors.UndefinedTable):
        apply_migrations(db, [good, bad])

    assert _recorded(database_url) == [(1, "good")]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select to_regclass('half')").fetchone() == (None,)
        assert conn.execute("select holder from ops.locks").fetchall() == [(None,)]


@pytest.mark.integration
def test_changed_checksum_is_refused(database_url: str) -> None:
    db = Database(database_url, base_delay_s=0.001)
    apply_migrations(db, [Migration(1, "items", "create table items (id int)")])

    with pytest.raises(ConfigurationError, match=r"V001__items was changed after it was applied"):
        apply_migrations(db, [Migration(1, "items", "create table items (id bigint)")])
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select holder from ops.locks").fetchall() == [(None,)]


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
