"""The run audit: ``ops.job_runs``, ``ops.dbt_node_results`` and ``ops.dq_results``."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime

import psycopg
import pytest

from etl_shared import Database, JobAudit, NodeResult, QualityResult, apply_migrations

pytestmark = pytest.mark.integration

COMPLETED = datetime(2024, 1, 31, 2, 0, 5, tzinfo=UTC)


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, base_delay_s=0.001)
    apply_migrations(database)
    return database


def _nodes() -> list[NodeResult]:
    return [
        NodeResult(
            "model.conformed.dim_customer", "model", "success", 0.25, 42, None, "SELECT 42", COMPLETED
        ),
        NodeResult(
            "test.conformed.unique_dim_customer", "test", "fail", 0.01, None, 3, "Got 3 results", COMPLETED
        ),
    ]


def _quality() -> list[QualityResult]:
    return [
        QualityResult("unique_dim_customer", "error", "fail", 3, "Got 3 results"),
        QualityResult("not_null_dim_customer", "warn", "pass", 0, None),
    ]


def test_start_and_finish(db: Database) -> None:
    audit = JobAudit(db, run_id="run-1", zone="conformed", job_name="build")
    audit.start()
    with db.connect() as conn:
        started = conn.execute(
            "select run_id, zone, job_name, status, host, pid, ended_at, exit_code, counts"
            " from ops.job_runs where job_id = %s",
            (audit.job_id,),
        ).fetchone()
    assert started == (
        "run-1",
        "conformed",
        "build",
        "running",
        socket.gethostname(),
        os.getpid(),
        None,
        None,
        {},
    )

    audit.finish(status="succeeded", exit_code=0, counts={"rows": 42, "when": COMPLETED})

    with db.connect() as conn:
        finished = conn.execute(
            "select status, exit_code, counts, error, ended_at >= started_at"
            " from ops.job_runs where job_id = %s",
            (audit.job_id,),
        ).fetchone()
    assert finished == ("succeeded", 0, {"rows": 42, "when": "2024-01-31 02:00:05+00:00"}, None, True)


def test_failed_job_keeps_its_error(db: Database) -> None:
    audit = JobAudit(db, run_id="run-1", zone="staging", job_name="extract")
    audit.start()
    audit.finish(status="failed", exit_code=3, error="SourceTransientError: 503 from fx")
    with db.connect() as conn:
        row = conn.execute("select status, exit_code, counts, error from ops.job_runs").fetchone()
    assert row == ("failed", 3, {}, "SourceTransientError: 503 from fx")


def test_two_jobs_of_one_run_get_two_rows(db: Database) -> None:
    first = JobAudit(db, run_id="run-1", zone="staging", job_name="extract")
    second = JobAudit(db, run_id="run-1", zone="conformed", job_name="build")
    first.start()
    second.start()
    assert first.job_id != second.job_id
    with db.connect() as conn:
        rows = conn.execute("select zone from ops.job_runs where run_id = 'run-1' order by zone").fetchall()
    assert rows == [("conformed",), ("staging",)]


def test_record_nodes_and_quality(db: Database) -> None:
    audit = JobAudit(db, run_id="run-2", zone="conformed", job_name="build")
    audit.start()

    audit.record_nodes(_nodes())
    audit.record_quality(_quality())

    with db.connect() as conn:
        nodes = conn.execute(
            "select job_id, run_id, zone, unique_id, resource_type, status, execution_time_s, rows_affected,"
            " failures, message, completed_at from ops.dbt_node_results order by unique_id"
        ).fetchall()
        quality = conn.execute(
            "select job_id, run_id, zone, rule_id, severity, status, failures, message"
            " from ops.dq_results order by rule_id"
        ).fetchall()
    assert nodes == [
        (
            audit.job_id,
            "run-2",
            "conformed",
            "model.conformed.dim_customer",
            "model",
            "success",
            0.25,
            42,
            None,
            "SELECT 42",
            COMPLETED,
        ),
        (
            audit.job_id,
            "run-2",
            "conformed",
            "test.conformed.unique_dim_customer",
            "test",
            "fail",
            0.01,
            None,
            3,
            "Got 3 results",
            COMPLETED,
        ),
    ]
    assert quality == [
        (audit.job_id, "run-2", "conformed", "not_null_dim_customer", "warn", "pass", 0, None),
        (audit.job_id, "run-2", "conformed", "unique_dim_customer", "error", "fail", 3, "Got 3 results"),
    ]


def test_recording_the_same_results_again_is_harmless(db: Database) -> None:
    audit = JobAudit(db, run_id="run-3", zone="semantic", job_name="build")
    audit.start()
    audit.record_nodes(_nodes())
    audit.record_quality(_quality())

    audit.record_nodes(_nodes())
    audit.record_quality(_quality())
    audit.record_nodes([])
    audit.record_quality([])

    with db.connect() as conn:
        counts = conn.execute(
            "select (select count(*) from ops.dbt_node_results), (select count(*) from ops.dq_results)"
        ).fetchone()
    assert counts == (2, 2)


def test_results_of_different_jobs_do_not_collide(db: Database) -> None:
    first = JobAudit(db, run_id="run-4", zone="conformed", job_name="build")
    second = JobAudit(db, run_id="run-4", zone="conformed", job_name="build")
    for audit in (first, second):
        audit.start()
        audit.record_nodes(_nodes())
    with db.connect() as conn:
        rows = conn.execute(
            "select job_id, count(*) from ops.dbt_node_results group by job_id order by job_id"
        ).fetchall()
    assert sorted(rows) == sorted([(first.job_id, 2), (second.job_id, 2)])


def test_audit_insert_is_rejected_without_migrations(database_url: str) -> None:
    audit = JobAudit(Database(database_url), run_id="r", zone="staging", job_name="extract")
    with pytest.raises(psycopg.errors.UndefinedTable):
        audit.start()
