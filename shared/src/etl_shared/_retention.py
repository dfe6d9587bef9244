"""Retention: delete rows older than a cutoff in small batches, each its own transaction.

CockroachDB dislikes large transactions, so a table is never cleaned with one big DELETE: each batch
deletes at most ``batch_rows`` rows, the oldest first, chosen by key, and the loop stops when a batch
comes back short. A rerun after an interruption simply continues (every batch is committed on its own).

Each batch is found in time order (``order by time, keys``), so with an index on the time column a
table with nothing to delete costs one index probe. Ordered by key alone, the planner walked the key
index and filtered every row: 14 s on a 2.2-million-row history table with nothing to delete
(bench/README.md). Every table a rule names should have an index on its time column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from ._db import Database
from ._errors import ConfigurationError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionRule:
    """Rows of ``table`` whose ``time_column`` is older than the cutoff are deleted (null times never
    are: a current history version has no valid_to). ``key_columns`` identify a row."""

    table: str
    time_column: str
    key_columns: tuple[str, ...]


def apply_retention_rules(
    db: Database, rules: list[RetentionRule], *, older_than: datetime, batch_rows: int = 5000
) -> dict[str, int]:
    """Delete what each rule selects; return the rows deleted per table."""
    deleted: dict[str, int] = {}
    for rule in rules:
        deleted[rule.table] = _delete_older(db, rule, older_than, batch_rows)
        if deleted[rule.table]:
            _log.info(
                "retention: deleted %d row(s) of %s older than %s",
                deleted[rule.table],
                rule.table,
                older_than.isoformat(),
                extra={
                    "table": rule.table,
                    "deleted": deleted[rule.table],
                    "older_than": older_than.isoformat(),
                },
            )
    return deleted


def _delete_older(db: Database, rule: RetentionRule, older_than: datetime, batch_rows: int) -> int:
    schema, _, name = rule.table.rpartition(".")
    table = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    keys = sql.SQL(", ").join(sql.Identifier(k) for k in rule.key_columns)
    statement = sql.SQL(
        "delete from {table} where ({keys}) in"
        " (select {keys} from {table} where {time} < %(cutoff)s order by {time}, {keys} limit %(n)s)"
    ).format(table=table, keys=keys, time=sql.Identifier(rule.time_column))
    total = 0
    while True:
        # Idempotent (deleting what is older than a fixed cutoff again deletes nothing more); after a
        # commit whose outcome was unknown the count may miss that batch's rows.
        count: int = db.transaction(
            lambda conn: conn.execute(statement, {"cutoff": older_than, "n": batch_rows}).rowcount,
            name=f"retention {rule.table}",
        )
        total += count
        if count < batch_rows:
            return total


def history_retention_rules(db: Database, schema: str) -> list[RetentionRule]:
    """One rule per SCD2 history table of ``schema`` (a ``*_history`` table with version_id and
    valid_to): closed versions whose valid_to is older than the cutoff go; current versions stay.

    Rows are deleted by the columns of the table's primary key (the conformed histories' keys,
    valid_from and pull_id: the model's unique_key), read from the catalog; by those of the unique
    constraint ``<table>_version_key`` on a history an earlier release created without a primary key
    and that was not built since; by version_id on one older still (before 2026-11-23)."""
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "select table_name from information_schema.columns where table_schema = %s"
            " and table_name like %s and column_name in ('version_id', 'valid_to')"
            " group by table_name having count(*) = 2 order by table_name",
            (schema, "%\\_history"),
        ).fetchall()
        keys: dict[str, list[str]] = {}
        version_keys: dict[str, list[str]] = {}
        for table, column, kind in conn.execute(
            "select kcu.table_name, kcu.column_name, tc.constraint_type"
            " from information_schema.key_column_usage as kcu"
            " join information_schema.table_constraints as tc on tc.constraint_schema = kcu.constraint_schema"
            " and tc.constraint_name = kcu.constraint_name and tc.table_name = kcu.table_name"
            " where kcu.table_schema = %s and (tc.constraint_type = 'PRIMARY KEY'"
            " or kcu.constraint_name = kcu.table_name || '_version_key')"
            " order by kcu.table_name, kcu.ordinal_position",
            (schema,),
        ).fetchall():
            (keys if kind == "PRIMARY KEY" else version_keys).setdefault(table, []).append(column)
    for table, columns in list(keys.items()):
        if columns == ["rowid"]:  # CockroachDB's hidden key of a table created without one
            del keys[table]
    return [
        RetentionRule(
            f"{schema}.{name}", "valid_to", tuple(keys.get(name) or version_keys.get(name) or ["version_id"])
        )
        for (name,) in rows
    ]


#: The meta key of a model that declares its own retention (see declared_retention_rules).
RETENTION_META_KEY = "etl_retention"


def declared_retention_rules(manifest: dict[str, Any]) -> list[RetentionRule]:
    """One rule per model of a dbt manifest whose config declares
    ``meta: {etl_retention: {column: <time column>, keys: [<key column>, ...]}}``: its rows whose
    ``column`` is older than the retention cutoff are deleted after a successful run. The column says
    which time counts: a business date (``order_date``) or the load time (``loaded_at``). The table is
    the model's relation (schema and alias) as dbt builds it."""
    from ._dbt import model_label, models_declaring

    rules = []
    for node, declared in models_declaring(manifest, RETENTION_META_KEY):
        column = declared.get("column") if isinstance(declared, dict) else None
        keys = declared.get("keys") if isinstance(declared, dict) else None
        if (
            not isinstance(column, str)
            or not isinstance(keys, list)
            or not keys
            or not all(isinstance(k, str) for k in keys)
        ):
            raise ConfigurationError(
                f"{model_label(node)}: meta {RETENTION_META_KEY} must be"
                f" {{column: <time column>, keys: [<key column>, ...]}}, not {declared!r}"
            )
        table = f"{node['schema']}.{node.get('alias') or node['name']}"
        rules.append(RetentionRule(table, column, tuple(keys)))
    return rules
