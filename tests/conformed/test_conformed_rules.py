"""Business rules of the conformed zone, on known pulls: FX carry-forward, amounts in the reporting
currency at the rate of the order date, the customer conformed with the CRM, retention."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse

from etl_samples._crm import ACCOUNT_FIELDS as ACCOUNT_COLUMNS
from etl_samples._crm import CONTACT_FIELDS as CONTACT_COLUMNS
from etl_shared import Database, RetentionRule, apply_retention_rules, history_retention_rules

ORDER_COLUMNS = ["order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at"]
LINE_COLUMNS = [
    "order_id",
    "line_number",
    "product_id",
    "quantity",
    "unit_price",
    "discount_pct",
    "updated_at",
]


def fx_and_orders(warehouse: Warehouse) -> None:
    # Published on Friday 2 January and Monday 5 January 2026 only (long shape, as the FX API gives it).
    warehouse.pull(
        "fx",
        "ecb_rates",
        ["date", "currency", "rate"],
        [
            ["2026-01-02", "USD", "1.1000"],
            ["2026-01-02", "GBP", "0.8500"],
            ["2026-01-05", "USD", "1.2000"],
            ["2026-01-05", "GBP", "0.8000"],
            ["2026-01-05", "JPY", "N/A"],  # not quoted that day: no record
        ],
    )
    warehouse.pull(
        "oltp",
        "orders",
        ORDER_COLUMNS,
        [
            [
                10,
                1,
                "2026-01-03",
                "2026-01-03T10:00:00Z",
                "placed",
                "GBP",
                "2026-01-03T10:00:00Z",
            ],  # Saturday
            [11, 1, "2026-01-05", "2026-01-05T10:00:00Z", "paid", "USD", "2026-01-05T10:00:00Z"],
            [12, 1, "2026-01-02", "2026-01-02T10:00:00Z", "paid", "EUR", "2026-01-02T10:00:00Z"],
            [
                13,
                1,
                "2025-12-01",
                "2025-12-01T10:00:00Z",
                "paid",
                "EUR",
                "2025-12-01T10:00:00Z",
            ],  # no rate yet
        ],
        mode="incremental",
    )
    warehouse.pull(
        "oltp",
        "order_lines",
        LINE_COLUMNS,
        [
            [10, 1, 5, 2, "10.00", "10", "2026-01-03T10:00:00Z"],
            [11, 1, 5, 1, "100.00", "0", "2026-01-05T10:00:00Z"],
            [12, 1, 6, 3, "5.00", "0", "2026-01-02T10:00:00Z"],
            [13, 1, 6, 1, "5.00", "0", "2025-12-01T10:00:00Z"],
        ],
        mode="incremental",
    )


def test_fx_rates_are_carried_forward_over_weekends(warehouse: Warehouse) -> None:
    fx_and_orders(warehouse)
    assert warehouse.run() == 0

    rows = warehouse.rows(
        "select rate_date, currency_code, units_per_eur, published_rate_date, is_carried_forward"
        " from conformed.fx_rate where rate_date between '2026-01-02' and '2026-01-05'"
        " order by currency_code, rate_date"
    )
    day = dt.date
    assert rows == [
        (day(2026, 1, 2), "EUR", Decimal("1.000000"), day(2026, 1, 2), False),
        (day(2026, 1, 3), "EUR", Decimal("1.000000"), day(2026, 1, 3), False),
        (day(2026, 1, 4), "EUR", Decimal("1.000000"), day(2026, 1, 4), False),
        (day(2026, 1, 5), "EUR", Decimal("1.000000"), day(2026, 1, 5), False),
        (day(2026, 1, 2), "GBP", Decimal("0.850000"), day(2026, 1, 2), False),
        (day(2026, 1, 3), "GBP", Decimal("0.850000"), day(2026, 1, 2), True),
        (day(2026, 1, 4), "GBP", Decimal("0.850000"), day(2026, 1, 2), True),
        (day(2026, 1, 5), "GBP", Decimal("0.800000"), day(2026, 1, 5), False),
        (day(2026, 1, 2), "USD", Decimal("1.100000"), day(2026, 1, 2), False),
        (day(2026, 1, 3), "USD", Decimal("1.100000"), day(2026, 1, 2), True),
        (day(2026, 1, 4), "USD", Decimal("1.100000"), day(2026, 1, 2), True),
        (day(2026, 1, 5), "USD", Decimal("1.200000"), day(2026, 1, 5), False),
    ]
    # Carried forward up to today: the last published rate stands until the next one.
    assert warehouse.rows(
        "select max(rate_date) = current_date, (array_agg(units_per_eur order by rate_date desc))[1]"
        " from conformed.fx_rate where currency_code = 'USD'"
    ) == [(True, Decimal("1.200000"))]


def test_amounts_in_the_reporting_currency_at_the_order_date_rate(warehouse: Warehouse) -> None:
    fx_and_orders(warehouse)
    assert warehouse.run() == 0

    assert warehouse.rows(
        "select order_id, net_amount, currency_code, reporting_currency, net_amount_reporting"
        " from conformed.sales_order_line order by order_id"
    ) == [
        # 2 x 10.00 less 10% = 18.00 GBP; Saturday: Friday's rates, 18 x 1.10 / 0.85 = 23.29 USD
        (10, Decimal("18.00"), "GBP", "USD", Decimal("23.29")),
        (11, Decimal("100.00"), "USD", "USD", Decimal("100.00")),
        # 15.00 EUR x 1.10
        (12, Decimal("15.00"), "EUR", "USD", Decimal("16.50")),
        # before the first published rate: unknown, not invented
        (13, Decimal("5.00"), "EUR", "USD", None),
    ]


def test_reporting_currency_is_configurable(warehouse: Warehouse) -> None:
    fx_and_orders(warehouse)
    assert warehouse.run(reporting_currency="GBP") == 0

    assert warehouse.rows(
        "select order_id, reporting_currency, net_amount_reporting from conformed.sales_order_line"
        " where order_id in (11, 12) order by order_id"
    ) == [
        (11, "GBP", Decimal("66.67")),  # 100 USD x 0.80 / 1.20
        (12, "GBP", Decimal("12.75")),  # 15 EUR x 0.85
    ]


def test_customer_is_conformed_with_the_crm(warehouse: Warehouse) -> None:
    t = "2025-01-01T00:00:00Z"
    warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, " Ann@Shop.example ", "Ann", "Lee", None, "Ireland", t, t],
            [2, "ben@shop.example", "Ben", "Ode", None, "NG", t, t],
        ],
    )
    warehouse.pull(
        "crm",
        "accounts",
        ACCOUNT_COLUMNS,
        [
            ["A-1", "Lee Ltd", "Retail", "IE", None, "ann@shop.example", t, t],
            ["A-2", "Other", "Banking", "United Kingdom", None, None, t, t],
        ],
    )
    warehouse.pull(
        "crm",
        "contacts",
        CONTACT_COLUMNS,
        [
            ["C-2", "A-1", "ann@shop.example", "Ann", "Lee", None, "CEO", t],
            ["C-9", "A-2", "x@y.example", "X", "Y", None, None, t],
        ],
    )

    assert warehouse.run() == 0

    assert warehouse.rows(
        "select customer_id, email, country_code, crm_account_id, crm_industry, crm_contact_id"
        " from conformed.customer order by customer_id"
    ) == [
        (1, "ann@shop.example", "IE", "A-1", "Retail", "C-2"),
        (2, "ben@shop.example", "NG", None, None, None),
    ]
    assert warehouse.rows("select account_id, country_code from conformed.crm_account order by 1") == [
        ("A-1", "IE"),
        ("A-2", "GB"),
    ]

    # The CRM changes, the customers do not: account A-1 now carries Ben's email, and gains a contact
    # that comes first. Ann loses her match, Ben gains it. customer is incremental: this also checks
    # that a table deployed without the primary key the upsert needs gets it before the write.
    warehouse.execute("alter table conformed.customer drop constraint customer_pkey")
    t2 = "2025-02-01T00:00:00Z"
    warehouse.pull(
        "crm",
        "accounts",
        ACCOUNT_COLUMNS,
        [
            ["A-1", "Lee Ltd", "Retail", "IE", None, "ben@shop.example", t, t2],
            ["A-2", "Other", "Banking", "United Kingdom", None, None, t, t],
        ],
    )
    warehouse.pull(
        "crm",
        "contacts",
        CONTACT_COLUMNS,
        [
            ["C-1", "A-1", "ben@shop.example", "Ben", "Ode", None, "Buyer", t2],
            ["C-2", "A-1", "ann@shop.example", "Ann", "Lee", None, "CEO", t],
            ["C-9", "A-2", "x@y.example", "X", "Y", None, None, t],
        ],
    )
    assert warehouse.run() == 0
    assert warehouse.rows(
        "select customer_id, crm_account_id, crm_contact_id from conformed.customer order by customer_id"
    ) == [(1, None, None), (2, "A-1", "C-1")]
    assert warehouse.rows(
        "select kcu.column_name from information_schema.table_constraints as tc"
        " join information_schema.key_column_usage as kcu using (constraint_schema, constraint_name)"
        " where tc.table_schema = 'conformed' and tc.table_name = 'customer' and tc.constraint_type = 'PRIMARY KEY'"
    ) == [("customer_id",)]

    # A change of one customer rewrites that customer only.
    before = dict(warehouse.rows("select customer_id, loaded_at from conformed.customer"))
    warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "ann@shop.example", "Ann", "Lee", None, "IE", t, t],
            [2, "ben@shop.example", "Benjamin", "Ode", None, "NG", t, t2],
        ],
    )
    assert warehouse.run() == 0
    after = dict(warehouse.rows("select customer_id, loaded_at from conformed.customer"))
    assert after[1] == before[1] and after[2] > before[2]
    assert warehouse.rows(
        "select first_name, crm_account_id from conformed.customer where customer_id = 2"
    ) == [("Benjamin", "A-1")]


def test_retention_deletes_old_closed_versions_and_quarantine_in_batches(warehouse: Warehouse) -> None:
    columns = CUSTOMER_COLUMNS
    old = "2020-01-01T00:00:00Z"
    warehouse.pull(
        "oltp",
        "customers",
        columns,
        [[i, f"c{i}@x.example", "A", "B", None, "DE", old, old] for i in range(1, 6)],
    )
    assert warehouse.run() == 0
    # Everyone moved in 2021: the 2020 versions were closed more than 3 years ago.
    moved = "2021-01-01T00:00:00Z"
    warehouse.pull(
        "oltp",
        "customers",
        columns,
        [[i, f"c{i}@x.example", "A", "B", None, "FR", old, moved] for i in range(1, 6)],
    )
    warehouse.rows(
        "insert into conformed.quarantine (run_id, rule_id, severity, entity, pull_id, batch_no, row_no, record,"
        " reason, quarantined_at) select 'old', 'customer.email_valid', 'warn', 'customer', gen_random_uuid(), 1, g,"
        " '{}'::jsonb, 'test', now() - interval '4 years' from generate_series(1, 3) as g returning 1"
    )

    assert warehouse.run(retention_batch_rows="2") == 0

    assert warehouse.rows(
        "select count(*), count(*) filter (where is_current), min(country_code) from conformed.customer_history"
    ) == [(5, 5, "FR")]
    assert warehouse.rows("select count(*) from conformed.quarantine where run_id = 'old'") == [(0,)]
    (counts,) = warehouse.rows(
        "select counts from ops.job_runs where run_id = 'run-2' and zone = 'conformed'"
    )[0]
    assert counts["retention"]["deleted"]["conformed.customer_history"] == 5
    assert counts["retention"]["deleted"]["conformed.quarantine"] == 3

    # Rows are deleted by the history's primary key; a history deployed by an earlier release and
    # not built since by its unique constraint <table>_version_key, or, older still, by version_id.
    db = Database(warehouse.url)
    rules = {rule.table: rule.key_columns for rule in history_retention_rules(db, "conformed")}
    assert rules["conformed.customer_history"] == ("customer_id", "valid_from", "pull_id")
    assert rules["conformed.sales_order_line_history"] == ("order_id", "line_number", "valid_from", "pull_id")
    warehouse.execute(
        "alter table conformed.customer_history drop constraint customer_history_pkey,"
        " add constraint customer_history_version_key unique (customer_id, pull_id, valid_from)"
    )
    rules = {rule.table: rule.key_columns for rule in history_retention_rules(db, "conformed")}
    assert rules["conformed.customer_history"] == ("customer_id", "pull_id", "valid_from")
    warehouse.execute(
        "alter table conformed.customer_history drop constraint customer_history_version_key;"
        " create unique index customer_history_version_id on conformed.customer_history (version_id)"
    )
    rules = {rule.table: rule.key_columns for rule in history_retention_rules(db, "conformed")}
    assert rules["conformed.customer_history"] == ("version_id",)
    assert apply_retention_rules(
        db,
        [RetentionRule("conformed.customer_history", "valid_to", rules["conformed.customer_history"])],
        older_than=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
    ) == {"conformed.customer_history": 0}
