"""Qlik conventions of the semantic zone and the generated Qlik load script.

Qlik associates the tables of an app through fields with identical names. The semantic zone therefore
names every key field ``<subject>_key`` and prefixes every other field with its table's subject
(``customer_email``, ``sales_quantity``), so that tables associate through keys only. Two tables that
share two or more fields make Qlik build a synthetic key; two association paths between the same tables
make a circular reference (a loop, which Qlik breaks by disconnecting a table). This module checks both
on the tables of the ``semantic`` schema and writes the load script of each Qlik app a model declares:
a fact model whose config carries ``meta: {etl_qlik_app: <app>}`` gets the script ``<app>.qvs`` of the
star it forms with every ``dim_*`` table sharing a key with it (the demo: ``fct_sales`` declares
``semantic_star``), see docs/data-model.md, section Qlik.

Regenerate the scripts with ``python -m etl_semantic._qlik [--out FOLDER]`` (reads ``ETL_DATABASE_URL``
and the semantic job's last dbt manifest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import psycopg

from etl_shared import (
    ConfigurationError,
    Database,
    EtlError,
    Settings,
    TransformError,
    exit_code_for,
    load_settings,
    resolve_database_url,
    write_atomically,
)
from etl_shared._dbt import model_label, models_declaring

__all__ = [
    "QLIK_APP_META_KEY",
    "QlikScriptFile",
    "association_problems",
    "load_script",
    "main",
    "naming_problems",
    "qlik_app_tables",
    "qlik_apps",
    "semantic_tables",
    "write_load_script",
]

KEY_SUFFIX = "_key"
DIMENSION_PREFIX = "dim_"
FACT_PREFIX = "fct_"
QLIK_APP_META_KEY = "etl_qlik_app"
"""The meta key of the one fact of a Qlik app. A second fact sharing two keys with it would make a
circular reference, so an app has one fact (the demo's fct_orders and aggregates serve reports)."""
_APP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SKIPPED_PREFIXES = ("validated_", "dbt_")
_SKIPPED_SUFFIXES = ("__dbt_tmp", "__dbt_backup")

_BARE_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Words the LOAD statement reads as syntax: a field of that name must be quoted.
_QLIK_WORDS = frozenset(
    [
        "all",
        "and",
        "as",
        "autogenerate",
        "by",
        "distinct",
        "else",
        "end",
        "extension",
        "first",
        "from",
        "group",
        "having",
        "if",
        "inline",
        "into",
        "join",
        "keep",
        "like",
        "load",
        "mapping",
        "not",
        "null",
        "or",
        "order",
        "resident",
        "select",
        "sql",
        "then",
        "where",
        "while",
        "xor",
    ]
)


_Node = tuple[int, str]
"""A node of the association graph: (0, table) or (1, "field+field"); a field may be named like a table."""


@dataclass(frozen=True)
class QlikScriptFile:
    """The load script written by :func:`write_load_script` (same fields as the exporters' records)."""

    kind: str
    path: Path
    rows: int
    bytes: int
    sha256: str


def semantic_tables(conn: psycopg.Connection[Any], schema: str = "semantic") -> dict[str, list[str]]:
    """Table name -> column names in ordinal order, tables in name order.

    dbt's work tables (``validated_*``, ``dbt_*``, ``*__dbt_tmp``, ``*__dbt_backup``) are left out, and on
    CockroachDB so are hidden columns such as ``rowid``."""
    query = "select table_name, column_name from information_schema.columns where table_schema = %s"
    if _has_is_hidden(conn):
        query += " and is_hidden = 'NO'"
    query += " order by table_name, ordinal_position"
    tables: dict[str, list[str]] = {}
    for table, column in conn.execute(query, (schema,)).fetchall():
        if table.startswith(_SKIPPED_PREFIXES) or table.endswith(_SKIPPED_SUFFIXES):
            continue
        tables.setdefault(table, []).append(column)
    return dict(sorted(tables.items()))


def _has_is_hidden(conn: psycopg.Connection[Any]) -> bool:
    """Whether information_schema.columns has CockroachDB's ``is_hidden`` (PostgreSQL's has not)."""
    cursor = conn.execute("select * from information_schema.columns limit 0")
    return any(column.name == "is_hidden" for column in cursor.description or ())


def naming_problems(tables: Mapping[str, Sequence[str]], key_suffix: str = KEY_SUFFIX) -> list[str]:
    """Every non-key field held by two or more tables: Qlik would associate those tables through it."""
    problems = []
    for field, holders in sorted(_field_tables(tables).items()):
        if len(holders) > 1 and not field.endswith(key_suffix):
            problems.append(
                f"field {field} is in tables {_and(holders)} but is not a key (its name does not end in"
                f" {key_suffix}): Qlik would associate the tables through it; prefix it with each"
                " table's subject"
            )
    return problems


def association_problems(tables: Mapping[str, Sequence[str]]) -> list[str]:
    """The data-model problems Qlik would meet loading ``tables`` into one app: synthetic keys, circular
    references and tables associated with no other table.

    The association graph has the tables and the shared fields as nodes and an edge between a table
    and each shared field it holds: a field held by three tables (a dimension's key in two facts) is
    one associative hub there, not a loop. Fields held by exactly the same tables count as one node
    (they are the synthetic key reported on its own), so every cycle left is a circular reference:
    two tables associated along two different paths."""
    problems = []
    for left, right in combinations(sorted(tables), 2):
        shared = sorted(set(tables[left]) & set(tables[right]))
        if len(shared) > 1:
            problems.append(
                f"synthetic key: tables {left} and {right} share {len(shared)} fields ({', '.join(shared)});"
                " two tables may share one key field only"
            )
    problems.extend(
        f"circular reference: tables {_and(sorted(set(cycle[::2])))} are associated in a loop"
        f" ({' - '.join(cycle + cycle[:1])})"
        for cycle in _cycles(tables)
    )
    if len(tables) > 1:
        shared_fields = {field for field, holders in _field_tables(tables).items() if len(holders) > 1}
        problems.extend(
            f"disconnected: table {name} shares no field with any other table"
            for name in sorted(tables)
            if not shared_fields & set(tables[name])
        )
    return problems


def _field_tables(tables: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Field -> the tables holding it, in name order."""
    holders: dict[str, list[str]] = {}
    for name in sorted(tables):
        for field in dict.fromkeys(tables[name]):
            holders.setdefault(field, []).append(name)
    return holders


def _cycles(tables: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """The fundamental cycles of the table/field association graph, each as the alternating list
    ``[table, field(s), table, field(s), ...]`` starting at its smallest table name (fields held by
    the same tables joined with ``+``)."""
    adjacency: dict[_Node, list[_Node]] = {(0, name): [] for name in sorted(tables)}
    groups: dict[tuple[str, ...], list[str]] = {}
    for field, holders in sorted(_field_tables(tables).items()):
        if len(holders) > 1:
            groups.setdefault(tuple(holders), []).append(field)
    for holders, fields in groups.items():
        hub = (1, "+".join(fields))
        adjacency[hub] = [(0, name) for name in holders]
        for name in holders:
            adjacency[(0, name)].append(hub)
    parent: dict[_Node, _Node | None] = {}
    depth: dict[_Node, int] = {}
    cycles: list[list[str]] = []
    for root in sorted(adjacency):
        if root in parent:
            continue
        parent[root], depth[root] = None, 0
        queue = deque([root])
        while queue:
            node = queue.popleft()
            for other in sorted(adjacency[node]):
                if other not in parent:
                    parent[other], depth[other] = node, depth[node] + 1
                    queue.append(other)
                elif node < other and other != parent[node] and parent[other] != node:
                    cycles.append(_canonical(_tree_path(node, other, parent, depth)))
    return sorted(cycles)


def _tree_path(a: Any, b: Any, parent: Mapping[Any, Any], depth: Mapping[Any, int]) -> list[Any]:
    """The nodes from ``a`` up to the common ancestor and down to ``b`` in the search tree."""
    up_a, up_b = [a], [b]
    while up_a[-1] != up_b[-1]:
        if depth[up_a[-1]] >= depth[up_b[-1]]:
            up_a.append(parent[up_a[-1]])
        else:
            up_b.append(parent[up_b[-1]])
    return up_a + up_b[-2::-1]


def _canonical(cycle: list[_Node]) -> list[str]:
    """The cycle's names from its smallest table, in the direction of the smaller next field."""
    size = len(cycle)
    start = min((node, i) for i, node in enumerate(cycle) if node[0] == 0)[1]
    forward = [cycle[(start + i) % size][1] for i in range(size)]
    backward = [cycle[(start - i) % size][1] for i in range(size)]
    return min(forward, backward)


def qlik_apps(manifest: Mapping[str, Any]) -> dict[str, str]:
    """App name -> its fact table, for every model of a dbt manifest declaring
    ``meta: {etl_qlik_app: <app>}``. Raises ConfigurationError, naming the models, for a malformed app
    name or an app that two models declare."""
    apps: dict[str, str] = {}
    for node, app in models_declaring(manifest, QLIK_APP_META_KEY):
        table = node.get("alias") or node["name"]
        if not isinstance(app, str) or not _APP_NAME.match(app):
            raise ConfigurationError(
                f"{model_label(node)}: meta {QLIK_APP_META_KEY} must be an app name of lower-case letters,"
                f" digits and _, not {app!r}"
            )
        if app in apps:
            raise ConfigurationError(
                f"{model_label(node)}: Qlik app {app!r} is already the app of {apps[app]}; an app has one fact"
            )
        apps[app] = table
    return apps


def qlik_app_tables(tables: Mapping[str, Sequence[str]], fact: str) -> dict[str, list[str]]:
    """The tables of the Qlik app of ``fact``: the fact and every ``dim_*`` table sharing a key with it,
    dimensions first. Empty when there is no table ``fact``."""
    if fact not in tables:
        return {}
    fact_keys = {field for field in tables[fact] if field.endswith(KEY_SUFFIX)}
    app = {
        name: list(fields)
        for name, fields in sorted(tables.items())
        if name.startswith(DIMENSION_PREFIX) and fact_keys & set(fields)
    }
    app[fact] = list(tables[fact])
    return app


def load_script(
    tables: Mapping[str, Sequence[str]], *, connection: str = "ETL_SEMANTIC", schema: str = "semantic"
) -> str:
    """The Qlik load script of ``tables``: same input, same text (no timestamp, fixed table order).

    Every table is a preceding LOAD over a ``SQL SELECT`` of its columns through the data connection
    ``connection``. The LOAD keeps the database's column names unchanged, so the app's associations
    are exactly the ones :func:`association_problems` checked."""
    lines = [
        f"// Qlik load script of the semantic star schema (database schema {schema}), {len(tables)} tables.",
        "// Generated by etl_semantic._qlik from the schema's column lists: do not edit, the next run",
        "// overwrites it. Regenerate: python -m etl_semantic._qlik --out FOLDER (reads ETL_DATABASE_URL).",
        "",
        f"LIB CONNECT TO {_qlik_string(connection)};",
    ]
    for name in _script_order(tables):
        fields = list(tables[name])
        if not fields:
            raise TransformError(f"table {schema}.{name} has no columns to load")
        lines += ["", f"{_qlik_name(name, always=True)}:", "LOAD"]
        lines += [
            f"    {_qlik_name(field)}{';' if i == len(fields) - 1 else ','}" for i, field in enumerate(fields)
        ]
        columns = ", ".join(_sql_name(field) for field in fields)
        lines.append(f"SQL SELECT {columns} FROM {_sql_name(schema)}.{_sql_name(name)};")
    return "\n".join(lines) + "\n"


def _script_order(tables: Mapping[str, Sequence[str]]) -> list[str]:
    """Dimensions, then facts, then anything else, each in name order."""

    def rank(name: str) -> tuple[int, str]:
        if name.startswith(DIMENSION_PREFIX):
            return 0, name
        return (1 if name.startswith(FACT_PREFIX) else 2), name

    return sorted(tables, key=rank)


def _qlik_name(name: str, *, always: bool = False) -> str:
    """A field or table name for the LOAD statement: bare when Qlik reads it as a name, else in square
    brackets (a ``]`` inside doubled)."""
    if not always and _BARE_FIELD.match(name) and name.lower() not in _QLIK_WORDS:
        return name
    return "[" + name.replace("]", "]]") + "]"


def _qlik_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def write_load_script(
    conn: psycopg.Connection[Any],
    folder: Path,
    app: str,
    fact: str,
    *,
    file_name: str | None = None,
    connection: str = "ETL_SEMANTIC",
    schema: str = "semantic",
) -> QlikScriptFile:
    """Check the semantic schema and write the load script of the Qlik app ``app`` (the star of
    ``fact``) to ``folder / file_name`` (default ``<app>.qvs``).

    Raises TransformError listing every problem (naming over all the schema's tables, associations
    over the app's tables) and then writes nothing: an app loaded with a synthetic key or a loop shows
    wrong numbers without an error. The file is replaced atomically, so Qlik never reads half a script."""
    tables = semantic_tables(conn, schema)
    star = qlik_app_tables(tables, fact)
    problems = naming_problems(tables) + association_problems(star)
    if not star:
        problems.append(f"there is no table {schema}.{fact}: run the semantic job first")
    if problems:
        raise TransformError(
            f"the Qlik load script of app {app} was not written, {len(problems)} problem(s) in schema"
            f" {schema}: " + "; ".join(problems)
        )
    data = load_script(star, connection=connection, schema=schema).encode("utf-8")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (file_name or f"{app}.qvs")
    _write_atomically(path, data)
    return QlikScriptFile(
        kind="qlik_load_script",
        path=path,
        rows=len(star),
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``."""
    write_atomically(path, data)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m etl_semantic._qlik``: write the load script of each Qlik app the semantic models
    declare, from the current semantic schema and the semantic job's last dbt manifest."""
    parser = argparse.ArgumentParser(
        prog="python -m etl_semantic._qlik", description="Write the Qlik load scripts of the semantic schema."
    )
    parser.add_argument("--out", type=Path, help="output folder (default: <ETL_DATA_DIR>/exports)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Settings)
        folder = args.out if args.out is not None else settings.data_dir / "exports"
        manifest = settings.data_dir / "dbt" / "semantic" / "target" / "manifest.json"
        if not manifest.is_file():
            raise ConfigurationError(
                f"no dbt manifest at {manifest}: run the semantic job (etl-semantic run) first"
            )
        apps = qlik_apps(json.loads(manifest.read_bytes()))
        if not apps:
            raise ConfigurationError(
                f"no semantic model declares meta {QLIK_APP_META_KEY}: no Qlik app to write"
            )
        database = Database(
            resolve_database_url(settings, announce=False),
            application_name="etl-semantic",
            lock_timeout_s=settings.lock_timeout_s,
            statement_timeout_s=settings.statement_timeout_s,
        )
        with database.connect(autocommit=True) as conn:
            written = [write_load_script(conn, folder, app, fact) for app, fact in apps.items()]
    except (EtlError, psycopg.Error) as exc:
        sys.stderr.write(f"{exc}\n")
        return exit_code_for(exc)
    for script in written:
        sys.stdout.write(
            f"{script.path} ({script.rows} tables, {script.bytes} bytes, sha256 {script.sha256})\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
