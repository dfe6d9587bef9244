"""Hard deletes of an incremental entity (reconcile_keys): staging lists the key set after the pull, and
the conformed history deletes each current key missing from the listing. End to end against a real
source database: the staging job, then the conformed job, then a delete in the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from conformed_warehouse import Warehouse

pytestmark = pytest.mark.integration

ORDER_COLUMNS = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]


def order(order_id: int, updated: str = "2026-01-05T10:00:00Z") -> list[Any]:
    return [order_id, 7, "2026-01-05", "2026-01-05T10:00:00Z", "placed", "EUR", updated]


@pytest.fixture
def shop(db_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A source database with 5 orders, and a sources file that pulls them incrementally with key
    listings after every pull."""
    url: str = db_server.create_database("shop")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema oltp")
        conn.execute(
            "create table oltp.orders (order_id bigint primary key, customer_id bigint, order_date date,"
            " ordered_at timestamptz, status text, currency text, updated_at timestamptz not null)"
        )
        for row in (order(i) for i in range(1, 6)):
            conn.execute("insert into oltp.orders values (%s, %s, %s, %s, %s, %s, %s)", row)
    sources = tmp_path / "sources.yml"
    sources.write_text(
        "sources:\n"
        "  - name: oltp\n"
        "    kind: database\n"
        "    batch_size: 2\n"
        "    connection: {url_env: SHOP_URL}\n"
        "    entities:\n"
        "      - name: orders\n"
        "        table: oltp.orders\n"
        "        key: [order_id]\n"
        "        cursor: updated_at\n"
        "        reconcile_keys: {every_days: 0}\n"
    )
    monkeypatch.setenv("SHOP_URL", url)
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    return url


def staging(warehouse: Warehouse) -> int:
    from etl_staging.cli import main

    warehouse._environment({})
    return main(["run"])


def source(url: str, statement: str, *params: Any) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def current(warehouse: Warehouse) -> list[tuple[Any, ...]]:
    return warehouse.rows(
        "select order_id, change_type, is_deleted from conformed.sales_order_history where is_current order by 1"
    )


def test_a_key_gone_from_the_source_is_deleted(warehouse: Warehouse, shop: str) -> None:
    assert staging(warehouse) == 0
    pulls = warehouse.rows(
        "select mode, record_count, watermark_after is null from staging.pulls where status = 'committed'"
        " order by committed_at"
    )
    assert pulls == [("incremental", 5, False), ("keys", 5, True)]
    assert warehouse.rows("select value from staging.watermarks") == [("2026-01-05T10:00:00+00:00",)]
    assert warehouse.run() == 0
    assert current(warehouse) == [(i, "insert", False) for i in range(1, 6)]
    assert warehouse.rows("select count(*) from conformed.quarantine") == [(0,)]

    # Order 2 is deleted in the source, order 4 changes: the incremental pull sees only order 4, the
    # key listing shows order 2 gone.
    source(shop, "delete from oltp.orders where order_id = 2")
    source(
        shop, "update oltp.orders set status = 'paid', updated_at = '2026-01-06T10:00:00Z' where order_id = 4"
    )
    assert staging(warehouse) == 0
    assert warehouse.run() == 0
    assert current(warehouse) == [
        (1, "insert", False),
        (2, "delete", True),
        (3, "insert", False),
        (4, "update", False),
        (5, "insert", False),
    ]
    assert warehouse.rows("select order_id, is_deleted from conformed.sales_order where order_id = 2") == [
        (2, True)
    ]
    deleted = warehouse.rows(
        "select h.pull_id = p.pull_id, p.mode from conformed.sales_order_history as h"
        " inner join staging.pulls as p on p.pull_id = h.pull_id where h.order_id = 2 and h.change_type = 'delete'"
    )
    assert deleted == [(True, "keys")]  # the delete names the listing it came from

    # A rerun with nothing new changes nothing; a listing that still lacks order 2 adds no second delete.
    before = warehouse.snapshot("conformed.sales_order_history")
    assert staging(warehouse) == 0
    assert warehouse.run() == 0
    assert warehouse.snapshot("conformed.sales_order_history") == before

    # The third listing is the second's key set, with no record pulled since: recorded 'unchanged'
    # (docs/configuration.md, "Unchanged pulls"); the conformed run had no listing to read.
    assert warehouse.rows(
        "select mode, status, count(*) from staging.pulls where status <> 'failed' group by 1, 2 order by 1, 2"
    ) == [("incremental", "committed", 3), ("keys", "committed", 2), ("keys", "unchanged", 1)]

    # Staging keeps 3 data pulls and 3 listings: a listing never pushes out a data pull.
    source(shop, "delete from oltp.orders where order_id = 5")
    assert staging(warehouse) == 0
    assert warehouse.rows(
        "select mode, count(*) from staging.pulls where status = 'committed' group by 1 order by 1"
    ) == [("incremental", 3), ("keys", 3)]


def test_a_key_created_after_the_listing_is_kept(warehouse: Warehouse) -> None:
    """Two staging runs before one conformed run: order 9 appears in the second run's pull, after the
    first listing (which lacks it) but the second listing has it; order 3 is gone from both."""
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(i) for i in (1, 2, 3)], mode="incremental")
    warehouse.pull("oltp", "orders", ["order_id"], [[1], [2], [3]], mode="keys")
    assert warehouse.run() == 0

    warehouse.pull("oltp", "orders", ["order_id"], [[1], [2]], mode="keys")
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, [order(9, "2026-01-07T10:00:00Z")], mode="incremental")
    assert warehouse.run() == 0
    assert current(warehouse) == [
        (1, "insert", False),
        (2, "insert", False),
        (3, "delete", True),
        (9, "insert", False),
    ]

    # The newest listing of a run counts: one without order 9, after its pull, deletes it.
    warehouse.pull("oltp", "orders", ["order_id"], [[1], [2]], mode="keys")
    assert warehouse.run() == 0
    assert current(warehouse)[-1] == (9, "delete", True)


def test_key_listings_are_only_for_incremental_entities_with_a_key(tmp_path: Path) -> None:
    from etl_shared import ConfigurationError
    from etl_staging import load_sources

    sources = tmp_path / "sources.yml"
    sources.write_text(
        "sources:\n  - name: oltp\n    kind: database\n    connection: {url_env: X}\n    entities:\n"
        "      - {name: products, table: oltp.products, key: [product_id], reconcile_keys: {every_days: 1}}\n"
    )
    with pytest.raises(ConfigurationError, match="reconcile_keys needs an incremental entity"):
        load_sources(sources)


def test_a_listing_is_taken_only_when_due(warehouse: Warehouse, shop: str, tmp_path: Path) -> None:
    from etl_staging._raw import key_listing_due

    assert key_listing_due(warehouse.db, "oltp", "orders", 7) is True  # none yet
    assert staging(warehouse) == 0
    assert key_listing_due(warehouse.db, "oltp", "orders", 7) is False
    assert key_listing_due(warehouse.db, "oltp", "orders", 0) is True
    warehouse.execute(
        "update staging.pulls set committed_at = committed_at - interval '8 days' where mode = 'keys'"
    )
    assert key_listing_due(warehouse.db, "oltp", "orders", 7) is True


def test_a_listing_that_lost_most_keys_is_refused_and_deletes_nothing(
    warehouse: Warehouse, shop: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert staging(warehouse) == 0
    assert warehouse.run() == 0
    # The source answers with a truncated table (3 of 5 orders gone at once, above the default 50%).
    source(shop, "delete from oltp.orders where order_id <= 3")
    capsys.readouterr()
    assert staging(warehouse) == 4  # the data-quality exit code
    err = capsys.readouterr()
    assert "oltp.orders: the key listing has 2 keys, the previous one 5: a drop of 60.0%" in err.out + err.err
    assert warehouse.rows(
        "select count(*) from staging.pulls where mode = 'keys' and status = 'committed'"
    ) == [(1,)]  # the refused listing is not committed
    assert warehouse.run() == 0
    assert [row[2] for row in current(warehouse)] == [False] * 5  # nothing deleted

    # The source really lost them: raise the threshold for one run, and the deletes go through.
    sources = tmp_path / "sources.yml"
    sources.write_text(
        sources.read_text().replace(
            "reconcile_keys: {every_days: 0}", "reconcile_keys: {every_days: 0, max_drop_share: 1}"
        )
    )
    assert staging(warehouse) == 0
    assert warehouse.run() == 0
    assert current(warehouse) == [
        (1, "delete", True),
        (2, "delete", True),
        (3, "delete", True),
        (4, "insert", False),
        (5, "insert", False),
    ]


def test_listed_keys_read_alike_in_plain_and_other_batches(warehouse: Warehouse) -> None:
    """A batch of plain integer keys is cast directly (plain_key_batch), any other batch key by key as
    field() and try_cast read it: trimmed text keys, a signed one, a null, a 10-digit one (beyond the
    integer pattern) and a non-integer number all read the same as the records' keys would."""
    orders = [order(i) for i in range(1, 9)]
    warehouse.pull("oltp", "orders", ORDER_COLUMNS, orders, mode="incremental")
    assert warehouse.run() == 0
    # batches of 2: plain (1, 2); text keys (' 3', '+4'); 6 beside a null; values that match no order
    # (10 digits, not an integer); 8 as text. 5 and 7 are absent.
    listing = [[1], [2], [" 3"], ["+4"], [6], [None], [1234567890], [7.5], ["8 "]]
    warehouse.pull("oltp", "orders", ["order_id"], listing, mode="keys", batch_size=2)
    assert warehouse.run() == 0
    deleted = [row[0] for row in current(warehouse) if row[2]]
    assert deleted == [5, 7]
