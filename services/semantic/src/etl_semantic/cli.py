"""``etl-semantic``: build the semantic zone (star schema, aggregates) and write its exports.

``run`` provisions the key that masks personal data, builds the dbt project, then writes the
Watershed upload (CSV, import template, xAPI JSON) and the Qlik load script into the export folder
and records every file (path, rows, checksum) in ``ops.exports``; ``docs`` is the shared dbt-zone
command.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from etl_shared import (
    EMPTY_PULL_NOTE,
    DbtOutcome,
    DbtZoneSettings,
    JobContext,
    Selection,
    ZoneHooks,
    dbt_zone_main,
    model_retention_rules,
    remove_stale_temporary_files,
)

ZONE = "semantic"
_log = logging.getLogger(__name__)


class SemanticSettings(DbtZoneSettings):
    """Settings of the semantic job (see docs/configuration.md)."""

    pii_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hash that masks personal data (ETL_PII_KEY, or the secret file etl_pii_key)",
    )
    export_dir: Path | None = Field(
        default=None, description="Folder of the export files (default: <data dir>/exports)"
    )
    watershed_home_page: str = Field(
        default="https://shop.example.com",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="Home page of the actor accounts and base of the activity IRIs in the Watershed upload",
    )
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12, description="First month of the fiscal year")
    calendar_start: date | None = Field(
        default=None,
        description="First day of dim_date; unset: 1 January of the year of the earliest business date",
    )
    calendar_end: date | None = Field(
        default=None,
        description="Last day of dim_date; unset: 31 December of the later of next year and the year of"
        " the latest business date",
    )

    @model_validator(mode="after")
    def _check_calendar(self) -> SemanticSettings:
        if self.calendar_start and self.calendar_end and self.calendar_start > self.calendar_end:
            raise ValueError(
                f"calendar_start {self.calendar_start} is after calendar_end {self.calendar_end}"
            )
        return self


def dbt_variables(settings: Any) -> dict[str, Any]:
    return {
        "watershed_home_page": settings.watershed_home_page.rstrip("/"),
        "fiscal_year_start_month": settings.fiscal_year_start_month,
        "calendar_start": settings.calendar_start.isoformat() if settings.calendar_start else None,
        "calendar_end": settings.calendar_end.isoformat() if settings.calendar_end else None,
        "retention_days": settings.retention_days,
    }


def provision_pii_key(context: JobContext) -> None:
    """Write the masking key into ops.pii_keys before the build: the configured secret, or, when none
    is configured, a key generated once and kept (tokens must stay the same from run to run).

    Safe to retry after an unknown outcome (40003): the transaction reads the row first, so a retry
    after an earlier attempt committed finds the key written (and keeps it) rather than writing another."""
    settings = context.settings
    assert isinstance(settings, SemanticSettings)
    configured = settings.pii_key.get_secret_value() if settings.pii_key is not None else None

    def work(conn: Any) -> str:
        row = conn.execute(
            "select key_value from ops.pii_keys where key_name = 'semantic' for update"
        ).fetchone()
        if configured is not None:
            if row is None or row[0] != configured:
                conn.execute(
                    "insert into ops.pii_keys (key_name, key_value, updated_at) values ('semantic', %s, now())"
                    " on conflict (key_name) do update set key_value = excluded.key_value,"
                    " updated_at = excluded.updated_at",
                    (configured,),
                )
                return "changed" if row is not None else "set"
            return "unchanged"
        if row is None:
            conn.execute(
                "insert into ops.pii_keys (key_name, key_value, updated_at) values ('semantic', %s, now())",
                (secrets.token_hex(32),),
            )
            return "generated"
        return "kept"

    outcome = context.db.transaction(work, name="provision the PII key")
    if outcome == "generated":
        _log.warning(
            "no ETL_PII_KEY configured: generated a masking key and kept it in ops.pii_keys;"
            " set ETL_PII_KEY (or the secret etl_pii_key) in production"
        )
    elif outcome == "changed":
        _log.warning("the PII key changed: every masked value in the semantic zone and the exports changes")
    context.counts["pii_key"] = outcome


#: The final names of the export files (Watershed CSV and JSON, Qlik scripts): the temporary files of
#: earlier releases (``.<name>.<random>.tmp``) are recognised by them.
EXPORT_SUFFIXES = (".csv", ".json", ".qvs")  # .voided.csv, .manifest.json included


def export_folder(settings: SemanticSettings) -> Path:
    return settings.export_dir or settings.data_dir / "exports"


def remove_stale_exports(context: JobContext) -> None:
    """At the job's start: delete the temporary export files a killed job left in the export folder
    (a SIGKILL mid-export leaves a partial CSV and xAPI JSON, never removed otherwise)."""
    settings = context.settings
    assert isinstance(settings, SemanticSettings)
    removed = remove_stale_temporary_files(export_folder(settings), earlier_suffixes=EXPORT_SUFFIXES)
    if removed:
        context.counts["removed_temporary_files"] = dict(removed)


#: the summary key of the conformed pulls a semantic job found processed and not yet built on
NEW_INPUT_KEY = "conformed_pulls"
#: the selection of a run with no new input: it matches no node, so dbt builds nothing
NOTHING_NEW = "tag:etl_platform_nothing_new"


def note_new_input(context: JobContext) -> None:
    """Record in the job's summary (``conformed_pulls``) the staging pulls the conformed zone has
    processed (conformed.consumed_pulls, disposition processed) that no succeeded semantic job
    recorded yet: what this run builds on, by id. A pull without records, which the conformed zone
    marked processed without running its models (EMPTY_PULL_NOTE), changed no conformed table: it is
    no new input. A run that fails records nothing the next would
    skip: only succeeded jobs' lists count."""
    with context.db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select distinct consumed.pull_id::text from conformed.consumed_pulls as consumed"
            " where consumed.disposition = 'processed' and coalesce(consumed.note, '') <> %s"
            " and consumed.pull_id::text not in ("
            "  select jsonb_array_elements_text(runs.counts -> %s) from ops.job_runs as runs"
            "  where runs.zone = %s and runs.status = 'succeeded' and runs.counts ? %s)"
            " order by 1",
            (EMPTY_PULL_NOTE, NEW_INPUT_KEY, ZONE, NEW_INPUT_KEY),
        ).fetchall()
    context.counts[NEW_INPUT_KEY] = [pull_id for (pull_id,) in rows]


def select_new_input(context: JobContext, _manifest: Any) -> Selection:
    """Build everything when the conformed zone processed pulls since the last succeeded semantic run
    (the incremental models then take only what changed), nothing when it did not: every model's
    input is as the last build left it, so a rebuild would write the same rows and export nothing."""
    new = context.counts.get(NEW_INPUT_KEY) or []
    if ledger_run_values(context):
        return Selection(select=[], reason="the PII key changed: every masked value changes")
    if new:
        return Selection(select=[], reason=f"{len(new)} conformed pull(s) processed since the last run")
    return Selection(select=[NOTHING_NEW], reason="no conformed pull processed since the last run")


def ledger_run_values(context: JobContext) -> dict[str, str]:
    """After a change of the PII key every statement's actor changes: the change ledgers compare every
    record (run value ``ledger_compare_all``, etl_platform.newest_value), so each statement is voided
    and issued again with the new token."""
    if context.counts.get("pii_key") in ("changed", "set"):
        return {"ledger_compare_all": "true"}
    return {}


def before_build(context: JobContext) -> None:
    remove_stale_exports(context)
    provision_pii_key(context)
    note_new_input(context)


def write_exports(context: JobContext, outcome: DbtOutcome) -> None:
    """After a successful build: the Watershed upload and the load script of each Qlik app the models
    declare (meta etl_qlik_app), recorded in ops.exports."""
    from ._qlik import QLIK_APP_META_KEY, qlik_app_tables, qlik_apps, semantic_tables, write_load_script
    from ._watershed import (
        WATERSHED_META_KEY,
        export_watershed,
        export_watershed_changes,
        is_ledger_table,
        watershed_exports,
    )

    if not outcome.success:
        return
    settings = context.settings
    assert isinstance(settings, SemanticSettings)
    folder = export_folder(settings)
    manifest = json.loads(outcome.manifest_path.read_bytes()) if outcome.manifest_path else {}
    apps = qlik_apps(manifest)
    uploads = watershed_exports(manifest)
    if not apps:
        _log.warning("no semantic model declares meta %s: no Qlik load script written", QLIK_APP_META_KEY)
    if not uploads:
        _log.info("no semantic model declares meta %s: no Watershed upload written", WATERSHED_META_KEY)
    files: list[Any] = []
    read: list[tuple[str, Any]] = []  # (table, file): what each export read, for the lineage
    for name, table in uploads.items():
        with context.db.connect(autocommit=True) as conn:
            incremental = is_ledger_table(conn, table)
            if not incremental:
                # a model without the change ledger's columns: every row, every run
                written = export_watershed(
                    conn,
                    folder,
                    f"{name}_{settings.run_id}",
                    table,
                    reconnect=lambda: context.db.open_connection(autocommit=True),
                )
        if incremental:
            # the rows of the runs not exported yet, and the manifest of every batch
            written = export_watershed_changes(
                context.db, folder, name, settings.run_id, table, job_id=str(context.audit.job_id), zone=ZONE
            )
        files += written
        read += [(table, f) for f in written]
    with context.db.connect(autocommit=True) as conn:
        tables = semantic_tables(conn) if apps else {}
        for app, fact in apps.items():
            script = write_load_script(conn, folder, app, fact)
            files.append(script)
            read += [(f"semantic.{table}", script) for table in qlik_app_tables(tables, fact)]
    context.audit.record_exports(files)
    record_export_lineage(context, read)
    # by kind; a second Qlik app's script by kind and app ("qlik_load_script:<app>")
    exported: dict[str, Any] = {}
    for f in files:
        name = f.kind if f.kind not in exported else f"{f.kind}:{f.path.stem}"
        exported[name] = {"path": str(f.path), "rows": f.rows, "sha256": f.sha256}
    context.counts["exports"] = exported
    for f in files:
        context.metrics.observe_export(f.kind, rows=f.rows, byte_count=f.bytes)
        _log.info("exported %s: %s (%d rows, sha256 %s)", f.kind, f.path, f.rows, f.sha256[:12])


def record_export_lineage(context: JobContext, read: list[tuple[str, Any]]) -> None:
    """An edge from each table an export read to its file (ops.lineage_edges), so that `etl lineage`
    names an export only for the pulls that reached one of its tables; best effort, as the models'."""
    from etl_shared import Dataset, database_namespace, file_namespace, record_lineage_edges

    try:
        database = database_namespace(context.db.url)
        record_lineage_edges(
            context.db,
            job_id=context.audit.job_id,
            run_id=context.settings.run_id,
            zone=context.audit.zone,
            edges=[(Dataset(database, table), Dataset(file_namespace(), str(f.path))) for table, f in read],
        )
    except Exception as exc:
        _log.warning("the lineage of the exports was not recorded: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    return dbt_zone_main(
        ZONE,
        SemanticSettings,
        argv,
        description="Semantic zone: star schema for Qlik, aggregates, Watershed and Qlik exports.",
        hooks=ZoneHooks(
            before_build=before_build,
            variables=dbt_variables,
            select=select_new_input,
            run_values=ledger_run_values,
            on_built=write_exports,
            # what the models declare: meta etl_retention (fct_sales, fct_orders)
            retention=lambda _context, outcome: model_retention_rules(outcome),
        ),
    )
