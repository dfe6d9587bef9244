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


def _update_count(run_as: str, database_url: str, statement: str) -> int:
    with psycopg.connect(role_url(database_url, run_as), autocommit=True) as conn:
        return conn.execute(statement).rowcount


def test_the_zone_roles_keep_the_operations_tables_an_audit(database_url: str) -> None:
    """docs/database-setup.md, "The operations tables": every refusal attempted for real, as the real
    role, against the server; a row-level refusal of an UPDATE shows as no row changed."""
    _setup(database_url)
    staging = _as(database_url, "etl_staging")
    conformed = _as(database_url, "etl_conformed")
    semantic = _as(database_url, "etl_semantic")
    staging_job, conformed_job = (
        "00000000-0000-0000-0000-00000000000a",
        "00000000-0000-0000-0000-00000000000b",
    )

    # Each zone inserts its own audit rows, and only its own.
    staging(
        "insert into ops.job_runs (job_id, run_id, zone, job_name, status, started_at)"
        f" values ('{staging_job}', 'r1', 'staging', 'staging', 'running', now())"
    )
    conformed(
        "insert into ops.job_runs (job_id, run_id, zone, job_name, status, started_at)"
        f" values ('{conformed_job}', 'r1', 'conformed', 'conformed', 'running', now())"
    )
    _denied(
        staging,
        "insert into ops.job_runs (job_id, run_id, zone, job_name, status, started_at)"
        " values (gen_random_uuid(), 'r1', 'conformed', 'forged', 'succeeded', now())",
    )
    _denied(
        semantic,
        "insert into ops.lineage_edges (job_id, run_id, zone, input_namespace, input_name, output_namespace,"
        f" output_name, recorded_at) values ('{conformed_job}', 'r1', 'conformed', 'n', 'a', 'n', 'b', now())",
    )

    # Each zone updates its own job's row; another zone's row is not touched (row-level security).
    assert _update_count("etl_staging", database_url, "update ops.job_runs set status = 'succeeded'") == 1
    assert (
        _update_count(
            "etl_staging",
            database_url,
            f"update ops.job_runs set status = 'failed' where job_id = '{conformed_job}'",
        )
        == 0
    )
    _denied(staging, f"update ops.job_runs set zone = 'conformed' where job_id = '{staging_job}'")
    assert conformed(f"select status from ops.job_runs where job_id = '{conformed_job}'") == [("running",)]

    # No role deletes an audit row, or writes the migrations' record.
    for role in (staging, conformed, semantic):
        for table in (
            "job_runs",
            "operator_actions",
            "locks",
            "schema_migrations",
            "dq_results",
            "exports",
            "lineage_edges",
            "dbt_node_results",
            "schema_changes",
        ):
            _denied(role, f"delete from ops.{table} where false")
        _denied(role, "insert into ops.schema_migrations (version, name, checksum) values (998, 'x', 'y')")
        _denied(role, "update ops.schema_migrations set checksum = 'x' where false")
        assert role("select count(*) > 0 from ops.schema_migrations") == [(True,)]

    # The append-only audit tables: inserted into, never changed (conformed upserts its own DQ results).
    staging(
        "insert into ops.operator_actions (action_id, action, actor, performed_at)"
        " values (gen_random_uuid(), 'reset', 'ops', now())"
    )
    _denied(staging, "update ops.operator_actions set actor = 'someone else' where false")
    _denied(semantic, "update ops.dq_results set status = 'pass' where false")
    _denied(semantic, "update ops.exports set sha256 = 'x' where false")
    _denied(conformed, "update ops.lineage_edges set input_name = 'x' where false")
    conformed(
        "insert into ops.dq_results (job_id, rule_id, run_id, zone, severity, status, failures, recorded_at)"
        f" values ('{conformed_job}', 'rule', 'r1', 'conformed', 'error', 'fail', 3, now())"
        " on conflict (job_id, rule_id) do update set status = excluded.status"
    )
    assert _update_count("etl_conformed", database_url, "update ops.dq_results set status = 'pass'") == 1

    # Locks: a zone takes, renews and releases its own; another role's lock is left alone.
    staging("insert into ops.locks (name) values ('pull:shop:orders') on conflict (name) do nothing")
    assert staging("select owner_role from ops.locks where name = 'pull:shop:orders'") == [("etl_staging",)]
    assert (
        _update_count(
            "etl_staging", database_url, "update ops.locks set holder = 'me' where name = 'pull:shop:orders'"
        )
        == 1
    )
    assert (
        _update_count(
            "etl_conformed",
            database_url,
            "update ops.locks set holder = null where name = 'pull:shop:orders'",
        )
        == 0
    )
    _denied(conformed, "insert into ops.locks (name, owner_role) values ('forged', 'etl_staging')")
    _denied(conformed, "delete from ops.locks where name = 'pull:shop:orders'")
    assert staging("select holder from ops.locks where name = 'pull:shop:orders'") == [("me",)]

    # The owner (etl status, the DBA) is not bound by the zone policies.
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert conn.execute("update ops.job_runs set status = 'failed'").rowcount == 2


def test_the_setup_takes_back_what_earlier_releases_granted(database_url: str) -> None:
    _setup(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "grant select, insert, update, delete on ops.schema_migrations, ops.locks to etl_staging"
        )
    out = _setup(database_url)
    assert 'revoke INSERT, UPDATE, DELETE on table "ops"."schema_migrations" from "etl_staging"' in out
    _denied(_as(database_url, "etl_staging"), "delete from ops.locks where false")
    _denied(_as(database_url, "etl_staging"), "delete from ops.schema_migrations where false")
