"""Prometheus metrics of one job, pushed to a Pushgateway when one is configured.

Batch jobs do not live long enough to be scraped, so each job owns a registry and pushes it twice,
grouped by job (``etl_<job name>``) and zone: once at the start (status ``running``, start time, duration
SLA) and once in a ``finally`` block at the end. Pushes use POST, so at the gateway a push replaces
only the metric names it carries: the last success time of a job survives its failed runs, and the
figures of the previous run stay until the next run reports the same metric.

Names, types and labels are stable (alerts, the Grafana dashboard and docs/monitoring.md rely on them);
:data:`METRICS` lists them all.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, pushadd_to_gateway

_log = logging.getLogger(__name__)

#: Run status values of ``etl_job_status`` (exactly one is 1 at any time).
JOB_STATUSES = ("running", "succeeded", "failed")

#: Duration SLA of a zone's job when ``ETL_DURATION_SLA_S`` is unset (seconds).
DEFAULT_DURATION_SLA_S: dict[str, float] = {"staging": 3600.0, "conformed": 7200.0, "semantic": 7200.0}

#: Every metric: exposed name -> (type, labels, meaning). Counters are exposed with ``_total``.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "etl_job_status": (
        "gauge",
        ("zone", "status"),
        "1 for the job's current status (running, succeeded, failed)",
    ),
    "etl_job_exit_code": ("gauge", ("zone",), "Exit code of the last job run (0 = success)"),
    "etl_job_duration_seconds": ("gauge", ("zone",), "Wall time of the last job run"),
    "etl_job_duration_sla_seconds": ("gauge", ("zone",), "Longest acceptable wall time of a job run"),
    "etl_job_last_start_timestamp_seconds": ("gauge", ("zone",), "Unix time the last job run started"),
    "etl_job_last_success_timestamp_seconds": (
        "gauge",
        ("zone",),
        "Unix time of the last successful job run",
    ),
    "etl_rows_total": ("counter", ("zone", "source", "entity"), "Rows written, by zone, source and entity"),
    "etl_bytes_total": (
        "counter",
        ("zone", "source", "entity"),
        "Bytes read from sources or written to exports",
    ),
    "etl_pulls_total": (
        "counter",
        ("zone", "source", "entity", "status"),
        "Pulls of a source entity by outcome (committed, failed)",
    ),
    "etl_pull_duration_seconds": (
        "gauge",
        ("zone", "source", "entity"),
        "Wall time of the last pull of a source entity",
    ),
    "etl_source_pages_total": ("counter", ("zone", "source", "entity"), "Pages or files read from sources"),
    "etl_source_http_requests_total": (
        "counter",
        ("zone", "source", "entity"),
        "HTTP requests sent to REST sources (retries included)",
    ),
    "etl_source_http_retries_total": ("counter", ("zone", "source", "entity"), "HTTP requests retried"),
    "etl_source_last_pull_timestamp_seconds": (
        "gauge",
        ("zone", "source", "entity"),
        "Unix time of the last committed pull of a configured source entity",
    ),
    "etl_source_freshness_sla_seconds": (
        "gauge",
        ("zone", "source", "entity"),
        "Longest acceptable age of a source entity's last committed pull (freshness_sla_hours)",
    ),
    "etl_dq_failures": (
        "gauge",
        ("zone", "rule", "severity"),
        "Failing records (or rows of a failing test) per data-quality rule in the last run",
    ),
    "etl_dq_rule_failed": (
        "gauge",
        ("zone", "rule", "severity"),
        "1 when a data-quality rule's failures were above its threshold (status fail or error)",
    ),
    "etl_quarantined_rows": (
        "gauge",
        ("zone", "entity", "severity"),
        "Rows the last run put in quarantine, by entity and rule severity",
    ),
    "etl_exported_files_total": ("counter", ("zone", "kind"), "Export files written, by kind"),
    "etl_schema_changes_total": (
        "counter",
        ("zone", "source", "entity", "kind", "action"),
        "Schema changes a pull found (new_column, missing_column, type_mismatch), warned or failed",
    ),
}


def _seconds(value: float | datetime | None) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    return None if value is None else float(value)


class JobMetrics:
    def __init__(self, zone: str, job_name: str, *, duration_sla_s: float | None = None) -> None:
        self.zone = zone
        self.job_name = job_name
        #: None: the zone's default; 0: no SLA.
        self.duration_sla_s = DEFAULT_DURATION_SLA_S.get(zone) if duration_sla_s is None else duration_sla_s
        self.registry = CollectorRegistry()
        self.started = time.monotonic()

        def gauge(name: str) -> Gauge:
            _kind, labels, text = METRICS[name]
            return Gauge(name, text, list(labels), registry=self.registry)

        def counter(name: str) -> Counter:
            _kind, labels, text = METRICS[name]
            return Counter(name.removesuffix("_total"), text, list(labels), registry=self.registry)

        self.job_status = gauge("etl_job_status")
        self.status = gauge("etl_job_exit_code")
        self.duration = gauge("etl_job_duration_seconds")
        self.duration_sla = gauge("etl_job_duration_sla_seconds")
        self.last_start = gauge("etl_job_last_start_timestamp_seconds")
        self.last_success = gauge("etl_job_last_success_timestamp_seconds")
        self.rows = counter("etl_rows_total")
        self.bytes = counter("etl_bytes_total")
        self.pulls = counter("etl_pulls_total")
        self.pull_duration = gauge("etl_pull_duration_seconds")
        self.pages = counter("etl_source_pages_total")
        self.http_requests = counter("etl_source_http_requests_total")
        self.http_retries = counter("etl_source_http_retries_total")
        self.source_last_pull = gauge("etl_source_last_pull_timestamp_seconds")
        self.source_freshness_sla = gauge("etl_source_freshness_sla_seconds")
        self.dq_failures = gauge("etl_dq_failures")
        self.dq_rule_failed = gauge("etl_dq_rule_failed")
        self.quarantined = gauge("etl_quarantined_rows")
        self.exported_files = counter("etl_exported_files_total")
        self.schema_changes = counter("etl_schema_changes_total")

    # -- the job ---------------------------------------------------------------------------------

    def _set_status(self, current: str) -> None:
        for status in JOB_STATUSES:
            self.job_status.labels(self.zone, status).set(1 if status == current else 0)

    def _set_sla(self) -> None:
        if self.duration_sla_s:
            self.duration_sla.labels(self.zone).set(self.duration_sla_s)

    def start(self, gateway_url: str | None = None) -> bool:
        """Mark the job running (start time, duration SLA) and push that at once, so that a run that
        hangs can be seen overrunning its SLA before it ends."""
        self.started = time.monotonic()
        self.last_start.labels(self.zone).set_to_current_time()
        self._set_status("running")
        self._set_sla()
        return self.push(gateway_url)

    def finish(self, exit_code: int) -> None:
        self.duration.labels(self.zone).set(time.monotonic() - self.started)
        self.status.labels(self.zone).set(exit_code)
        self._set_status("succeeded" if exit_code == 0 else "failed")
        self._set_sla()
        if exit_code == 0:
            self.last_success.labels(self.zone).set_to_current_time()

    # -- what the job did ------------------------------------------------------------------------

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
        requests: int = 0,
    ) -> None:
        """Per-source figures of one committed pull (records, bytes, pages or files, HTTP requests and
        retries, duration)."""
        self.add_rows(source, entity, records, byte_count)
        self.pulls.labels(self.zone, source, entity, "committed").inc()
        self.pages.labels(self.zone, source, entity).inc(pages)
        self.http_requests.labels(self.zone, source, entity).inc(requests)
        self.http_retries.labels(self.zone, source, entity).inc(retries)
        self.pull_duration.labels(self.zone, source, entity).set(seconds)

    def observe_pull_failed(self, source: str, entity: str, *, seconds: float | None = None) -> None:
        self.pulls.labels(self.zone, source, entity, "failed").inc()
        if seconds is not None:
            self.pull_duration.labels(self.zone, source, entity).set(seconds)

    def observe_schema_change(self, source: str, entity: str, kind: str, action: str) -> None:
        """One schema change a pull found (ops.schema_changes); action ``failed``: a strict contract
        stopped the pull."""
        self.schema_changes.labels(self.zone, source, entity, kind, action).inc()

    def observe_freshness(
        self,
        source: str,
        entity: str,
        *,
        last_pull: float | datetime | None,
        sla_s: float | None,
    ) -> None:
        """A configured source entity's last committed pull (Unix time; None: never) and its freshness
        SLA (None: none)."""
        last = _seconds(last_pull)
        if last is not None:
            self.source_last_pull.labels(self.zone, source, entity).set(last)
        if sla_s:
            self.source_freshness_sla.labels(self.zone, source, entity).set(sla_s)

    def observe_dq(self, rule: str, severity: str, *, failures: int, status: str) -> None:
        """One data-quality rule's result; ``status`` fail or error means above its threshold."""
        self.dq_failures.labels(self.zone, rule, severity).set(failures)
        self.dq_rule_failed.labels(self.zone, rule, severity).set(1 if status in {"fail", "error"} else 0)

    def observe_quarantine(self, entity: str, severity: str, rows: int) -> None:
        self.quarantined.labels(self.zone, entity, severity).set(rows)

    def observe_export(self, kind: str, *, rows: int, byte_count: int = 0) -> None:
        """One export file written (its rows and bytes count under source ``export``, entity ``kind``)."""
        self.add_rows("export", kind, rows, byte_count)
        self.exported_files.labels(self.zone, kind).inc()

    # -- the gateway -----------------------------------------------------------------------------

    def push(self, gateway_url: str | None) -> bool:
        """Push to the gateway; a failing gateway is logged, never fatal to the job."""
        if not gateway_url:
            return False
        try:
            pushadd_to_gateway(
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


def metric_names() -> set[str]:
    """The exposed name of every metric a job can push (counters with ``_total``)."""
    return set(METRICS)
