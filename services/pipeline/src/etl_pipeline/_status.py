"""What the audit tables say about runs: the summary after ``etl run``, ``etl status`` (the operator's
view: zones, data quality, source freshness) and ``etl history``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from etl_shared import DEFAULT_DURATION_SLA_S, Database, mark_abandoned_jobs

ZONES = ("staging", "conformed", "semantic")

#: ``etl status`` lists the schema changes (ops.schema_changes) of this many days, at most
#: SCHEMA_CHANGES_SHOWN per entity, newest first.
SCHEMA_CHANGES_DAYS = 7
SCHEMA_CHANGES_SHOWN = 10


@dataclass
class DqSummary:
    """The data-quality results of one job (``ops.dq_results``)."""

    passed: int = 0
    warned: int = 0
    failed: int = 0
    failed_rules: list[dict[str, Any]] = field(default_factory=list)
    warned_rules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + self.warned + self.failed

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


@dataclass
class ZoneRun:
    zone: str
    job_name: str
    run_id: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    exit_code: int | None
    counts: dict[str, Any]
    error: str | None
    job_id: Any = None
    dq: DqSummary | None = None

    @property
    def seconds(self) -> float | None:
        return round((self.ended_at - self.started_at).total_seconds(), 1) if self.ended_at else None

    @property
    def rows(self) -> int:
        return int(self.counts.get("rows", 0))

    @property
    def error_line(self) -> str | None:
        return self.error.strip().splitlines()[0][:300] if self.error and self.error.strip() else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["job_id"] = str(self.job_id) if self.job_id else None
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        data["seconds"] = self.seconds
        data["tables"] = self.counts.get("tables", {})
        data["rows"] = self.rows
        data["dq_status"] = self.counts.get("dq_status")
        data["error_line"] = self.error_line
        data["dq"] = self.dq.as_json() if self.dq else None
        return data


@dataclass
class SourceEntityStatus:
    source: str
    entity: str
    committed_pulls: int = 0
    last_committed_at: datetime | None = None  # the last regular (not backfill) committed pull
    #: the last check of the source: the newest committed or unchanged pull (age and freshness count
    #: from it), and, when it found the source unchanged, the committed pull it equals
    last_checked_at: datetime | None = None
    unchanged_since: str | None = None
    last_records: int | None = None
    watermark: str | None = None
    last_pull_id: str | None = None
    age_hours: float | None = None
    sla_hours: float | None = None
    configured: bool = True
    last_pull_status: str | None = None  # of the newest pull, whatever its status
    last_pull_error: str | None = None
    last_backfill_at: datetime | None = None
    #: committed pulls no conformed model has read (conformed.consumed_pulls), and the oldest one's age
    unconsumed_pulls: int = 0
    unconsumed_age_hours: float | None = None
    #: the recent schema changes staging found (ops.schema_changes), newest first
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    schema_changes_total: int = 0
    #: the newest pull was stopped by its strict schema contract (until a later pull commits)
    contract_broken: bool = False
    #: the last committed pull's records set aside (on_bad_record: quarantine), the first of them
    #: (file, line or record, reason), and its files without a record (on_empty: warn)
    rejected_records: int = 0
    rejected_first: list[dict[str, Any]] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)

    @property
    def unconsumed_overdue(self) -> bool:
        """A committed pull waits unread for longer than the freshness SLA: no model consumes the
        entity, or its conformed job keeps failing."""
        if self.sla_hours is None or self.unconsumed_age_hours is None:
            return False
        return self.unconsumed_age_hours > self.sla_hours

    @property
    def stale(self) -> bool:
        """Older than its freshness SLA (or never pulled while it has one)."""
        if self.sla_hours is None:
            return False
        return self.age_hours is None or self.age_hours > self.sla_hours

    @property
    def freshness(self) -> str:
        if self.sla_hours is None:
            return "no SLA"
        if self.stale:
            return "STALE"
        return "fresh"

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("last_committed_at", "last_checked_at", "last_backfill_at"):
            value = getattr(self, key)
            data[key] = value.isoformat() if value else None
        data["stale"] = self.stale
        data["freshness"] = self.freshness
        data["unconsumed_overdue"] = self.unconsumed_overdue
        return data


@dataclass
class OverdueJob:
    """A job still running for longer than its zone's duration SLA (``ETL_DURATION_SLA_S``)."""

    zone: str
    job_id: Any
    run_id: str
    seconds: float
    sla_s: float

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "job_id": str(self.job_id)}


@dataclass
class Status:
    zones: dict[str, ZoneRun | None] = field(default_factory=dict)
    #: running jobs past their zone's duration SLA
    overdue: list[OverdueJob] = field(default_factory=list)
    sources: list[SourceEntityStatus] = field(default_factory=list)
    sources_file: str | None = None
    sources_error: str | None = None

    @property
    def stale(self) -> list[SourceEntityStatus]:
        return [s for s in self.sources if s.stale]

    @property
    def unconsumed(self) -> list[SourceEntityStatus]:
        """Entities with a committed pull left unread for longer than their freshness SLA."""
        return [s for s in self.sources if s.unconsumed_overdue]

    @property
    def contract_broken(self) -> list[SourceEntityStatus]:
        """Entities whose newest pull a strict schema contract stopped."""
        return [s for s in self.sources if s.contract_broken]

    @property
    def failed_zones(self) -> list[str]:
        return [zone for zone, run in self.zones.items() if run is not None and run.status == "failed"]

    @property
    def abandoned_zones(self) -> list[str]:
        """Zones whose last job died without closing its row (SIGKILL, out of memory, a lost host)."""
        return [zone for zone, run in self.zones.items() if run is not None and run.status == "abandoned"]

    @property
    def healthy(self) -> bool:
        return (
            not self.stale
            and not self.failed_zones
            and not self.abandoned_zones
            and not self.overdue
            and not self.unconsumed
            and not self.contract_broken
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "failed_zones": self.failed_zones,
            "abandoned_zones": self.abandoned_zones,
            "overdue_jobs": [job.as_json() for job in self.overdue],
            "stale": [f"{s.source}.{s.entity}" for s in self.stale],
            "unconsumed": [f"{s.source}.{s.entity}" for s in self.unconsumed],
            "contract_broken": [f"{s.source}.{s.entity}" for s in self.contract_broken],
            "zones": {zone: (run.as_json() if run else None) for zone, run in self.zones.items()},
            "staging_pulls": [s.as_json() for s in self.sources],
            "sources_file": self.sources_file,
            "sources_error": self.sources_error,
        }


_RUN_COLUMNS = "zone, job_name, run_id, status, started_at, ended_at, exit_code, counts, error, job_id"


def runs_of(db: Database, run_id: str) -> list[ZoneRun]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            f"select {_RUN_COLUMNS} from ops.job_runs where run_id = %s order by started_at",
            (run_id,),
        ).fetchall()
    return [ZoneRun(*row) for row in rows]


def history(db: Database, *, limit: int = 20, zone: str | None = None) -> list[ZoneRun]:
    """The most recent jobs, newest first (``etl history``)."""
    query = f"select {_RUN_COLUMNS} from ops.job_runs"
    params: list[Any] = []
    if zone:
        query += " where zone = %s"
        params.append(zone)
    query += " order by started_at desc, job_id limit %s"
    params.append(limit)
    with db.connect(autocommit=True) as conn:
        return [ZoneRun(*row) for row in conn.execute(query, params).fetchall()]


def _dq_summary(conn: Any, job_id: Any) -> DqSummary | None:
    rows = conn.execute(
        "select rule_id, severity, status, failures, checked, threshold, message from ops.dq_results"
        " where job_id = %s order by rule_id",
        (job_id,),
    ).fetchall()
    if not rows:
        return None
    summary = DqSummary()
    for rule_id, severity, status, failures, checked, threshold, message in rows:
        rule = {
            "rule_id": rule_id,
            "severity": severity,
            "status": status,
            "failures": int(failures or 0),
            "checked": checked,
            "threshold": threshold,
            "message": (message or "").strip().splitlines()[0][:300] if message else None,
        }
        if status in {"fail", "error"}:
            summary.failed += 1
            summary.failed_rules.append(rule)
        elif status == "warn":
            summary.warned += 1
            summary.warned_rules.append(rule)
        else:
            summary.passed += 1
    return summary


def configured_entities(sources_file: Path | None = None) -> tuple[str, list[tuple[str, str, float | None]]]:
    """(files, [(source, entity, freshness SLA hours or None)]) of the sources: the argument,
    ETL_SOURCES_FILE, or the sources.yml of every domain (ETL_DOMAINS, or the installed ones)."""
    from etl_shared import load_settings
    from etl_staging.cli import StagingSettings, configured_sources

    paths, sources = configured_sources(load_settings(StagingSettings), sources_file)
    path = ", ".join(map(str, paths))
    found: list[tuple[str, str, float | None]] = []
    for source in sources.sources:
        for entity in source.entities:
            sla = getattr(entity, "freshness_sla_hours", None)
            if sla is None:
                sla = getattr(source, "freshness_sla_hours", None)
            found.append((source.name, entity.name, float(sla) if sla is not None else None))
    return str(path), found


#: Per source entity: its data pulls (key listings, mode 'keys', left out but for the unconsumed count),
#: the newest pull whatever its status, the committed pulls no conformed model has read, and the last
#: check of the source: the newest committed or unchanged pull (the age counts from it), with the pull
#: it found unchanged since ('' when it was committed).
_PULLS_QUERY = """
select
    p.source,
    p.entity,
    count(*) filter (where p.status = 'committed' and p.mode <> 'keys'),
    max(p.committed_at) filter (where p.status = 'committed' and p.backfill_from is null and p.mode <> 'keys'),
    extract(epoch from now() - max(p.committed_at)
        filter (where p.status in ('committed', 'unchanged') and p.backfill_from is null and p.mode <> 'keys')),
    (array_agg(p.record_count order by p.committed_at desc)
        filter (where p.status = 'committed' and p.backfill_from is null and p.mode <> 'keys'))[1],
    (array_agg(p.pull_id::text order by p.committed_at desc)
        filter (where p.status = 'committed' and p.backfill_from is null and p.mode <> 'keys'))[1],
    (array_agg(p.status order by p.started_at desc))[1],
    (array_agg(p.error order by p.started_at desc))[1],
    max(p.committed_at) filter (where p.status = 'committed' and p.backfill_from is not null),
    count(*) filter (where p.status = 'committed' and c.pull_id is null),
    extract(epoch from now() - min(p.committed_at) filter (where p.status = 'committed' and c.pull_id is null)),
    (array_agg(p.pull_id::text order by p.started_at desc))[1],
    (array_agg(p.metadata order by p.committed_at desc)
        filter (where p.status = 'committed' and p.backfill_from is null and p.mode <> 'keys'))[1],
    max(p.committed_at) filter (where p.status in ('committed', 'unchanged') and p.backfill_from is null
        and p.mode <> 'keys'),
    (array_agg(coalesce(p.metadata ->> 'same_as', '') order by p.committed_at desc)
        filter (where p.status in ('committed', 'unchanged') and p.backfill_from is null and p.mode <> 'keys'))[1]
from staging.pulls as p
left join (select distinct consumed.pull_id from conformed.consumed_pulls as consumed) as c
    on c.pull_id = p.pull_id
group by p.source, p.entity
"""


#: The schema changes of the last SCHEMA_CHANGES_DAYS days, newest first per entity.
_SCHEMA_CHANGES_QUERY = """
select
    source, entity, pull_id::text, run_id, kind, column_name, action, contract, declared_type,
    failing_values, detail, detected_at
from ops.schema_changes
where detected_at > now() - %s * interval '1 day'
order by source, entity, detected_at desc, pull_id, kind, column_name
"""

_SCHEMA_CHANGE_FIELDS = (
    "pull_id",
    "run_id",
    "kind",
    "column",
    "action",
    "contract",
    "declared_type",
    "failing_values",
    "detail",
    "detected_at",
)


def duration_sla(zone: str, configured: float | None) -> float | None:
    """The longest acceptable run of a job of ``zone``: ETL_DURATION_SLA_S, else the zone's default
    (0: none)."""
    sla = DEFAULT_DURATION_SLA_S.get(zone) if configured is None else configured
    return sla or None


def overdue_jobs(conn: Any, duration_sla_s: float | None) -> list[OverdueJob]:
    """The running jobs older than their zone's duration SLA."""
    found = []
    for zone, job_id, run_id, seconds in conn.execute(
        "select zone, job_id, run_id, extract(epoch from now() - started_at) from ops.job_runs"
        " where status = 'running' order by started_at, job_id"
    ).fetchall():
        sla = duration_sla(zone, duration_sla_s)
        if sla is not None and float(seconds) > sla:
            found.append(OverdueJob(zone, job_id, run_id, round(float(seconds), 1), sla))
    return found


#: rejected records `etl status` shows per entity (the rest: staging.rejected_records)
REJECTED_SHOWN = 5


def current_status(
    db: Database, *, sources_file: Path | None = None, duration_sla_s: float | None = None
) -> Status:
    """What the audit tables say now. First marks abandoned the running jobs that are dead (their
    process gone from this host, or their lease expired: see etl_shared's mark_abandoned_jobs)."""
    status = Status()
    mark_abandoned_jobs(db)
    try:
        status.sources_file, configured = configured_entities(sources_file)
    except Exception as exc:  # the status must show even with a broken sources file
        status.sources_error = str(exc)
        configured = []
    with db.connect(autocommit=True) as conn:
        for zone in ZONES:
            row = conn.execute(
                f"select {_RUN_COLUMNS} from ops.job_runs where zone = %s order by started_at desc limit 1",
                (zone,),
            ).fetchone()
            run = ZoneRun(*row) if row else None
            if run is not None:
                run.dq = _dq_summary(conn, run.job_id)
            status.zones[zone] = run
        status.overdue = overdue_jobs(conn, duration_sla_s)
        pulls = {(r[0], r[1]): r[2:] for r in conn.execute(_PULLS_QUERY).fetchall()}
        watermarks = {
            (source, entity): value
            for source, entity, value in conn.execute("select source, entity, value from staging.watermarks")
        }
        changes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in conn.execute(_SCHEMA_CHANGES_QUERY, (SCHEMA_CHANGES_DAYS,)).fetchall():
            change = dict(zip(_SCHEMA_CHANGE_FIELDS, row[2:], strict=True))
            change["detected_at"] = change["detected_at"].isoformat()
            changes.setdefault((row[0], row[1]), []).append(change)
    entities: dict[tuple[str, str], SourceEntityStatus] = {}
    for source, entity, sla in configured:
        entities[(source, entity)] = SourceEntityStatus(source, entity, sla_hours=sla)
    for key in sorted(set(pulls) | set(watermarks)):
        if key not in entities:
            entities[key] = SourceEntityStatus(key[0], key[1], configured=False)
    for key, item in entities.items():
        item.watermark = watermarks.get(key)
        recent = changes.get(key, [])
        item.schema_changes = recent[:SCHEMA_CHANGES_SHOWN]
        item.schema_changes_total = len(recent)
        found = pulls.get(key)
        if found is None:
            continue
        (
            committed,
            last_at,
            age_s,
            records,
            pull_id,
            last_status,
            last_error,
            backfill_at,
            unconsumed,
            unconsumed_age_s,
            newest_pull_id,
            metadata,
            checked_at,
            same_as,
        ) = found
        item.committed_pulls = int(committed or 0)
        item.last_committed_at = last_at
        item.last_checked_at = checked_at
        item.unchanged_since = same_as or None
        item.age_hours = float(age_s) / 3600 if age_s is not None else None
        item.last_records = int(records) if records is not None else None
        item.last_pull_id = pull_id
        item.last_pull_status = last_status
        item.last_pull_error = last_error.strip().splitlines()[0][:300] if last_error else None
        item.last_backfill_at = backfill_at
        item.unconsumed_pulls = int(unconsumed or 0)
        item.unconsumed_age_hours = float(unconsumed_age_s) / 3600 if unconsumed_age_s is not None else None
        item.contract_broken = last_status == "failed" and any(
            c["pull_id"] == newest_pull_id and c["action"] == "failed" for c in recent
        )
        metadata = metadata if isinstance(metadata, dict) else {}
        item.rejected_records = int(metadata.get("rejected_records") or 0)
        item.empty_files = [str(name) for name in metadata.get("empty_files") or []]
    rejected = [item for item in entities.values() if item.rejected_records and item.last_pull_id]
    if rejected:
        with db.connect(autocommit=True) as conn:
            for item in rejected:
                item.rejected_first = [
                    {"file": origin, "unit": unit, "position": position, "reason": reason}
                    for origin, unit, position, reason in conn.execute(
                        "select origin, unit, position, reason from staging.rejected_records where pull_id = %s"
                        " order by seq limit %s",
                        (item.last_pull_id, REJECTED_SHOWN),
                    )
                ]
    status.sources = list(entities.values())
    return status
