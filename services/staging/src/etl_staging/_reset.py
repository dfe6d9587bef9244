"""``etl-staging reset``: forget what staging knows of a source entity, so that its next pull starts
from scratch (a full first pull for an incremental entity, every file of a drop folder again).

One transaction, under the source entity's pull lock, clears the watermark, the record of the files
loaded, and hides every pull (status ``failed``, "reset by ..."), and writes the audit row in
``ops.operator_actions`` (who, from where, when, what counts). That transaction is safe to retry after
an unknown outcome (40003): its audit row has an id chosen before the first attempt, and an attempt
that finds it takes the counts from it instead of resetting again. The hidden pulls' batches and payloads
are then deleted in small transactions and their rows removed; should that be interrupted, the next
pull of the entity cleans up what is left (as it does after a killed pull).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from etl_shared import Database, LeaseLock

from ._raw import delete_pull_data, operator_name, record_operator_action

_log = logging.getLogger(__name__)


@dataclass
class ResetCounts:
    source: str
    entity: str
    pulls: int = 0
    committed_pulls: int = 0
    batches: int = 0
    payloads: int = 0
    loaded_files: int = 0
    watermark: str | None = None

    def describe(self) -> str:
        return (
            f"{self.source}.{self.entity}: {self.pulls} pull(s) ({self.committed_pulls} committed,"
            f" {self.batches} batches, {self.payloads} payloads), watermark {self.watermark or '(none)'},"
            f" {self.loaded_files} loaded file record(s)"
        )


def _count(conn: Any, source: str, entity: str) -> ResetCounts:
    counts = ResetCounts(source, entity)
    row = conn.execute(
        "select count(*), count(*) filter (where status = 'committed') from staging.pulls"
        " where source = %s and entity = %s",
        (source, entity),
    ).fetchone()
    counts.pulls, counts.committed_pulls = int(row[0]), int(row[1])
    for table in ("pull_batches", "pull_payloads"):
        (n,) = conn.execute(
            f"select count(*) from staging.{table} as d inner join staging.pulls as p on d.pull_id = p.pull_id"
            " where p.source = %s and p.entity = %s",
            (source, entity),
        ).fetchone()
        setattr(counts, "batches" if table == "pull_batches" else "payloads", int(n))
    (counts.loaded_files,) = conn.execute(
        "select count(*) from staging.loaded_files where source = %s and entity = %s", (source, entity)
    ).fetchone()
    wm = conn.execute(
        "select value from staging.watermarks where source = %s and entity = %s", (source, entity)
    ).fetchone()
    counts.watermark = wm[0] if wm else None
    return counts


def preview_reset(db: Database, source: str, entity: str) -> ResetCounts:
    """What a reset of the source entity would delete (nothing is changed)."""
    with db.connect(autocommit=True) as conn:
        return _count(conn, source, entity)


def known_entities(db: Database, source: str) -> list[str]:
    """Entities of ``source`` that staging holds pulls or a watermark of."""
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select entity from staging.pulls where source = %s"
            " union select entity from staging.watermarks where source = %s order by 1",
            (source, source),
        ).fetchall()
    return [r[0] for r in rows]


def reset_entity(db: Database, source: str, entity: str, *, run_id: str | None = None) -> ResetCounts:
    """Reset one source entity (see the module's docstring); returns what was deleted."""
    action_id = uuid.uuid4()
    with LeaseLock(db, f"pull:{source}:{entity}", lease_s=300, wait_s=60):

        def work(conn: Any) -> tuple[ResetCounts, list[Any]]:
            done = conn.execute(
                "select details from ops.operator_actions where action_id = %s", (action_id,)
            ).fetchone()
            if done is not None:  # an earlier attempt committed; its commit only looked failed
                details = dict(done[0])
                pull_ids = details.pop("pull_ids")
                return ResetCounts(source, entity, **details), pull_ids
            counts = _count(conn, source, entity)
            pull_ids = [
                r[0]
                for r in conn.execute(
                    "select pull_id from staging.pulls where source = %s and entity = %s for update",
                    (source, entity),
                ).fetchall()
            ]
            reason = f"reset by {operator_name()}: the source entity's pulls and watermark were cleared"
            conn.execute(
                "update staging.pulls set status = 'failed', error = %s where source = %s and entity = %s",
                (reason, source, entity),
            )
            conn.execute("delete from staging.watermarks where source = %s and entity = %s", (source, entity))
            conn.execute(
                "delete from staging.loaded_files where source = %s and entity = %s", (source, entity)
            )
            details = asdict(counts)
            details.pop("source")
            details.pop("entity")
            details["pull_ids"] = [str(p) for p in pull_ids]
            record_operator_action(
                conn,
                "reset",
                source=source,
                entity=entity,
                run_id=run_id,
                details=details,
                action_id=action_id,
            )
            return counts, pull_ids

        counts, pull_ids = db.transaction(work, name=f"reset {source}.{entity}")
        for pull_id in pull_ids:
            delete_pull_data(db, pull_id)
            db.transaction(
                lambda conn, p=pull_id: conn.execute(
                    "delete from staging.pulls where pull_id = %s and status = 'failed'", (p,)
                ),
                name="delete reset pull",
            )
    _log.warning("reset %s", counts.describe(), extra={"source": source, "entity": entity})
    return counts
