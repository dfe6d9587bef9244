"""The staging job survives what a rolling upgrade of the warehouse or a source does to it: connections
killed by the server mid-read and mid-transaction, and commits whose outcome is unknown (40003). Each
disturbed run must leave exactly what an undisturbed run leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from db_faults import CommittedButUnknownDatabase, terminate
from ops_support import create_shop, rows

import etl_shared._job
from etl_shared import Database
from etl_staging import RawPullWriter
from etl_staging._reset import preview_reset, reset_entity
from etl_staging.cli import main

pytestmark = pytest.mark.integration

SOURCES = """
sources:
  - name: shop
    kind: database
    batch_size: 2
    connection: {url_env: STAGING_TEST_SHOP_URL}
    entities:
      - {name: customers, table: shop.customers, key: [customer_id]}
      - {name: orders, table: shop.orders, key: [order_id], cursor: updated_at}
      # no key: an interrupted read cannot resume, the pull starts its extraction again
      - {name: unordered, table: shop.unordered}
"""


@pytest.fixture
def source_url(db_server: Any) -> str:
    url: str = db_server.create_database("src")
    create_shop(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table shop.unordered (code text primary key, label text)")
        conn.execute(
            "insert into shop.unordered select 'c' || i, 'label ' || i from generate_series(1, 7) as i"
        )
    return url


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source_url: str) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES, encoding="utf-8")
    for name in ("ETL_PUSHGATEWAY_URL", "ETL_OPENLINEAGE_URL", "ETL_OPENLINEAGE_FILE", "ETL_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_PARALLELISM", "1")  # one pull at a time: the kills hit a known moment
    monkeypatch.setenv("STAGING_TEST_SHOP_URL", source_url)


def run_staging(monkeypatch: pytest.MonkeyPatch, warehouse: str) -> int:
    monkeypatch.setenv("ETL_DATABASE_URL", warehouse)
    return main(["run"])


def outcome(url: str) -> dict[str, Any]:
    """What a staging run leaves, without what differs from run to run anyway (ids, times)."""
    return {
        "pulls": rows(
            url,
            "select source, entity, status, mode, record_count, batch_count, payload_count, byte_count, checksum,"
            " watermark_before, watermark_after, metadata - 'duration_s' from staging.pulls order by source, entity",
        ),
        "batches": rows(
            url,
            "select p.source, p.entity, b.batch_no, b.record_count, b.data from staging.pull_batches as b"
            " inner join staging.pulls as p using (pull_id) order by p.source, p.entity, b.batch_no",
        ),
        "watermarks": rows(
            url, "select source, entity, value from staging.watermarks order by source, entity"
        ),
        "jobs": rows(url, "select job_name, status, exit_code, error from ops.job_runs"),
        "locks": rows(url, "select name, holder from ops.locks order by name"),
        "actions": rows(url, "select count(*) from ops.operator_actions"),
    }


def _sorted_batches(found: dict[str, Any]) -> dict[str, Any]:
    """The batches of the unordered entity come in whatever order the server reads the table; compare
    its records as a set."""
    result = dict(found)
    result["batches"] = [b for b in found["batches"] if b[1] != "unordered"]
    result["unordered"] = sorted(
        tuple(r) for b in found["batches"] if b[1] == "unordered" for r in b[4]["rows"]
    )
    result["pulls"] = [p if p[1] != "unordered" else p[:8] + p[9:] for p in found["pulls"]]
    return result


@pytest.fixture
def undisturbed(job_env: None, monkeypatch: pytest.MonkeyPatch, db_server: Any) -> dict[str, Any]:
    warehouse = db_server.create_database("undisturbed")
    assert run_staging(monkeypatch, warehouse) == 0
    return outcome(warehouse)


def test_connections_killed_mid_read_and_mid_transaction_give_the_same_result(
    undisturbed: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    db_server: Any,
    source_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the first batch of every pull, the server terminates the extraction's source connection
    (mid-read of its server-side cursor) and every warehouse connection of the job (the pull's batch
    writer among them, which may be in the middle of writing that batch)."""
    warehouse = db_server.create_database("disturbed")
    killed: list[str] = []
    add_batch = RawPullWriter.add_batch

    def add_batch_then_kill(
        self: RawPullWriter, columns: list[str], batch: list[list[Any]], **options: Any
    ) -> None:
        add_batch(self, columns, batch, **options)
        if self.batches == 1 and self.entity not in killed:
            killed.append(self.entity)
            assert terminate(db_server.admin_url, source_url, "etl-staging-extract") == 1
            terminate(db_server.admin_url, warehouse, "etl-staging")

    monkeypatch.setattr(RawPullWriter, "add_batch", add_batch_then_kill)

    assert run_staging(monkeypatch, warehouse) == 0

    assert killed == ["customers", "orders", "unordered"]
    assert _sorted_batches(outcome(warehouse)) == _sorted_batches(undisturbed)
    assert "resuming after the last row read" in caplog.text
    assert "reading again from the first row" in caplog.text  # the unordered entity
    assert "what it wrote so far was discarded" in caplog.text
    assert "SQLSTATE 57P01" in caplog.text


def test_every_commit_with_an_unknown_outcome_gives_the_same_result(
    undisturbed: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    db_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every transaction of the job commits and is then told 40003: each is run again against its own
    committed result, and must neither fail nor write twice."""
    warehouse = db_server.create_database("unknown")
    monkeypatch.setattr(etl_shared._job, "Database", CommittedButUnknownDatabase)

    assert run_staging(monkeypatch, warehouse) == 0

    assert _sorted_batches(outcome(warehouse)) == _sorted_batches(undisturbed)
    unknown = [r.getMessage() for r in caplog.records if "outcome unknown (SQLSTATE 40003" in r.getMessage()]
    for name in (
        "audit start",
        "open pull",
        "batch 1",
        "commit pull",
        "lock pull:shop:orders",
        "audit finish",
    ):
        assert any(name in message for message in unknown), name


def test_a_reset_whose_commit_outcome_is_unknown_reports_what_it_reset_once(
    job_env: None, monkeypatch: pytest.MonkeyPatch, db_server: Any
) -> None:
    """The reset's transaction commits and hears 40003: the retry finds its own audit row and returns
    its counts, rather than resetting an already empty entity again."""
    warehouse = db_server.create_database("reset")
    assert run_staging(monkeypatch, warehouse) == 0
    expected = preview_reset(Database(warehouse), "shop", "orders")
    assert expected.pulls == 1

    counts = reset_entity(CommittedButUnknownDatabase(warehouse, base_delay_s=0.001), "shop", "orders")

    assert counts == expected
    assert rows(warehouse, "select action, source, entity from ops.operator_actions") == [
        ("reset", "shop", "orders")
    ]
    assert rows(warehouse, "select count(*) from staging.pulls where entity = 'orders'") == [(0,)]
