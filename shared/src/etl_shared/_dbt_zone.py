"""The command line of a dbt zone (conformed and semantic share it): ``run`` and ``docs``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field

from ._dbt import DbtOutcome, DbtProject, build_zone, detect_cockroachdb
from ._domains import (
    PLATFORM_PACKAGE,
    assemble_zone_project,
    combined_checksum,
    configured_domains,
    package_checksums,
)
from ._errors import EXIT_CONFIGURATION, ConfigurationError
from ._files import remove_stale_temporary_files
from ._job import JobContext, resolve_database_url, run_job
from ._liveness import zone_lease_names
from ._retention import RetentionRule, apply_retention_rules, declared_retention_rules
from ._settings import Settings, load_settings

_log = logging.getLogger(__name__)


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


#: The note of a conformed.consumed_pulls row for a pull with no record at all: the conformed zone
#: marks it processed without running its models (select_new_pulls in etl_conformed), so the
#: conformed tables did not change with it and the semantic zone has nothing new from it.
EMPTY_PULL_NOTE = "no records: nothing to process, its models were not run"


@dataclass(frozen=True)
class Selection:
    """The part of a zone's project a run builds when it need not build everything: dbt selection
    arguments, and why (for the log and the job's summary)."""

    select: list[str]
    reason: str


@dataclass
class ZoneHooks:
    """What a zone adds to the shared dbt job: ``before_build`` runs first (inside the job);
    ``variables`` adds dbt vars from the settings; ``select`` may narrow the build to what has new
    input (used only when the previous run of the zone succeeded with the same project, see
    :func:`selection_blocked_by`; its second argument returns the project's dbt manifest, parsed
    if need be, for what the models declare); ``on_built`` runs after the dbt build whatever its outcome (a
    summary for the job's audit row, exports); ``retention`` lists the tables to clean after a
    successful build (:func:`model_retention_rules` gives those the models declare)."""

    before_build: Callable[[JobContext], None] | None = None
    variables: Callable[[DbtZoneSettings], dict[str, Any]] | None = None
    select: Callable[[JobContext, Callable[[], dict[str, Any]]], Selection] | None = None
    on_built: Callable[[JobContext, DbtOutcome], None] | None = None
    retention: Callable[[JobContext, DbtOutcome], list[RetentionRule]] | None = None
    #: run values the zone adds for its macros (read while dbt executes, see run_values.sql), after
    #: ``before_build``: the semantic zone's ``ledger_compare_all`` after a change of the PII key
    run_values: Callable[[JobContext], dict[str, str]] | None = None


@dataclass(frozen=True)
class ZoneProject:
    """A zone's assembled dbt project (see _domains): where it is, and its packages."""

    dbt: DbtProject
    packages: dict[str, Path]

    def checksums(self, variables: dict[str, Any]) -> dict[str, str]:
        return package_checksums(self.packages, variables)

    @property
    def domain_packages(self) -> list[str]:
        return [name for name in self.packages if name != PLATFORM_PACKAGE]


def zone_project(zone: str, settings: DbtZoneSettings) -> ZoneProject:
    """The zone's dbt project, assembled from the platform and the configured domains under
    ``<data dir>/dbt/<zone>/project``, its artefacts under ``<data dir>/dbt/<zone>``."""
    work_dir = settings.data_dir / "dbt" / zone
    packages = assemble_zone_project(zone, configured_domains(settings.domains), work_dir / "project")
    dbt = DbtProject(
        work_dir / "project", profile=zone, schema=zone, work_dir=work_dir, threads=settings.dbt_threads
    )
    return ZoneProject(dbt, packages)


def zone_variables(settings: DbtZoneSettings, hooks: ZoneHooks | None = None) -> dict[str, Any]:
    """The dbt vars a zone's project runs with (the same from run to run: see DbtProject.invoke)."""
    variables: dict[str, Any] = {"reporting_currency": settings.reporting_currency}
    if hooks is not None and hooks.variables is not None:
        variables.update(hooks.variables(settings))
    return variables


def zone_manifest(project: ZoneProject, url: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The project's dbt manifest as a build with ``variables`` sees it (parsed if need be)."""
    build_vars = {"is_cockroachdb": detect_cockroachdb(url), **variables}  # build_zone's
    return project.dbt.manifest(
        url, checksum=combined_checksum(project.checksums(variables)), variables=build_vars
    )


#: How selection_blocked_by names the previous job's end.
_PREVIOUS_STATUS = {
    "running": "died without closing its row (its lease expired; not yet marked abandoned)",
    "abandoned": "was abandoned (its process died: killed, or its host lost)",
    "cancelled": "was cancelled (SIGTERM or SIGINT)",
}


def selection_blocked_by(
    context: JobContext, zone: str, checksums: dict[str, str], domains: str
) -> str | list[str] | None:
    """Why this run must build the whole project (a text), or the domain packages it must build
    whole (a list), or None when it may build only what has new input.

    A partial build is safe only on top of a complete, successful one: the zone's previous job (other
    than this one) must have succeeded, built everything it needed (``dbt_project.complete``) and
    run the same platform with the same vars. After a failed or killed run, a release of the
    platform or a change of vars, everything is built again; a domain whose project changed (or that
    is new) is built whole, the other domains only where they have new input.

    The previous job is the zone's last one with the same ``domains`` (the packages, comma
    separated): one Control-M job per domain and zone compares with its own domain's last run; a
    job that ended before it chose what to build, of any domains, also blocks a partial build."""
    with context.db.connect(autocommit=True) as conn:
        row = conn.execute(
            "select status, counts -> 'dbt_project' from ops.job_runs"
            " where zone = %s and job_id <> %s"
            " and (counts -> 'dbt_project' ->> 'domains' = %s or counts -> 'dbt_project' is null)"
            # a live job (its lease renewed) is another domain's: this job holds its own domains' leases
            " and not coalesce(status = 'running' and lease_expires_at > now(), false)"
            " order by started_at desc limit 1",
            (zone, context.audit.job_id, domains),
        ).fetchone()
    if row is None:
        return f"first run of the zone with the domains {domains or '(none)'}"
    status, previous = row
    if status != "succeeded":
        return f"the previous {zone} job {_PREVIOUS_STATUS.get(status, status)}"
    if not isinstance(previous, dict) or not previous.get("complete"):
        return f"the previous {zone} job did not build everything it needed (a manual --select, or older release)"
    if previous.get("checksum") == combined_checksum(checksums):
        return None
    before = previous.get("packages")
    if not isinstance(before, dict):
        return "the dbt project or its vars changed since the previous run"
    if before.get("vars") != checksums["vars"]:
        return "the vars changed since the previous run"
    if before.get(PLATFORM_PACKAGE) != checksums[PLATFORM_PACKAGE]:
        return "the platform's dbt package changed since the previous run (a release)"
    changed = [
        name
        for name, value in checksums.items()
        if name not in {"vars", PLATFORM_PACKAGE} and before.get(name) != value
    ]
    return changed or None


def model_retention_rules(outcome: DbtOutcome) -> list[RetentionRule]:
    """The retention rules the project's models declare (meta etl_retention), from the build's manifest."""
    if outcome.manifest_path is None:
        return []
    return declared_retention_rules(json.loads(outcome.manifest_path.read_bytes()))


def run_retention(context: JobContext, rules: list[RetentionRule]) -> dict[str, int]:
    settings = context.settings
    assert isinstance(settings, DbtZoneSettings)
    cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
    deleted = apply_retention_rules(
        context.db, rules, older_than=cutoff, batch_rows=settings.retention_batch_rows
    )
    context.counts["retention"] = {"older_than": cutoff.isoformat(), "deleted": deleted}
    return deleted


def check_selection(
    zone: str, select: Sequence[str], project: ZoneProject, variables: dict[str, Any]
) -> None:
    """Refuse a ``--select`` dbt would not accept, before the job connects anywhere: a spec dbt cannot
    read (a method it does not know, a malformed graph operator), and, when the manifest of a build of
    this very project is at hand (the previous run's), a model name no node of the project has (a
    typo would otherwise build nothing and succeed)."""
    from dbt.graph.selector_spec import RAW_SELECTOR_PATTERN, SelectionCriteria

    names: set[str] | None = None
    manifest = project.dbt.target_path / "manifest.json"
    stamp = project.dbt.target_path / "etl_artefacts_key"
    checksum = combined_checksum(project.checksums(variables))
    if manifest.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8").split(" ")[0] == checksum:
        nodes = json.loads(manifest.read_bytes()).get("nodes", {})
        names = {part for node in nodes.values() for part in [node.get("name"), *node.get("fqn", [])] if part}
    for spec in select:
        for part in spec.split(","):
            try:
                # dbt's own reading of a spec, without its command-line flags (no dbt command runs)
                matched = RAW_SELECTOR_PATTERN.match(part)
                if matched is None or not matched.group("value"):
                    raise ConfigurationError("not a dbt selection (method:value with graph operators)")
                method, _ = SelectionCriteria.parse_method(matched.groupdict())
            except Exception as exc:
                problem = " ".join(str(exc).split()).removeprefix("Runtime Error ")
                raise ConfigurationError(f"--select {spec!r}: {problem}") from None
            value = matched.group("value")
            plain = method == "fqn" and not any(char in value for char in "*?[./")
            if names is not None and plain and value not in names:
                raise ConfigurationError(
                    f"--select {spec!r}: no model, seed, snapshot or test of the {zone} project is named"
                    f" {value!r} (etl-{zone} run --all builds everything)"
                )


def _parser(zone: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"etl-{zone}", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="dbt build (models and tests), recorded in the audit tables")
    run.add_argument("--select", nargs="+", default=[], help="dbt selection (default: what has new input)")
    run.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")
    run.add_argument(
        "--all",
        action="store_true",
        help="build every model and test, even those with no new input since the previous run",
    )
    sub.add_parser("docs", help="generate the dbt documentation site under the data folder")
    return parser


def dbt_zone_main(
    zone: str,
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
        project = zone_project(zone, settings)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-{zone}: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    hooks = hooks or ZoneHooks()
    variables = zone_variables(settings, hooks)
    if args.command == "run" and args.select:
        try:
            check_selection(zone, args.select, project, variables)
        except ConfigurationError as exc:
            sys.stderr.write(f"etl-{zone}: usage error: {exc}\n")
            return EXIT_CONFIGURATION
    if args.command == "docs":
        url = resolve_database_url(settings)
        result = project.dbt.invoke(
            "docs generate", url, variables=variables, run_values={"run_id": settings.run_id}
        )
        if result.success:
            sys.stdout.write(f"dbt docs written to {project.dbt.target_path}\n")
        else:
            reason = str(result.exception).strip() if result.exception is not None else "see the dbt log"
            sys.stderr.write(f"dbt docs failed: {reason} (log: {project.dbt.work_dir / 'logs'})\n")
        return 0 if result.success else 1

    def work(context: JobContext) -> None:
        for folder in (project.dbt.project_dir, project.dbt.work_dir / "profiles", project.dbt.target_path):
            remove_stale_temporary_files(folder)  # what a killed job left of its small files
        if hooks.before_build is not None:
            hooks.before_build(context)
        select, new_input_only = _plan(context, zone, project, variables, hooks, args)
        outcome = build_zone(
            context,
            project.dbt,
            select=select,
            full_refresh=args.full_refresh,
            variables=variables,
            on_built=hooks.on_built,
            # On top of a complete build of the same project, records a snapshot pull shares with
            # the last processed one need no second check (conformed's pull_records macro).
            run_values={
                "skip_unchanged": "true" if new_input_only else "false",
                **(hooks.run_values(context) if hooks.run_values is not None else {}),
            },
        )
        if hooks.retention is not None:
            run_retention(context, hooks.retention(context, outcome))

    return run_job(zone, zone, settings, work, leases=zone_lease_names(zone, project.domain_packages))


def _plan(
    context: JobContext,
    zone: str,
    project: ZoneProject,
    variables: dict[str, Any],
    hooks: ZoneHooks,
    args: argparse.Namespace,
) -> tuple[list[str], bool]:
    """What this run builds: the operator's --select; everything (--all, --full-refresh, or when a
    partial build is not safe); or what the zone's ``select`` hook says has new input, plus every
    domain whose project changed, whole. Recorded in the job's summary as ``dbt_project``: the
    project checksum and one per package, whether the run built everything it needed
    (``complete``), and how it was chosen. Returns the selection, and whether it is a build of new
    input only, on top of a complete build of the same project."""
    checksums = project.checksums(variables)
    summary: dict[str, Any] = {
        "checksum": combined_checksum(checksums),
        "packages": checksums,
        "domains": ",".join(project.domain_packages),
        "complete": True,
    }
    context.counts["dbt_project"] = summary
    if args.select:
        summary.update(complete=False, built="the models selected with --select")
        return list(args.select), False
    if hooks.select is None:
        summary["built"] = "everything"
        return [], False
    blocked: str | list[str] | None
    if args.all or args.full_refresh:
        blocked = "--all" if args.all else "--full-refresh"
    else:
        blocked = selection_blocked_by(context, zone, checksums, summary["domains"])
    if isinstance(blocked, str):
        summary["built"] = f"everything: {blocked}"
        _log.info("building every model: %s", blocked)
        return [], False
    selection = hooks.select(context, lambda: zone_manifest(project, context.db.url, variables))
    select, reason = list(selection.select), selection.reason
    if blocked:
        # a domain's changed models may change what it makes of records it has seen already: its
        # whole package (and what other domains build on it), every record checked again
        select += [f"package:{name}+" for name in blocked]
        reason += f"; every model of {', '.join(blocked)}: new, or changed since the previous run"
        _log.info("building every model of %s: new, or changed since the previous run", ", ".join(blocked))
    summary.update(built=reason, select=select)
    _log.info("building what has new input: %s", selection.reason, extra={"select": select})
    return select, not blocked
