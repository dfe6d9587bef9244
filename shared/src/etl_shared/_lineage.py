"""Lineage: which datasets each job read and wrote, kept in ``ops.lineage_edges`` and sent out as
OpenLineage run events.

Datasets are named as OpenLineage names them: the namespace is where the data lives (the warehouse
``postgres://host:port/db``, a source database, ``https://api.host``, ``file://host``) and the name
is ``schema.table``, an API path or a file path. The zone jobs record edges (input -> output) as they
go: dbt models with their parents (from dbt's manifest), a staging source entity with the staging
tables. ``run_job`` emits a ``START`` event when a job starts and ``COMPLETE`` or ``FAIL`` when it
ends, with the job's datasets read back from the audit tables, to ``ETL_OPENLINEAGE_URL`` (HTTP POST)
and/or ``ETL_OPENLINEAGE_FILE`` (one JSON a line). Emitting never fails a job: a failure is a warning.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._db import Database, redact_url
from ._logging import redact
from ._settings import Settings

_log = logging.getLogger(__name__)

OPENLINEAGE_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
ERROR_FACET_SCHEMA_URL = (
    "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
)
PARENT_FACET_SCHEMA_URL = "https://openlineage.io/spec/facets/1-0-1/ParentRunFacet.json#/$defs/ParentRunFacet"
#: Identifies this code as the producer of the events (OpenLineage wants a URI).
PRODUCER = "https://github.com/zone-etl/etl/tree/main/shared/src/etl_shared"
#: The run id of the pipeline (shared by the three zones) becomes the parent run's UUID with uuid5.
_PIPELINE_RUN_NAMESPACE = uuid.UUID("6f0c6c1e-3b0a-5d55-9a53-7b1f3f0e7a10")
_HTTP_TIMEOUT_S = 5.0
_file_lock = threading.Lock()


@dataclass(frozen=True, order=True)
class Dataset:
    namespace: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name}


def database_namespace(url: str) -> str:
    """``postgres://host:port/database`` of a database URL (no user, no password); a Unix socket
    folder given as ``?host=/path`` counts as ``localhost``."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or query.get("host") or "localhost"
    if host.startswith("/"):
        host = "localhost"
    port = parts.port or query.get("port") or 5432
    database = parts.path.lstrip("/") or "postgres"
    return f"postgres://{host}:{port}/{database}"


def url_namespace(url: str) -> str:
    """``scheme://host[:port]`` of an HTTP URL (no credentials, no path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def file_namespace() -> str:
    return f"file://{socket.gethostname()}"


def record_lineage_edges(
    db: Database, *, job_id: uuid.UUID, run_id: str, zone: str, edges: Iterable[tuple[Dataset, Dataset]]
) -> int:
    """Store (input, output) dataset pairs of one job in ``ops.lineage_edges`` (idempotent)."""
    rows = [
        (job_id, run_id, zone, i.namespace, i.name, o.namespace, o.name)
        for i, o in sorted(set(edges))
        if i != o
    ]
    if not rows:
        return 0

    def work(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.lineage_edges (job_id, run_id, zone, input_namespace, input_name,"
                " output_namespace, output_name, recorded_at) values (%s, %s, %s, %s, %s, %s, %s, now())"
                " on conflict do nothing",
                rows,
            )

    db.transaction(work, name="record lineage")
    return len(rows)


def dbt_edges(manifest_path: Path, built: Sequence[str], namespace: str) -> list[tuple[Dataset, Dataset]]:
    """(parent, model) pairs for the models built (``schema.table`` names), read from dbt's manifest.
    Parents are sources, seeds, snapshots and models; an ephemeral model stands for its own parents."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    nodes: dict[str, Any] = manifest.get("nodes", {})
    sources: dict[str, Any] = manifest.get("sources", {})

    def relation(node: dict[str, Any]) -> str:
        return f"{node['schema']}.{node.get('alias') or node['name']}"

    def parents(uid: str, seen: set[str]) -> set[str]:
        if uid in seen:
            return set()
        seen.add(uid)
        if uid in sources:
            source = sources[uid]
            return {f"{source['schema']}.{source.get('identifier') or source['name']}"}
        node = nodes.get(uid)
        if node is None or node.get("resource_type") not in {"model", "seed", "snapshot"}:
            return set()
        if node.get("config", {}).get("materialized") == "ephemeral":
            found: set[str] = set()
            for parent in node.get("depends_on", {}).get("nodes", []):
                found |= parents(parent, seen)
            return found
        return {relation(node)}

    wanted = set(built)
    edges: list[tuple[Dataset, Dataset]] = []
    for node in nodes.values():
        if node.get("resource_type") not in {"model", "snapshot"} or relation(node) not in wanted:
            continue
        output = Dataset(namespace, relation(node))
        inputs: set[str] = set()
        for parent in node.get("depends_on", {}).get("nodes", []):
            inputs |= parents(parent, set())
        edges.extend((Dataset(namespace, name), output) for name in sorted(inputs))
    return edges


def job_datasets(db: Database, job_id: uuid.UUID) -> tuple[list[Dataset], list[Dataset]]:
    """The inputs and outputs of one job as its audit rows record them: the datasets its edges read
    that it did not write itself, and the datasets and export files it wrote."""
    with db.connect(autocommit=True) as conn:
        edges = conn.execute(
            "select input_namespace, input_name, output_namespace, output_name from ops.lineage_edges"
            " where job_id = %s",
            (job_id,),
        ).fetchall()
        exports = conn.execute("select path from ops.exports where job_id = %s", (job_id,)).fetchall()
    outputs = {Dataset(ons, oname) for _, _, ons, oname in edges}
    outputs |= {Dataset(file_namespace(), str(path)) for (path,) in exports}
    inputs = {Dataset(ins, iname) for ins, iname, _, _ in edges} - outputs
    return sorted(inputs), sorted(outputs)


def pipeline_run_uuid(run_id: str) -> uuid.UUID:
    """The UUID standing for a pipeline run id in OpenLineage (run ids are not UUIDs)."""
    return uuid.uuid5(_PIPELINE_RUN_NAMESPACE, run_id)


class OpenLineageEmitter:
    """Sends one job's run events; does nothing when neither a URL nor a file is configured."""

    def __init__(
        self,
        *,
        zone: str,
        job_name: str,
        run_id: str,
        namespace: str = "etl",
        url: str | None = None,
        file: Path | None = None,
        api_key: str | None = None,
    ) -> None:
        self.zone = zone
        self.job_name = job_name
        self.run_id = run_id
        self.namespace = namespace
        self.url = url
        self.file = file
        self.api_key = api_key
        self.job_id: uuid.UUID | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, zone: str, job_name: str) -> OpenLineageEmitter:
        return cls(
            zone=zone,
            job_name=job_name,
            run_id=settings.run_id,
            namespace=settings.openlineage_namespace,
            url=settings.openlineage_url,
            file=settings.openlineage_file,
            api_key=settings.openlineage_api_key.get_secret_value() if settings.openlineage_api_key else None,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.file)

    def start(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        if self.enabled:
            try:
                self.emit(self.event("START"))
            except Exception as exc:  # never fail the job
                _log.warning("OpenLineage: cannot emit the START event: %s", redact(str(exc)))

    def finish(
        self, db: Database | None, *, failed: bool, error: str | None = None, exit_code: int = 0
    ) -> None:
        """The ``COMPLETE`` or ``FAIL`` event, with the job's datasets (read from the audit tables)."""
        if not self.enabled or self.job_id is None:
            return
        try:
            self._finish(db, failed=failed, error=error, exit_code=exit_code)
        except Exception as exc:  # never fail the job
            _log.warning("OpenLineage: cannot emit the end event: %s", redact(str(exc)))

    def _finish(self, db: Database | None, *, failed: bool, error: str | None, exit_code: int) -> None:
        inputs: list[Dataset] = []
        outputs: list[Dataset] = []
        if db is not None:
            try:
                inputs, outputs = job_datasets(db, self.job_id)
            except Exception as exc:
                _log.warning("OpenLineage: cannot read the job's datasets: %s", redact(str(exc)))
        event = self.event("FAIL" if failed else "COMPLETE", inputs=inputs, outputs=outputs)
        event["run"]["facets"]["etl"]["exit_code"] = exit_code
        if failed:
            event["run"]["facets"]["errorMessage"] = {
                "_producer": PRODUCER,
                "_schemaURL": ERROR_FACET_SCHEMA_URL,
                "message": (error or "failed")[:4000],
                "programmingLanguage": "python",
            }
        self.emit(event)

    def event(
        self, event_type: str, *, inputs: Sequence[Dataset] = (), outputs: Sequence[Dataset] = ()
    ) -> dict[str, Any]:
        return {
            "eventType": event_type,
            "eventTime": datetime.now(UTC).isoformat(),
            "producer": PRODUCER,
            "schemaURL": OPENLINEAGE_SCHEMA_URL,
            "run": {
                "runId": str(self.job_id),
                "facets": {
                    "parent": {
                        "_producer": PRODUCER,
                        "_schemaURL": PARENT_FACET_SCHEMA_URL,
                        "run": {"runId": str(pipeline_run_uuid(self.run_id))},
                        "job": {"namespace": self.namespace, "name": "etl"},
                    },
                    "etl": {
                        "_producer": PRODUCER,
                        "_schemaURL": PRODUCER + "/_lineage.py#EtlRunFacet",
                        "run_id": self.run_id,
                        "zone": self.zone,
                        "job_id": str(self.job_id),
                    },
                },
            },
            "job": {"namespace": self.namespace, "name": self.job_name, "facets": {}},
            "inputs": [d.as_json() for d in inputs],
            "outputs": [d.as_json() for d in outputs],
        }

    def emit(self, event: dict[str, Any]) -> None:
        """POST and/or append one event; any failure is logged as a warning, never raised."""
        if not self.enabled:
            return
        body = json.dumps(event, separators=(",", ":"), default=str)
        if self.file is not None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                with _file_lock, self.file.open("a", encoding="utf-8") as handle:
                    handle.write(body + "\n")
            except OSError as exc:
                _log.warning(
                    "OpenLineage: cannot append the %s event to %s: %s", event["eventType"], self.file, exc
                )
        if self.url:
            headers = {"Content-Type": "application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            request = urllib.request.Request(self.url, data=body.encode(), headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S) as response:  # noqa: S310
                    response.read()
            except Exception as exc:  # an emission failure never fails the job
                _log.warning(
                    "OpenLineage: the %s event was not accepted by %s: %s",
                    event["eventType"],
                    redact_url(self.url),
                    redact(str(exc)),
                )


__all__ = [
    "Dataset",
    "OpenLineageEmitter",
    "database_namespace",
    "dbt_edges",
    "file_namespace",
    "job_datasets",
    "record_lineage_edges",
    "url_namespace",
]
