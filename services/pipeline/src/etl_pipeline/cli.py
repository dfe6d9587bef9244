"""``etl``: run the three zones in order under one run id (as Control-M does), and report.

Each zone runs as its own process through its entrypoint, exactly like the containers in
production, so a zone never imports another.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path

from etl_shared import (
    EXIT_CONFIGURATION,
    EXIT_DATABASE,
    ConfigurationError,
    Database,
    Settings,
    load_settings,
    resolve_database_url,
    start_embedded,
)

from ._lineage import format_lineage, lineage_of
from ._status import SCHEMA_CHANGES_DAYS, ZONES, Status, ZoneRun, current_status, history, runs_of

#: ``etl status --check``: a zone's last run failed or a source entity is stale (docs/exit-codes.md).
STATUS_UNHEALTHY = 1


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
        help="serve the sample CRM/FX APIs during the run (default: only when the demo domain is among the domains)",
    )
    apis.add_argument("--no-sample-apis", dest="sample_apis", action="store_const", const=False)
    status = sub.add_parser(
        "status",
        help="last run of each zone with its data quality, and each source entity's freshness",
        description="The operator's view. Exit 0; with --check, exit 1 when a zone's last run failed,"
        " a source entity is older than its freshness SLA, or its newest pull was stopped by its strict"
        " schema contract (see docs/exit-codes.md).",
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when a zone's last run failed or a source entity is stale",
    )
    status.add_argument(
        "--sources-file",
        type=Path,
        help="sources YAML with the freshness SLAs (default: ETL_SOURCES_FILE or the demo)",
    )
    hist = sub.add_parser("history", help="recent jobs with their outcome, newest first")
    hist.add_argument("--limit", type=int, default=20, help="how many jobs (default 20)")
    hist.add_argument("--zone", choices=ZONES, help="only this zone")
    hist.add_argument("--json", action="store_true", help="machine-readable output")
    lineage = sub.add_parser(
        "lineage", help="which pulls fed which conformed and semantic tables and export files in a run"
    )
    lineage.add_argument("lineage_run_id", metavar="RUN_ID", help="the run id (see `etl history`)")
    lineage.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _zone_command(zone: str) -> list[str]:
    return [sys.executable, "-m", f"etl_{zone}", "run"]


def uses_demo_sources() -> bool:
    """Whether the run reads the demo's sources (and so needs the sample APIs): the demo domain is
    among the domains and no single sources file replaces theirs."""
    from etl_shared import configured_domains
    from etl_staging.cli import DEMO_DOMAIN

    if os.environ.get("ETL_SOURCES_FILE"):
        return False
    try:
        return any(d.name == DEMO_DOMAIN for d in configured_domains())
    except Exception:
        return False


@contextlib.contextmanager
def sample_apis(settings: Settings, wanted: bool) -> Iterator[dict[str, str]]:
    """With the demo sources, serve the sample CRM and FX APIs for the length of the run (in production
    the sources file points at the real APIs). Yields the environment the zone jobs need."""
    if not wanted:
        yield {}
        return
    from etl_samples import SampleApiServer
    from etl_staging.cli import DEMO_ENVIRONMENT

    client_id = os.environ.get("ETL_SAMPLE_CLIENT_ID") or DEMO_ENVIRONMENT["ETL_SAMPLE_CLIENT_ID"]
    client_secret = os.environ.get("ETL_SAMPLE_CLIENT_SECRET") or DEMO_ENVIRONMENT["ETL_SAMPLE_CLIENT_SECRET"]
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
        code = _run_zone(_zone_command(zone), env)
        sys.stderr.write(f"<-- {zone} exited {code} after {time.monotonic() - started:.1f}s\n")
        if code != 0:
            sys.stderr.write(f"etl run {run_id}: stopped at {zone} (exit {code}); see docs/exit-codes.md\n")
            return code
    return 0


def _run_zone(command: list[str], env: dict[str, str]) -> int:
    """Run one zone's process to its end; SIGTERM or SIGINT sent to ``etl run`` is passed on to it, so
    that the zone stops cleanly (exit 143, its job row cancelled) rather than being killed or left
    running alone, and ``etl run`` stops there with its code."""
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


#: The job statuses `etl status` writes in capitals (and `--check` fails on).
_ALARMS = {"failed", "abandoned"}


def _format_status(status: Status) -> str:
    lines = ["Zones:"]
    for zone in ZONES:
        run = status.zones.get(zone)
        if run is None:
            lines.append(f"  {zone:<10} never run")
            continue
        code = f" (exit {run.exit_code})" if run.exit_code not in (None, 0) else ""
        lines.append(
            f"  {zone:<10} {run.status.upper() if run.status in _ALARMS else run.status:<10}{code}"
            f" {run.job_name}  run {run.run_id}  started {run.started_at:%Y-%m-%d %H:%M:%S}"
            f"  {run.seconds or 0:.1f}s  {run.rows} rows"
        )
        if run.error_line:
            lines.append(f"      error: {run.error_line}")
        if run.dq is not None:
            dq = run.dq
            lines.append(
                f"      data quality: {dq.total} rules, {dq.passed} passed, {dq.warned} warned, {dq.failed} failed"
            )
            for rule in dq.failed_rules:
                lines.append(
                    f"        FAILED {rule['rule_id']} ({rule['severity']}): {rule['failures']} failing"
                )
            for rule in dq.warned_rules:
                lines.append(f"        warned {rule['rule_id']}: {rule['failures']} failing")
        for table, rows in sorted(run.counts.get("tables", {}).items()):
            lines.append(f"      {table:<40} {rows:>10}")
    lines.append(
        "Source entities (last committed pull; age since the last check, committed or unchanged, against the"
        " freshness SLA):"
    )
    if status.sources_error:
        lines.append(f"  (sources file not read, no SLAs: {status.sources_error})")
    for src in status.sources:
        when = f"{src.last_committed_at:%Y-%m-%d %H:%M:%S}" if src.last_committed_at else "never"
        age = f"{src.age_hours:.1f}h" if src.age_hours is not None else "-"
        sla = f"SLA {src.sla_hours:g}h" if src.sla_hours is not None else "no SLA"
        mark = "  STALE" if src.stale else ""
        lines.append(
            f"  {src.source + '.' + src.entity:<28} last {when}  age {age} ({sla}){mark}"
            f"  watermark {src.watermark or '-'}"
            f"  {src.last_records if src.last_records is not None else '-'} rows"
            f"  {src.committed_pulls} committed" + ("" if src.configured else "  (not in the sources file)")
        )
        if src.unchanged_since and src.last_checked_at:
            lines.append(
                f"      checked {src.last_checked_at:%Y-%m-%d %H:%M:%S}: unchanged since pull {src.unchanged_since}"
                " (nothing new for the conformed zone)"
            )
        if src.unconsumed_pulls:
            age = f"{src.unconsumed_age_hours:.1f}h" if src.unconsumed_age_hours is not None else "-"
            lines.append(
                f"      {src.unconsumed_pulls} committed pull(s) not read by any conformed model, oldest {age}"
                + ("  UNCONSUMED past the SLA" if src.unconsumed_overdue else "")
            )
        if src.rejected_records:
            lines.append(
                f"      {src.rejected_records} record(s) of the last pull could not be read and were set aside"
                " (staging.rejected_records):"
            )
            for reject in src.rejected_first:
                lines.append(
                    f"        {reject['file']}, {reject['unit']} {reject['position']}: {reject['reason']}"
                )
        if src.empty_files:
            names = ", ".join(src.empty_files)
            lines.append(f"      {len(src.empty_files)} file(s) of the last pull held no record: {names}")
        if src.last_pull_status == "failed":
            lines.append(f"      last pull FAILED: {src.last_pull_error or '(no error recorded)'}")
        if src.schema_changes:
            more = src.schema_changes_total - len(src.schema_changes)
            lines.append(
                f"      schema changes, last {SCHEMA_CHANGES_DAYS} days: {src.schema_changes_total}"
                + (f" (newest {len(src.schema_changes)} shown)" if more else "")
                + ("  CONTRACT BROKEN: the newest pull was stopped (strict)" if src.contract_broken else "")
            )
            for change in src.schema_changes:
                typed = f" ({change['declared_type']})" if change["declared_type"] else ""
                count = f", {change['failing_values']} failing" if change["failing_values"] else ""
                lines.append(
                    f"        {change['detected_at'][:19].replace('T', ' ')}"
                    f" {'FAILED' if change['action'] == 'failed' else 'warned'} {change['kind']}"
                    f" {change['column']}{typed}{count}: {change['detail'] or ''}  (pull {change['pull_id'][:8]})"
                )
    for job in status.overdue:
        lines.append(
            f"  OVERDUE: the {job.zone} job {job.job_id} (run {job.run_id}) has run {job.seconds:.0f}s,"
            f" past its {job.sla_s:.0f}s SLA"
        )
    if not status.healthy:
        lines.append(
            "Attention: "
            + "; ".join(
                [f"{zone} failed" for zone in status.failed_zones]
                + [f"{zone} job abandoned (its process died)" for zone in status.abandoned_zones]
                + [f"{job.zone} job running past its SLA" for job in status.overdue]
                + [f"{s.source}.{s.entity} stale" for s in status.stale]
                + [f"{s.source}.{s.entity} pulls unconsumed past the SLA" for s in status.unconsumed]
                + [f"{s.source}.{s.entity} schema contract broken" for s in status.contract_broken]
            )
        )
    return "\n".join(lines) + "\n"


def _format_history(runs: list[ZoneRun]) -> str:
    header = (
        f"{'started (UTC)':<19}  {'zone':<9} {'job':<28} {'status':<9} {'exit':>4} {'secs':>7} {'rows':>9}"
    )
    lines = [header + "  run id"]
    for run in runs:
        code = "-" if run.exit_code is None else str(run.exit_code)
        seconds = f"{run.seconds:.1f}" if run.seconds is not None else "-"
        lines.append(
            f"{run.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  {run.zone:<9} {run.job_name:<28}"
            f" {run.status:<9} {code:>4} {seconds:>7} {run.rows:>9}  {run.run_id}"
        )
        if run.error_line:
            lines.append(f"    error: {run.error_line}")
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
    if args.command == "history":
        if args.limit < 1:
            sys.stderr.write("etl history: --limit must be at least 1\n")
            return EXIT_CONFIGURATION
        try:
            runs = history(db, limit=args.limit, zone=args.zone)
        except Exception as exc:
            sys.stderr.write(f"etl history: cannot read the audit tables (has a job run yet?): {exc}\n")
            return EXIT_DATABASE
        if args.json:
            sys.stdout.write(json.dumps([r.as_json() for r in runs], indent=2, default=str) + "\n")
        else:
            sys.stdout.write(_format_history(runs))
        return 0
    if args.command == "lineage":
        try:
            data = lineage_of(db, args.lineage_run_id)
        except Exception as exc:
            sys.stderr.write(f"etl lineage: cannot read the audit tables (has a job run yet?): {exc}\n")
            return EXIT_DATABASE
        if args.json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        else:
            sys.stdout.write(format_lineage(data))
        return 0
    try:
        status = current_status(db, sources_file=args.sources_file, duration_sla_s=settings.duration_sla_s)
    except Exception as exc:
        sys.stderr.write(f"etl status: cannot read the audit tables (has a job run yet?): {exc}\n")
        return EXIT_DATABASE
    if args.json:
        sys.stdout.write(json.dumps(status.as_json(), indent=2, default=str) + "\n")
    else:
        sys.stdout.write(_format_status(status))
    if args.check and not status.healthy:
        return STATUS_UNHEALTHY
    return 0


__all__ = ["main", "run_pipeline"]
