"""Per-source pull figures in the job's metrics registry."""

from __future__ import annotations

from etl_shared import JobMetrics


def test_observe_pull_records_every_figure_by_source_and_entity() -> None:
    metrics = JobMetrics("staging", "staging")
    metrics.observe_pull("crm", "accounts", records=120, byte_count=4096, pages=3, retries=2, seconds=1.5)
    metrics.observe_pull("crm", "accounts", records=5, byte_count=10, pages=1, retries=0, seconds=0.25)
    labels = {"zone": "staging", "source": "crm", "entity": "accounts"}
    sample = metrics.registry.get_sample_value
    assert sample("etl_rows_total", labels) == 125
    assert sample("etl_bytes_total", labels) == 4106
    assert sample("etl_source_pages_total", labels) == 4
    assert sample("etl_source_http_retries_total", labels) == 2
    assert sample("etl_pull_duration_seconds", labels) == 0.25
