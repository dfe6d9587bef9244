"""Job metrics pushed to a real Pushgateway-like HTTP server on loopback."""

from __future__ import annotations

import logging

import pytest
from pytest_httpserver import HTTPServer

from etl_shared import JobMetrics


def _gateway(httpserver: HTTPServer) -> str:
    return f"http://{httpserver.host}:{httpserver.port}"


def test_push_puts_the_registry_grouped_by_job_and_zone(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/metrics/job/etl_extract/zone/staging", method="POST"
    ).respond_with_data("", status=200)
    metrics = JobMetrics("staging", "extract")
    metrics.add_rows("fx", "rates", 120, byte_count=4096)
    metrics.add_rows("fx", "rates", 30)
    metrics.dq_failures.labels("staging", "rates_not_null", "error").set(2)
    metrics.finish(0)

    assert metrics.push(_gateway(httpserver)) is True

    httpserver.check_assertions()
    (request, _response), *_ = httpserver.log
    body = request.get_data(as_text=True)
    assert 'etl_job_duration_seconds{zone="staging"}' in body
    assert 'etl_job_exit_code{zone="staging"} 0.0' in body
    assert 'etl_rows_total{entity="rates",source="fx",zone="staging"} 150.0' in body
    assert 'etl_bytes_total{entity="rates",source="fx",zone="staging"} 4096.0' in body
    assert 'etl_dq_failures{rule="rates_not_null",severity="error",zone="staging"} 2.0' in body
    assert "etl_job_last_success_timestamp_seconds" in body


def test_push_accepts_a_trailing_slash(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/metrics/job/etl_build/zone/semantic", method="POST"
    ).respond_with_data("")
    metrics = JobMetrics("semantic", "build")
    metrics.finish(0)
    assert metrics.push(_gateway(httpserver) + "/") is True
    httpserver.check_assertions()


@pytest.mark.parametrize("url", [None, ""])
def test_push_without_a_gateway_does_nothing(httpserver: HTTPServer, url: str | None) -> None:
    metrics = JobMetrics("staging", "extract")
    metrics.finish(0)
    assert metrics.push(url) is False
    assert httpserver.log == []


def test_failing_gateway_is_logged_not_raised(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/metrics/job/etl_extract/zone/staging", method="POST").respond_with_data(
        "broken", status=500
    )
    metrics = JobMetrics("staging", "extract")
    metrics.finish(3)

    with caplog.at_level(logging.WARNING, logger="etl_shared._metrics"):
        assert metrics.push(_gateway(httpserver)) is False

    assert len(httpserver.log) == 1
    (record,) = [r for r in caplog.records if r.name == "etl_shared._metrics"]
    assert record.levelno == logging.WARNING
    assert "could not push metrics" in record.getMessage()
    assert str(httpserver.port) in record.getMessage()


def test_unreachable_gateway_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    metrics = JobMetrics("staging", "extract")
    metrics.finish(0)
    with caplog.at_level(logging.WARNING, logger="etl_shared._metrics"):
        assert metrics.push("http://127.0.0.1:1") is False
    assert any("could not push metrics" in r.getMessage() for r in caplog.records)


def test_last_success_is_set_only_on_success() -> None:
    succeeded = JobMetrics("conformed", "build")
    succeeded.finish(0)
    failed = JobMetrics("conformed", "build")
    failed.finish(4)

    assert succeeded.registry.get_sample_value("etl_job_exit_code", {"zone": "conformed"}) == 0
    last_success = succeeded.registry.get_sample_value(
        "etl_job_last_success_timestamp_seconds", {"zone": "conformed"}
    )
    assert last_success is not None and last_success > 1_600_000_000
    assert failed.registry.get_sample_value("etl_job_exit_code", {"zone": "conformed"}) == 4
    assert (
        failed.registry.get_sample_value("etl_job_last_success_timestamp_seconds", {"zone": "conformed"})
        is None
    )
    duration = failed.registry.get_sample_value("etl_job_duration_seconds", {"zone": "conformed"})
    assert duration is not None and duration >= 0


def test_each_job_has_its_own_registry() -> None:
    first, second = JobMetrics("staging", "a"), JobMetrics("staging", "b")
    first.add_rows("fx", "rates", 5)
    labels = {"zone": "staging", "source": "fx", "entity": "rates"}
    assert first.registry.get_sample_value("etl_rows_total", labels) == 5
    assert second.registry.get_sample_value("etl_rows_total", labels) is None
