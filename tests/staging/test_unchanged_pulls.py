"""Unchanged pulls: a full pull (or key listing) equal to the newest committed pull of its source entity
and mode ends 'unchanged' (metadata same_as), its batches removed, on a real warehouse; incremental
pulls never do; ``keep_unchanged_pulls`` turns it off; retention and ``etl status`` account for it."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import ops_support
import psycopg
import pytest
from ops_support import etl, etl_json, rows, staging

from etl_shared import Database, apply_migrations
from etl_staging import RawPullWriter, apply_retention

ops_env = ops_support.ops_env
source_url = ops_support.source_url  # the shared fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, application_name="etl-test")
    apply_migrations(database)
    return database


def query(db: Database, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with db.connect(autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def pull(
    db: Database,
    batches: list[list[list[Any]]],
    *,
    mode: str = "full",
    entity: str = "customers",
    detect: bool = True,
    columns: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any:
    writer = RawPullWriter(
        db,
        run_id="r",
        job_id=None,
        source="shop",
        entity=entity,
        mode=mode,
        watermark_before=None,
        write_behind=False,
        detect_unchanged=detect,
    )
    writer.open()
    for batch in batches:
        writer.add_batch(columns or ["id", "name"], batch)
    writer.add_payload("page-1", "application/json", b"[]")
    return writer.commit(watermark_after=None, metadata=metadata)


def state(db: Database, pull_id: Any) -> tuple[Any, ...]:
    ((status, same_as, batches, payloads),) = query(
        db,
        "select status, metadata ->> 'same_as',"
        " (select count(*) from staging.pull_batches as b where b.pull_id = p.pull_id),"
        " (select count(*) from staging.pull_payloads as y where y.pull_id = p.pull_id)"
        " from staging.pulls as p where pull_id = %s",
        (pull_id,),
    )
    return status, same_as, batches, payloads


DATA = [[[1, "Ann"], [2, "Bob"]], [[3, "Cy"]]]


def test_a_full_pull_equal_to_the_last_is_unchanged_and_a_changed_one_commits(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    first = pull(db, DATA)
    assert first.same_as is None
    assert state(db, first.pull_id) == ("committed", None, 2, 1)

    with caplog.at_level(logging.INFO, logger="etl_staging"):
        second = pull(db, DATA)
    assert second.same_as == str(first.pull_id)
    # recorded as a check of the source, never visible: no batches, no payloads left
    assert state(db, second.pull_id) == ("unchanged", str(first.pull_id), 0, 0)
    ((records, batches, checksum, committed_at),) = query(
        db,
        "select record_count, batch_count, checksum, committed_at from staging.pulls where pull_id = %s",
        (second.pull_id,),
    )
    assert (records, batches, checksum) == (3, 2, first.checksum) and committed_at is not None
    assert f"unchanged since pull {first.pull_id}" in caplog.text
    assert any(r.levelno == logging.INFO and "unchanged since pull" in r.getMessage() for r in caplog.records)

    # One value changed: a normal committed pull, compared with the newest committed one from now on.
    third = pull(db, [[[1, "Ann"], [2, "Bobby"]], [[3, "Cy"]]])
    assert third.same_as is None and state(db, third.pull_id)[0] == "committed"
    # Back to the first content: compared with the newest committed pull (the third), so committed.
    fourth = pull(db, DATA)
    assert fourth.same_as is None and state(db, fourth.pull_id)[0] == "committed"
    # The same rows cut into other batches, or other source column types: the same records, kept anyway
    # (the checksum is over the batches; the column types feed the scaffold).
    fifth = pull(db, [[[1, "Ann"]], [[2, "Bob"], [3, "Cy"]]])
    assert fifth.same_as is None
    sixth = pull(db, [[[1, "Ann"]], [[2, "Bob"], [3, "Cy"]]], metadata={"column_types": {"id": "bigint"}})
    assert sixth.same_as is None
    assert pull(
        db, [[[1, "Ann"]], [[2, "Bob"], [3, "Cy"]]], metadata={"column_types": {"id": "bigint"}}
    ).same_as


def test_incremental_pulls_are_never_unchanged_and_detection_can_be_off(db: Database) -> None:
    for mode in ("incremental", "incremental"):
        summary = pull(db, DATA, mode=mode, entity="orders")
        assert summary.same_as is None and state(db, summary.pull_id)[0] == "committed"
    for _ in range(2):
        summary = pull(db, DATA, detect=False)
        assert summary.same_as is None and state(db, summary.pull_id)[0] == "committed"
    # with the detection on, the full pull is compared with its own mode's pulls only
    assert pull(db, DATA).same_as is not None


def test_a_key_listing_is_unchanged_unless_records_were_pulled_since(db: Database) -> None:
    keys = [[[1], [2], [3]]]
    data = pull(db, DATA, mode="incremental", entity="orders")
    first = pull(db, keys, mode="keys", entity="orders", columns=["id"])
    assert first.same_as is None
    # No records pulled since (an empty incremental pull): the same key set is unchanged.
    pull(db, [], mode="incremental", entity="orders")
    second = pull(db, keys, mode="keys", entity="orders", columns=["id"])
    assert second.same_as == str(first.pull_id)
    assert state(db, second.pull_id) == ("unchanged", str(first.pull_id), 0, 0)
    # Records pulled since the last listing: a key of them may be gone again, and only a new listing,
    # committed after them, deletes it in the conformed history. The same key set commits.
    pull(db, [[[4, "Dee"]]], mode="incremental", entity="orders")
    third = pull(db, keys, mode="keys", entity="orders", columns=["id"])
    assert third.same_as is None and state(db, third.pull_id)[0] == "committed"
    assert data.same_as is None


def test_retention_keeps_three_committed_pulls_and_unchanged_ones_do_not_count(db: Database) -> None:
    committed = [pull(db, [[[i, "x"]]]).pull_id for i in range(3)]
    unchanged = [pull(db, [[[2, "x"]]]) for _ in range(4)]
    assert all(u.same_as == str(committed[-1]) for u in unchanged)
    statuses = query(
        db,
        "select status, count(*) from staging.pulls where entity = 'customers' group by 1 order by 1",
    )
    # the three committed pulls stay; of the unchanged, the newest three
    assert statuses == [("committed", 3), ("unchanged", 3)]
    assert {r[0] for r in query(db, "select pull_id from staging.pulls where status = 'committed'")} == set(
        committed
    )
    assert unchanged[0].pull_id in [uuid.UUID(p) for p in unchanged[-1].deleted_pulls]
    # New data pushes out the oldest committed pulls as before; an unchanged pull whose committed pull
    # is gone goes with it.
    for i in range(3, 6):
        pull(db, [[[i, "x"]]])
    assert query(
        db, "select status, count(*) from staging.pulls where entity = 'customers' group by 1 order by 1"
    ) == [("committed", 3)]
    assert apply_retention(db, "shop", "customers") == []


SOURCES_OFF = """
sources:
  - name: shop
    kind: database
    batch_size: 2
    freshness_sla_hours: 24
    connection: {url_env: OPS_TEST_SHOP_URL}
    entities:
      - {name: customers, table: shop.customers, key: [customer_id]}
      - {name: orders, table: shop.orders, key: [order_id], cursor: updated_at, freshness_sla_hours: 2}
      - {name: customers_all, table: shop.customers, key: [customer_id], keep_unchanged_pulls: true}
"""


def test_the_staging_job_records_an_unchanged_database_pull_and_status_shows_the_check(
    ops_env: str,
    source_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES_OFF, encoding="utf-8")
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    assert staging("run", run_id="r1", monkeypatch=monkeypatch) == 0
    assert staging("run", run_id="r2", monkeypatch=monkeypatch) == 0

    found = rows(
        ops_env,
        "select entity, run_id, status, metadata ->> 'same_as' is not null, record_count from staging.pulls"
        " order by entity, committed_at",
    )
    assert found == [
        ("customers", "r1", "committed", False, 3),
        # read in key order in batches of 2: the same batches, the same checksum
        ("customers", "r2", "unchanged", True, 3),
        ("customers_all", "r1", "committed", False, 3),
        ("customers_all", "r2", "committed", False, 3),  # keep_unchanged_pulls: true
        ("orders", "r1", "committed", False, 5),
        ("orders", "r2", "committed", False, 0),  # incremental: a delta, never unchanged
    ]
    ((counts,),) = rows(ops_env, "select counts from ops.job_runs where run_id = 'r2'")
    ((first_customers,),) = rows(
        ops_env, "select pull_id::text from staging.pulls where entity = 'customers' and run_id = 'r1'"
    )
    assert counts["unchanged"] == {"shop.customers": first_customers}
    assert counts["pulls"]["shop.customers"]["unchanged_since"] == first_customers
    assert counts["rows"] == 3  # customers_all's pull; the unchanged pull keeps no row

    # etl status: the entity was checked by the unchanged pull; its age counts from that check.
    with psycopg.connect(ops_env, autocommit=True) as conn:
        conn.execute(
            "update staging.pulls set committed_at = now() - interval '30 hours' where entity = 'customers'"
            " and status = 'committed'"
        )
    code, report = etl_json(capsys, "status")
    assert code == 0
    entities = {e["entity"]: e for e in report["staging_pulls"]}
    customers = entities["customers"]
    assert customers["unchanged_since"] == first_customers
    assert customers["committed_pulls"] == 1 and customers["last_records"] == 3
    assert customers["last_pull_status"] == "unchanged"
    assert customers["age_hours"] < 1 and customers["stale"] is False  # the check was just now
    assert customers["last_checked_at"] > customers["last_committed_at"]
    assert entities["orders"]["unchanged_since"] is None
    code, text = etl(capsys, "status")
    assert code == 0
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("shop.customers "))
    assert "STALE" not in lines[at]
    assert lines[at + 1].strip().startswith("checked ")
    assert f"unchanged since pull {first_customers}" in lines[at + 1]
    assert "shop.customers" not in report["stale"]

    # A changed row: a normal committed pull.
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("update shop.customers set name = 'Anna' where customer_id = 1")
    assert staging("run", "--entity", "customers", run_id="r3", monkeypatch=monkeypatch) == 0
    assert rows(ops_env, "select status from staging.pulls where run_id = 'r3' and entity = 'customers'") == [
        ("committed",)
    ]
