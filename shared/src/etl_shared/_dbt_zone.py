"""The command line of a dbt zone (conformed and semantic share it): ``run`` and ``docs``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from ._dbt import DbtOutcome, DbtProject, build_zone
from ._errors import EXIT_CONFIGURATION, ConfigurationError
from ._job import JobContext, resolve_database_url, run_job
from ._retention import RetentionRule, apply_retention_rules
from ._settings import Settings, load_settings


class DbtZoneSettings(Settings):
    dbt_threads: int = Field(default=2, ge=1, le=32, description="dbt threads")
    reporting_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 reporting currency"
    )
    retention_days: int = Field(
        default=1096, ge=1, description="Rows older than this many days are deleted after a successful run"
    )
    retention_batch_rows: int = Field(
        default=5000, ge=1, le=100_000, description="Rows per retention DELETE transaction"
    )


@dataclass
class ZoneHooks:
    """What a zone adds to the shared dbt job: ``before_build`` runs first (inside the job);
    ``variables`` adds dbt vars from the settings; ``on_built`` runs after the dbt build whatever its
    outcome (a summary for the job's audit row, exports); ``retention`` lists the tables to clean
    after a successful build."""

    before_build: Callable[[JobContext], None] | None = None
    variables: Callable[[DbtZoneSettings], dict[str, Any]] | None = None
    on_built: Callable[[JobContext, DbtOutcome], None] | None = None
    retention: Callable[[JobContext], list[RetentionRule]] | None = None


def run_retention(context: JobContext, rules: list[RetentionRule]) -> dict[str, int]:
    settings = context.settings
    assert isinstance(settings, DbtZoneSettings)
    cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
    deleted = apply_retention_rules(
        context.db, rules, older_than=cutoff, batch_rows=settings.retention_batch_rows
    )
    context.counts["retention"] = {"older_than": cutoff.isoformat(), "deleted": deleted}
    return deleted


def _parser(zone: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"etl-{zone}", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="dbt build (models and tests), recorded in the audit tables")
    run.add_argument("--select", nargs="+", default=[], help="dbt selection (default: everything)")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    sub.add_parser("docs", help="generate the dbt documentation site under the data folder")
    return parser


def dbt_zone_main(
    zone: str,
    project_dir: Path,
    settings_cls: type[DbtZoneSettings],
    argv: Sequence[str] | None,
    *,
    description: str,
    hooks: ZoneHooks | None = None,
) -> int:
    """Parse ``argv``, then build the zone's dbt project as a job (``run``) or its docs (``docs``)."""
    args = _parser(zone, description).parse_args(argv)
    try:
        settings = load_settings(settings_cls)
        project = DbtProject(
            project_dir,
            profile=zone,
            schema=zone,
            work_dir=settings.data_dir / "dbt" / zone,
            threads=settings.dbt_threads,
        )
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-{zone}: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    hooks = hooks or ZoneHooks()
    variables: dict[str, Any] = {"reporting_currency": settings.reporting_currency}
    if hooks.variables is not None:
        variables.update(hooks.variables(settings))
    if args.command == "docs":
        url = resolve_database_url(settings)
        result = project.invoke("docs generate", url, variables={"run_id": settings.run_id, **variables})
        if result.success:
            sys.stdout.write(f"dbt docs written to {project.target_path}\n")
        else:
            reason = str(result.exception).strip() if result.exception is not None else "see the dbt log"
            sys.stderr.write(f"dbt docs failed: {reason} (log: {project.work_dir / 'logs'})\n")
        return 0 if result.success else 1

    def work(context: JobContext) -> None:
        if hooks.before_build is not None:
            hooks.before_build(context)
        build_zone(
            context,
            project,
            select=args.select,
            full_refresh=args.full_refresh,
            variables=variables,
            on_built=hooks.on_built,
        )
        if hooks.retention is not None:
            run_retention(context, hooks.retention(context))

    return run_job(zone, zone, settings, work)
