"""The semantic zone end to end on known pulls: reconciliation with conformed, history-aware customer
keys, reruns that change nothing (byte-identical exports), personal data masked everywhere, Qlik
naming, exports audited."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse

from etl_semantic._qlik import association_problems, naming_problems, qlik_app_tables, semantic_tables
from etl_semantic._watershed import validate_statement

PRODUCTS = ["product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at"]
ORDERS = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]
LINES = ["order_id", "line_number", "product_id", "quantity", "unit_price", "discount_pct", "updated_at"]
T0 = "2025-06-01T00:00:00Z"
MOVED = "2026-02-01T00:00:00Z"  # customer 1 moves from Germany to France

SEMANTIC_TABLES = (
    "dim_date",
    "dim_customer",
    "dim_product",
    "dim_currency",
    "dim_geography",
    "fct_sales",
    "fct_orders",
    "agg_daily_revenue",
    "customer_360",
    "monthly_kpis",
    "watershed_statements",
)


def load(warehouse: Warehouse) -> None:
    warehouse.pull(
        "fx",
        "ecb_rates",
        ["date", "currency", "rate"],
        [["2026-01-02", "USD", "1.1000"], ["2026-01-02", "GBP", "0.8500"], ["2026-02-02", "USD", "1.2000"]],
    )
    warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "Anna.Schmidt@Example.com", "Anna", "Schmidt", "+49 30 1234567", "DE", T0, T0],
            [2, "liwen.weissmann@example.com", "Liwen", "Weissmann", "+44 20 7946 0000", "GB", T0, T0],
        ],
    )
    warehouse.pull(
        "oltp",
        "products",
        PRODUCTS,
        [
            [5, "LAMP-1", "Desk lamp", "Home", "20.00", "EUR", True, T0],
            [6, "MUG-1", "Mug", "Kitchen", "5.00", "EUR", True, T0],
        ],
    )
    warehouse.pull(
        "oltp",
        "orders",
        ORDERS,
        [
            [10, 1, "2026-01-15", "2026-01-15T10:00:00Z", "delivered", "EUR", "2026-01-15T10:00:00Z"],
            [11, 1, "2026-02-15", "2026-02-15T10:00:00Z", "paid", "USD", "2026-02-15T10:00:00Z"],
            [12, 2, "2026-02-15", "2026-02-15T11:00:00Z", "placed", "GBP", "2026-02-15T11:00:00Z"],
            [
                13,
                99,
                "2026-02-16",
                "2026-02-16T11:00:00Z",
                "placed",
                "EUR",
                "2026-02-16T11:00:00Z",
            ],  # unknown customer
        ],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "order_lines",
        LINES,
        [
            [10, 1, 5, 2, "20.00", "0", "2026-01-15T10:00:00Z"],
            [10, 2, 6, 1, "5.00", "0", "2026-01-15T10:00:00Z"],
            [11, 1, 5, 1, "22.00", "10", "2026-02-15T10:00:00Z"],
            [12, 1, 6, 4, "4.00", "0", "2026-02-15T11:00:00Z"],
            [13, 1, 77, 1, "9.00", "0", "2026-02-16T11:00:00Z"],  # unknown product
        ],
        mode="incremental",
    )
    warehouse.pull(
        "web",
        "web_events",
        [
            "event_id",
            "occurred_at",
            "customer_id",
            "session_id",
            "event_type",
            "product_id",
            "page_url",
            "user_agent",
        ],
        [
            [
                "e-1",
                "2026-02-14T09:00:00Z",
                1,
                "s-1",
                "product_view",
                5,
                "https://shop.example.com/products/5",
                "UA",
            ],
            [
                "e-2",
                "2026-02-14T09:05:00Z",
                None,
                "s-2",
                "page_view",
                None,
                "https://shop.example.com/c/home",
                "UA",
            ],
        ],
        mode="incremental",
    )
    # Customer 1 moved to France on 1 February (the second full pull of customers).
    warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "Anna.Schmidt@Example.com", "Anna", "Schmidt", "+49 30 1234567", "France", T0, MOVED],
            [2, "liwen.weissmann@example.com", "Liwen", "Weissmann", "+44 20 7946 0000", "GB", T0, T0],
        ],
    )


def build(warehouse: Warehouse) -> None:
    assert warehouse.run() == 0
    assert warehouse.semantic() == 0


def test_semantic_reconciles_with_conformed_and_resolves_every_key(warehouse: Warehouse) -> None:
    # The first customer pull is read by a first conformed run, the move by a second one.
    load(warehouse)
    rows = warehouse.rows(
        "select pull_id from staging.pulls where entity = 'customers' order by committed_at"
    )
    newest = rows[-1][0]
    # Hold the newest customer pull back for the first run: not yet committed when it starts (a run
    # reads the pulls committed when it started, by id, whatever their committed_at).
    warehouse.rows(
        "update staging.pulls set status = 'running' where pull_id = %s returning 1",
        (newest,),
    )
    assert warehouse.run() == 0
    warehouse.rows("update staging.pulls set status = 'committed' where pull_id = %s returning 1", (newest,))
    build(warehouse)

    # Totals: revenue, order and line counts equal the conformed ones.
    conformed = warehouse.rows(
        "select count(*), count(distinct l.order_id), sum(l.net_amount), sum(l.net_amount_reporting)"
        " from conformed.sales_order_line as l join conformed.sales_order as o using (order_id)"
        " where not l.is_deleted and not o.is_deleted"
    )[0]
    semantic = warehouse.rows(
        "select count(*), count(distinct sales_order_id), sum(sales_net_amount), sum(sales_net_amount_reporting)"
        " from semantic.fct_sales"
    )[0]
    assert semantic == conformed
    assert warehouse.rows("select count(*), sum(order_line_count) from semantic.fct_orders") == [(4, 5)]

    # Every fact key resolves to a dimension row (the unknown member for customer 99 and product 77).
    for fact, keys in (
        ("fct_sales", ("date", "customer", "product", "currency", "geography")),
        ("fct_orders", ("date", "customer", "currency", "geography")),
    ):
        for key in keys:
            assert warehouse.rows(
                f"select count(*) from semantic.{fact} as f left join semantic.dim_{key} as d"
                f" on f.{key}_key = d.{key}_key where d.{key}_key is null"
            ) == [(0,)], f"{fact}.{key}_key"
    assert warehouse.rows(
        "select c.customer_id, p.product_id from semantic.fct_sales as f"
        " join semantic.dim_customer as c using (customer_key) join semantic.dim_product as p using (product_key)"
        " where f.sales_order_id = 13"
    ) == [(-1, -1)]

    # The customer who moved is reported under Germany before the move and France after it.
    assert warehouse.rows(
        "select f.sales_order_id, g.geography_country_code, c.customer_country_code"
        " from semantic.fct_sales as f join semantic.dim_geography as g using (geography_key)"
        " join semantic.dim_customer as c using (customer_key) where f.sales_order_id in (10, 11)"
        " group by 1, 2, 3 order by 1"
    ) == [(10, "DE", "DE"), (11, "FR", "FR")]
    assert warehouse.rows(
        "select daily_date::text, daily_country_code, daily_product_category, daily_revenue"
        " from semantic.agg_daily_revenue where daily_country_code in ('DE', 'FR') order by 1, 2, 3"
    ) == [
        ("2026-01-15", "DE", "Home", Decimal("44.00")),  # 40.00 EUR x 1.10 (2 January rate)
        ("2026-01-15", "DE", "Kitchen", Decimal("5.50")),
        ("2026-02-15", "FR", "Home", Decimal("19.80")),  # 22.00 USD less 10%
    ]
    # customer_360 and monthly KPIs are there for the current customers and months.
    assert warehouse.rows(
        "select c360_customer_id, c360_orders, c360_country_code from semantic.customer_360 order by 1"
    ) == [(1, 2, "FR"), (2, 1, "GB")]
    assert warehouse.rows("select kpi_month::text, kpi_orders from semantic.monthly_kpis order by 1") == [
        ("2026-01-01", 1),
        ("2026-02-01", 3),
    ]


def test_rerun_changes_nothing_and_exports_are_byte_identical(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    before = warehouse.snapshot(*(f"semantic.{t}" for t in SEMANTIC_TABLES))
    first_exports = exports_of(warehouse, "run-2")
    assert set(first_exports) == {
        "watershed_csv",
        "watershed_voided_csv",
        "watershed_template",
        "watershed_xapi",
        "watershed_manifest",
        "qlik_load_script",
    }
    first_bytes = {kind: Path(path).read_bytes() for kind, (path, _, _) in first_exports.items()}

    assert warehouse.run() == 0
    assert warehouse.semantic() == 0

    # Nothing new: dbt builds nothing, the tables are as they were, and the export writes no statement
    # file, only the manifest of the batches so far (the first run's) and the Qlik script.
    assert warehouse.snapshot(*(f"semantic.{t}" for t in SEMANTIC_TABLES)) == before
    second_exports = exports_of(warehouse, "run-4")
    assert set(second_exports) == {"watershed_manifest", "qlik_load_script"}
    assert second_exports["qlik_load_script"][1:] == first_exports["qlik_load_script"][1:]
    for kind, (path, rows, sha256) in second_exports.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == sha256, kind
        assert rows >= 0
    first_manifest = json.loads(first_bytes["watershed_manifest"])
    second_manifest = json.loads(Path(second_exports["watershed_manifest"][0]).read_bytes())
    assert second_manifest["batches"] == first_manifest["batches"]
    assert [b["run_id"] for b in second_manifest["batches"]] == ["run-2"]
    listed = {f["kind"]: (f["name"], f["rows"], f["sha256"]) for f in first_manifest["batches"][0]["files"]}
    for kind, (name, rows, sha256) in listed.items():
        assert (Path(first_exports[kind][0]).name, first_exports[kind][1], first_exports[kind][2]) == (
            name,
            rows,
            sha256,
        )

    statements = json.loads(first_bytes["watershed_xapi"])
    assert len(statements) == first_exports["watershed_csv"][1] > 0
    assert first_exports["watershed_voided_csv"][1] == 0
    assert [p for s in statements for p in validate_statement(s)] == []
    by_source = {(s["object"]["id"], s["verb"]["display"]["en-US"]) for s in statements}
    assert by_source == {
        ("https://shop.example.com/orders/10", "purchased"),
        ("https://shop.example.com/orders/11", "purchased"),
        ("https://shop.example.com/orders/12", "purchased"),
        ("https://shop.example.com/orders/13", "purchased"),
        ("https://shop.example.com/products/5", "viewed"),
        ("https://shop.example.com/c/home", "viewed"),
    }
    # A customer is a pseudonymous account; a visitor not logged in (or an unknown customer), a session.
    actors = {s["actor"]["account"]["name"] for s in statements}
    assert all(a.startswith("pii_") for a in actors) and len(actors) == 4  # customers 1, 2; order 13; s-2

    # The same run id again (Control-M reruns the job): every file of its batch byte for byte.
    assert warehouse.semantic(run_id="run-2") == 0
    for kind, (path, _, _) in first_exports.items():
        assert Path(path).read_bytes() == first_bytes[kind], kind
    assert warehouse.rows("select count(*) from ops.export_batches") == [(1,)]


def exports_of(warehouse: Warehouse, run_id: str) -> dict[str, tuple[str, int, str]]:
    return {
        kind: (path, rows, sha256)
        for kind, path, rows, sha256 in warehouse.rows(
            "select kind, path, row_count, sha256 from ops.exports where run_id = %s", (run_id,)
        )
    }


def test_personal_data_is_masked_in_every_semantic_table(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    personal = {
        value.lower()
        for row in warehouse.rows("select email, first_name, last_name, phone from conformed.customer")
        for value in row
        if value
    }
    assert "anna.schmidt@example.com" in personal

    leaks = []
    with_text = warehouse.rows(
        "select table_name, column_name from information_schema.columns where table_schema = 'semantic'"
        " and data_type = 'text' order by 1, 2"
    )
    assert {t for t, _ in with_text} >= {"dim_customer", "watershed_statements"}
    for table, column in with_text:
        found = warehouse.rows(
            f'select count(*) from semantic."{table}" where lower("{column}") = any(%s)', (sorted(personal),)
        )[0][0]
        if found:
            leaks.append(f"{table}.{column}: {found} rows")
    assert leaks == []
    # Masked, not dropped: the same email gives the same token, and it is not the email.
    tokens = warehouse.rows("select distinct customer_email from semantic.dim_customer where customer_id = 1")
    assert len(tokens) == 1 and tokens[0][0].startswith("pii_")
    # The export files carry no personal data either.
    for (path,) in warehouse.rows("select path from ops.exports"):
        text = Path(path).read_text().lower()
        assert not [value for value in personal if value in text], path


def test_pii_key_from_the_secret_changes_the_tokens(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    generated = warehouse.rows("select customer_email from semantic.dim_customer where customer_id = 2")

    assert warehouse.semantic(pii_key="a-secret-from-the-vault") == 0

    configured = warehouse.rows("select customer_email from semantic.dim_customer where customer_id = 2")
    assert configured != generated and configured[0][0].startswith("pii_")
    assert warehouse.rows("select key_value from ops.pii_keys") == [("a-secret-from-the-vault",)]


def test_semantic_tables_follow_the_qlik_naming(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    import psycopg

    with psycopg.connect(warehouse.url) as conn:
        tables = semantic_tables(conn)
    assert set(SEMANTIC_TABLES) <= set(tables)
    assert naming_problems(tables) == []
    app = qlik_app_tables(tables, "fct_sales")
    assert sorted(app) == [
        "dim_currency",
        "dim_customer",
        "dim_date",
        "dim_geography",
        "dim_product",
        "fct_sales",
    ]
    assert association_problems(app) == []


def test_fact_follows_updates_and_deletes(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)

    # Order 12 is cancelled; order 10 is deleted at the source (delete flag).
    warehouse.pull(
        "oltp",
        "orders",
        [*ORDERS, "is_deleted"],
        [
            [12, 2, "2026-02-15", "2026-02-15T11:00:00Z", "cancelled", "GBP", "2026-02-20T11:00:00Z", False],
            [10, 1, "2026-01-15", "2026-01-15T10:00:00Z", "delivered", "EUR", "2026-02-21T10:00:00Z", True],
        ],
        mode="incremental",
    )
    build(warehouse)

    assert warehouse.rows(
        "select sales_order_id, sales_order_status from semantic.fct_sales order by 1, 2"
    ) == [
        (11, "paid"),
        (12, "cancelled"),
        (13, "placed"),
    ]
    assert warehouse.rows("select order_id from semantic.fct_orders order by 1") == [(11,), (12,), (13,)]
    # The day of order 10 had no other order: it is empty now.
    assert warehouse.rows(
        "select count(*) from semantic.agg_daily_revenue where daily_date = '2026-01-15'"
    ) == [(0,)]


def test_an_order_moved_to_another_day_leaves_nothing_on_its_old_day(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    before = warehouse.rows("select count(*), sum(sales_net_amount) from semantic.fct_sales")

    # Order 12 was keyed in on the wrong day: the source corrects it from 15 to 17 February.
    warehouse.pull(
        "oltp",
        "orders",
        ORDERS,
        [[12, 2, "2026-02-17", "2026-02-17T11:00:00Z", "placed", "GBP", "2026-02-22T11:00:00Z"]],
        mode="incremental",
    )
    build(warehouse)

    assert warehouse.rows(
        "select sales_order_date::text, count(*) from semantic.fct_sales where sales_order_id = 12 group by 1"
    ) == [("2026-02-17", 1)]
    assert warehouse.rows("select count(*), sum(sales_net_amount) from semantic.fct_sales") == before
    assert warehouse.rows(
        "select count(*) from semantic.fct_sales where sales_order_date = '2026-02-15'"
    ) == [(1,)]  # order 11 only
    assert warehouse.rows("select order_date::text from semantic.fct_orders where order_id = 12") == [
        ("2026-02-17",)
    ]


def test_retention_deletes_old_facts_in_batches(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)
    assert warehouse.rows("select count(*) from semantic.fct_sales") == [(5,)]
    # Keep only orders of the last N days: every order before 2026-02-15 goes.
    import datetime as dt

    days = (dt.datetime.now(dt.UTC).date() - dt.date(2026, 2, 15)).days + 1

    assert warehouse.semantic(retention_days=str(days), retention_batch_rows="1") == 0

    assert warehouse.rows("select distinct sales_order_date::text from semantic.fct_sales order by 1") == [
        ("2026-02-15",),
        ("2026-02-16",),
    ]
    assert warehouse.rows("select count(*) from semantic.fct_orders where order_date < '2026-02-15'") == [
        (0,)
    ]
    (counts,) = warehouse.rows(
        "select counts from ops.job_runs where zone = 'semantic' order by started_at desc limit 1"
    )[0]
    # the statements of order 10 (15 January) and of the web events of 14 February go too (meta
    # etl_retention of the change ledger); retention is no retraction: nothing is voided for them
    assert counts["retention"]["deleted"] == {
        "semantic.fct_sales": 2,
        "semantic.fct_orders": 1,
        "semantic.watershed_statements": 3,
    }
    assert warehouse.rows(
        "select count(*) from semantic.watershed_statements where ws_timestamp < '2026-02-15'"
    ) == [(0,)]
    assert warehouse.rows("select count(*) from semantic.watershed_statements where ws_is_voided") == [(0,)]


def test_the_calendar_spans_the_business_dates_or_the_configured_range(warehouse: Warehouse) -> None:
    load(warehouse)
    # An order decades before the others (kept: retention of 100 years): the calendar reaches back to
    # its year, and its facts resolve to a real day, not the unknown member.
    warehouse.pull(
        "oltp",
        "orders",
        ORDERS,
        [[14, 1, "1994-03-01", "1994-03-01T10:00:00Z", "delivered", "EUR", "2026-02-20T10:00:00Z"]],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "order_lines",
        LINES,
        [[14, 1, 5, 1, "20.00", "0", "2026-02-20T10:00:00Z"]],
        mode="incremental",
    )
    assert warehouse.run() == 0
    assert warehouse.semantic(retention_days="36500") == 0
    calendar = "select min(date_value)::text, max(date_value)::text, count(date_value) from semantic.dim_date"
    ((first, last, days),) = warehouse.rows(calendar)
    assert first == "1994-01-01" and last.endswith("-12-31") and int(last[:4]) >= 2027
    assert days == (date.fromisoformat(last) - date(1994, 1, 1)).days + 1  # every day, once
    assert warehouse.rows(
        "select d.date_value::text from semantic.fct_sales as f"
        " inner join semantic.dim_date as d on d.date_key = f.date_key where f.sales_order_id = 14"
    ) == [("1994-03-01",)]

    # A configured range: exactly those days; a fact outside it resolves to the unknown member once the
    # facts are rebuilt (docs/configuration.md: a changed range needs --full-refresh).
    assert (
        warehouse.semantic("run", "--full-refresh", calendar_start="2026-01-01", calendar_end="2026-12-31")
        == 0
    )
    assert warehouse.rows(calendar) == [("2026-01-01", "2026-12-31", 365)]
    assert warehouse.rows(
        "select d.date_value from semantic.fct_sales as f"
        " inner join semantic.dim_date as d on d.date_key = f.date_key where f.sales_order_id = 14"
    ) == [(None,)]
    assert (
        warehouse.semantic(calendar_start="2026-12-31", calendar_end="2026-01-01", retention_days="36500")
        == 2
    )


AGGREGATES = ("semantic.agg_daily_revenue", "semantic.monthly_kpis", "semantic.customer_360")
#: the incremental facts (their touched orders replaced by each run)
FACTS = ("semantic.fct_sales", "semantic.fct_orders")
VOIDED = "http://adlnet.gov/expapi/verbs/voided"


def manifest_of(warehouse: Warehouse, run_id: str) -> tuple[Path, dict[str, Any]]:
    ((path,),) = warehouse.rows(
        "select path from ops.exports where run_id = %s and kind = 'watershed_manifest'", (run_id,)
    )
    return Path(path).parent, json.loads(Path(path).read_bytes())


def replay(warehouse: Warehouse, run_id: str) -> dict[str, dict[str, Any]]:
    """The statements an LRS holds after the manifest's batches were uploaded in order: each file as the
    manifest describes it, every new statement added once (an id never seen before), every voiding
    statement removing a statement it holds."""
    folder, manifest = manifest_of(warehouse, run_id)
    held: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    assert [b["sequence"] for b in manifest["batches"]] == list(range(1, len(manifest["batches"]) + 1))
    for batch in manifest["batches"]:
        files = {f["kind"]: f for f in batch["files"]}
        for entry in files.values():
            data = (folder / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["name"]
        statements = json.loads((folder / files["watershed_xapi"]["name"]).read_bytes())
        assert len(statements) == batch["statements"] + batch["voided"] == files["watershed_xapi"]["rows"]
        assert [p for s in statements for p in validate_statement(s)] == []
        for statement in statements:
            assert statement["id"] not in seen, "a statement id was used twice"
            seen.add(statement["id"])
            if statement["verb"]["id"] == VOIDED:
                assert statement["object"]["objectType"] == "StatementRef"
                assert held.pop(statement["object"]["id"], None) is not None, "voids a statement not held"
            else:
                held[statement["id"]] = statement
    assert manifest["statements"] == len(held)
    return held


def contents(statements: Any) -> list[str]:
    """Statements without their ids, comparable across builds."""
    return sorted(json.dumps({k: v for k, v in s.items() if k != "id"}, sort_keys=True) for s in statements)


def batch_of(warehouse: Warehouse, run_id: str) -> tuple[int, int] | None:
    found = warehouse.rows(
        "select statements, voided from ops.export_batches where export_name = 'watershed' and run_id = %s",
        (run_id,),
    )
    return found[0] if found else None


def test_incremental_runs_export_every_change_once_and_match_a_full_build(warehouse: Warehouse) -> None:
    load(warehouse)
    build(warehouse)  # run-1 conformed, run-2 semantic: the full build
    assert batch_of(warehouse, "run-2") == (6, 0)

    # Delta 1: order 11 cancelled, order 10 deleted at the source, order 12's line corrected (its
    # amount changes), a new order 14 and a new web event.
    warehouse.pull(
        "oltp",
        "orders",
        [*ORDERS, "is_deleted"],
        [
            [11, 1, "2026-02-15", "2026-02-15T10:00:00Z", "cancelled", "USD", "2026-02-20T10:00:00Z", False],
            [10, 1, "2026-01-15", "2026-01-15T10:00:00Z", "delivered", "EUR", "2026-02-21T10:00:00Z", True],
            [14, 2, "2026-02-18", "2026-02-18T09:00:00Z", "placed", "GBP", "2026-02-18T09:00:00Z", False],
        ],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "order_lines",
        LINES,
        [
            [12, 1, 6, 5, "4.00", "0", "2026-02-20T11:00:00Z"],
            [14, 1, 5, 1, "20.00", "0", "2026-02-18T09:00:00Z"],
        ],
        mode="incremental",
    )
    warehouse.pull(
        "web",
        "web_events",
        [
            "event_id",
            "occurred_at",
            "customer_id",
            "session_id",
            "event_type",
            "product_id",
            "page_url",
            "user_agent",
        ],
        [
            [
                "e-3",
                "2026-02-18T08:55:00Z",
                2,
                "s-3",
                "product_view",
                5,
                "https://shop.example.com/products/5",
                "UA",
            ]
        ],
        mode="incremental",
    )
    build(warehouse)  # run-3, run-4
    assert batch_of(warehouse, "run-4") == (3, 3)  # 12 again, 14, e-3; voided 10, 11, 12

    build(warehouse)  # run-5, run-6: nothing new
    assert batch_of(warehouse, "run-6") is None
    assert [b["run_id"] for b in manifest_of(warehouse, "run-6")[1]["batches"]] == ["run-2", "run-4"]

    # Delta 2: order 11 is paid again (its statement comes back under a new id), order 14 corrected.
    warehouse.pull(
        "oltp",
        "orders",
        ORDERS,
        [[11, 1, "2026-02-15", "2026-02-15T10:00:00Z", "paid", "USD", "2026-02-22T10:00:00Z"]],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "order_lines",
        LINES,
        [[14, 1, 5, 3, "20.00", "0", "2026-02-22T09:00:00Z"]],
        mode="incremental",
    )
    build(warehouse)  # run-7, run-8
    assert batch_of(warehouse, "run-8") == (2, 1)  # 11 and 14; voided 14

    held = replay(warehouse, "run-8")
    active = warehouse.rows("select count(*) from semantic.watershed_statements where not ws_is_voided")
    assert active == [(len(held),)]
    aggregates = warehouse.snapshot(*AGGREGATES)
    facts = warehouse.snapshot(*FACTS)

    # A full build of the final state: the same statements (new ids), the same aggregates and facts.
    assert warehouse.semantic("run", "--full-refresh") == 0  # run-9
    folder, manifest = manifest_of(warehouse, "run-9")
    files = {f["kind"]: f["name"] for f in manifest["batches"][-1]["files"]}
    full = json.loads((folder / files["watershed_xapi"]).read_bytes())
    assert contents(held.values()) == contents(full)
    assert {s["object"]["id"].rsplit("/", 1)[-1] for s in full if "/orders/" in s["object"]["id"]} == {
        "11",
        "12",
        "13",
        "14",
    }
    assert warehouse.snapshot(*AGGREGATES) == aggregates
    assert warehouse.snapshot(*FACTS) == facts


def test_a_fact_key_naming_no_dimension_row_fails_the_facts_key_test(warehouse: Warehouse) -> None:
    """etl_platform.keys_resolve (one pass over the fact) fails the run, exit 4, when a key of the fact
    names no row of its dimension; with every key resolving it passes."""
    load(warehouse)
    build(warehouse)
    assert warehouse.semantic("run", "--select", "fct_sales") == 0
    (product_key,) = warehouse.rows("select product_key from semantic.fct_sales order by sales_key limit 1")[
        0
    ]
    with psycopg.connect(warehouse.url, autocommit=True) as conn:
        conn.execute("delete from semantic.dim_product where product_key = %s", (product_key,))

    assert warehouse.semantic("run", "--select", "fct_sales") == 4

    failed = warehouse.rows(
        "select unique_id, status from ops.dbt_node_results where resource_type = 'test'"
        " and unique_id like %s and run_id = %s",
        ("%keys_resolve%", f"run-{warehouse.runs}"),
    )
    assert [status for _, status in failed] == ["fail"]
