"""Versioned SQL migrations, applied idempotently at job start.

Files ``V<number>__<name>.sql`` in a migrations folder are applied in order, each in its own
transaction together with its row in ``ops.schema_migrations``. A lease lock serialises jobs that
start at the same moment; a file changed after it was applied is refused (checksum).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from ._db import Database, is_cockroachdb
from ._errors import ConfigurationError
from ._locks import BOOTSTRAP_SQL, LeaseLock

_log = logging.getLogger(__name__)
_NAME = re.compile(r"^V(\d{3,})__([a-z0-9_]+)\.sql$")
_DIALECT = re.compile(r"^\s*--\s*dialect:\s*(postgres|cockroachdb)\b")

MIGRATIONS_TABLE_SQL = """
create table if not exists ops.schema_migrations (
    version integer primary key,
    name text not null,
    checksum text not null,
    applied_at timestamptz not null default now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def dialect(self) -> str | None:
        """``postgres`` or ``cockroachdb`` when the file starts with ``-- dialect: <name>``: such a
        migration is applied on that database only (and recorded as applied on the other)."""
        match = _DIALECT.match(self.sql)
        return match.group(1) if match else None


def bundled_migrations() -> list[Migration]:
    folder = resources.files("etl_shared") / "migrations"
    return load_migrations(Path(str(folder)))


def load_migrations(folder: Path) -> list[Migration]:
    found = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.match(path.name)
        if not match:
            raise ConfigurationError(f"migration file {path.name} is not named V<nnn>__<name>.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigurationError(f"duplicate migration versions in {folder}")
    return sorted(found, key=lambda m: m.version)


def _bootstrap(db: Database) -> None:
    """Create the lock and bookkeeping tables. Two jobs doing this at once can collide on the
    catalog (PostgreSQL raises unique_violation for concurrent CREATE ... IF NOT EXISTS); the loser
    simply tries again."""
    for attempt in range(5):
        try:
            with db.connect(autocommit=True) as conn:
                for statement in (*BOOTSTRAP_SQL.split(";"), MIGRATIONS_TABLE_SQL):
                    conn.execute(statement)
            return
        except (
            psycopg.errors.UniqueViolation,
            psycopg.errors.DuplicateObject,
            psycopg.errors.DuplicateSchema,
            psycopg.errors.DuplicateTable,
        ):
            if attempt == 4:
                raise


def _already_applied(db: Database, migrations: list[Migration]) -> bool:
    """True when every migration is recorded with its checksum: nothing to do, so no DDL is sent.

    This is what lets the zone jobs run under their least-privilege roles: the database setup
    (``python -m etl_shared.dbsetup``) applies the migrations as the owner, and a job that finds
    them all applied never needs CREATE on the ``ops`` schema.
    """
    try:
        with db.connect(autocommit=True) as conn:
            found = conn.execute(
                "select count(*) from information_schema.tables"
                " where table_schema = 'ops' and table_name = 'schema_migrations'"
            ).fetchone()
            if not found or found[0] == 0:
                return False
            applied = dict(conn.execute("select version, checksum from ops.schema_migrations").fetchall())
    except psycopg.errors.InsufficientPrivilege:
        return False
    return all(applied.get(m.version) == m.checksum for m in migrations)


def apply_migrations(db: Database, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing; return the versions applied by this call."""
    migrations = bundled_migrations() if migrations is None else migrations
    if _already_applied(db, migrations):
        return []
    try:
        _bootstrap(db)
    except psycopg.errors.InsufficientPrivilege as exc:
        newest = f"V{migrations[-1].version:03d}" if migrations else "none"
        raise ConfigurationError(
            f"the database schema is not up to date (newest migration {newest}) and this job's role"
            f" may not change it ({str(exc).strip()}); run the database setup as the owner:"
            " python -m etl_shared.dbsetup (docs/database-setup.md)"
        ) from exc
    applied_now: list[int] = []
    with LeaseLock(db, "schema_migrations", lease_s=600):
        with db.connect() as conn:
            applied = dict(conn.execute("select version, checksum from ops.schema_migrations").fetchall())
            dialect = "cockroachdb" if is_cockroachdb(conn) else "postgres"
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration V{migration.version:03d}__{migration.name} was changed after it was"
                        " applied; add a new migration instead of editing an applied one"
                    )
                continue

            def work(conn: psycopg.Connection[Any], m: Migration = migration) -> None:
                if m.dialect in (None, dialect):
                    conn.execute(m.sql.encode())
                else:
                    _log.info(
                        "migration V%03d__%s is for %s only: recorded, not run", m.version, m.name, m.dialect
                    )
                conn.execute(
                    "insert into ops.schema_migrations (version, name, checksum) values (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )

            db.transaction(work, name=f"migration V{migration.version:03d}")
            _log.info("applied migration V%03d__%s", migration.version, migration.name)
            applied_now.append(migration.version)
    return applied_now
