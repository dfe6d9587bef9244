"""Run audit: one row per zone job in ``ops.job_runs``, plus dbt node, data-quality and export results."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ._db import Database


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    resource_type: str
    status: str
    execution_time_s: float | None
    rows_affected: int | None
    failures: int | None
    message: str | None
    completed_at: datetime


@dataclass(frozen=True)
class QualityResult:
    rule_id: str
    severity: str
    status: str  # pass, warn, fail, error
    failures: int
    message: str | None


class ExportedFile(Protocol):
    """What :meth:`JobAudit.record_exports` reads of an exported file (e.g. ``etl_semantic``'s
    ``ExportFile``)."""

    @property
    def kind(self) -> str: ...
    @property
    def path(self) -> Any: ...
    @property
    def rows(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class JobAudit:
    """The audit row of one zone job: opened at start, closed with a status at the end.

    Every write is keyed by the job id (generated here) and is an upsert, an ``on conflict do nothing``
    or an update by key, so a transaction retried after an unknown outcome (40003) writes nothing twice."""

    def __init__(self, db: Database, *, run_id: str, zone: str, job_name: str) -> None:
        self.db = db
        self.run_id = run_id
        self.zone = zone
        self.job_name = job_name
        self.job_id = uuid.uuid4()

    def start(self, *, lease_s: int | None = None) -> None:
        """Open the row, ``running``; with ``lease_s``, alive for that long unless renewed (_liveness)."""
        self.db.transaction(
            lambda conn: conn.execute(
                "insert into ops.job_runs (job_id, run_id, zone, job_name, status, started_at, host, pid,"
                " lease_expires_at) values (%s, %s, %s, %s, 'running', now(), %s, %s,"
                " now() + %s * interval '1 second') on conflict (job_id) do nothing",
                (
                    self.job_id,
                    self.run_id,
                    self.zone,
                    self.job_name,
                    socket.gethostname(),
                    os.getpid(),
                    lease_s,
                ),
            ),
            name="audit start",
        )

    def finish(
        self,
        *,
        status: str,
        exit_code: int,
        counts: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self.db.transaction(
            lambda conn: conn.execute(
                "update ops.job_runs set status = %s, exit_code = %s, ended_at = now(),"
                " counts = %s::jsonb, error = %s where job_id = %s",
                (status, exit_code, json.dumps(counts or {}, default=str), error, self.job_id),
            ),
            name="audit finish",
        )

    def record_nodes(self, results: Iterable[NodeResult]) -> None:
        rows = [
            (
                self.job_id,
                r.unique_id,
                self.run_id,
                self.zone,
                r.resource_type,
                r.status,
                r.execution_time_s,
                r.rows_affected,
                r.failures,
                r.message,
                r.completed_at,
            )
            for r in results
        ]
        if not rows:
            return

        def work(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into ops.dbt_node_results (job_id, unique_id, run_id, zone, resource_type, status,"
                    " execution_time_s, rows_affected, failures, message, completed_at)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " on conflict (job_id, unique_id) do nothing",
                    rows,
                )

        self.db.transaction(work, name="audit dbt nodes")

    def record_quality(self, results: Iterable[QualityResult]) -> None:
        rows = [
            (self.job_id, r.rule_id, self.run_id, self.zone, r.severity, r.status, r.failures, r.message)
            for r in results
        ]
        if not rows:
            return

        def work(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into ops.dq_results (job_id, rule_id, run_id, zone, severity, status, failures,"
                    " message, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, %s, now())"
                    " on conflict (job_id, rule_id) do nothing",
                    rows,
                )

        self.db.transaction(work, name="audit data quality")

    def record_exports(self, files: Iterable[ExportedFile]) -> None:
        """One ``ops.exports`` row per exported file (kind, path, rows, bytes, sha256)."""
        rows = [
            (self.job_id, self.run_id, self.zone, f.kind, str(f.path), f.rows, f.bytes, f.sha256)
            for f in files
        ]
        if not rows:
            return

        def work(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into ops.exports (job_id, run_id, zone, kind, path, row_count, byte_count, sha256,"
                    " exported_at) values (%s, %s, %s, %s, %s, %s, %s, %s, now())"
                    " on conflict (job_id, kind, path) do nothing",
                    rows,
                )

        self.db.transaction(work, name="audit exports")
