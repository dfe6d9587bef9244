"""The life of one zone job: audit row, exit codes, logs and metrics, on a real database."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_httpserver import HTTPServer

from etl_shared import (
    ConfigurationError,
    Database,
    DataQualityError,
    JobContext,
    Settings,
    SourceTransientError,
    count_rows,
    resolve_database_url,
    run_job,
)
from etl_shared._job import RowCounter

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ETL_ variables from outside; the root logger as it was after each job."""
    for name in ("ETL_DATABASE_URL", "ETL_PUSHGATEWAY_URL", "ETL_LOG_LEVEL", "ETL_RUN_ID", "ETL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _settings(url: str, tmp_path: Path, **more: Any) -> Settings:
    return Settings(database_url=url, run_id="20240131T020000Z-abc123", data_dir=tmp_path, **more)


def _run(settings: Settings, work: Callable[[JobContext], None], zone: str = "staging") -> int:
    # run_job binds run id and zone for the rest of the context: keep that out of other tests.
    return contextvars.copy_context().run(run_job, zone, "extract", settings, work)


def _job_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select run_id, zone, job_name, status, exit_code, counts, error, ended_at is not null"
            " from ops.job_runs"
        ).fetchall()


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_success_records_the_counts(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def work(context: JobContext) -> None:
        assert context.settings.run_id == "20240131T020000Z-abc123"
        context.db.transaction(lambda conn: conn.execute("create table staging.items as select 1 as id"))
        context.counts["rows"] = 3
        context.counts["entities"] = ["rates"]
        context.metrics.add_rows("fx", "rates", 3)

    assert _run(_settings(database_url, tmp_path), work) == 0

    assert _job_rows(database_url) == [
        (
            "20240131T020000Z-abc123",
            "staging",
            "extract",
            "succeeded",
            0,
            {"rows": 3, "entities": ["rates"]},
            None,
            True,
        )
    ]
    events = _json_lines(capsys.readouterr().out)
    assert any(e["message"] == "job extract succeeded" for e in events)
    assert all(e["run_id"] == "20240131T020000Z-abc123" and e["zone"] == "staging" for e in events)


def test_data_quality_failure_returns_4(database_url: str, tmp_path: Path) -> None:
    def work(context: JobContext) -> None:
        context.counts["rows"] = 10
        raise DataQualityError("2 data-quality rule(s) failed: rates_positive (4 failing)")

    assert _run(_settings(database_url, tmp_path), work) == 4

    ((*_, status, code, _counts, error, ended),) = _job_rows(database_url)
    assert (status, code, ended) == ("failed", 4, True)
    assert error == "DataQualityError: 2 data-quality rule(s) failed: rates_positive (4 failing)"


def test_source_failure_returns_3(database_url: str, tmp_path: Path) -> None:
    def work(context: JobContext) -> None:
        raise SourceTransientError("503 from https://api.example.com/?api_key=k-123")

    assert _run(_settings(database_url, tmp_path), work) == 3
    ((*_, status, code, _counts, error, _ended),) = _job_rows(database_url)
    assert (status, code) == ("failed", 3)
    assert error == "SourceTransientError: 503 from https://api.example.com/?api_key=***"


def test_unexpected_error_returns_1_and_logs_the_traceback(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def work(context: JobContext) -> None:
        raise ValueError("unexpected shape")

    assert _run(_settings(database_url, tmp_path), work) == 1

    ((*_, status, code, _counts, error, _ended),) = _job_rows(database_url)
    assert (status, code, error) == ("failed", 1, "ValueError: unexpected shape")
    (failure,) = [e for e in _json_lines(capsys.readouterr().out) if e["level"] == "ERROR"]
    assert "ValueError: unexpected shape" in failure["exception"]


def test_configuration_error_returns_2(database_url: str, tmp_path: Path) -> None:
    def work(context: JobContext) -> None:
        raise ConfigurationError("source 'fx' has no base_url")

    assert _run(_settings(database_url, tmp_path), work) == 2
    ((*_, status, code, _counts, error, _ended),) = _job_rows(database_url)
    assert (status, code, error) == ("failed", 2, "ConfigurationError: source 'fx' has no base_url")


def test_unreachable_database_returns_5_without_leaking_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[bool] = []
    settings = _settings("postgresql://etl:Sup3r-Secret@127.0.0.1:1/etl", tmp_path)

    assert _run(settings, lambda context: ran.append(True)) == 5

    assert ran == []
    captured = capsys.readouterr()
    assert "Sup3r-Secret" not in captured.out + captured.err
    assert any("etl:***@127.0.0.1:1" in e["message"] for e in _json_lines(captured.out))


def test_metrics_are_pushed_with_the_exit_code(
    database_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/metrics/job/etl_extract/zone/staging", method="POST").respond_with_data("")
    settings = _settings(
        database_url, tmp_path, pushgateway_url=f"http://{httpserver.host}:{httpserver.port}"
    )

    def work(context: JobContext) -> None:
        context.metrics.add_rows("fx", "rates", 7)
        raise DataQualityError("quarantine above threshold")

    assert _run(settings, work) == 4

    httpserver.check_assertions()
    (start, _), (end, _) = httpserver.log  # pushed once at the start, once at the end
    started = start.get_data(as_text=True)
    assert 'etl_job_status{status="running",zone="staging"} 1.0' in started
    assert "etl_job_exit_code{" not in started  # the previous run's exit code stays until the end
    body = end.get_data(as_text=True)
    assert 'etl_job_exit_code{zone="staging"} 4.0' in body
    assert 'etl_job_status{status="failed",zone="staging"} 1.0' in body
    assert 'etl_job_status{status="running",zone="staging"} 0.0' in body
    assert 'etl_job_duration_sla_seconds{zone="staging"} 3600.0' in body
    assert 'etl_rows_total{entity="rates",source="fx",zone="staging"} 7.0' in body
    assert "etl_job_last_success_timestamp_seconds{" not in body


def test_second_job_reuses_the_migrated_database(database_url: str, tmp_path: Path) -> None:
    settings = _settings(database_url, tmp_path)
    assert _run(settings, lambda context: None, zone="staging") == 0
    assert _run(settings, lambda context: None, zone="conformed") == 0
    assert sorted(row[1] for row in _job_rows(database_url)) == ["conformed", "staging"]


def test_resolve_database_url_prefers_the_configured_url(tmp_path: Path) -> None:
    settings = _settings("postgresql://etl:pw@db/etl", tmp_path)
    assert resolve_database_url(settings) == "postgresql://etl:pw@db/etl"
    assert not (tmp_path / "postgres").exists()  # no embedded server was started


def test_count_rows_counts_real_tables(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema conformed")
        conn.execute("create table conformed.dim_customer as select g as id from generate_series(1, 5) g")
        conn.execute('create table conformed."Empty Table" (id int)')
        conn.execute("create table conformed.fct as select g as id from generate_series(1, 3) g")
    tables = ["conformed.dim_customer", "conformed.Empty Table", "conformed.fct"]
    expected = {"conformed.dim_customer": 5, "conformed.Empty Table": 0, "conformed.fct": 3}
    for connections in (1, 2, 5):  # three tables over one, two and (at most) three connections
        counts = count_rows(Database(database_url), tables, connections=connections)
        assert counts == expected and list(counts) == tables
    assert count_rows(Database(database_url), []) == {}


def test_row_counter_counts_tables_as_they_are_built(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create schema conformed")
        conn.execute("create table conformed.early as select g as id from generate_series(1, 4) g")
        conn.execute("create table conformed.late as select g as id from generate_series(1, 2) g")
        counter = RowCounter(Database(database_url), serial=True)
        counter.submit("conformed.early")
        counter.submit("conformed.missing")  # fails in the background: counted (and raising) at the end
        counter.close()
        assert "a background row count failed" in caplog.text
        # a table built again (dbt retry) is counted again, after its second build
        counter.submit("conformed.early")
        conn.execute("insert into conformed.early values (5), (6)")
        counter.submit("conformed.early")
        # conformed.late was never submitted: counted when the counts are asked for
        assert counter.counts(["conformed.late", "conformed.early"]) == {
            "conformed.late": 2,
            "conformed.early": 6,
        }
        with pytest.raises(psycopg.errors.UndefinedTable):
            counter.counts(["conformed.missing"])
    assert RowCounter(Database(database_url)).counts([]) == {}


def test_count_rows_of_a_missing_table_raises(database_url: str) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        count_rows(Database(database_url), ["conformed.missing"])


def test_a_sigterm_after_the_job_recorded_success_does_not_change_its_exit_code(
    database_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    """The signal arrives while the finished job pushes its metrics (a slow gateway): the job row
    says succeeded, and the exit code agrees (it used to be 143)."""
    import os
    import signal
    import threading
    import time

    pushed = threading.Event()

    def slow_push(request: Any) -> Any:
        from werkzeug import Response

        if b'etl_job_status{status="succeeded",zone="staging"} 1.0' in request.get_data():
            pushed.set()
            time.sleep(1.0)  # the signal arrives meanwhile (below)
        return Response("")

    httpserver.expect_request("/metrics/job/etl_extract/zone/staging", method="POST").respond_with_handler(
        slow_push
    )
    settings = _settings(
        database_url, tmp_path, pushgateway_url=f"http://{httpserver.host}:{httpserver.port}"
    )

    def signal_when_pushed() -> None:
        if pushed.wait(timeout=60):
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=signal_when_pushed, daemon=True)
    sender.start()
    assert _run(settings, lambda context: None) == 0
    sender.join(timeout=5)
    assert pushed.is_set()
    ((_, _, _, status, exit_code, _, _, _),) = _job_rows(database_url)
    assert (status, exit_code) == ("succeeded", 0)
