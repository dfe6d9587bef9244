"""``etl-conformed scaffold``: a domain's validated, history and current models, written from what the
platform already knows about a source entity, so that a team writes only mappings and rules.

What it reads:
- the domain's sources.yml: the entity's key, whether it is pulled whole (a snapshot: a key missing
  from a pull is a delete) or incrementally by a cursor column (the change time), and whether its key
  set is listed (reconcile_keys: deletes of an incremental entity);
- the entity's last committed pull in staging: its column names and, for a database source, the
  source's column types (``numeric(15,2)``, ``character(4)``, ...), which become the casts.

Like dbt-codegen's ``generate_source`` and ``generate_base_model``, but it knows the keys, the change
semantics and the types, so the models it writes run as they are. It never overwrites a file (unless
``--force``): a team edits what it wrote.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from etl_shared import (
    EXIT_CONFIGURATION,
    EXIT_OK,
    ConfigurationError,
    Database,
    EtlError,
    absolute_path,
    configured_domains,
    load_settings,
    resolve_database_url,
)

#: source column type (psycopg's type_display, PostgreSQL's names) -> the try_cast type (others: text)
_TYPES: list[tuple[str, str]] = [
    (r"^(smallint|integer|int|int2|int4)$", "integer"),
    (r"^(bigint|int8)$", "bigint"),
    (r"^(?:numeric|decimal)\((\d+),\s*(\d+)\)$", "numeric({0}, {1})"),
    (r"^(numeric|decimal|real|double precision|float4|float8)$", "numeric"),
    (r"^(?:character|char|bpchar)\((\d+)\)$", "char({0})"),
    (r"^(?:character varying|varchar)\((\d+)\)$", "varchar({0})"),
    (r"^date$", "date"),
    (r"^(timestamp with time zone|timestamptz)$", "timestamptz"),
    (r"^(timestamp without time zone|timestamp)$", "timestamp"),
    (r"^(boolean|bool)$", "boolean"),
]
DELETE_FLAGS = ("is_deleted", "deleted")


def cast_type(source_type: str | None) -> str | None:
    """The try_cast type of a source column type, or None to keep the text as it is."""
    if not source_type:
        return None
    text = source_type.strip().lower()
    for pattern, target in _TYPES:
        match = re.match(pattern, text)
        if match:
            return target.format(*match.groups())  # groups: the sizes
    return None


@dataclass
class EntityPlan:
    """What the scaffold knows of one source entity."""

    source: str
    entity: str
    model: str
    key: list[str]
    cursor: str | None
    listed: bool
    columns: list[str]
    types: dict[str, str | None]
    #: the entity's freshness SLA in hours (sources.yml), the freshness test's warning threshold
    sla_hours: float = 26
    #: model column -> the pull's column, where the pull's is not an SQL identifier (XML's `x:tier`,
    #: `@id`, `#text`; a header with spaces)
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def snapshot(self) -> bool:
        return self.cursor is None

    @property
    def tracked(self) -> list[str]:
        skip = {*self.key, *DELETE_FLAGS} | ({self.cursor} if self.cursor else set())
        return [c for c in self.columns if c not in skip]

    def typed(self, column: str) -> str:
        source_name = self.fields.get(column, column).replace("\\", "\\\\").replace("'", "\\'")
        field = f"etl_platform.field('{source_name}')"
        target = self.types.get(column)
        return f"etl_platform.try_cast({field}, '{target}')" if target else field


_NOT_IDENTIFIER = re.compile(r"[^a-z0-9_]+")


def model_columns(columns: Sequence[str]) -> dict[str, str]:
    """The model's column name of each pull column: itself when it is a lower-case SQL identifier,
    else lower-cased with every other run of characters as ``_`` (``x:tier`` -> ``x_tier``, ``@id``
    -> ``id``), a leading digit prefixed with ``c_``, and a name taken twice numbered (``id_2``)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    plain = [c for c in columns if _NOT_IDENTIFIER.sub("", c.lower()) == c and c and not c[0].isdigit()]
    taken.update(plain)
    for column in columns:
        if column in plain:
            names[column] = column
            continue
        base = _NOT_IDENTIFIER.sub("_", column.lower()).strip("_") or "column"
        if base[0].isdigit():
            base = f"c_{base}"
        name, number = base, 2
        while name in taken:
            name, number = f"{base}_{number}", number + 1
        taken.add(name)
        names[column] = name
    return names


def declared_source(sources_file: Path, source: str) -> dict[str, Any]:
    """The source's mapping in the domain's sources.yml, read once for all its entities."""
    raw = yaml.safe_load(sources_file.read_text(encoding="utf-8")) or {}
    declared = next((s for s in raw.get("sources") or [] if s.get("name") == source), None)
    if declared is None:
        raise ConfigurationError(f"{sources_file} declares no source {source!r}")
    return dict(declared)


def plan_entity(
    db: Database,
    sources_file: Path,
    declared: dict[str, Any],
    entity: str,
    *,
    model: str | None,
    key: Sequence[str],
) -> EntityPlan:
    """What the scaffold writes for ``entity`` of the source ``declared`` (from ``sources_file``)."""
    source = str(declared["name"])
    config = next((e for e in declared.get("entities") or [] if e.get("name") == entity), None)
    if config is None:
        raise ConfigurationError(f"source {source!r} in {sources_file} has no entity {entity!r}")
    import psycopg

    with db.connect(autocommit=True) as conn:
        try:
            row = conn.execute(
                "select pulls.metadata, batches.data -> 'columns' from staging.pulls as pulls"
                " join staging.pull_batches as batches on batches.pull_id = pulls.pull_id"
                " where pulls.source = %s and pulls.entity = %s and pulls.status = 'committed'"
                " and pulls.mode <> 'keys'"
                " order by pulls.committed_at desc, batches.batch_no limit 1",
                (source, entity),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None  # a warehouse no staging job has written to yet
    if row is None:
        raise ConfigurationError(
            f"{source}.{entity} has no committed pull with records yet: run `etl-staging run --source {source}"
            f" --entity {entity}` first, so that the scaffold sees its columns"
        )
    metadata, columns = row
    keys = list(key) or list(config.get("key") or [])
    if not keys:
        raise ConfigurationError(
            f"{source}.{entity} declares no key: give the columns that identify a record with --key"
        )
    missing = [k for k in keys if k not in columns]
    if missing:
        raise ConfigurationError(f"key column(s) {', '.join(missing)} not in the pull's columns {columns}")
    source_types = (metadata or {}).get("column_types") or {}
    names = model_columns(columns)
    return EntityPlan(
        source=source,
        entity=entity,
        model=model or f"{source}_{entity}",
        key=[names[k] for k in keys],
        cursor=names.get(config.get("cursor") or "", config.get("cursor")),
        listed=bool(config.get("reconcile_keys")),
        columns=list(names.values()),
        types={names[c]: cast_type(source_types.get(c)) for c in columns},
        fields={name: c for c, name in names.items() if name != c},
        sla_hours=float(config.get("freshness_sla_hours") or declared.get("freshness_sla_hours") or 26),
    )


def validated_sql(plan: EntityPlan) -> str:
    typed = ",\n".join(
        f"        {{{{ {plan.typed(c)} }}}} as {c}" for c in plan.columns if c not in DELETE_FLAGS
    )
    flag = next((c for c in DELETE_FLAGS if c in plan.columns), None)
    deleted = "{{ etl_platform.deleted_flag() }}" if flag else "false"
    key_rule = " and ".join(f"{k} is not null" for k in plan.key)
    output = ",\n".join(f"    {c}" for c in plan.columns if c not in DELETE_FLAGS)
    kind = "full pulls" if plan.snapshot else f"incremental pulls by {plan.cursor}"
    snapshot = ", snapshot=true" if plan.snapshot else ""
    return f"""-- {plan.source}.{plan.entity} ({kind}): the records of this run's pulls, typed and checked.
-- Written by etl-conformed scaffold: add the entity's rules to dq_failures and seeds/dq_rules.csv.
{{{{ etl_platform.validated_config('{plan.model}') }}}}
-- depends_on: {{{{ ref('dq_rules') }}}} {{{{ source('ops', 'dq_results') }}}}

with
{{{{ etl_platform.pull_records('{plan.source}', '{plan.entity}', '{plan.model}_history'{snapshot}) }}}},

typed as (
    select
{typed},
        {deleted} as is_deleted,
        {{{{ etl_platform.record_origin() }}}},
        pull_records.column_names,
        pull_records.record
    from pull_records
),

checked as (
    select
        typed.*,
        {{{{ etl_platform.dq_failures([
            ('{plan.model}.key_valid', '{key_rule}'),
        ]) }}}} as dq_failed
    from typed
)

select
{output},
    is_deleted,
    {{{{ etl_platform.dq_columns('checked') }}}}
from checked
"""


def _list(names: Sequence[str]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def history_sql(plan: EntityPlan) -> str:
    keys, tracked = _list(plan.key), _list(plan.tracked)
    config_args = f"{keys}, '{plan.source}', '{plan.entity}'" + (", snapshot=true" if plan.snapshot else "")
    options = []
    if plan.snapshot:
        options.append("snapshot=true")
    elif plan.cursor and plan.types.get(plan.cursor) in {"timestamptz", "timestamp", "date"}:
        options.append(f"change_time='{plan.cursor}'")
    if plan.listed:
        types = ", ".join(f"'{k}': '{plan.types.get(k) or 'text'}'" for k in plan.key)
        options.append(
            f"key_listing={{'source': '{plan.source}', 'entity': '{plan.entity}', 'types': {{{types}}}}}"
        )
    option_text = "".join(f"\n    {o}," for o in options)
    deletes = (
        "a key absent from a full pull is deleted"
        if plan.snapshot
        else ("deletes from the key listing" if plan.listed else "incremental: deletes only by a delete flag")
    )
    return f"""-- Change history (SCD type 2) of {plan.source}.{plan.entity} ({deletes}).
{{{{ etl_platform.history_config({config_args}) }}}}

{{{{ etl_platform.scd2_history(
    ref('validated_{plan.model}'),
    {keys},
    {tracked},{option_text}
) }}}}
"""


def current_sql(plan: EntityPlan) -> str:
    return f"""-- Current state of each record of {plan.source}.{plan.entity} (deleted ones kept, is_deleted true).
{{{{ etl_platform.current_config({_list(plan.key)}) }}}}

{{{{ etl_platform.current_from_history(
    ref('{plan.model}_history'), {_list(plan.key)}, {_list(plan.tracked)}
) }}}}
"""


def _hours(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def schema_yml(plan: EntityPlan, domain: str) -> str:
    document = {
        "version": 2,
        "sources": [
            {
                "name": f"{domain}_{plan.model}_monitor",
                "schema": "staging",
                "tables": [
                    {
                        "name": "pulls",
                        "identifier": "pulls",
                        "data_tests": [
                            {
                                "etl_platform.pull_freshness": {
                                    "name": f"freshness_{plan.source}__{plan.entity}",
                                    "arguments": {
                                        "source_name": plan.source,
                                        "entity": plan.entity,
                                        # warn once the SLA is missed, fail when missed twice
                                        "warn_after_hours": _hours(plan.sla_hours),
                                        "error_after_hours": _hours(2 * plan.sla_hours),
                                    },
                                }
                            }
                        ],
                    }
                ],
            }
        ],
        "models": [
            {
                "name": f"validated_{plan.model}",
                "data_tests": [
                    {"etl_platform.record_rules_within_threshold": {"arguments": {"entity": plan.model}}}
                ],
            },
            {
                "name": plan.model,
                "data_tests": [{"etl_platform.unique_combination": {"arguments": {"columns": plan.key}}}],
            },
        ],
    }
    return "# Written by etl-conformed scaffold.\n" + yaml.safe_dump(document, sort_keys=False)


DQ_HEADER = ["rule_id", "entity", "severity", "threshold", "description"]


def dq_rules_row(plan: EntityPlan) -> list[str]:
    return [
        f"{plan.model}.key_valid",
        plan.model,
        "error",
        "0.01",
        f"{', '.join(plan.key)} missing or not valid",
    ]


def project_yml(name: str) -> str:
    return f"""# The domain's conformed models (docs/domains.md). Written by etl-conformed scaffold.
name: {name}
version: "0.1.0"
config-version: 2

model-paths: ["models"]
macro-paths: ["macros"]
seed-paths: ["seeds"]
test-paths: ["tests"]

models:
  {name}:
    # the validated models are rebuilt every run; history_config and current_config make the
    # history and current-state models incremental
    +materialized: table

seeds:
  {name}:
    dq_rules:
      +unique_key: rule_id
      +column_types: {{rule_id: text, entity: text, severity: text, threshold: double precision, description: text}}
"""


def write_scaffold(plan: EntityPlan, domain_dir: Path, *, force: bool = False) -> list[Path]:
    """Write the entity's models (and the project and rules seed when the domain has none yet)."""
    conformed = domain_dir / "conformed"
    models = conformed / "models" / plan.model
    files = {
        models / f"validated_{plan.model}.sql": validated_sql(plan),
        models / f"{plan.model}_history.sql": history_sql(plan),
        models / f"{plan.model}.sql": current_sql(plan),
        models / f"{plan.model}.yml": schema_yml(plan, domain_dir.name),
    }
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise ConfigurationError(
            f"not overwriting {', '.join(map(str, existing))} (edited by the team?); --force to write them again"
        )
    written = []
    if not (conformed / "dbt_project.yml").exists():
        conformed.mkdir(parents=True, exist_ok=True)
        (conformed / "dbt_project.yml").write_text(
            project_yml(f"{domain_dir.name}_conformed"), encoding="utf-8"
        )
        written.append(conformed / "dbt_project.yml")
    rules = conformed / "seeds" / "dq_rules.csv"
    rules.parent.mkdir(parents=True, exist_ok=True)
    present = list(csv.reader(io.StringIO(rules.read_text(encoding="utf-8")))) if rules.exists() else []
    row = dq_rules_row(plan)
    if not any(r[:1] == row[:1] for r in present):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not present:
            writer.writerow(DQ_HEADER)
        writer.writerow(row)
        with rules.open("a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
        written.append(rules)
    models.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def scaffold_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="etl-conformed scaffold",
        description="Write a domain's validated, history and current models of a source entity from its"
        " sources.yml and its last staging pull (docs/onboarding.md).",
    )
    parser.add_argument("--source", required=True, help="the source, as in the domain's sources.yml")
    parser.add_argument("--entity", help="one entity (default: every entity of the source)")
    parser.add_argument(
        "--domain", type=Path, help="the domain folder (default: the domain declaring --source)"
    )
    parser.add_argument("--model", help="the model name (default: <source>_<entity>; one entity only)")
    parser.add_argument("--key", nargs="+", default=[], help="key columns, for an entity that declares none")
    parser.add_argument("--force", action="store_true", help="overwrite the files it wrote before")
    return parser


def _domain_of(source: str, override: Path | None, setting: str | None) -> Path:
    if override is not None:
        return absolute_path(override)
    owners = [d for d in configured_domains(setting) if source in d.source_names()]
    if len(owners) != 1:
        raise ConfigurationError(
            f"no domain declares source {source!r} in its sources.yml (ETL_DOMAINS); give --domain"
            if not owners
            else f"source {source!r} is declared by {len(owners)} domains; give --domain"
        )
    return owners[0].path


def scaffold(argv: Sequence[str]) -> int:
    from .cli import ConformedSettings

    args = scaffold_parser().parse_args(argv)
    try:
        settings = load_settings(ConformedSettings)
        domain_dir = _domain_of(args.source, args.domain, settings.domains)
        sources_file = domain_dir / "sources.yml"
        if not sources_file.is_file():
            raise ConfigurationError(f"{domain_dir} has no sources.yml")
        source = declared_source(sources_file, args.source)
        entities = [args.entity] if args.entity else [e["name"] for e in source.get("entities") or []]
        if args.model and len(entities) != 1:
            raise ConfigurationError("--model names one entity's models: give --entity too")
        db = Database(resolve_database_url(settings, announce=False))
        for entity in entities:
            plan = plan_entity(db, sources_file, source, entity, model=args.model, key=args.key)
            for path in write_scaffold(plan, domain_dir, force=args.force):
                sys.stdout.write(f"wrote {path}\n")
            untyped = [c for c in plan.columns if plan.types.get(c) is None]
            if untyped:
                sys.stdout.write(
                    f"  {plan.model}: kept as text (no source type known): {', '.join(untyped)};"
                    " cast them in the validated model where they are not text\n"
                )
    except EtlError as exc:
        sys.stderr.write(f"etl-conformed scaffold: {exc}\n")
        return exc.exit_code if exc.exit_code else EXIT_CONFIGURATION
    return EXIT_OK
