"""Migrations marked for one database dialect run there only, and are recorded everywhere."""

from __future__ import annotations

import psycopg

from etl_shared import Database, Migration, apply_migrations


def test_a_cockroachdb_only_migration_is_recorded_but_not_run_on_postgres(database_url: str) -> None:
    migrations = [
        Migration(
            1,
            "base",
            "create schema if not exists ops; create table if not exists ops.t (id int primary key)",
        ),
        Migration(2, "crdb_only", "-- dialect: cockroachdb\nthis would fail on postgres;"),
        Migration(3, "pg_only", "-- dialect: postgres\ninsert into ops.t values (1) on conflict do nothing"),
    ]
    assert apply_migrations(Database(database_url), migrations) == [1, 2, 3]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select id from ops.t").fetchall() == [(1,)]
        recorded = conn.execute("select version from ops.schema_migrations order by version").fetchall()
    assert recorded == [(1,), (2,), (3,)]


def test_bundled_migrations_store_staging_batches_uncompressed_on_postgres(database_url: str) -> None:
    apply_migrations(Database(database_url))
    with psycopg.connect(database_url) as conn:
        storage = conn.execute(
            "select attstorage from pg_attribute where attrelid = 'staging.pull_batches'::regclass"
            " and attname = 'data'"
        ).fetchone()
    assert storage == ("e",)
