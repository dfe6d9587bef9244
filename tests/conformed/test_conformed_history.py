"""Change history (SCD type 2) of the conformed entities, from known staging pulls."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest
from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse

T0 = "2025-01-01T08:00:00Z"

HISTORY = (
    "select customer_id, country_code, change_type, valid_from, valid_to, is_current, is_deleted"
    " from conformed.customer_history order by customer_id, valid_from"
)
TABLES = (
    "conformed.customer_history",
    "conformed.customer",
    "conformed.consumed_pulls",
    "conformed.sales_order_history",
    "conformed.sales_order",
)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_history_after_insert_update_delete_and_reruns(warehouse: Warehouse) -> None:
    first = warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "  Alice@Example.COM ", "Alice", "Smith", None, "germany", T0, T0],
            [2, "bob@example.com", "Bob", "Jones", None, "FR", T0, "2025-01-02T09:30:00+01:00"],
            [3, "carol@example.com", "Carol", "Brown", "+44 20 7946 0000", "GBR", T0, T0],
        ],
    )

    assert warehouse.run() == 0

    # Standardised: trimmed lower-case email, ISO 3166 alpha-2 from a name, a code or an alpha-3.
    assert warehouse.rows(
        "select customer_id, email, country_code, is_deleted from conformed.customer order by 1"
    ) == [
        (1, "alice@example.com", "DE", False),
        (2, "bob@example.com", "FR", False),
        (3, "carol@example.com", "GB", False),
    ]
    assert warehouse.rows(HISTORY) == [
        (1, "DE", "insert", utc(T0), None, True, False),
        (2, "FR", "insert", utc("2025-01-02T08:30:00Z"), None, True, False),
        (3, "GB", "insert", utc(T0), None, True, False),
    ]
    assert warehouse.rows("select pull_id, disposition from conformed.consumed_pulls") == [
        (first, "processed")
    ]

    # A second run with no new pull changes no row.
    before = warehouse.snapshot(*TABLES)
    assert warehouse.run() == 0
    assert warehouse.snapshot(*TABLES) == before

    # Pull 2: customer 1 moved to France, customer 2 is gone, 3 is unchanged, 4 is new.
    second = warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "alice@example.com", "Alice", "Smith", None, "France", T0, "2025-06-01T00:00:00Z"],
            [3, "carol@example.com", "Carol", "Brown", "+44 20 7946 0000", "GBR", T0, T0],
            [4, "dan@example.com", "Dan", "White", None, "es", T0, "2025-06-02T00:00:00Z"],
        ],
    )
    (second_committed,) = warehouse.rows(
        "select committed_at from staging.pulls where pull_id = %s", (second,)
    )[0]

    assert warehouse.run() == 0

    assert warehouse.rows(HISTORY) == [
        (1, "DE", "insert", utc(T0), utc("2025-06-01T00:00:00Z"), False, False),
        (1, "FR", "update", utc("2025-06-01T00:00:00Z"), None, True, False),
        (2, "FR", "insert", utc("2025-01-02T08:30:00Z"), second_committed, False, False),
        (2, "FR", "delete", second_committed, None, True, True),
        (3, "GB", "insert", utc(T0), None, True, False),
        (4, "ES", "insert", utc("2025-06-02T00:00:00Z"), None, True, False),
    ]
    assert warehouse.rows(
        "select customer_id, country_code, is_deleted, last_change_type from conformed.customer order by 1"
    ) == [
        (1, "FR", False, "update"),
        (2, "FR", True, "delete"),
        (3, "GB", False, "insert"),
        (4, "ES", False, "insert"),
    ]

    # What changed since the first pull: the changes the second pull carried.
    (first_committed,) = warehouse.rows(
        "select committed_at from staging.pulls where pull_id = %s", (first,)
    )[0]
    assert warehouse.rows(
        "select customer_id, change_type from conformed.customer_history where recorded_at > %s order by 1",
        (first_committed,),
    ) == [(1, "update"), (2, "delete"), (4, "insert")]

    # Processing the same pull again changes nothing: forget that it was consumed, run again.
    before = warehouse.snapshot("conformed.customer_history", "conformed.customer")
    warehouse.rows("delete from conformed.consumed_pulls where pull_id = %s returning pull_id", (second,))
    assert warehouse.run() == 0
    assert warehouse.snapshot("conformed.customer_history", "conformed.customer") == before

    # A delete flag in the record deletes too; a key that comes back is inserted again.
    warehouse.pull(
        "oltp",
        "customers",
        [*CUSTOMER_COLUMNS, "is_deleted"],
        [
            [1, "alice@example.com", "Alice", "Smith", None, "France", T0, "2025-06-01T00:00:00Z", False],
            [2, "bob@example.com", "Bob", "Jones", None, "FR", T0, "2025-07-01T00:00:00Z", False],
            [
                3,
                "carol@example.com",
                "Carol",
                "Brown",
                "+44 20 7946 0000",
                "GBR",
                T0,
                "2025-07-01T00:00:00Z",
                True,
            ],
            [4, "dan@example.com", "Dan", "White", None, "es", T0, "2025-06-02T00:00:00Z", False],
        ],
    )
    assert warehouse.run() == 0
    changes = warehouse.rows(
        "select customer_id, change_type, is_current from conformed.customer_history"
        " where customer_id in (2, 3) order by customer_id, valid_from"
    )
    assert changes == [
        (2, "insert", False),
        (2, "delete", False),
        (2, "insert", True),
        (3, "insert", False),
        (3, "delete", True),
    ]
    assert warehouse.rows("select customer_id from conformed.customer where not is_deleted order by 1") == [
        (1,),
        (2,),
        (4,),
    ]


def test_incremental_pulls_keep_every_version_in_order(warehouse: Warehouse) -> None:
    columns = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]
    warehouse.pull(
        "oltp",
        "orders",
        columns,
        [
            [10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "placed", "gbp", "2026-01-03T10:00:00Z"],
            [11, 1, "2026-01-05", "2026-01-05T10:00:00Z", "placed", "USD", "2026-01-05T10:00:00Z"],
        ],
        mode="incremental",
    )
    # Two more pulls before the conformed job runs again: both are read, every version kept.
    warehouse.pull(
        "oltp",
        "orders",
        columns,
        [[10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "paid", "GBP", "2026-01-04T09:00:00Z"]],
        mode="incremental",
    )
    assert warehouse.run() == 0
    warehouse.pull(
        "oltp",
        "orders",
        columns,
        [[10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "shipped", "GBP", "2026-01-06T09:00:00Z"]],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "orders",
        columns,
        [
            [10, 1, "2026-01-03", "2026-01-03T10:00:00Z", "delivered", "GBP", "2026-01-08T09:00:00Z"],
            # A replayed record (same content, same time) is no change.
            [11, 1, "2026-01-05", "2026-01-05T10:00:00Z", "placed", "USD", "2026-01-05T10:00:00Z"],
        ],
        mode="incremental",
    )

    assert warehouse.run() == 0

    assert warehouse.rows(
        "select order_id, order_status, change_type, valid_from, valid_to, is_current"
        " from conformed.sales_order_history order by order_id, valid_from"
    ) == [
        (10, "placed", "insert", utc("2026-01-03T10:00:00Z"), utc("2026-01-04T09:00:00Z"), False),
        (10, "paid", "update", utc("2026-01-04T09:00:00Z"), utc("2026-01-06T09:00:00Z"), False),
        (10, "shipped", "update", utc("2026-01-06T09:00:00Z"), utc("2026-01-08T09:00:00Z"), False),
        (10, "delivered", "update", utc("2026-01-08T09:00:00Z"), None, True),
        (11, "placed", "insert", utc("2026-01-05T10:00:00Z"), None, True),
    ]
    # Incremental entities are not deleted by absence: order 11 was in no later pull.
    current = warehouse.rows(
        "select order_id, order_status, currency_code, is_deleted from conformed.sales_order"
    )
    assert sorted(current) == [
        (10, "delivered", "GBP", False),
        (11, "placed", "USD", False),
    ]
    assert warehouse.rows(
        "select count(*), count(distinct disposition) from conformed.consumed_pulls"
        " where consumer = 'sales_order_history'"
    ) == [(4, 1)]


def test_snapshot_entity_reads_only_the_newest_pull(warehouse: Warehouse) -> None:
    columns = ["product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at"]
    older = warehouse.pull(
        "oltp", "products", columns, [[1, "A-1", "Old name", "Toys", "9.99", "EUR", True, T0]]
    )
    newer = warehouse.pull(
        "oltp",
        "products",
        columns,
        [[1, "A-1", "New name", "Toys", "10.50", "eur", "false", "2025-02-01T00:00:00Z"]],
    )

    assert warehouse.run() == 0

    product = "select product_id, product_name, unit_price, currency_code, is_active from conformed.product"
    assert warehouse.rows(product) == [(1, "New name", Decimal("10.50"), "EUR", False)]
    assert sorted(warehouse.rows("select pull_id, disposition from conformed.consumed_pulls")) == sorted(
        [(older, "superseded"), (newer, "processed")]
    )


def lamp_at_11(warehouse: Warehouse, columns: list[str]) -> None:
    """A products pull: the lamp (product 1) now costs 11.00."""
    warehouse.pull(
        "oltp",
        "products",
        columns,
        [[1, "A-1", "Lamp", "Home", "11.00", "EUR", True, "2025-03-01T00:00:00Z"]],
    )


def test_full_refresh_rebuilds_current_state_and_keeps_the_history(warehouse: Warehouse) -> None:
    columns = ["product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at"]
    warehouse.pull("oltp", "products", columns, [[1, "A-1", "Lamp", "Home", "9.99", "EUR", True, T0]])
    assert warehouse.run() == 0
    lamp_at_11(warehouse, columns)
    assert warehouse.run() == 0
    before = warehouse.snapshot("conformed.product_history", "conformed.product")

    # --full-refresh never rebuilds a history (staging keeps only 3 pulls: it could not be rebuilt).
    assert warehouse.run("run", "--full-refresh") == 0

    after = warehouse.snapshot("conformed.product_history", "conformed.product")
    assert after["conformed.product_history"] == before["conformed.product_history"]
    assert [r[:5] for r in after["conformed.product"]] == [r[:5] for r in before["conformed.product"]]
    assert warehouse.rows("select count(*), max(unit_price) from conformed.product_history") == [
        (2, Decimal("11.00"))
    ]


INVARIANTS = (
    "select 'not null', column_name from information_schema.columns"
    " where table_schema = 'conformed' and table_name = 'product_history' and is_nullable = 'NO'"
    " union all select lower(constraint_type), constraint_name from information_schema.table_constraints"
    " where table_schema = 'conformed' and table_name = 'product_history'"
    " and constraint_type in ('CHECK', 'UNIQUE', 'PRIMARY KEY') and constraint_name not like '%%not_null%%'"
    " union all select 'key', column_name from information_schema.key_column_usage"
    " where table_schema = 'conformed' and constraint_name = 'product_history_pkey'"
    " order by 1, 2"
)
EXPECTED_INVARIANTS = [
    ("check", "product_history_change_type_check"),
    ("key", "product_id"),
    ("key", "pull_id"),
    ("key", "valid_from"),
    ("not null", "change_type"),
    ("not null", "product_id"),
    ("not null", "pull_id"),
    ("not null", "valid_from"),
    ("not null", "version_id"),
    ("primary key", "product_history_pkey"),
]
INDEXES = (
    "select regexp_replace(indexdef, '.* USING btree ', '') from pg_indexes"
    " where schemaname = 'conformed' and tablename = 'product_history' order by 1"
)
EXPECTED_INDEXES = [
    "(loaded_at)",
    "(product_id, valid_from, pull_id)",
    "(recorded_at)",
    "(valid_to)",
]


def test_history_invariants_are_constraints_also_on_a_table_deployed_without_them(
    warehouse: Warehouse,
) -> None:
    columns = ["product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at"]
    warehouse.pull("oltp", "products", columns, [[1, "A-1", "Lamp", "Home", "9.99", "EUR", True, T0]])
    assert warehouse.run() == 0
    assert warehouse.rows(INVARIANTS) == EXPECTED_INVARIANTS
    assert [r[0] for r in warehouse.rows(INDEXES)] == EXPECTED_INDEXES
    with pytest.raises(psycopg.errors.UniqueViolation):
        warehouse.execute("insert into conformed.product_history select * from conformed.product_history")
    with pytest.raises(psycopg.errors.CheckViolation):
        warehouse.execute("update conformed.product_history set change_type = 'upsert'")
    with pytest.raises(psycopg.errors.NotNullViolation):
        warehouse.execute("update conformed.product_history set valid_from = null")

    # A history deployed by an earlier release has none of them: no primary key (dbt's CREATE
    # TABLE ... AS), in its place the unique constraint <table>_version_key (releases from
    # 2026-11-23) or a unique index on version_id and an index on the key and is_current (dbt's
    # md5-named `indexes`, before): the next run adds the key before its upsert, drops the old
    # constraint and indexes, and keeps the rows.
    warehouse.execute(
        "alter table conformed.product_history drop constraint product_history_change_type_check,"
        " drop constraint product_history_pkey,"
        " alter column version_id drop not null, alter column valid_from drop not null,"
        " alter column pull_id drop not null, alter column change_type drop not null,"
        " alter column product_id drop not null"
    )
    warehouse.execute(
        "alter table conformed.product_history add constraint product_history_version_key"
        " unique (product_id, valid_from, pull_id)"
    )
    warehouse.execute(
        'create unique index "1f0e3dad99908345f7439f8ffabdffc4" on conformed.product_history (version_id)'
    )
    warehouse.execute(
        'create index "70efdf2ec9b086079795c442636b55fb" on conformed.product_history (product_id, is_current)'
    )
    assert warehouse.rows(INVARIANTS) == [("unique", "product_history_version_key")]
    before = warehouse.snapshot("conformed.product_history")
    lamp_at_11(warehouse, columns)
    assert warehouse.run() == 0
    assert warehouse.rows(INVARIANTS) == EXPECTED_INVARIANTS
    assert [r[0] for r in warehouse.rows(INDEXES)] == EXPECTED_INDEXES
    after = warehouse.rows(
        "select unit_price, change_type, is_current from conformed.product_history order by valid_from"
    )
    assert after == [(Decimal("9.99"), "insert", False), (Decimal("11.00"), "update", True)]
    assert len(before["conformed.product_history"]) == 1


def test_docs_command_writes_the_documentation_site(warehouse: Warehouse) -> None:
    assert warehouse.run() == 0
    assert warehouse.run("docs") == 0

    target = warehouse.data_dir / "dbt" / "conformed" / "target"
    assert (target / "index.html").exists()
    catalog = (target / "catalog.json").read_text()
    assert "sales_order_history" in catalog
