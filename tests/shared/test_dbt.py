"""dbt: profiles from URLs, outcomes to exceptions, and two real ``dbt build`` runs."""

from __future__ import annotations

import contextvars
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from etl_shared import (
    ConfigurationError,
    DatabaseError,
    DataQualityError,
    DbtOutcome,
    DbtProject,
    JobContext,
    NodeResult,
    QualityResult,
    Settings,
    TransformError,
    build_zone,
    profile_from_url,
    raise_for_outcome,
    run_job,
)
from etl_shared._db import session_options
from etl_shared._dbt import DbtEventLog
from etl_shared._errors import exit_code_for

NOW = datetime(2024, 1, 31, 2, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------- profiles


def test_profile_for_a_tcp_url_with_password_and_sslmode() -> None:
    url = "postgresql://etl_user:Sup3r%40Secret@crdb.example.com:26257/warehouse?sslmode=verify-full&sslrootcert=/certs/ca.crt"
    profile = profile_from_url(url, profile="conformed", schema="conformed", threads=4)

    assert profile["conformed"]["target"] == "default"
    output = profile["conformed"]["outputs"]["default"]
    assert output == {
        "type": "postgres",
        "host": "crdb.example.com",
        "port": 26257,
        "user": "etl_user",
        "password": "{{ env_var('ETL_DBT_PASSWORD', '') }}",
        "dbname": "warehouse",
        "schema": "conformed",
        "threads": 4,
        "autocommit": True,
        "connect_timeout": 10,
        "retries": 3,
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.crt",
    }
    written = yaml.safe_dump(profile)
    assert "Sup3r" not in written and "Secret" not in written


def test_profile_for_a_unix_socket_url() -> None:
    profile = profile_from_url("postgresql://postgres:@/t_abc?host=/srv/etlpg/pg", profile="p", schema="s")
    output = profile["p"]["outputs"]["default"]
    assert (output["host"], output["port"], output["user"], output["dbname"]) == (
        "/srv/etlpg/pg",
        5432,
        "postgres",
        "t_abc",
    )
    assert output["autocommit"] is True
    assert "env_var(" in output["password"]
    assert "sslmode" not in output


def test_profile_with_port_in_the_query_and_defaults() -> None:
    output = profile_from_url("postgresql:///?host=%2Fvar%2Frun%2Fpg&port=5433", profile="p", schema="s")[
        "p"
    ]["outputs"]["default"]
    assert (output["host"], output["port"], output["user"], output["dbname"]) == (
        "/var/run/pg",
        5433,
        "root",
        "postgres",
    )


@pytest.mark.parametrize(
    "url", ["postgresql:///warehouse", "postgresql://user:pw@/warehouse?sslmode=disable"]
)
def test_profile_without_a_host_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="no host"):
        profile_from_url(url, profile="p", schema="s")


def test_project_without_dbt_project_yml_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no dbt_project\.yml"):
        DbtProject(tmp_path, profile="p", schema="s", work_dir=tmp_path / "work")


# ---------------------------------------------------------------------------------------------- outcomes


def _node(unique_id: str, resource_type: str, status: str, message: str | None = None) -> NodeResult:
    return NodeResult(unique_id, resource_type, status, 0.1, None, None, message, NOW)


def _rule(rule_id: str, severity: str, status: str, failures: int = 0) -> QualityResult:
    return QualityResult(rule_id, severity, status, failures, None)


@pytest.mark.parametrize(
    ("outcome", "error", "match"),
    [
        (
            DbtOutcome(
                success=False, error="Database Error\n  could not connect to server: Connection refused"
            ),
            DatabaseError,
            "could not reach the database",
        ),
        (
            DbtOutcome(success=False, error="Compilation Error in model x"),
            TransformError,
            "dbt failed: Compilation",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[
                    _node("model.p.ok", "model", "success"),
                    _node("model.p.broken", "model", "error", "syntax error at or near 'form'"),
                    _node("model.p.after", "model", "skipped"),
                ],
            ),
            TransformError,
            "1 dbt node.*model.p.broken: syntax error",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[
                    _node("model.p.broken", "model", "error", "server closed the connection unexpectedly")
                ],
            ),
            DatabaseError,
            "model.p.broken",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[_node("model.p.ok", "model", "success"), _node("test.p.unique_id", "test", "fail")],
                quality=[_rule("unique_id", "error", "fail", 3), _rule("not_null_id", "error", "pass")],
            ),
            DataQualityError,
            r"1 data-quality rule\(s\) failed: unique_id \(3 failing\)",
        ),
        (
            DbtOutcome(success=False, quality=[_rule("relationships_x", "error", "error")]),
            DataQualityError,
            "relationships_x",
        ),
        (
            DbtOutcome(success=False, nodes=[_node("model.p.a", "model", "skipped")]),
            TransformError,
            "skipped 1 node",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[
                    _node(
                        "model.p.history",
                        "model",
                        "error",
                        "Database Error in model history\n  canceling statement due to lock timeout\n  CONTEXT: while"
                        ' locking relation "customer_history"',
                    ),
                    _node("model.p.after", "model", "skipped"),
                ],
            ),
            DatabaseError,
            "(?s)stopped by a timeout.*ETL_LOCK_TIMEOUT_S",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[
                    _node(
                        "model.p.fact",
                        "model",
                        "error",
                        "Database Error in model fact\n  query execution canceled due to statement timeout",
                    )
                ],
            ),
            DatabaseError,
            "ETL_STATEMENT_TIMEOUT_S",
        ),
        (
            DbtOutcome(
                success=False,
                nodes=[
                    _node("test.p.unique_id", "test", "error", "canceling statement due to statement timeout")
                ],
                quality=[_rule("unique_id", "error", "error")],
            ),
            DatabaseError,
            "test.p.unique_id",
        ),
    ],
    ids=[
        "connect",
        "exception",
        "model-error",
        "model-connection-lost",
        "test-fail",
        "test-error",
        "skipped",
        "postgres-lock-timeout",
        "cockroach-statement-timeout",
        "test-stopped-by-a-timeout",
    ],
)
def test_raise_for_outcome(outcome: DbtOutcome, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        raise_for_outcome(outcome)


@pytest.mark.parametrize(
    "outcome",
    [
        DbtOutcome(success=True),
        DbtOutcome(
            success=True,
            nodes=[_node("model.p.ok", "model", "success"), _node("test.p.accepted", "test", "warn")],
            quality=[_rule("accepted_values_status", "warn", "warn", 7), _rule("unique_id", "error", "pass")],
        ),
    ],
    ids=["empty", "warn-only"],
)
def test_raise_for_outcome_accepts_success_and_warnings(outcome: DbtOutcome) -> None:
    raise_for_outcome(outcome)
    assert outcome.failed_nodes == []


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "none"),
        (["pass", "pass"], "pass"),
        (["pass", "warn"], "warn"),
        (["warn", "fail"], "fail"),
        (["pass", "error"], "fail"),
    ],
)
def test_quality_status(statuses: list[str], expected: str) -> None:
    outcome = DbtOutcome(success=True, quality=[_rule(f"r{i}", "error", s) for i, s in enumerate(statuses)])
    assert outcome.quality_status == expected


def test_failed_nodes() -> None:
    outcome = DbtOutcome(
        success=False,
        nodes=[
            _node("model.p.a", "model", "success"),
            _node("model.p.b", "model", "error"),
            _node("test.p.c", "test", "fail"),
            _node("test.p.d", "test", "warn"),
            _node("model.p.e", "model", "skipped"),
        ],
    )
    assert [n.unique_id for n in outcome.failed_nodes] == ["model.p.b", "test.p.c"]


# ---------------------------------------------------------------------------------------------- real dbt


def _write_dbt_project_yml(folder: Path, name: str) -> None:
    """A project ``name`` (its profile has the same name) whose models are tables, in ``folder/models``."""
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": name,
                "version": "1.0.0",
                "config-version": 2,
                "profile": name,
                "flags": {"postgres_skip_autocommit_transaction_statements": True},
                "models": {name: {"+materialized": "table"}},
            }
        )
    )


def _write_project(folder: Path, *, accepted_severity: str) -> Path:
    """A tiny dbt project: one table model and its tests; ``accepted_values`` on id can never hold."""
    _write_dbt_project_yml(folder, "tiny")
    (folder / "models" / "ids.sql").write_text("select 1 as id\n")
    (folder / "models" / "schema.yml").write_text(
        yaml.safe_dump(
            {
                "version": 2,
                "models": [
                    {
                        "name": "ids",
                        "columns": [
                            {
                                "name": "id",
                                "data_tests": [
                                    "unique",
                                    "not_null",
                                    {
                                        "accepted_values": {
                                            "arguments": {"values": [2]},
                                            "config": {"severity": accepted_severity},
                                        }
                                    },
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    return folder


def _tiny_project(tmp_path: Path, *, accepted_severity: str) -> DbtProject:
    return DbtProject(
        _write_project(tmp_path / "tiny", accepted_severity=accepted_severity),
        profile="tiny",
        schema="tiny",
        work_dir=tmp_path / "work",
    )


@pytest.mark.integration
def test_dbt_build_of_a_tiny_project(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _tiny_project(tmp_path, accepted_severity="warn")

    outcome = project.build(database_url)

    assert outcome.error is None
    assert outcome.success is True
    assert outcome.models == ["tiny.ids"]
    assert sorted((n.resource_type, n.status) for n in outcome.nodes) == [
        ("model", "success"),
        ("test", "pass"),
        ("test", "pass"),
        ("test", "warn"),
    ]
    assert outcome.failed_nodes == []
    assert sorted((q.rule_id, q.severity, q.status, q.failures) for q in outcome.quality) == [
        ("accepted_values_ids_id__2", "warn", "warn", 1),
        ("not_null_ids_id", "error", "pass", 0),
        ("unique_ids_id", "error", "pass", 0),
    ]
    assert outcome.quality_status == "warn"
    raise_for_outcome(outcome)  # a warning is not a failure
    assert (tmp_path / "work" / "target" / "manifest.json").is_file()
    assert not (tmp_path / "tiny" / "target").exists()  # the project folder may be read-only
    # no usage tracking: dbt would have written its cookie beside the profile
    assert (tmp_path / "work" / "profiles" / "profiles.yml").is_file()
    assert not (tmp_path / "work" / "profiles" / ".user.yml").exists()
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select id from tiny.ids").fetchall() == [(1,)]

    # dbt's events: info and above in the work folder's dbt.log, warnings also on stdout; no debug ones
    events = [json.loads(line) for line in (tmp_path / "work" / "logs" / "dbt.log").read_text().splitlines()]
    names = {e["info"]["name"] for e in events}
    assert {"LogModelResult", "LogTestResult"} <= names
    assert {e["info"]["level"] for e in events} <= {"info", "warn", "error"}
    assert "SQLQuery" not in names
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown and {e["info"]["level"] for e in shown} == {"warn"}
    assert any("accepted_values_ids_id" in e["info"]["msg"] for e in shown)


@pytest.mark.integration
def test_a_build_of_the_same_project_version_writes_no_json_artefacts(
    database_url: str, tmp_path: Path
) -> None:
    project = _tiny_project(tmp_path, accepted_severity="warn")
    target = tmp_path / "work" / "target"

    def written() -> dict[str, int]:
        return {name: (target / name).stat().st_mtime_ns for name in ("manifest.json", "run_results.json")}

    assert project.build(database_url, artefacts_key="v1").success is True
    first = written()
    assert project.build(database_url, artefacts_key="v1").success is True
    assert written() == first  # the manifest of v1 is there: nothing written again
    assert project.build(database_url, artefacts_key="v2").success is True
    second = written()
    assert all(second[name] != first[name] for name in second)  # another version: written
    assert project.build(database_url).success is True  # no key: always written
    assert all(written()[name] != second[name] for name in second)


def test_dbt_event_log_filters_by_level_and_hides_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dbt_common.events.base_types import EventLevel, msg_from_base_event
    from dbt_common.events.types import Note

    log = DbtEventLog(tmp_path / "logs" / "dbt.log", secrets=["s3cret-pw", ""])
    for level, text in [
        (EventLevel.DEBUG, "select 1"),
        (EventLevel.INFO, "connected with s3cret-pw"),
        (EventLevel.WARN, "a warning"),
    ]:
        log(msg_from_base_event(Note(msg=text), level=level))
    log.close()

    written = [json.loads(line)["info"] for line in (tmp_path / "logs" / "dbt.log").read_text().splitlines()]
    assert [(e["level"], e["msg"]) for e in written] == [
        ("info", "connected with *****"),
        ("warn", "a warning"),
    ]
    assert [json.loads(line)["info"]["msg"] for line in capsys.readouterr().out.splitlines()] == ["a warning"]


@pytest.mark.integration
@pytest.mark.usefixtures("_restore_logging")
def test_failing_error_test_gives_a_data_quality_failure(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ETL_DATABASE_URL", "ETL_PUSHGATEWAY_URL", "ETL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    project = _tiny_project(tmp_path, accepted_severity="error")
    settings = Settings(database_url=database_url, run_id="run-dq", data_dir=tmp_path)  # type: ignore[arg-type]
    raised: list[BaseException] = []

    def work(context: JobContext) -> None:
        try:
            build_zone(context, project)
        except BaseException as exc:
            raised.append(exc)
            raise

    code = contextvars.copy_context().run(run_job, "conformed", "build", settings, work)

    assert code == 4
    assert len(raised) == 1 and isinstance(raised[0], DataQualityError)
    assert "accepted_values_ids_id" in str(raised[0])
    with psycopg.connect(database_url) as conn:
        job: Any = conn.execute("select status, exit_code, error from ops.job_runs").fetchone()
        quality = conn.execute(
            "select rule_id, severity, status, failures from ops.dq_results order by rule_id"
        ).fetchall()
        nodes = conn.execute(
            "select resource_type, status from ops.dbt_node_results order by unique_id"
        ).fetchall()
    assert job[0:2] == ("failed", 4)
    assert "DataQualityError" in job[2]
    assert [(severity, status, failures) for _, severity, status, failures in quality] == [
        ("error", "fail", 1),
        ("error", "pass", 0),
        ("error", "pass", 0),
    ]
    assert quality[0][0].startswith("accepted_values_ids_id")
    assert ("model", "success") in nodes and ("test", "fail") in nodes


def _write_conflicting_project(folder: Path, conflicts: int) -> Path:
    """A project whose first model is cancelled with SQLSTATE 40001 on its first ``conflicts`` runs (a
    sequence counts the attempts: nextval is not rolled back), and a second model that depends on it."""
    _write_dbt_project_yml(folder, "conflicting")
    (folder / "models" / "first.sql").write_text(
        "{{ config(pre_hook=\"select conflicting.conflict_on_attempt('first', " + str(conflicts) + ')") }}\n'
        "select 1 as id\n"
    )
    (folder / "models" / "second.sql").write_text("select id + 1 as id from {{ ref('first') }}\n")
    return folder


@pytest.mark.integration
@pytest.mark.parametrize(
    ("conflicts", "succeeds", "artefacts_kept"), [(2, True, False), (4, False, False), (2, True, True)]
)
def test_a_node_cancelled_by_a_serialization_conflict_is_retried(
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    conflicts: int,
    succeeds: bool,
    artefacts_kept: bool,
) -> None:
    project = DbtProject(
        _write_conflicting_project(tmp_path / "conflicting", conflicts),
        profile="conflicting",
        schema="conflicting",
        work_dir=tmp_path / "work",
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema if not exists conflicting")
        if artefacts_kept:
            # an earlier build of the same project left its JSON artefacts; this one writes none, and
            # `dbt retry` must still rerun this build's failed nodes, not the earlier build's
            conn.execute(
                "create or replace function conflicting.conflict_on_attempt(name text, conflicts integer)"
                " returns integer language sql as 'select 0'"
            )
            assert project.build(database_url, artefacts_key="v1").success is True
        conn.execute("drop sequence if exists conflicting.attempts")
        conn.execute("create sequence conflicting.attempts")
        conn.execute(
            """create or replace function conflicting.conflict_on_attempt(name text, conflicts integer)
            returns integer language plpgsql as $$
            declare attempt integer := nextval('conflicting.attempts');
            begin
                if attempt <= conflicts then
                    raise exception 'could not serialize access due to read/write dependencies among transactions'
                        using errcode = '40001';
                end if;
                return attempt;
            end $$"""
        )
    results = tmp_path / "work" / "target" / "run_results.json"
    before = results.stat().st_mtime_ns if artefacts_kept else None

    outcome = project.build(database_url, artefacts_key="v1")

    if artefacts_kept:  # run_results.json was written for the retry only
        assert results.stat().st_mtime_ns != before
    retries = [r.getMessage() for r in caplog.records if "serialization conflict" in r.getMessage()]
    statuses = sorted((n.unique_id.split(".")[-1], n.status) for n in outcome.nodes)
    if succeeds:
        assert outcome.success is True
        assert statuses == [("first", "success"), ("second", "success")]
        assert outcome.models == ["conflicting.first", "conflicting.second"]
        assert len(retries) == 2
        with psycopg.connect(database_url) as conn:
            assert conn.execute("select id from conflicting.second").fetchall() == [(2,)]
    else:
        assert outcome.success is False
        assert statuses == [("first", "error"), ("second", "skipped")]
        assert len(retries) == 3  # CONFLICT_RETRIES, then the job gives up: exit 5, a rerun may help
        with pytest.raises(DatabaseError, match="could not serialize access"):
            raise_for_outcome(outcome)


@pytest.mark.integration
def test_dbt_connections_carry_the_job_lock_timeout(database_url: str, tmp_path: Path) -> None:
    """dbt's own connections get the job's session options (PGOPTIONS): a model whose table another
    session holds locked fails with the lock timeout, classified as the database's failure (exit 5)."""
    project = _tiny_project(tmp_path, accepted_severity="warn")
    assert project.build(database_url).error is None
    project.session_options = session_options(lock_timeout_s=1, statement_timeout_s=120)
    with psycopg.connect(database_url) as blocker:
        blocker.execute("lock table tiny.ids in access exclusive mode")
        outcome = project.build(database_url)
        blocker.rollback()
    assert [n.unique_id for n in outcome.failed_nodes if "lock timeout" in (n.message or "")]
    with pytest.raises(DatabaseError, match="ETL_LOCK_TIMEOUT_S") as raised:
        raise_for_outcome(outcome)
    assert exit_code_for(raised.value) == 5
