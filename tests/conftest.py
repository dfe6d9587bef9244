"""Test fixtures: a real embedded PostgreSQL for the whole session, a fresh database per test.

Set ``ETL_TEST_DATABASE=cockroach`` to run the database tests against CockroachDB through
testcontainers instead (needs a Docker engine; skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pytest_httpserver import HTTPServer

from etl_shared._embedded import EmbeddedPostgres

COCKROACH_IMAGE = os.environ.get("ETL_TEST_COCKROACH_IMAGE", "cockroachdb/cockroach:v24.3.5")


class DatabaseServer:
    """A server the tests may create databases on."""

    def __init__(self, admin_url: str, kind: str) -> None:
        self.admin_url = admin_url
        self.kind = kind

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return _replace_database(self.admin_url, name)


def _replace_database(url: str, database: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url)._replace(path="/" + database).geturl()


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers, else why not."""
    try:
        import docker

        docker.from_env().ping()
        return None
    except Exception as exc:
        return f"no Docker engine reachable ({type(exc).__name__}: {exc})"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Job entrypoints install a JSON handler on the root logger (bound to the test's captured
    stdout) and set its level; undo both after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _fresh_log_context() -> Iterator[None]:
    """Jobs bind run id and zone for the rest of their process; in tests, undo it after each test."""
    from etl_shared._logging import _context

    token = _context.set({})
    yield
    _context.reset(token)


@pytest.fixture(scope="session")
def embedded_pg() -> Iterator[EmbeddedPostgres]:
    # A short path: the server's Unix socket lives in its data folder (path length limit 107).
    folder = Path(tempfile.mkdtemp(prefix="etlpg-", dir="/tmp"))
    server = EmbeddedPostgres(folder / "pg").start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def db_server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    if os.environ.get("ETL_TEST_DATABASE", "postgres") == "cockroach":
        reason = docker_unavailable_reason()
        if reason:
            pytest.skip(f"ETL_TEST_DATABASE=cockroach but {reason}")
        from testcontainers.cockroachdb import CockroachDBContainer

        with CockroachDBContainer(COCKROACH_IMAGE) as crdb:
            yield DatabaseServer(
                crdb.get_connection_url().replace("cockroachdb+psycopg2", "postgresql"), "cockroach"
            )
        return
    embedded: EmbeddedPostgres = request.getfixturevalue("embedded_pg")
    yield DatabaseServer(embedded.url("postgres"), "postgres")


@pytest.fixture
def database_url(db_server: DatabaseServer) -> str:
    """A fresh, empty database for one test."""
    return db_server.create_database()


@pytest.fixture
def warehouse(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A fresh warehouse for the conformed tests: write staging pulls, run `etl-conformed`, query."""
    from conformed_warehouse import Warehouse

    monkeypatch.delenv("ETL_PUSHGATEWAY_URL", raising=False)
    return Warehouse(database_url, tmp_path / "data", monkeypatch)


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    """A threaded server: requests are answered concurrently, each in a thread of its own (the
    default httpserver fixture answers one by one)."""
    httpserver = HTTPServer(threaded=True)
    httpserver.start()
    yield httpserver
    httpserver.clear()
    if httpserver.is_running():
        httpserver.stop()


@pytest.fixture
def api(server: HTTPServer) -> Iterator[HTTPServer]:
    """The threaded server, cleared before and after the test."""
    server.clear()
    yield server
    server.clear()
