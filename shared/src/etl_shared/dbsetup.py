"""Database setup: schemas, migrations, one role per zone with least privilege, a read-only Qlik role.

Run it as the database owner (an admin of the CockroachDB cluster, or a PostgreSQL superuser) before
the first run and after every release; it is idempotent::

    python -m etl_shared.dbsetup --admin-url postgresql://root@db:26257/etl?sslmode=verify-full

It works on CockroachDB and PostgreSQL alike (the embedded database of the tests), and prints every
statement it runs, so the DBA sees exactly what was granted. What each role may do:

==============  ===================================================================================
role            privileges
==============  ===================================================================================
etl_staging     writes ``staging``; its own audit rows in ``ops`` (not ``ops.pii_keys``)
etl_conformed   reads ``staging``; writes ``conformed``; its own audit rows in ``ops``
etl_semantic    reads ``conformed``; writes ``semantic``; its own audit rows in ``ops``, ``ops.pii_keys``
etl_qlik        reads ``semantic``; nothing else
==============  ===================================================================================

"Writes" a zone schema means CREATE on the schema (the job creates its own tables there, and owns them)
and SELECT, INSERT, UPDATE, DELETE on its tables. Nothing needs a privilege on the database beyond
CONNECT: the platform's dbt materializations never RENAME a table (CockroachDB checks CREATE on the
database for that), never create a schema (dbsetup does) and never use a temporary table;
CockroachDB checks CREATE TABLE in a user-defined schema against that schema's CREATE privilege
(pkg/sql/authorization.go, canCreateOnSchema). tests/test_statement_log.py derives the privilege each
statement of the jobs needs from the server's statement log and checks that the role holds it.
Tables that dbt creates later are covered by default privileges: what ``etl_conformed`` creates in
``conformed`` is readable by ``etl_semantic``, and what
``etl_semantic`` creates in ``semantic`` by ``etl_qlik``. Tables that a later migration creates are
covered by the owner's default privileges, and by rerunning this setup (the release does).

In ``ops`` no zone role deletes anything or writes ``ops.schema_migrations``; the audit tables are
append-only but for the job's own row and lock rows, and where the database has row-level security
(PostgreSQL; CockroachDB from v25.2) each role inserts and updates only its own zone's rows and its own
locks (``ops_privileges``, ``DatabaseSetup._row_policies``; docs/database-setup.md lists every grant).

On CockroachDB the zone roles also get the session setting ``autocommit_before_ddl = on`` (DDL is
never mixed into an open transaction). No other session setting is needed: the jobs set their lock
and statement timeouts on every connection themselves (ETL_LOCK_TIMEOUT_S, ETL_STATEMENT_TIMEOUT_S),
and an operator who runs them under another user loses nothing but that guard.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ._db import Database, is_cockroachdb, redact_url
from ._errors import EXIT_CONFIGURATION, EXIT_DATABASE, EXIT_OK, ConfigurationError, DatabaseError
from ._migrations import apply_migrations

_log = logging.getLogger(__name__)

ZONE_SCHEMAS = ("staging", "conformed", "semantic")
SCHEMAS = ("ops", *ZONE_SCHEMAS)
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Audit tables that only the semantic zone may read: the key that pseudonymises personal data.
SEMANTIC_ONLY_OPS_TABLES = frozenset({"pii_keys"})
COCKROACH_ROLE_SETTINGS = {"autocommit_before_ddl": "on"}


@dataclass(frozen=True)
class RolePlan:
    """What one role may do."""

    name: str
    writes: tuple[str, ...] = ()  # schemas it creates tables in and writes
    reads: tuple[str, ...] = ()  # schemas it reads
    ops: bool = True  # writes the audit tables in ops
    ops_excluded: frozenset[str] = field(default=SEMANTIC_ONLY_OPS_TABLES)
    session_settings: bool = True  # a job role (autocommit_before_ddl), not a reader

    @property
    def zone(self) -> str:
        """The zone whose job runs as this role (the ``zone`` of the ops rows it writes)."""
        return self.writes[0] if self.writes else ""


#: ops tables a zone role only reads: the migrations' record belongs to the owner (dbsetup).
OPS_READ_ONLY = frozenset({"schema_migrations"})
#: ops tables that are an append-only record: the jobs insert rows (``on conflict do nothing``) and never
#: change one. dq_results is one of them except for the conformed zone, whose data-quality hooks upsert
#: the results of their own job (``on conflict (job_id, rule_id) do update``).
OPS_APPEND_ONLY = frozenset(
    {
        "dbt_node_results",
        "dq_results",
        "export_batches",
        "exports",
        "lineage_edges",
        "operator_actions",
        "schema_changes",
    }
)
#: (table, zone) pairs that may update an otherwise append-only table
OPS_UPDATES = frozenset({("dq_results", "conformed")})


def ops_privileges(plan: RolePlan, table: str) -> tuple[str, ...]:
    """The privileges of a zone role on one ops table: never DELETE (an audit row is never removed by a
    job; retention of the audit tables is the owner's); SELECT on every table it may see; INSERT and
    UPDATE as the table's use needs (OPS_READ_ONLY, OPS_APPEND_ONLY). A table not listed (job_runs,
    locks, pii_keys for semantic, one a later release adds) gets SELECT, INSERT, UPDATE. Which rows a
    role may insert and update is the row-level policies' business (DatabaseSetup._row_policies)."""
    if table in OPS_READ_ONLY:
        return ("SELECT",)
    if table in OPS_APPEND_ONLY and (table, plan.zone) not in OPS_UPDATES:
        return ("SELECT", "INSERT")
    return ("SELECT", "INSERT", "UPDATE")


def role_plans(prefix: str = "etl_") -> list[RolePlan]:
    return [
        RolePlan(f"{prefix}staging", writes=("staging",)),
        RolePlan(f"{prefix}conformed", writes=("conformed",), reads=("staging",)),
        RolePlan(f"{prefix}semantic", writes=("semantic",), reads=("conformed",), ops_excluded=frozenset()),
        RolePlan(f"{prefix}qlik", reads=("semantic",), ops=False, session_settings=False),
    ]


def role_url(admin_url: str, role: str, password: str | None = None) -> str:
    """The admin URL with the role as the user (and its password, when it has one)."""
    parts = urlsplit(admin_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = quote(role, safe="")
    if password:
        netloc += ":" + quote(password, safe="")
    netloc += "@" + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class DatabaseSetup:
    """Applies the plan through one admin connection, printing each statement."""

    def __init__(self, admin_url: str, *, prefix: str = "etl_", out: Any = None) -> None:
        self.admin_url = admin_url
        self.prefix = prefix
        self.out = out if out is not None else sys.stdout
        self.plans = role_plans(prefix)

    def run(self, passwords: dict[str, str] | None = None) -> None:
        db = Database(self.admin_url, application_name="etl-dbsetup")
        with db.connect(autocommit=True) as conn:
            self.cockroach = is_cockroachdb(conn)
            database = conn.execute("select current_database()").fetchone()[0]  # type: ignore[index]
            owner = conn.execute("select current_user").fetchone()[0]  # type: ignore[index]
            self._say(
                f"-- database {database} ({'CockroachDB' if self.cockroach else 'PostgreSQL'}), owner {owner}"
            )
            for schema in SCHEMAS:
                self._exec(conn, sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        applied = apply_migrations(db)
        self._say(
            f"-- migrations applied now: {', '.join(f'V{v:03d}' for v in applied) or 'none (up to date)'}"
        )
        with db.connect(autocommit=True) as conn:
            for plan in self.plans:
                self._role(conn, plan, (passwords or {}).get(plan.name))
            for plan in self.plans:
                self._grants(conn, plan, database, owner)
            self._row_policies(conn)
            if self.cockroach:
                for plan in self.plans:
                    if plan.session_settings:
                        # the lock watch reads who blocks a job (crdb_internal.cluster_locks, sessions);
                        # REDACTED: the statements' constants are not shown
                        self._exec(
                            conn,
                            sql.SQL("grant system viewactivityredacted to {}").format(
                                sql.Identifier(plan.name)
                            ),
                        )
        self._say("-- database setup complete")

    def _row_policies(self, conn: psycopg.Connection[Any]) -> None:
        """Row-level security on the ops tables the zone jobs write: each zone role inserts and updates
        only rows of its own zone (``zone`` column) and only the locks it owns (``ops.locks.owner_role``),
        and reads all of them. PostgreSQL; CockroachDB from v25.2 (before that it has no row-level
        security, and only the table privileges hold: docs/database-setup.md).

        Policies are created before the table's security is enabled, and altered rather than dropped
        when they exist, so that a job running meanwhile is never refused for lack of one. The owner
        (``etl status``, the DBA) is not subject to them."""
        if self.cockroach and not _cockroach_has_row_security(conn):
            self._say(
                "-- CockroachDB before v25.2 has no row-level security: the zone roles may update any"
                " zone's rows of ops.job_runs and ops.locks (no DELETE, no schema_migrations;"
                " docs/database-setup.md); rerun this setup after upgrading"
            )
            return
        # released lock rows from before V013 have no owner: the next acquire inserts them again, owned
        self._exec(conn, sql.SQL("delete from ops.locks where owner_role is null and holder is null"))
        zone_tables = {
            table
            for (table,) in conn.execute(
                "select table_name from information_schema.columns"
                " where table_schema = 'ops' and column_name = 'zone' order by 1"
            ).fetchall()
        }
        jobs = [p for p in self.plans if p.ops and p.zone]
        for table in [*sorted(zone_tables), "locks"]:
            for plan in jobs:
                if table in plan.ops_excluded:
                    continue
                privileges = ops_privileges(plan, table)
                if table == "locks":
                    own = sql.SQL("owner_role = current_user or owner_role is null")
                    insert_check = sql.SQL("owner_role = current_user")
                else:
                    own = sql.SQL("zone = {}").format(sql.Literal(plan.zone))
                    insert_check = own
                self._policy(conn, table, f"{plan.name}_reads", "select", plan.name, sql.SQL("true"), None)
                if "INSERT" in privileges:
                    self._policy(conn, table, f"{plan.name}_inserts", "insert", plan.name, None, insert_check)
                if "UPDATE" in privileges:
                    self._policy(conn, table, f"{plan.name}_updates", "update", plan.name, own, own)
            self._exec(
                conn,
                sql.SQL("alter table {}.{} enable row level security").format(
                    sql.Identifier("ops"), sql.Identifier(table)
                ),
            )

    def _policy(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        name: str,
        command: str,
        role: str,
        using: sql.Composable | None,
        check: sql.Composable | None,
    ) -> None:
        exists = conn.execute(
            "select 1 from pg_catalog.pg_policies where schemaname = 'ops' and tablename = %s and policyname = %s",
            (table, name),
        ).fetchone()
        target = sql.SQL("{} on {}.{}").format(
            sql.Identifier(name), sql.Identifier("ops"), sql.Identifier(table)
        )
        clauses = sql.SQL("").join(
            [
                sql.SQL(" using ({})").format(using) if using is not None else sql.SQL(""),
                sql.SQL(" with check ({})").format(check) if check is not None else sql.SQL(""),
            ]
        )
        if exists:
            statement = sql.SQL("alter policy {} to {}{}").format(target, sql.Identifier(role), clauses)
        else:
            statement = sql.SQL("create policy {} for {} to {}{}").format(
                target, sql.SQL(command), sql.Identifier(role), clauses
            )
        self._exec(conn, statement)

    # ------------------------------------------------------------------ steps

    def _role(self, conn: psycopg.Connection[Any], plan: RolePlan, password: str | None) -> None:
        role = sql.Identifier(plan.name)
        exists = conn.execute("select 1 from pg_catalog.pg_roles where rolname = %s", (plan.name,)).fetchone()
        if not exists:
            self._exec(conn, sql.SQL("create role {} with login").format(role))
        if password:
            # Never printed: the statement is shown with the password replaced.
            self._say(f"alter role {plan.name} with login password '********'")
            conn.execute(sql.SQL("alter role {} with login password {}").format(role, sql.Literal(password)))
        if self.cockroach and plan.session_settings:
            for name, value in COCKROACH_ROLE_SETTINGS.items():
                self._exec(
                    conn,
                    sql.SQL("alter role {} set {} = {}").format(
                        role, sql.Identifier(name), sql.Literal(value)
                    ),
                )

    def _tables(self, conn: psycopg.Connection[Any], schema: str) -> list[str]:
        rows = conn.execute(
            "select table_name from information_schema.tables"
            " where table_schema = %s and table_type = 'BASE TABLE' order by table_name",
            (schema,),
        ).fetchall()
        return [r[0] for r in rows]

    def _grants(self, conn: psycopg.Connection[Any], plan: RolePlan, database: str, owner: str) -> None:
        role = sql.Identifier(plan.name)
        self._exec(conn, sql.SQL("grant connect on database {} to {}").format(sql.Identifier(database), role))
        for schema in plan.writes:
            self._schema_privileges(conn, plan, schema, ("USAGE", "CREATE"), DML, owner)
        for schema in plan.reads:
            self._schema_privileges(conn, plan, schema, ("USAGE",), ("SELECT",), owner)
            # Tables the writing zone's job creates later (dbt) are readable too.
            writer = next((p.name for p in self.plans if schema in p.writes), None)
            if writer is not None:
                self._exec(
                    conn,
                    sql.SQL(
                        "alter default privileges for role {} in schema {} grant select on tables to {}"
                    ).format(sql.Identifier(writer), sql.Identifier(schema), role),
                )
        if plan.ops:
            self._exec(conn, sql.SQL("grant usage on schema ops to {}").format(role))
            for table in self._tables(conn, "ops"):
                target = sql.SQL("table {}.{}").format(sql.Identifier("ops"), sql.Identifier(table))
                if table in plan.ops_excluded:
                    self._exec(conn, sql.SQL("revoke all on {} from {}").format(target, role))
                    continue
                allowed = ops_privileges(plan, table)
                # what earlier releases granted and this one does not (DELETE everywhere, writes on
                # schema_migrations and the append-only tables) is taken back, without a moment in
                # which the role lacks what it needs
                taken = [p for p in DML if p not in allowed]
                if taken:
                    self._exec(
                        conn,
                        sql.SQL("revoke {} on {} from {}").format(
                            sql.SQL(", ").join(sql.SQL(p) for p in taken), target, role
                        ),
                    )
                self._exec(
                    conn,
                    sql.SQL("grant {} on {} to {}").format(
                        sql.SQL(", ").join(sql.SQL(p) for p in allowed), target, role
                    ),
                )

    def _schema_privileges(
        self,
        conn: psycopg.Connection[Any],
        plan: RolePlan,
        schema: str,
        on_schema: tuple[str, ...],
        on_tables: tuple[str, ...],
        owner: str,
    ) -> None:
        role = sql.Identifier(plan.name)
        ident = sql.Identifier(schema)
        schema_privs = sql.SQL(", ").join(sql.SQL(p) for p in on_schema)
        table_privs = sql.SQL(", ").join(sql.SQL(p) for p in on_tables)
        self._exec(conn, sql.SQL("grant {} on schema {} to {}").format(schema_privs, ident, role))
        for table in self._tables(conn, schema):
            self._exec(
                conn,
                sql.SQL("grant {} on table {}.{} to {}").format(
                    table_privs, ident, sql.Identifier(table), role
                ),
            )
        # Tables a later migration creates (as the owner) get the same privileges.
        self._exec(
            conn,
            sql.SQL("alter default privileges for role {} in schema {} grant {} on tables to {}").format(
                sql.Identifier(owner), ident, table_privs, role
            ),
        )

    def _exec(self, conn: psycopg.Connection[Any], statement: sql.Composed) -> None:
        text = statement.as_string(conn)
        self._say(text)
        conn.execute(statement)

    def _say(self, text: str) -> None:
        self.out.write(text.rstrip(";") + ";\n" if not text.startswith("--") else text + "\n")
        self.out.flush()


def _cockroach_has_row_security(conn: psycopg.Connection[Any]) -> bool:
    """True on CockroachDB v25.2 or later (row-level security; "CockroachDB CCL v25.2.0 (...)")."""
    row = conn.execute("select version()").fetchone()
    match = re.search(r"\bv(\d+)\.(\d+)", str(row[0]) if row else "")
    return match is not None and (int(match.group(1)), int(match.group(2))) >= (25, 2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m etl_shared.dbsetup",
        description="Create the schemas, apply the migrations and grant one least-privilege role per zone.",
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("ETL_ADMIN_DATABASE_URL"),
        help="URL of the database as its owner (default: ETL_ADMIN_DATABASE_URL)",
    )
    parser.add_argument("--role-prefix", default="etl_", help="prefix of the role names (default etl_)")
    parser.add_argument(
        "--password-from-env",
        action="store_true",
        help="set each role's password from ETL_<ROLE>_PASSWORD (e.g. ETL_ETL_STAGING_PASSWORD) when set;"
        " CockroachDB accepts passwords only on a secure cluster",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._logging import configure_logging

    configure_logging("WARNING", stream=sys.stderr)
    args = _parser().parse_args(argv)
    if not args.admin_url:
        sys.stderr.write("etl dbsetup: configuration error: give --admin-url or set ETL_ADMIN_DATABASE_URL\n")
        return EXIT_CONFIGURATION
    passwords = {}
    if args.password_from_env:
        for plan in role_plans(args.role_prefix):
            value = os.environ.get(f"ETL_{plan.name.upper()}_PASSWORD")
            if value:
                passwords[plan.name] = value
    try:
        DatabaseSetup(args.admin_url, prefix=args.role_prefix).run(passwords)
    except ConfigurationError as exc:
        sys.stderr.write(f"etl dbsetup: configuration error: {exc}\n")
        return EXIT_CONFIGURATION
    except (psycopg.Error, DatabaseError) as exc:
        sys.stderr.write(f"etl dbsetup: database error on {redact_url(args.admin_url)}: {exc}\n")
        return EXIT_DATABASE
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
