"""What the jobs send, read from the server's statement log (issue 19, docs/cockroachdb.md).

The compiled dbt SQL (tests/test_crdb_rules.py) is not all a job sends: dbt's materializations, its
introspection, the hooks and the Python jobs add their own statements. Here the three zone jobs run
under the least-privilege roles of ``etl_shared.dbsetup`` (a full run and two incremental ones, with
changes at the source in between) on an embedded server that logs every statement of those roles;
the log is then checked:

- against the static rules of tests/crdb_rules.py, statement by statement;
- for what would fail on CockroachDB although PostgreSQL accepts it: a RENAME (CockroachDB checks
  CREATE on the database, which the roles do not hold), a TEMPORARY table (a preview feature, off
  unless the session enables it), a table created without a primary key (a hidden sequential rowid),
  CREATE SCHEMA (admin only), TRUNCATE (a schema change);
- for the privileges CockroachDB would check on each statement (its documentation's "Required
  privileges", and pkg/sql/authorization.go canCreateOnSchema for CREATE TABLE in a user-defined
  schema): each is held by the role that sent the statement, none of them is a database privilege.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import crdb_rules
import psycopg
import pytest

from etl_samples import SampleApiServer, generate
from etl_shared._embedded import EmbeddedPostgres
from etl_shared.dbsetup import DatabaseSetup, role_url
from etl_staging.cli import DEMO_ENVIRONMENT

pytestmark = pytest.mark.e2e

ROLES = {"staging": "etl_staging", "conformed": "etl_conformed", "semantic": "etl_semantic"}
PREFIX = "@@"


@dataclass(frozen=True)
class Statement:
    role: str
    session: str
    text: str


@pytest.fixture(scope="module")
def logged_server() -> Iterator[EmbeddedPostgres]:
    folder = Path(tempfile.mkdtemp(prefix="etlsl-", dir="/tmp"))
    server = EmbeddedPostgres(folder / "pg").start()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(f"alter system set log_line_prefix = '{PREFIX}%u|%c|'")
        conn.execute("select pg_reload_conf()")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def read_log(path: Path, roles: set[str]) -> list[Statement]:
    """The statements the roles sent: the log's `statement:` (simple protocol: dbt) and `execute`
    (extended protocol: psycopg 3) entries, continuation lines (a tab first) joined."""
    entries: list[list[str]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(PREFIX):
            entries.append([line])
        elif line.startswith("\t") and entries:
            entries[-1].append(line[1:])
    found = []
    for lines in entries:
        head = lines[0][len(PREFIX) :]
        role, session, message = head.split("|", 2)
        match = re.match(r"LOG:\s+(?:statement|execute [^:]*): (.*)", message, re.DOTALL)
        if role in roles and match:
            found.append(Statement(role, session, "\n".join([match.group(1), *lines[1:]])))
    return found


def zone(env: dict[str, str], name: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"etl_{name}", "run", *args],
        env={**env, "ETL_DATABASE_URL": env[f"URL_{name}"]},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"etl-{name} run exited {result.returncode}:\n{result.stderr[-4000:]}"


CHANGES = (
    "update oltp.orders set status = 'shipped', updated_at = now() where order_id % 17 = 0",
    "update oltp.products set unit_price = unit_price + 1, updated_at = now() where product_id % 5 = 0",
    "update oltp.customers set phone = '+44 20 7946 0000', updated_at = now() where customer_id % 11 = 0",
    "delete from oltp.order_lines where order_id % 23 = 0 and line_number > 1",
)


@pytest.fixture(scope="module")
def statements(logged_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> list[Statement]:
    admin = logged_server.url("etl")
    oltp_url = logged_server.url("oltp")
    data_dir = tmp_path_factory.mktemp("statement-log") / "data"
    generate(data_dir, oltp_url, orders=200, seed=11)
    with open(os.devnull, "w") as quiet:
        DatabaseSetup(admin, out=quiet).run()
    with psycopg.connect(admin, autocommit=True) as conn:
        for role in ROLES.values():
            conn.execute(f"alter role {role} set log_statement = 'all'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
    env |= {"ETL_OLTP_DATABASE_URL": oltp_url, "ETL_DATA_DIR": str(data_dir)}
    env |= {f"URL_{name}": role_url(admin, role) for name, role in ROLES.items()}
    log = logged_server.folder / "log"
    start = log.stat().st_size
    client = {k: DEMO_ENVIRONMENT[k] for k in ("ETL_SAMPLE_CLIENT_ID", "ETL_SAMPLE_CLIENT_SECRET")}
    with SampleApiServer(
        data_dir, client_id=client["ETL_SAMPLE_CLIENT_ID"], client_secret=client["ETL_SAMPLE_CLIENT_SECRET"]
    ) as api:
        env |= client | {"ETL_SAMPLE_API_URL": api.url}
        for run in range(3):
            if run:
                with psycopg.connect(oltp_url, autocommit=True) as conn:
                    for change in CHANGES:
                        conn.execute(change)
            for name in ROLES:
                zone(env, name)
    text = log.read_bytes()[start:].decode(errors="replace")
    (data_dir / "statements.log").write_text(text)
    found = read_log(data_dir / "statements.log", set(ROLES.values()))
    assert {s.role for s in found} == set(ROLES.values()), "the log holds no statement of some role"
    return found


RENAME = re.compile(r"\brename\s+(?:to|column|constraint)\b|\brename\b", re.IGNORECASE)
TEMPORARY = re.compile(r"\bcreate\s+(?:local\s+|global\s+)?temp(?:orary)?\s+table\b", re.IGNORECASE)
CREATE_TABLE = re.compile(
    r"\bcreate\s+table\s+(?:if\s+not\s+exists\s+)?(?P<name>(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+)){0,2})",
    re.IGNORECASE,
)


def _name(text: str) -> tuple[str, str]:
    parts = [p.strip('"') for p in text.split(".")]
    return parts[-2], parts[-1]


def test_nothing_is_sent_that_cockroachdb_refuses_or_handles_otherwise(statements: list[Statement]) -> None:
    renames = [s.text[:200] for s in statements if RENAME.search(s.text)]
    assert not renames, f"RENAME sent (needs CREATE on the database on CockroachDB): {renames}"
    temporary = [s.text[:200] for s in statements if TEMPORARY.search(s.text)]
    assert not temporary, f"TEMPORARY tables sent: {temporary}"
    schemas = [s.text[:200] for s in statements if re.search(r"\bcreate\s+schema\b", s.text, re.I)]
    assert not schemas, f"CREATE SCHEMA sent (admin only on CockroachDB; dbsetup creates them): {schemas}"
    # TRUNCATE is a schema change on CockroachDB: only the validated tables are emptied so, and only
    # on PostgreSQL (etl_replace_rows: CockroachDB gets DELETE)
    truncates = [
        s.text[:200]
        for s in statements
        for m in re.finditer(r"\btruncate\s+(?:table\s+)?(?P<name>[^\s;]+)", s.text, re.I)
        if not re.fullmatch(r'(?:"[^"]+"\.)?"conformed"\."validated_\w+"', m.group("name"))
    ]
    assert not truncates, f"TRUNCATE sent (a schema change on CockroachDB): {truncates}"

    created = 0
    for statement in statements:
        for match in CREATE_TABLE.finditer(statement.text):
            created += 1
            assert re.search(r"\bprimary\s+key\b", statement.text, re.I), (
                f"{statement.role} created {match.group('name')} without a primary key"
                f" (CockroachDB would give it a hidden rowid):\n{statement.text[:600]}"
            )
    assert created >= 20, f"only {created} CREATE TABLE statements: the first run built too little"


_RELATION = re.compile(r"\b(?:from|join)\s+(?P<name>[\w.\"]+)", re.IGNORECASE)


def reads_only_the_catalog(text: str) -> bool:
    """dbt's introspection (pg_class, pg_namespace, pg_depend, information_schema): CockroachDB's
    pg_catalog has the `oid` columns these join on, unlike a table's system columns. Such a statement
    names catalog relations and none of the project's schemas."""
    names = [m.group("name").replace('"', "").lower() for m in _RELATION.finditer(text)]
    catalog = any(n.startswith(("pg_", "information_schema.")) for n in names)
    ours = any(n.split(".")[-2:][0] in ("staging", "conformed", "semantic", "ops") for n in names if "." in n)
    return catalog and not ours


def static_violations(statements: list[Statement]) -> list[str]:
    found = []
    for statement in statements:
        catalog = reads_only_the_catalog(statement.text)
        for violation in crdb_rules.check_sql(statement.text, path=f"<{statement.role}>"):
            if catalog and violation.rule == "system-column":
                continue
            found.append(f"{violation}\n    in: {' '.join(statement.text.split())[:300]}")
    return sorted(set(found))


def test_every_statement_passes_the_static_rules(statements: list[Statement]) -> None:
    violations = static_violations(statements)
    assert not violations, f"{len(violations)} violations:\n" + "\n".join(violations[:20])


# The privilege CockroachDB checks for each kind of statement (its documentation's "Required
# privileges"; the owner of an object holds every privilege on it): what the statement touches.
_DML_TARGET = re.compile(
    r"^\s*(?:with\b.*?\)\s*)?(?P<verb>insert\s+into|update|delete\s+from)\s+(?P<name>(?:\"[^\"]+\"|\w+)\.(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)",
    re.IGNORECASE | re.DOTALL,
)
_ALTER = re.compile(
    r"\b(?:alter\s+table|create\s+(?:unique\s+)?index\s+(?:if\s+not\s+exists\s+)?(?:\"[^\"]+\"|\w+)?\s*on"
    r"|drop\s+table\s+(?:if\s+exists\s+)?|analyze)\s+(?P<name>(?:\"[^\"]+\"|\w+)\.(?:\"[^\"]+\"|\w+)(?:\.(?:\"[^\"]+\"|\w+))?)",
    re.IGNORECASE,
)


def test_each_role_holds_what_cockroachdb_would_check(
    statements: list[Statement], logged_server: EmbeddedPostgres
) -> None:
    required: set[tuple[str, str, str, str]] = set()  # role, privilege, schema, table ('' = the schema)
    for statement in statements:
        for part in statement.text.split(";"):
            for match in CREATE_TABLE.finditer(part):
                schema, _ = _name(match.group("name"))
                required.add((statement.role, "CREATE", schema, ""))
            for match in _ALTER.finditer(part):
                schema, table = _name(match.group("name"))
                required.add((statement.role, "OWNER", schema, table))
            dml = _DML_TARGET.match(part)
            if dml:
                schema, table = _name(dml.group("name"))
                verb = dml.group("verb").split()[0].upper()
                required.add((statement.role, verb, schema, table))
    assert any(p == "CREATE" for _, p, _, _ in required), "no CREATE TABLE found in the log"
    assert any(p == "OWNER" for _, p, _, _ in required), "no ALTER/CREATE INDEX found in the log"

    missing = []
    with psycopg.connect(logged_server.url("etl"), autocommit=True) as conn:
        for role in ROLES.values():
            holds_database = conn.execute(
                "select has_database_privilege(%s, current_database(), 'CREATE')", (role,)
            ).fetchone()
            assert holds_database == (False,), f"{role} holds CREATE on the database: not least privilege"
        for role, privilege, schema, table in sorted(required):
            if not table:
                ok = conn.execute("select has_schema_privilege(%s, %s, 'CREATE')", (role, schema)).fetchone()
            elif privilege == "OWNER":
                ok = conn.execute(
                    "select coalesce((select tableowner = %s from pg_tables where schemaname = %s"
                    " and tablename = %s), true)",  # a table dropped since: its creator owned it
                    (role, schema, table),
                ).fetchone()
            else:
                ok = conn.execute(
                    "select coalesce((select has_table_privilege(%s, c.oid, %s) from pg_class c"
                    " join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s),"
                    " true)",
                    (role, privilege, schema, table),
                ).fetchone()
            if ok != (True,):
                missing.append(f"{role}: {privilege} on {schema}.{table or '(schema)'}")
    assert not missing, "privileges used but not held:\n" + "\n".join(missing)
