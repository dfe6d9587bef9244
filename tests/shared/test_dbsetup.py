"""Database setup: idempotent, and each zone's role can write its own schema and nothing else."""

from __future__ import annotations

import io
from collections.abc import Callable

import psycopg
import pytest

from etl_shared import Database, apply_migrations, bundled_migrations
from etl_shared._errors import ConfigurationError
from etl_shared._migrations import Migration
from etl_shared.dbsetup import DatabaseSetup, main, role_url


def _setup(database_url: str) -> str:
    out = io.StringIO()
    DatabaseSetup(database_url, out=out).run()
    return out.getvalue()


def _as(database_url: str, role: str) -> Callable[[str], list[tuple[object, ...]]]:
    url = role_url(database_url, role)

    def run(statement: str) -> list[tuple[object, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else []

    return run


def _denied(run: Callable[[str], object], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run(statement)


def test_setup_is_idempotent_and_prints_what_it_grants(database_url: str) -> None:
    first = _setup(database_url)
    assert "create role" in first or "grant connect" in first
    assert "grant select, insert, update, delete on table" in first.lower()
    second = _setup(database_url)
    assert "migrations applied now: none (up to date)" in second
    with psycopg.connect(database_url) as conn:
        versions = [r[0] for r in conn.execute("select version from ops.schema_migrations order by 1")]
    assert versions == [m.version for m in bundled_migrations()]


def test_each_zone_role_writes_only_its_own_schema(database_url: str) -> None:
    _setup(database_url)
    staging = _as(database_url, "etl_staging")
    conformed = _as(database_url, "etl_conformed")
    semantic = _as(database_url, "etl_semantic")
    qlik = _as(database_url, "etl_qlik")

    # staging: its own tables and the audit tables, not the other zones, not the PII key.
    staging("delete from staging.pulls where false")
    staging("create table staging.scratch (id int primary key)")
    staging("select count(*) from ops.job_runs")
    _denied(staging, "create table conformed.not_mine (id int)")
    _denied(staging, "select count(*) from ops.pii_keys")

    # conformed reads staging, never writes it; writes conformed.
    assert conformed("select count(*) from staging.pulls") == [(0,)]
    _denied(conformed, "delete from staging.pulls where false")
    _denied(conformed, "create table staging.not_mine (id int)")
    conformed("create table conformed.customer_x (id int primary key)")
    conformed("insert into conformed.customer_x values (1)")
    conformed("delete from conformed.quarantine where false")  # a migration's table in its zone
    _denied(conformed, "select count(*) from ops.pii_keys")

    # semantic reads what conformed created later (default privileges), never writes it.
    assert semantic("select id from conformed.customer_x") == [(1,)]
    _denied(semantic, "insert into conformed.customer_x values (2)")
    _denied(semantic, "select count(*) from staging.pulls")
    semantic("create table semantic.dim_x (id int primary key)")
    semantic("insert into semantic.dim_x values (7)")
    semantic("select count(*) from ops.pii_keys")

    # Qlik: reads the semantic zone and nothing else.
    assert qlik("select id from semantic.dim_x") == [(7,)]
    _denied(qlik, "insert into semantic.dim_x values (8)")
    _denied(qlik, "create table semantic.mine (id int)")
    _denied(qlik, "select id from conformed.customer_x")
    _denied(qlik, "select count(*) from ops.job_runs")


def test_a_zone_role_runs_with_the_migrations_applied_and_says_what_to_do_when_one_is_missing(
    database_url: str,
) -> None:
    _setup(database_url)
    as_staging = Database(role_url(database_url, "etl_staging"), application_name="test")
    assert apply_migrations(as_staging) == []  # all applied: no DDL needed

    newer = [
        *bundled_migrations(),
        Migration(999, "future", "create table if not exists ops.future (id int)"),
    ]
    with pytest.raises(ConfigurationError, match=r"V999.*etl_shared\.dbsetup"):
        apply_migrations(as_staging, newer)


def test_role_url_keeps_host_port_database_and_options() -> None:
    url = "postgresql://root:secret@db.internal:26257/etl?sslmode=verify-full"
    assert role_url(url, "etl_qlik") == "postgresql://etl_qlik@db.internal:26257/etl?sslmode=verify-full"
    assert (
        role_url(url, "etl_qlik", "p@ss")
        == "postgresql://etl_qlik:p%40ss@db.internal:26257/etl?sslmode=verify-full"
    )


def test_main_needs_an_admin_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ETL_ADMIN_DATABASE_URL", raising=False)
    assert main([]) == 2
    assert "ETL_ADMIN_DATABASE_URL" in capsys.readouterr().err


def test_main_runs_the_setup_with_passwords_from_the_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ETL_ETL_QLIK_PASSWORD", "s3cret-qlik")
    assert main(["--admin-url", database_url, "--password-from-env"]) == 0
    out = capsys.readouterr().out
    assert "alter role etl_qlik with login password '********'" in out
    assert "s3cret-qlik" not in out
