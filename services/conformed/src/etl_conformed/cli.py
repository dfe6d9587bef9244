"""``etl-conformed``: build the conformed zone (dbt models, data quality, change history).

``run`` and ``docs`` are the shared dbt-zone commands; ``skip-pull`` is the conformed zone's own: it
lets an operator release a staging pull that keeps failing the data-quality thresholds.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from etl_shared import (
    EMPTY_PULL_NOTE,
    EXIT_CONFIGURATION,
    EXIT_OK,
    ConfigurationError,
    Database,
    DataQualityError,
    DbtOutcome,
    DbtZoneSettings,
    EtlError,
    JobContext,
    RetentionRule,
    Selection,
    ZoneHooks,
    configured_domains,
    dbt_zone_main,
    history_retention_rules,
    load_settings,
    model_retention_rules,
    resolve_database_url,
    zone_manifest,
    zone_project,
    zone_variables,
)

from ._consumers import Consumer, consumers_from_manifest

ZONE = "conformed"
_log = logging.getLogger(__name__)

#: What every run builds, new pulls or not: the freshness tests of the staging pulls, and the models
#: whose config says ``meta: {etl_every_run: true}`` (the demo's daily FX rates, which carry the last
#: published rate forward to today). An entity's volume test (its newest pull against the one before)
#: runs with a new pull of it: without one its answer is the same.
EVERY_RUN = ["test_name:pull_freshness"]

QUARANTINE_RETENTION = RetentionRule(
    "conformed.quarantine", "quarantined_at", ("run_id", "rule_id", "pull_id", "batch_no", "row_no")
)
#: The snapshots of jobs killed before their build ended (a job deletes its own: forget_pull_snapshot).
RUN_PULLS_RETENTION = RetentionRule("conformed.run_pulls", "taken_at", ("job_id", "pull_id"))


class ConformedSettings(DbtZoneSettings):
    """Settings of the conformed job (see docs/configuration.md)."""


def summarise_record_rules(context: JobContext, outcome: DbtOutcome) -> None:
    """Put the record-level rules that found something, and the rows quarantined, into the job's
    summary and metrics; name the rules that crossed their threshold."""
    job_id = context.audit.job_id
    with context.db.connect(autocommit=True) as conn:
        rules = conn.execute(
            "select rule_id, severity, status, failures, checked, threshold from ops.dq_results"
            " where job_id = %s and checked is not null order by rule_id",
            (job_id,),
        ).fetchall()
        quarantined = conn.execute(
            "select entity, severity, count(*) from conformed.quarantine where job_id = %s"
            " group by entity, severity order by entity, severity",
            (job_id,),
        ).fetchall()
    found = {}
    crossed = []
    for rule_id, severity, status, failures, checked, threshold in rules:
        context.metrics.observe_dq(rule_id, severity, failures=failures, status=status)
        if failures:
            share = failures / checked if checked else 0.0
            found[rule_id] = {
                "status": status,
                "severity": severity,
                "failures": failures,
                "checked": checked,
                "share": round(share, 6),
                "threshold": threshold,
            }
            _log.warning(
                "rule %s: %d of %d records failing (%.2f%%, threshold %.2f%%): %s",
                rule_id,
                failures,
                checked,
                share * 100,
                (threshold or 0) * 100,
                status,
                extra={"rule_id": rule_id, "failures": failures, "checked": checked, "dq_status": status},
            )
            if status == "fail":
                crossed.append(
                    f"{rule_id}: {failures} of {checked} records ({share:.1%}) above the {threshold:.1%} threshold"
                )
    context.counts["record_rules"] = {"checked_rules": len(rules), "with_failures": found}
    context.counts["quarantined"] = {
        f"{entity} ({severity})": count for entity, severity, count in quarantined
    }
    for entity, severity, count in quarantined:
        context.metrics.observe_quarantine(entity, severity, count)
    model_errors = [n for n in outcome.nodes if n.resource_type != "test" and n.status == "error"]
    if crossed and not model_errors:
        raise DataQualityError(
            "data-quality threshold crossed, the entity's history was not updated: "
            + "; ".join(crossed)
            + f". The failing records are in conformed.quarantine (run_id {context.settings.run_id});"
            " see docs/runbook.md"
        )


_SNAPSHOT_PULLS = """
insert into conformed.run_pulls (job_id, pull_id, run_id, taken_at)
select %s, pulls.pull_id, %s, now()
from staging.pulls as pulls
where pulls.status = 'committed'
on conflict (job_id, pull_id) do nothing
"""

#: The pulls of this job's snapshot, with whether they hold records and who consumed them.
_SNAPSHOT_PULL_STATES = """
select pulls.source, pulls.entity, pulls.pull_id, coalesce(pulls.record_count, 1) > 0,
    array(select consumed.consumer from conformed.consumed_pulls as consumed
          where consumed.pull_id = pulls.pull_id)
from conformed.run_pulls as run_pulls
inner join staging.pulls as pulls on run_pulls.pull_id = pulls.pull_id
where run_pulls.job_id = %s and pulls.status = 'committed'
order by pulls.source, pulls.entity, pulls.pull_id
"""


def snapshot_pulls(context: JobContext) -> None:
    """List the committed staging pulls by id in conformed.run_pulls, under this job's id, before
    anything else reads them: what this job selects, reads and marks consumed is exactly this list
    (the dbt macros read it through the run value job_id, see pulls.sql). A pull that commits later,
    whatever its committed_at, is the next job's. Idempotent (a retried insert adds nothing)."""
    job_id, run_id = context.audit.job_id, context.settings.run_id
    listed: int = context.db.transaction(
        lambda conn: conn.execute(_SNAPSHOT_PULLS, (job_id, run_id)).rowcount, name="snapshot committed pulls"
    )
    context.counts["pulls_in_snapshot"] = listed
    _log.info("%d committed pull(s) in this run's snapshot", listed, extra={"pulls": listed})


def forget_pull_snapshot(context: JobContext) -> None:
    """Delete this job's snapshot once its build has ended: consumed_pulls records what it read."""
    job_id = context.audit.job_id
    context.db.transaction(
        lambda conn: conn.execute("delete from conformed.run_pulls where job_id = %s", (job_id,)),
        name="forget the pull snapshot",
    )


def foreign_source(settings: ConformedSettings) -> Callable[[str], bool]:
    """Whether a source is another job's: with ETL_DOMAINS set (one Control-M job per domain), a
    source that no sources.yml of this job's domains declares. Its unconsumed pulls are another
    job's business (``etl status --check`` still fails on pulls nobody reads); with ETL_DOMAINS
    unset the job builds every installed domain, and every source is its own."""
    if not settings.domains:
        return lambda _source: False
    declared = _declared_sources(settings.domains)
    return lambda source: source not in declared


@functools.cache
def _declared_sources(domains: str) -> frozenset[str]:
    """The sources the domains' sources files declare: read once per process (the selection and the
    report after the build both ask)."""
    return frozenset(name for domain in configured_domains(domains) for name in domain.source_names())


def select_new_pulls(context: JobContext, manifest: Callable[[], dict[str, Any]]) -> Selection:
    """Build only what has pulls in this job's snapshot (:func:`snapshot_pulls`) that its consumer has
    not read yet: for each such
    consumer (a model declaring ``meta: {etl_consumes: ...}``, see _consumers), its parent models and
    everything downstream of them (validated model, history, conformed models, their tests) and the
    volume test of its entity's pulls, plus :data:`EVERY_RUN` and the models declared to run every
    time. An entity with nothing new is left as it is, and the seeds are not reloaded: they change
    only with a release, and a release makes the run build everything.

    A consumer whose new pulls hold no record at all (the FX file source commits an empty pull when
    the file has not changed: every weekend) has nothing to process either: an incremental pull adds
    nothing, and an empty full pull deletes nothing (scd2_history reads absence only from a pull with
    records). Its pulls are marked processed here, with a note, and only their volume test runs.
    Pulls of an entity no model consumes are named in the reason (and warned about after the build)."""
    project = consumers_from_manifest(manifest())
    pending: dict[str, Consumer] = {}
    empty: dict[str, list[Any]] = {}
    new_entities: set[tuple[str, str]] = set()
    unconsumed: set[tuple[str, str]] = set()
    with context.db.connect(autocommit=True) as conn:
        pulls = conn.execute(_SNAPSHOT_PULL_STATES, (context.audit.job_id,)).fetchall()
        for consumer in (c for found in project.consumers.values() for c in found):
            new = [
                (pull_id, has_records)
                for source, entity, pull_id, has_records, readers in pulls
                if (source, entity) == (consumer.source, consumer.entity) and consumer.model not in readers
            ]
            if not new:
                continue
            new_entities.add((consumer.source, consumer.entity))
            if any(has_records for _, has_records in new):
                pending[consumer.model] = consumer
            else:
                empty[consumer.model] = [pull_id for pull_id, _ in new]
        foreign = foreign_source(context.settings)  # type: ignore[arg-type]
        for source, entity, _, _, readers in pulls:
            if not readers and (source, entity) not in project.consumers and not foreign(source):
                unconsumed.add((source, entity))
        for model, pull_ids in empty.items():
            conn.execute(
                "insert into conformed.consumed_pulls"
                " (consumer, pull_id, source, entity, disposition, run_id, note, consumed_at)"
                " select %s, pulls.pull_id, pulls.source, pulls.entity, 'processed', %s, %s, now()"
                " from staging.pulls as pulls where pulls.pull_id = any(%s)"
                " on conflict (consumer, pull_id) do nothing",
                (model, context.settings.run_id, EMPTY_PULL_NOTE, pull_ids),
            )

    def names(keys: Any) -> str:
        return ", ".join(f"{source}.{entity}" for source, entity in sorted(set(keys))) or "-"

    built = {(c.source, c.entity) for c in pending.values()}
    idle = project.entities - new_entities
    empty_entities = new_entities - built
    reason = f"new pulls of {names(built)}; nothing new for {names(idle)}" if built else "no new pulls"
    if empty_entities:
        reason += "; only empty pulls of " + names(empty_entities)
    if unconsumed:
        reason += "; no model consumes " + names(unconsumed)
    selectors = sorted({selector for c in pending.values() for selector in c.selectors})
    volume = sorted({test for key in new_entities for test in project.volume_tests.get(key, [])})
    return Selection(select=[*selectors, *volume, *EVERY_RUN, *project.every_run], reason=reason)


def report_unconsumed(context: JobContext, outcome: DbtOutcome) -> None:
    """Warn about, and count in the job's summary, the committed pulls of every source entity that no
    model of the project consumes: they would otherwise wait unread for ever. ``etl status`` shows
    them, and ``etl status --check`` fails once they are older than the entity's freshness SLA."""
    if outcome.manifest_path is None:
        return
    project = consumers_from_manifest(json.loads(outcome.manifest_path.read_bytes()))
    with context.db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select pulls.source, pulls.entity, count(*) from staging.pulls as pulls"
            " where pulls.status = 'committed' and not exists ("
            "  select 1 from conformed.consumed_pulls as consumed where consumed.pull_id = pulls.pull_id)"
            " group by 1, 2 order by 1, 2"
        ).fetchall()
    foreign = foreign_source(context.settings)  # type: ignore[arg-type]
    orphans = {
        f"{source}.{entity}": int(n)
        for source, entity, n in rows
        if (source, entity) not in project.consumers and not foreign(source)
    }
    if not orphans:
        return
    context.counts["unconsumed_pulls"] = orphans
    for name, count in orphans.items():
        _log.warning(
            "%d committed pull(s) of %s: no model of the conformed project consumes this source entity;"
            ' declare meta etl_consumes on the model that reads it (docs/runbook.md, "What a conformed run'
            ' builds"), or remove the'
            " entity from the sources file. etl status lists it as unconsumed",
            count,
            name,
            extra={"entity": name, "pulls": count},
        )


def on_built(context: JobContext, outcome: DbtOutcome) -> None:
    forget_pull_snapshot(context)
    report_unconsumed(context, outcome)
    summarise_record_rules(context, outcome)


def retention_rules(context: JobContext, outcome: DbtOutcome) -> list[RetentionRule]:
    """Every history's closed versions, the quarantine, the snapshots of killed jobs, and what the
    models declare (meta etl_retention)."""
    return [
        *history_retention_rules(context.db, ZONE),
        QUARANTINE_RETENTION,
        RUN_PULLS_RETENTION,
        *model_retention_rules(outcome),
    ]


def skip_pull_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etl-conformed skip-pull", description=skip_pull.__doc__)
    parser.add_argument("pull_id", help="the staging pull to skip (staging.pulls.pull_id)")
    parser.add_argument("--reason", required=True, help="why; kept with the record")
    return parser


def skip_pull(argv: Sequence[str]) -> int:
    """``etl-conformed skip-pull PULL_ID --reason TEXT``: mark a staging pull consumed without
    processing it (audited in conformed.consumed_pulls with disposition 'skipped')."""
    args = skip_pull_parser().parse_args(argv)
    try:
        pull_id = uuid.UUID(args.pull_id)
        settings = load_settings(ConformedSettings)
    except (ValueError, ConfigurationError) as exc:
        sys.stderr.write(f"etl-conformed skip-pull: {exc}\n")
        return EXIT_CONFIGURATION
    url = resolve_database_url(settings, announce=False)
    db = Database(
        url, lock_timeout_s=settings.lock_timeout_s, statement_timeout_s=settings.statement_timeout_s
    )
    try:
        project = zone_project(ZONE, settings)
        declared = consumers_from_manifest(zone_manifest(project, url, zone_variables(settings)))
    except EtlError as exc:
        sys.stderr.write(f"etl-conformed skip-pull: {exc}\n")
        return exc.exit_code

    def work(conn: Any) -> str:
        row = conn.execute(
            "select source, entity, status from staging.pulls where pull_id = %s", (pull_id,)
        ).fetchone()
        if row is None:
            raise ConfigurationError(f"no staging pull {pull_id}")
        source, entity, status = row
        consumers = [c.model for c in declared.consumers.get((source, entity), [])]
        if not consumers:
            raise ConfigurationError(
                f"pull {pull_id} is of {source}.{entity}, which no model of the conformed zone reads"
            )
        if status != "committed":
            raise ConfigurationError(f"pull {pull_id} is {status}, not committed: nothing to skip")
        skipped = []
        for consumer in consumers:
            inserted = conn.execute(
                "insert into conformed.consumed_pulls (consumer, pull_id, source, entity, disposition, run_id,"
                " note, consumed_at) values (%s, %s, %s, %s, 'skipped', %s, %s, now())"
                " on conflict (consumer, pull_id) do nothing",
                (consumer, pull_id, source, entity, settings.run_id, args.reason),
            ).rowcount
            if inserted:
                skipped.append(consumer)
        if not skipped:
            raise ConfigurationError(f"pull {pull_id} was already consumed by {', '.join(consumers)}")
        return ", ".join(skipped)

    try:
        # Not idempotent as it stands: a retry after an unknown outcome (40003) would find its own rows
        # and report the pull "already consumed". Raise instead, and let the operator look (DatabaseError).
        consumer = db.transaction(work, name="skip pull", idempotent=False)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-conformed skip-pull: {exc}\n")
        return EXIT_CONFIGURATION
    except EtlError as exc:  # the database failed, or the commit's outcome is unknown: say so, exit 5
        sys.stderr.write(f"etl-conformed skip-pull: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"pull {pull_id} skipped: {consumer} will not read it ({args.reason})\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["skip-pull"]:
        return skip_pull(argv[1:])
    if argv[:1] == ["scaffold"]:
        from ._scaffold import scaffold

        return scaffold(argv[1:])
    return dbt_zone_main(
        ZONE,
        ConformedSettings,
        argv,
        description="Conformed zone: dbt build with data quality and change history"
        " (commands: run, docs, skip-pull, scaffold).",
        hooks=ZoneHooks(
            before_build=snapshot_pulls, select=select_new_pulls, on_built=on_built, retention=retention_rules
        ),
    )
