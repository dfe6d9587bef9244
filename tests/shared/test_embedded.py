"""The embedded PostgreSQL: stopped and started again in one process (bench/conformed does it to
repeat a run from a copy of the server's folder)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from etl_shared import EmbeddedPostgres


@pytest.mark.integration
def test_a_stopped_server_starts_again_in_the_same_process(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg").start()
    try:
        url = server.url("wh")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table kept (id int)")
            conn.execute("insert into kept values (1)")
        server.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2).close()

        server = EmbeddedPostgres(tmp_path / "pg").start()
        with psycopg.connect(server.url("wh")) as conn:
            assert conn.execute("select id from kept").fetchall() == [(1,)]
    finally:
        server.stop()
