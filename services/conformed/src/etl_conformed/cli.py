"""``etl-conformed``: build the conformed zone (dbt models and data-quality tests)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from pydantic import Field

from etl_shared import (
    EXIT_CONFIGURATION,
    ConfigurationError,
    DbtProject,
    JobContext,
    Settings,
    build_zone,
    load_settings,
    resolve_database_url,
    run_job,
)

ZONE = "conformed"


class ConformedSettings(Settings):
    dbt_threads: int = Field(default=2, ge=1, le=32, description="dbt threads")
    reporting_currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 reporting currency"
    )


def project_dir() -> Path:
    return Path(str(resources.files("etl_conformed") / "dbt"))


def _project(settings: ConformedSettings) -> DbtProject:
    return DbtProject(
        project_dir(),
        profile=ZONE,
        schema=ZONE,
        work_dir=settings.data_dir / "dbt" / ZONE,
        threads=settings.dbt_threads,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl-conformed", description="Conformed zone: dbt build with data quality."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="dbt build (models and tests), recorded in the audit tables")
    run.add_argument("--select", nargs="+", default=[], help="dbt selection (default: everything)")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    sub.add_parser("docs", help="generate the dbt documentation site under the data folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(ConformedSettings)
        project = _project(settings)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-conformed: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    variables = {"reporting_currency": settings.reporting_currency}
    if args.command == "docs":
        url = resolve_database_url(settings)
        result = project.invoke(
            "docs", url, args=["generate"], variables={"run_id": settings.run_id, **variables}
        )
        sys.stdout.write(
            f"dbt docs written to {project.target_path}\n" if result.success else "dbt docs failed\n"
        )
        return 0 if result.success else 1

    def work(context: JobContext) -> None:
        build_zone(context, project, select=args.select, full_refresh=args.full_refresh, variables=variables)

    return run_job(ZONE, ZONE, settings, work)
