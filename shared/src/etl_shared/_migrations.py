"""Versioned SQL migrations, applied idempotently at job start.

Files ``V<number>__<name>.sql`` in a migrations folder are applied in order. A file is split into its
statements and each statement runs alone, in its own implicit transaction: CockroachDB must not see DDL
in a multi-statement transaction (before v25.1 such a transaction can fail at COMMIT with XXA00, partly
committed; from v25.1, with ``autocommit_before_ddl = on``, each DDL statement commits whatever came
before it, so a file and its record could never be atomic anyway). So instead:

- every statement must be idempotent (``if not exists``, ``if exists``; checked before anything runs);
- the file's row in ``ops.schema_migrations`` is written only after all of its statements committed;
- a run that stopped half-way left no row, and the next run applies the file again from its first
  statement, which the idempotence makes harmless;
- a statement whose outcome is unknown (XXA00, 40003, the connection lost while it ran) is run again,
  with a warning.

A lease lock serialises jobs that start at the same moment; a file changed after it was applied is
refused (checksum). docs/cockroachdb.md, "Migrations".
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from ._db import Database, Session, is_cockroachdb
from ._errors import ConfigurationError
from ._locks import BOOTSTRAP_SQL, LeaseLock
from ._sql_statements import Statement, UnterminatedSql, split_statements

_log = logging.getLogger(__name__)
_LEASE_S = 600
_RENEW_AFTER_S = 60  # renew the lease between statements once a minute (a tenth of the lease)
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
    def file_name(self) -> str:
        return f"V{self.version:03d}__{self.name}.sql"

    def statements(self) -> list[Statement]:
        """The file's statements, in order (ConfigurationError when it cannot be split)."""
        try:
            return split_statements(self.sql)
        except UnterminatedSql as exc:
            raise ConfigurationError(f"migration {self.file_name}: {exc}") from None

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
            with Session(db, autocommit=True) as session:
                for statement in (*split_statements(BOOTSTRAP_SQL), *split_statements(MIGRATIONS_TABLE_SQL)):
                    session.execute(statement.text, name="create the migration tables")
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


def apply_migrations(
    db: Database, migrations: list[Migration] | None = None, *, autocommit_before_ddl: bool | None = None
) -> list[int]:
    """Apply what is missing; return the versions applied by this call (see :class:`MigrationRunner`)."""
    return MigrationRunner(db, migrations, autocommit_before_ddl=autocommit_before_ddl).run()


class MigrationRunner:
    """Applies the migrations a database lacks, one statement at a time (the module's docstring).

    ``autocommit_before_ddl`` states how the server treats DDL sent inside an open transaction, and
    makes that behaviour explicit rather than whatever the role's default is:

    - ``None`` (jobs and ``dbsetup``): the session's own setting;
    - ``False``: the DDL joins the open transaction (PostgreSQL; CockroachDB before v25.1);
    - ``True``: the server commits the open transaction before the DDL (CockroachDB from v25.1, always
      for the job roles).

    On CockroachDB the runner sets ``autocommit_before_ddl`` on its session accordingly. PostgreSQL has
    no such setting: ``True`` is emulated there by committing whatever is open before each DDL
    statement. Since the runner sends every statement alone on an autocommit session, nothing is ever
    open when a DDL statement goes, and the outcome is the same under both behaviours; the tests run
    the runner under both to keep it so.
    """

    def __init__(
        self,
        db: Database,
        migrations: list[Migration] | None = None,
        *,
        autocommit_before_ddl: bool | None = None,
    ) -> None:
        self.db = db
        self.migrations = bundled_migrations() if migrations is None else migrations
        self.autocommit_before_ddl = autocommit_before_ddl
        self._cockroachdb = False
        self._renewed = time.monotonic()

    def run(self) -> list[int]:
        migrations = self.migrations
        if _already_applied(self.db, migrations):
            return []
        try:
            _bootstrap(self.db)
        except psycopg.errors.InsufficientPrivilege as exc:
            newest = f"V{migrations[-1].version:03d}" if migrations else "none"
            raise ConfigurationError(
                f"the database schema is not up to date (newest migration {newest}) and this job's role"
                f" may not change it ({str(exc).strip()}); run the database setup as the owner:"
                " python -m etl_shared.dbsetup (docs/database-setup.md)"
            ) from exc
        applied_now: list[int] = []
        with LeaseLock(self.db, "schema_migrations", lease_s=_LEASE_S) as lock:
            self._renewed = time.monotonic()
            with self.db.connect(autocommit=True) as conn:
                applied = dict(conn.execute("select version, checksum from ops.schema_migrations").fetchall())
                self._cockroachdb = is_cockroachdb(conn)
            dialect = "cockroachdb" if self._cockroachdb else "postgres"
            pending = [m for m in migrations if m.version not in applied]
            for migration in migrations:
                if migration.version in applied and applied[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration V{migration.version:03d}__{migration.name} was changed after it was"
                        " applied; add a new migration instead of editing an applied one"
                    )
            # Every pending file is checked before the first statement runs: a refused file then
            # leaves the database as it was.
            to_run = {m.version: m.statements() for m in pending if m.dialect in (None, dialect)}
            for migration in pending:
                if migration.version in to_run:
                    check_idempotent(migration, to_run[migration.version])
            with Session(self.db, autocommit=True, setup=self._configure) as session:
                for migration in pending:
                    if migration.version in to_run:
                        self._apply(session, lock, migration, to_run[migration.version])
                    else:
                        _log.info(
                            "migration %s is for %s only: recorded, not run",
                            migration.file_name,
                            migration.dialect,
                        )
                    self._record(migration)
                    _log.info("applied migration V%03d__%s", migration.version, migration.name)
                    applied_now.append(migration.version)
        return applied_now

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Session settings of the migration connection (again on a replaced connection)."""
        if self.autocommit_before_ddl is not None and self._cockroachdb:
            conn.execute(f"set autocommit_before_ddl = {'on' if self.autocommit_before_ddl else 'off'}")

    def _apply(
        self, session: Session, lock: LeaseLock, migration: Migration, statements: list[Statement]
    ) -> None:
        for number, statement in enumerate(statements, 1):
            conn = session.connection()
            if self.autocommit_before_ddl and not self._cockroachdb and _open_transaction(conn):
                conn.commit()  # what CockroachDB does with autocommit_before_ddl = on
            session.execute(
                statement.text.encode(),
                name=f"migration {migration.file_name} statement {number} (line {statement.line})",
            )
            if time.monotonic() - self._renewed > _RENEW_AFTER_S:
                lock.renew()  # an index build can take long: keep the lease while statements run
                self._renewed = time.monotonic()

    def _record(self, migration: Migration) -> None:
        """The file's row, once all of its statements committed. Idempotent: a commit whose outcome was
        unknown and is run again finds the row there."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "insert into ops.schema_migrations (version, name, checksum) values (%s, %s, %s)"
                " on conflict (version) do nothing",
                (migration.version, migration.name, migration.checksum),
            )
            row = conn.execute(
                "select checksum from ops.schema_migrations where version = %s", (migration.version,)
            ).fetchone()
            if row is None or row[0] != migration.checksum:
                raise ConfigurationError(
                    f"migration {migration.file_name} is recorded with another checksum by another job"
                )

        self.db.transaction(work, name=f"record migration {migration.file_name}")


def _open_transaction(conn: psycopg.Connection[Any]) -> bool:
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


# ------------------------------------------------------------------------------ idempotence

#: Statement forms that are idempotent as they are written (normalized: lower case, one space).
_IDEMPOTENT = re.compile(
    r"^(?:"
    r"create (?:unique )?index (?:concurrently )?if not exists "
    r"|create (?:schema|(?:unlogged )?table|(?:materialized )?view|sequence|extension) if not exists "
    r"|create or replace "
    r"|drop [a-z ]+? if exists "
    r"|comment on |grant |revoke |set |reset "
    r"|insert into .* on conflict "
    r")"
)
_ALTER_TABLE = re.compile(r"^alter table (?:if exists )?(?:only )?(?P<table>\S+) (?P<actions>.*)$")
#: ``alter table`` actions that are idempotent as written.
_IDEMPOTENT_ACTION = re.compile(
    r"^(?:"
    r"add (?:column )?if not exists "
    r"|drop (?:column |constraint )?if exists "
    r"|alter (?:column )?\S+ (?:set|drop) (?:default|not null)"
    r"|alter (?:column )?\S+ set (?:storage|statistics|compression) "
    r"|alter (?:column )?\S+ (?:set data )?type "
    r"|set \(|reset \(|owner to "
    r")"
)
_DROP_CONSTRAINT = re.compile(r"^drop constraint if exists (?P<name>\S+)")
_ADD_CONSTRAINT = re.compile(r"^add constraint (?P<name>\S+) ")
_ANNOTATION = re.compile(r"^--\s*idempotent:\s*\S")


def check_idempotent(migration: Migration, statements: list[Statement] | None = None) -> None:
    """Refuse (ConfigurationError naming the file, line and statement) a statement that could fail or
    do something twice when the file is applied again after an interruption.

    Accepted: ``create ... if not exists``, ``create or replace``, ``drop ... if exists``, ``insert ...
    on conflict``, ``comment``, ``grant``/``revoke``, ``set``; ``alter table`` whose every action is
    ``add column if not exists``, ``drop ... if exists``, a column's default, nullability, storage or
    type, or ``add constraint <name>`` after a ``drop constraint if exists <name>`` of the same table
    earlier in the file. Any other statement needs a comment ``-- idempotent: <why>`` just above it.
    """
    dropped: set[tuple[str, str]] = set()
    for statement in migration.statements() if statements is None else statements:
        if any(_ANNOTATION.match(comment) for comment in statement.comments):
            continue
        problem = _idempotence_problem(statement.normalized(), dropped)
        if problem:
            snippet = " ".join(statement.text.split())
            snippet = snippet if len(snippet) <= 160 else snippet[:157] + "..."
            raise ConfigurationError(
                f"migration {migration.file_name}, line {statement.line}: {problem}: {snippet!r}; every"
                " statement must be idempotent (after an interruption the file is applied again from its"
                " first statement): use IF NOT EXISTS / IF EXISTS, or say why it is in a comment"
                " '-- idempotent: <why>' just above it"
            )


def _idempotence_problem(text: str, dropped: set[tuple[str, str]]) -> str | None:
    if _IDEMPOTENT.match(text):
        return None
    alter = _ALTER_TABLE.match(text)
    if alter is None:
        return "not a statement form known to be idempotent"
    table = alter.group("table").replace('"', "")
    for action in _top_level_parts(alter.group("actions")):
        if (drop := _DROP_CONSTRAINT.match(action)) is not None:
            dropped.add((table, drop.group("name").replace('"', "")))
        if (add := _ADD_CONSTRAINT.match(action)) is not None:
            if (table, add.group("name").replace('"', "")) not in dropped:
                return f"constraint {add.group('name')} is added without being dropped if it exists first"
            continue
        if not _IDEMPOTENT_ACTION.match(action):
            return f"alter table action {action.split(' (')[0]!r} is not idempotent"
    return None


def _top_level_parts(actions: str) -> list[str]:
    """``alter table`` actions split at the commas outside parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in actions:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]
