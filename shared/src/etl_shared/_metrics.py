"""Prometheus metrics of one job, pushed to a Pushgateway when one is configured.

Batch jobs do not live long enough to be scraped, so each job owns a registry and pushes it once,
in a ``finally`` block, grouped by job and zone (the last push per group wins at the gateway).
"""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway

_log = logging.getLogger(__name__)


class JobMetrics:
    def __init__(self, zone: str, job_name: str) -> None:
        self.zone = zone
        self.job_name = job_name
        self.registry = CollectorRegistry()
        self.started = time.monotonic()
        self.duration = Gauge(
            "etl_job_duration_seconds", "Wall time of the last job run", ["zone"], registry=self.registry
        )
        self.status = Gauge(
            "etl_job_exit_code",
            "Exit code of the last job run (0 = success)",
            ["zone"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "etl_job_last_success_timestamp_seconds",
            "Unix time of the last successful job run",
            ["zone"],
            registry=self.registry,
        )
        self.rows = Counter(
            "etl_rows",
            "Rows written, by zone, source and entity",
            ["zone", "source", "entity"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "etl_bytes", "Bytes read from sources", ["zone", "source", "entity"], registry=self.registry
        )
        self.pages = Counter(
            "etl_source_pages",
            "Pages or files read from sources",
            ["zone", "source", "entity"],
            registry=self.registry,
        )
        self.http_retries = Counter(
            "etl_source_http_retries",
            "HTTP requests retried",
            ["zone", "source", "entity"],
            registry=self.registry,
        )
        self.pull_duration = Gauge(
            "etl_pull_duration_seconds",
            "Wall time of the last pull of a source entity",
            ["zone", "source", "entity"],
            registry=self.registry,
        )
        self.dq_failures = Gauge(
            "etl_dq_failures",
            "Failing records per data-quality rule",
            ["zone", "rule", "severity"],
            registry=self.registry,
        )

    def add_rows(self, source: str, entity: str, rows: int, byte_count: int = 0) -> None:
        self.rows.labels(self.zone, source, entity).inc(rows)
        if byte_count:
            self.bytes.labels(self.zone, source, entity).inc(byte_count)

    def observe_pull(
        self,
        source: str,
        entity: str,
        *,
        records: int,
        byte_count: int,
        pages: int,
        retries: int,
        seconds: float,
    ) -> None:
        """Per-source figures of one pull (records, bytes, pages or files, HTTP retries, duration)."""
        self.add_rows(source, entity, records, byte_count)
        self.pages.labels(self.zone, source, entity).inc(pages)
        self.http_retries.labels(self.zone, source, entity).inc(retries)
        self.pull_duration.labels(self.zone, source, entity).set(seconds)

    def finish(self, exit_code: int) -> None:
        self.duration.labels(self.zone).set(time.monotonic() - self.started)
        self.status.labels(self.zone).set(exit_code)
        if exit_code == 0:
            self.last_success.labels(self.zone).set_to_current_time()

    def push(self, gateway_url: str | None) -> bool:
        """Push to the gateway; a failing gateway is logged, never fatal to the job."""
        if not gateway_url:
            return False
        try:
            push_to_gateway(
                gateway_url,
                job=f"etl_{self.job_name}",
                registry=self.registry,
                grouping_key={"zone": self.zone},
                timeout=10,
            )
            return True
        except Exception as exc:
            _log.warning("could not push metrics to %s: %s", gateway_url, exc)
            return False
