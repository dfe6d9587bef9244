"""``etl-conformed``: build the conformed zone (dbt models, data quality, change history).

``run`` and ``docs`` are the shared dbt-zone commands; ``skip-pull`` is the conformed zone's own: it
lets an operator release a staging pull that keeps failing the data-quality thresholds.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from etl_shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    ConfigurationError,
    Database,
    DataQualityError,
    DbtOutcome,
    DbtZoneSettings,
    JobContext,
    RetentionRule,
    Selection,
    ZoneHooks,
    dbt_zone_main,
    history_retention_rules,
    load_settings,
    resolve_database_url,
)

ZONE = "conformed"
_log = logging.getLogger(__name__)

#: The history model that consumes each staging source entity (models/history/*_history.sql).
CONSUMERS: dict[tuple[str, str], str] = {
    ("oltp", "customers"): "customer_history",
    ("oltp", "products"): "product_history",
    ("oltp", "orders"): "sales_order_history",
    ("oltp", "order_lines"): "sales_order_line_history",
    ("web", "web_events"): "web_event_history",
    ("crm", "accounts"): "crm_account_history",
    ("crm", "contacts"): "crm_contact_history",
    ("crm", "opportunities"): "crm_opportunity_history",
    ("fx", "ecb_rates"): "fx_rate_history",
}

#: What every run builds, new pulls or not: the freshness tests of the staging pulls, and the daily
#: FX rates (they carry the last published rate forward to today). An entity's volume test (its newest
#: pull against the one before) runs with a new pull of it: without one its answer is the same.
EVERY_RUN = ["test_name:pull_freshness", "fx_rate"]

QUARANTINE_RETENTION = RetentionRule(
    "conformed.quarantine", "quarantined_at", ("run_id", "rule_id", "pull_id", "batch_no", "row_no")
)


class ConformedSettings(DbtZoneSettings):
    """Settings of the conformed job (see docs/configuration.md)."""


def project_dir() -> Path:
    return Path(str(resources.files("etl_conformed") / "dbt"))


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


EMPTY_PULL_NOTE = "no records: nothing to process, its models were not run"


def select_new_pulls(context: JobContext) -> Selection:
    """Build only the entities with committed staging pulls not consumed yet: for each, its validated
    model and everything downstream of it (history, conformed models, their tests) and the volume test
    of its pulls, plus :data:`EVERY_RUN`. An entity with nothing new is left as it is, and the seeds are
    not reloaded: they change only with a release, and a release makes the run build everything.

    An entity whose new pulls hold no record at all (the FX file source commits an empty pull when the
    file has not changed: every weekend) has nothing to process either: an incremental pull adds
    nothing, and an empty full pull deletes nothing (scd2_history reads absence only from a pull with
    records). Its pulls are marked processed here, with a note, and only their volume test runs."""
    with context.db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select pulls.source, pulls.entity, bool_or(coalesce(pulls.record_count, 1) > 0)"
            " from staging.pulls as pulls"
            " where pulls.status = 'committed' and not exists ("
            "  select 1 from conformed.consumed_pulls as consumed where consumed.pull_id = pulls.pull_id)"
            " group by 1, 2 order by 1, 2"
        ).fetchall()
        new = [(source, entity) for source, entity, _ in rows if (source, entity) in CONSUMERS]
        empty = [
            (source, entity) for source, entity, records in rows if (source, entity) in new and not records
        ]
        for source, entity in empty:
            conn.execute(
                "insert into conformed.consumed_pulls"
                " (consumer, pull_id, source, entity, disposition, run_id, note, consumed_at)"
                " select %s, pulls.pull_id, pulls.source, pulls.entity, 'processed', %s, %s, now()"
                " from staging.pulls as pulls"
                " where pulls.source = %s and pulls.entity = %s and pulls.status = 'committed'"
                " and pulls.record_count = 0"
                " on conflict (consumer, pull_id) do nothing",
                (CONSUMERS[(source, entity)], context.settings.run_id, EMPTY_PULL_NOTE, source, entity),
            )
    pending = [key for key in new if key not in empty]
    idle = sorted(set(CONSUMERS) - set(new))
    names = ", ".join(f"{source}.{entity}" for source, entity in pending)
    idle_names = ", ".join(f"{source}.{entity}" for source, entity in idle) or "-"
    reason = f"new pulls of {names}; nothing new for {idle_names}" if pending else "no new pulls"
    if empty:
        reason += "; only empty pulls of " + ", ".join(f"{source}.{entity}" for source, entity in empty)
    volume = volume_tests()
    return Selection(
        select=[
            *(f"{validated_model(CONSUMERS[key])}+" for key in pending),
            *(volume[key] for key in new if key in volume),
            *EVERY_RUN,
        ],
        reason=reason,
    )


def volume_tests() -> dict[tuple[str, str], str]:
    """The volume tests declared in the project's sources.yml, by (source, entity)."""
    declared = yaml.safe_load((project_dir() / "models" / "sources.yml").read_text(encoding="utf-8"))
    found: dict[tuple[str, str], str] = {}
    for source in declared.get("sources", []):
        for table in source.get("tables", []):
            for test in table.get("data_tests", []):
                spec = test.get("pull_volume_within_band") if isinstance(test, dict) else None
                if spec:
                    arguments = spec["arguments"]
                    found[(arguments["source_name"], arguments["entity"])] = spec["name"]
    return found


def validated_model(consumer: str) -> str:
    """The validated model feeding a history model: ``customer_history`` -> ``validated_customer``."""
    return "validated_" + consumer.removesuffix("_history")


def retention_rules(context: JobContext) -> list[RetentionRule]:
    return [*history_retention_rules(context.db, ZONE), QUARANTINE_RETENTION]


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
    db = Database(resolve_database_url(settings, announce=False))

    def work(conn: Any) -> str:
        row = conn.execute(
            "select source, entity, status from staging.pulls where pull_id = %s", (pull_id,)
        ).fetchone()
        if row is None:
            raise ConfigurationError(f"no staging pull {pull_id}")
        source, entity, status = row
        consumer = CONSUMERS.get((source, entity))
        if consumer is None:
            raise ConfigurationError(
                f"pull {pull_id} is of {source}.{entity}, which the conformed zone does not read"
            )
        if status != "committed":
            raise ConfigurationError(f"pull {pull_id} is {status}, not committed: nothing to skip")
        inserted = conn.execute(
            "insert into conformed.consumed_pulls (consumer, pull_id, source, entity, disposition, run_id, note,"
            " consumed_at) values (%s, %s, %s, %s, 'skipped', %s, %s, now())"
            " on conflict (consumer, pull_id) do nothing",
            (consumer, pull_id, source, entity, settings.run_id, args.reason),
        ).rowcount
        if not inserted:
            raise ConfigurationError(f"pull {pull_id} was already consumed by {consumer}")
        return consumer

    try:
        consumer = db.transaction(work, name="skip pull")
    except ConfigurationError as exc:
        sys.stderr.write(f"etl-conformed skip-pull: {exc}\n")
        return EXIT_CONFIGURATION
    sys.stdout.write(f"pull {pull_id} skipped: {consumer} will not read it ({args.reason})\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["skip-pull"]:
        return skip_pull(argv[1:])
    return dbt_zone_main(
        ZONE,
        project_dir(),
        ConformedSettings,
        argv,
        description="Conformed zone: dbt build with data quality and change history"
        " (commands: run, docs, skip-pull).",
        hooks=ZoneHooks(select=select_new_pulls, on_built=summarise_record_rules, retention=retention_rules),
    )
