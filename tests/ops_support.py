"""Shared set-up of the operator tests (tests/ops): a warehouse, a source database and a sources file
with freshness SLAs, and the staging, pipeline and conformed commands run in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

SOURCES = """
sources:
  - name: shop
    kind: database
    batch_size: 2
    freshness_sla_hours: 24
    connection: {url_env: OPS_TEST_SHOP_URL}
    entities:
      - {name: customers, table: shop.customers, key: [customer_id]}
      - {name: orders, table: shop.orders, key: [order_id], cursor: updated_at, freshness_sla_hours: 2}
  - name: web
    kind: file
    batch_size: 3
    entities:
      - name: events
        files: [{path: "{data_dir}/files/*.csv", format: csv}]
"""

EVENTS = "event_id,kind\n1,click\n2,view\n3,click\n"


def create_shop(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema shop")
        conn.execute("create table shop.customers (customer_id integer primary key, name text not null)")
        conn.execute("insert into shop.customers values (1, 'Ann'), (2, 'Bob'), (3, 'Cy')")
        conn.execute(
            "create table shop.orders (order_id integer primary key, amount numeric(12, 2),"
            " updated_at timestamptz not null)"
        )
        conn.execute(
            "insert into shop.orders select i, i * 10.5,"
            " timestamptz '2024-01-01 00:00+00' + i * interval '1 day' from generate_series(1, 5) as i"
        )


@pytest.fixture
def source_url(db_server: Any) -> str:
    url: str = db_server.create_database("src")
    create_shop(url)
    return url


@pytest.fixture
def ops_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, source_url: str) -> str:
    """The environment of the jobs: warehouse, data folder, sources file, source URL. Returns the
    warehouse URL."""
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES, encoding="utf-8")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "events.csv").write_text(EVENTS, encoding="utf-8")
    for name in ("ETL_PUSHGATEWAY_URL", "ETL_OPENLINEAGE_URL", "ETL_OPENLINEAGE_FILE", "ETL_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("OPS_TEST_SHOP_URL", source_url)
    return database_url


def rows(url: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def staging(*args: str, run_id: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    from etl_staging.cli import main

    if run_id is not None:
        assert monkeypatch is not None
        monkeypatch.setenv("ETL_RUN_ID", run_id)
    return main(list(args))


def etl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``etl ARGS`` in-process: (exit code, stdout)."""
    from etl_pipeline.cli import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().out


def etl_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out = etl(capsys, *args, "--json")
    return code, json.loads(out)
