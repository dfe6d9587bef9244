"""What the audit tables say about runs: the summary after ``etl run`` and ``etl status``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from etl_shared import Database

ZONES = ("staging", "conformed", "semantic")


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

    @property
    def seconds(self) -> float | None:
        return round((self.ended_at - self.started_at).total_seconds(), 1) if self.ended_at else None

    @property
    def rows(self) -> int:
        return int(self.counts.get("rows", 0))

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        data["seconds"] = self.seconds
        data["tables"] = self.counts.get("tables", {})
        data["rows"] = self.rows
        data["dq_status"] = self.counts.get("dq_status")
        return data


@dataclass
class SourceEntityStatus:
    source: str
    entity: str
    committed_pulls: int
    last_committed_at: datetime | None
    last_records: int | None
    watermark: str | None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["last_committed_at"] = self.last_committed_at.isoformat() if self.last_committed_at else None
        return data


@dataclass
class Status:
    zones: dict[str, ZoneRun | None] = field(default_factory=dict)
    sources: list[SourceEntityStatus] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "zones": {zone: (run.as_json() if run else None) for zone, run in self.zones.items()},
            "staging_pulls": [s.as_json() for s in self.sources],
        }


_RUN_COLUMNS = "zone, job_name, run_id, status, started_at, ended_at, exit_code, counts, error"


def runs_of(db: Database, run_id: str) -> list[ZoneRun]:
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            f"select {_RUN_COLUMNS} from ops.job_runs where run_id = %s order by started_at",
            (run_id,),
        ).fetchall()
    return [ZoneRun(*row) for row in rows]


def current_status(db: Database) -> Status:
    status = Status()
    with db.connect(autocommit=True) as conn:
        for zone in ZONES:
            row = conn.execute(
                f"select {_RUN_COLUMNS} from ops.job_runs where zone = %s order by started_at desc limit 1",
                (zone,),
            ).fetchone()
            status.zones[zone] = ZoneRun(*row) if row else None
        rows = conn.execute(
            "select p.source, p.entity, count(*) filter (where p.status = 'committed'),"
            " max(p.committed_at),"
            " (array_agg(p.record_count order by p.committed_at desc) filter (where p.status = 'committed'))[1],"
            " max(w.value)"
            " from staging.pulls as p"
            " left join staging.watermarks as w on w.source = p.source and w.entity = p.entity"
            " group by p.source, p.entity order by p.source, p.entity"
        ).fetchall()
    status.sources = [SourceEntityStatus(*row) for row in rows]
    return status
