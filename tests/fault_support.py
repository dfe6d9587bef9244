"""Shared set-up of the fault scenarios (tests/faults), run for real: the installed zone entrypoints as processes, real
signals, the embedded PostgreSQL.

The demo's staging pulls are made once per test module, in a template database; every test copies
it (``CREATE DATABASE ... TEMPLATE``) so that its conformed and semantic jobs read exactly the same
pulls as the control run's, whose data each scenario must end with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from etl_samples import generate

BIN = Path(sys.executable).parent
#: Columns that differ from run to run by design: ids and clocks of the job that wrote a row.
RUN_COLUMNS = {"run_id", "job_id", "pull_run_id", "dbt_run_id"}
RUN_COLUMN_SUFFIXES = ("_at", "_run_id")
ZONES = ("conformed", "semantic")


def database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path="/" + name).geturl()


@dataclass
class Staged:
    """The demo's sample data and a template warehouse holding its staging pulls."""

    admin_url: str
    template: str
    oltp_url: str
    samples_dir: Path

    def warehouse(self) -> str:
        """A new warehouse database, a copy of the template."""
        name = f"wh_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create database {} template {}").format(
                    sql.Identifier(name), sql.Identifier(self.template)
                )
            )
        return database_url(self.admin_url, name)

    def env(self, url: str, data_dir: Path, **extra: str) -> dict[str, str]:
        """The environment of a zone job on warehouse ``url`` with data folder ``data_dir``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETL_")}
        env.update(
            ETL_DATABASE_URL=url,
            ETL_OLTP_DATABASE_URL=self.oltp_url,
            ETL_DATA_DIR=str(data_dir),
            ETL_LOG_LEVEL="INFO",
            # one masking key for every warehouse: the semantic zone's tokens then compare with the control's
            ETL_PII_KEY="fault-tests-masking-key",
            **extra,
        )
        return env


def job(name: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a zone entrypoint (``etl-conformed`` ...) to its end."""
    return subprocess.run(
        [str(BIN / name), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def run_entrypoint(
    program: str, *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``program args`` (etl-staging, etl-conformed...) with only ``env`` and PATH/HOME, as a
    container or Control-M starts it."""
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    return subprocess.run(
        [str(BIN / program), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(name: str, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a zone entrypoint in the background, its output (both streams) into ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen([str(BIN / name), *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def events(output: str) -> list[dict[str, Any]]:
    """The JSON log events of a job's output."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def messages(output: str) -> list[str]:
    return [str(e.get("message", "")) for e in events(output)]


def rows(url: str, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def wait_for(
    condition: Callable[[], bool], what: str, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``condition`` (a database query, mostly) until it holds; fail if ``process`` ends first."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except psycopg.Error:
            pass  # the tables may not exist yet
        if process is not None and process.poll() is not None:
            pytest.fail(f"the job ended (exit {process.returncode}) before {what}")
        time.sleep(0.05)
    pytest.fail(f"never reached: {what}")


def dbt_running(url: str) -> Callable[[], bool]:
    """Whether dbt is running a statement on the warehouse (dbt's query comment names the app)."""

    def check() -> bool:
        found = rows(
            url,
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and state = 'active' and pid <> pg_backend_pid() and query like %s",
            ('%"app": "dbt"%',),
        )
        return bool(found[0][0])

    return check


@contextmanager
def sample_api(staged: Staged, url: str) -> Iterator[str]:
    """The demo's sample APIs (``etl-samples serve``) on a free port: yields their URL."""
    server = subprocess.Popen(
        [str(BIN / "etl-samples"), "serve", "--port", "0"],
        env=staged.env(url, staged.samples_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(timeout=30)


def lease_held(url: str, zone: str) -> Callable[[], bool]:
    def check() -> bool:
        return bool(
            rows(
                url,
                "select count(*) from ops.locks where name like %s and holder is not null",
                (f"zone:{zone}:%",),
            )[0][0]
        )

    return check


def kill(process: subprocess.Popen[bytes], signum: int) -> int:
    process.send_signal(signum)
    return process.wait(timeout=300)


def _tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s"
            " and table_type = 'BASE TABLE' order by table_name",
            (schema,),
        )
    ]


def fingerprint(url: str, zones: tuple[str, ...] = ZONES) -> dict[str, tuple[int, str]]:
    """Every table of the zones: its row count and a digest of its rows, leaving out the columns that
    name the job or the clock that wrote them (run and job ids, ``*_at`` timestamps)."""
    found: dict[str, tuple[int, str]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in zones:
            for table in _tables(conn, schema):
                if table == "run_pulls":
                    continue  # a job's own snapshot, deleted when its build ends
                columns = [
                    name
                    for (name,) in conn.execute(
                        "select column_name from information_schema.columns where table_schema = %s"
                        " and table_name = %s order by ordinal_position",
                        (schema, table),
                    )
                    if name not in RUN_COLUMNS and not name.endswith(RUN_COLUMN_SUFFIXES)
                ]
                listed = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
                query = sql.SQL(
                    "select count(*), coalesce(md5(string_agg(r, '|' order by r)), '') from"
                    " (select row({})::text as r from {}) as rows"
                ).format(listed, sql.Identifier(schema, table))
                count, digest = conn.execute(query).fetchone()  # type: ignore[misc]
                found[f"{schema}.{table}"] = (int(count), digest)
    return found


def differences(got: dict[str, tuple[int, str]], want: dict[str, tuple[int, str]]) -> list[str]:
    return [
        f"{table}: {got.get(table)} != {want.get(table)}"
        for table in sorted(set(got) | set(want))
        if got.get(table) != want.get(table)
    ]


@pytest.fixture(scope="module")
def staged(db_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    """The demo (300 orders) generated and pulled once by a real ``etl-staging run``, in a template."""
    if db_server.kind != "postgres":
        pytest.skip("the fault tests copy a template database (PostgreSQL's CREATE DATABASE ... TEMPLATE)")
    folder = tmp_path_factory.mktemp("staged")
    samples = folder / "data"
    oltp_url = db_server.create_database("oltp")
    generate(samples, oltp_url, orders=300, seed=7)
    template_url = db_server.create_database("tpl")
    template = urlsplit(template_url).path.lstrip("/")
    staged = Staged(db_server.admin_url, template, oltp_url, samples)
    with sample_api(staged, template_url) as api:
        pulled = job("etl-staging", "run", env=staged.env(template_url, samples, ETL_SAMPLE_API_URL=api))
    assert pulled.returncode == 0, pulled.stdout[-3000:] + pulled.stderr[-3000:]
    yield staged


@pytest.fixture(scope="module")
def control(staged: Staged, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    """What a clean run of conformed then semantic makes of the staged pulls."""
    url = staged.warehouse()
    env = staged.env(url, tmp_path_factory.mktemp("control"))
    for zone in ZONES:
        result = job(f"etl-{zone}", "run", env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return fingerprint(url)


@pytest.fixture
def warehouse(staged: Staged) -> str:
    return staged.warehouse()
