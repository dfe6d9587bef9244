"""``etl``: run the three zones in order under one run id (as Control-M does), and report.

Each zone runs as its own process through its entrypoint, exactly like the containers in
production, so a zone never imports another.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from etl_shared import (
    EXIT_CONFIGURATION,
    ConfigurationError,
    Database,
    Settings,
    load_settings,
    resolve_database_url,
    start_embedded,
)

from ._status import ZONES, Status, ZoneRun, current_status, runs_of


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl", description="Run the staging, conformed and semantic zones.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the three zones in order under one run id, then summarise")
    run.add_argument("--run-id", help="run id (default: ETL_RUN_ID or a new one)")
    apis = run.add_mutually_exclusive_group()
    apis.add_argument(
        "--sample-apis",
        dest="sample_apis",
        action="store_const",
        const=True,
        help="serve the sample CRM/FX APIs during the run (default: only with the bundled demo sources)",
    )
    apis.add_argument("--no-sample-apis", dest="sample_apis", action="store_const", const=False)
    status = sub.add_parser("status", help="last run of each zone and the staging pulls")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _zone_command(zone: str) -> list[str]:
    return [sys.executable, "-m", f"etl_{zone}", "run"]


def uses_demo_sources() -> bool:
    return not os.environ.get("ETL_SOURCES_FILE")


@contextlib.contextmanager
def sample_apis(settings: Settings, wanted: bool) -> Iterator[dict[str, str]]:
    """With the demo sources, serve the sample CRM and FX APIs for the length of the run (in production
    the sources file points at the real APIs). Yields the environment the zone jobs need."""
    if not wanted:
        yield {}
        return
    from etl_samples import SampleApiServer

    client_id = os.environ.get("ETL_SAMPLE_CLIENT_ID", "demo-client")
    client_secret = os.environ.get("ETL_SAMPLE_CLIENT_SECRET", "demo-secret")
    with SampleApiServer(settings.data_dir, client_id=client_id, client_secret=client_secret) as server:
        sys.stderr.write(f"sample APIs (CRM, FX) at {server.url}\n")
        yield {
            "ETL_SAMPLE_API_URL": server.url,
            "ETL_SAMPLE_CLIENT_ID": client_id,
            "ETL_SAMPLE_CLIENT_SECRET": client_secret,
        }


def run_pipeline(settings: Settings, run_id: str, *, serve_samples: bool | None = None) -> int:
    serve = uses_demo_sources() if serve_samples is None else serve_samples
    with sample_apis(settings, serve) as extra_env:
        return _run_zones(run_id, {**os.environ, **extra_env, "ETL_RUN_ID": run_id})


def _run_zones(run_id: str, env: dict[str, str]) -> int:
    sys.stderr.write(f"etl run {run_id}\n")
    for zone in ZONES:
        started = time.monotonic()
        sys.stderr.write(f"--> {zone} ...\n")
        code = subprocess.call(_zone_command(zone), env=env)
        sys.stderr.write(f"<-- {zone} exited {code} after {time.monotonic() - started:.1f}s\n")
        if code != 0:
            sys.stderr.write(f"etl run {run_id}: stopped at {zone} (exit {code}); see docs/exit-codes.md\n")
            return code
    return 0


def _format_summary(settings: Settings, run_id: str, runs: list[ZoneRun]) -> str:
    lines = ["", f"Run {run_id}"]
    for run in runs:
        dq = run.counts.get("dq_status")
        extra = f", data quality {dq}" if dq else ""
        if run.zone == "staging":
            extra += f", {len(run.counts.get('pulls', {}))} pulls"
        lines.append(
            f"  {run.zone:<10} {run.status:<10} {run.rows:>9} rows  {run.seconds or 0:>6.1f}s{extra}"
        )
        warned = run.counts.get("dq_warned_rules") or []
        failed = run.counts.get("dq_failed_rules") or []
        if failed:
            lines.append(f"             failed rules: {', '.join(failed)}")
        if warned:
            lines.append(f"             warnings: {', '.join(warned)}")
    lines.append("Outputs:")
    lines.append("  staging.pulls / staging.pull_batches   raw pulls (last 3 per source entity)")
    lines.append("  conformed.*                            conformed entities")
    lines.append("  semantic.dim_* / semantic.fct_*        star schema for Qlik")
    if settings.uses_embedded_database:
        lines.append(f"  connect: {start_embedded(settings.data_dir).psql_command()}")
    lines.append("  etl status --json                      last run of each zone")
    return "\n".join(lines) + "\n"


def _format_status(status: Status) -> str:
    lines = ["Zones:"]
    for zone in ZONES:
        run = status.zones.get(zone)
        if run is None:
            lines.append(f"  {zone:<10} never run")
            continue
        lines.append(
            f"  {zone:<10} {run.status:<10} run {run.run_id}  started {run.started_at:%Y-%m-%d %H:%M:%S}"
            f"  {run.seconds or 0:.1f}s  {run.rows} rows"
        )
        for table, rows in sorted(run.counts.get("tables", {}).items()):
            lines.append(f"      {table:<40} {rows:>10}")
        if run.error:
            lines.append(f"      error: {run.error.splitlines()[0][:200]}")
    lines.append("Staging pulls:")
    for src in status.sources:
        when = f"{src.last_committed_at:%Y-%m-%d %H:%M:%S}" if src.last_committed_at else "never"
        lines.append(
            f"  {src.source}.{src.entity:<24} {src.committed_pulls} committed, last {when},"
            f" {src.last_records if src.last_records is not None else '-'} records"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            Settings, **({"run_id": args.run_id} if getattr(args, "run_id", None) else {})
        )
        url = resolve_database_url(settings, announce=False)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    db = Database(url, application_name="etl")
    if args.command == "run":
        code = run_pipeline(settings, settings.run_id, serve_samples=args.sample_apis)
        try:
            runs = runs_of(db, settings.run_id)
        except Exception as exc:  # the database itself may be what failed
            sys.stderr.write(f"etl: cannot read the audit tables: {exc}\n")
            return code or 5
        sys.stdout.write(_format_summary(settings, settings.run_id, runs))
        return code
    try:
        status = current_status(db)
    except Exception as exc:
        sys.stderr.write(f"etl status: cannot read the audit tables (has a job run yet?): {exc}\n")
        return 5
    if args.json:
        sys.stdout.write(json.dumps(status.as_json(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(_format_status(status))
    return 0


__all__ = ["main", "run_pipeline"]
