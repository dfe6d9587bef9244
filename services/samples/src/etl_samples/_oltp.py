"""Loads the commerce domain into schema ``oltp`` of a PostgreSQL or CockroachDB database.

The schema is dropped and recreated, so a rerun gives the same contents. Rows are streamed with
``COPY ... FROM STDIN`` in batches, each batch its own (retried) transaction; foreign keys and the
``updated_at`` indexes (for incremental extraction) are added once the data is in.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg

from etl_shared._db import CopyWriter, Database, redact_url, run_transaction

from ._commerce import (
    CUSTOMER_COLUMNS,
    ORDER_COLUMNS,
    ORDER_LINE_COLUMNS,
    PRODUCT_COLUMNS,
    Commerce,
    Order,
)

_log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = "oltp"
ROWS_PER_BATCH = 20_000
ORDERS_PER_BATCH = 5_000  # about 15,000 lines with them

_CREATE = (
    "drop schema if exists oltp cascade",
    "create schema oltp",
    """create table oltp.customers (
        customer_id bigint primary key,
        email text,
        first_name text,
        last_name text,
        phone text,
        country text,
        created_at timestamptz not null,
        updated_at timestamptz not null
    )""",
    """create table oltp.products (
        product_id bigint primary key,
        sku text not null unique,
        name text not null,
        category text,
        unit_price numeric(12, 2) not null,
        currency text not null,
        is_active boolean not null,
        updated_at timestamptz not null
    )""",
    """create table oltp.orders (
        order_id bigint primary key,
        customer_id bigint not null,
        order_date date not null,
        ordered_at timestamptz not null,
        status text not null,
        currency text not null,
        updated_at timestamptz not null
    )""",
    """create table oltp.order_lines (
        order_id bigint not null,
        line_number int not null,
        product_id bigint not null,
        quantity int not null,
        unit_price numeric(12, 2) not null,
        discount_pct numeric(5, 2) not null,
        updated_at timestamptz not null,
        primary key (order_id, line_number)
    )""",
)
_CONSTRAIN = (
    """alter table oltp.orders add constraint orders_customer_id_fkey
        foreign key (customer_id) references oltp.customers (customer_id)""",
    """alter table oltp.order_lines add constraint order_lines_order_id_fkey
        foreign key (order_id) references oltp.orders (order_id)""",
    """alter table oltp.order_lines add constraint order_lines_product_id_fkey
        foreign key (product_id) references oltp.products (product_id)""",
    "create index orders_customer_id_idx on oltp.orders (customer_id)",
    "create index order_lines_product_id_idx on oltp.order_lines (product_id)",
    "create index customers_updated_at_idx on oltp.customers (updated_at)",
    "create index products_updated_at_idx on oltp.products (updated_at)",
    "create index orders_updated_at_idx on oltp.orders (updated_at)",
    "create index order_lines_updated_at_idx on oltp.order_lines (updated_at)",
)


def load_oltp(url: str, commerce: Commerce) -> dict[str, int]:
    """Recreate schema ``oltp`` and fill it; the row count of each table."""
    database = Database(url, application_name="etl-samples")
    _log.info("recreating schema %s in %s", SCHEMA, redact_url(url))
    with database.connect(autocommit=True) as conn:
        for statement in _CREATE:
            conn.execute(statement)
        counts = {
            "customers": _copy_in_batches(
                conn, "customers", CUSTOMER_COLUMNS, (c.row() for c in commerce.customers())
            ),
            "products": _copy_in_batches(conn, "products", PRODUCT_COLUMNS, commerce.products()),
        }
        counts["orders"], counts["order_lines"] = _copy_orders(conn, commerce.orders())
        for statement in _CONSTRAIN:
            conn.execute(statement)
    _log.info(
        "loaded schema %s: %d customers, %d products, %d orders, %d order lines",
        SCHEMA,
        counts["customers"],
        counts["products"],
        counts["orders"],
        counts["order_lines"],
    )
    return counts


# The sample loads are plain COPYs, not idempotent: after an unknown outcome (40003) run_transaction raises
# instead of copying the batch a second time; regenerate the samples then.
def _copy_in_batches(
    conn: psycopg.Connection[Any], table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    writer = CopyWriter(f"{SCHEMA}.{table}", columns)
    total = 0
    for batch in _batches(rows, ROWS_PER_BATCH):
        total += run_transaction(
            conn, lambda c, batch=batch: writer.write(c, batch), name=f"copy {table}", idempotent=False
        )
    _log.debug("copied %d rows into %s.%s", total, SCHEMA, table)
    return total


def _copy_orders(conn: psycopg.Connection[Any], orders: Iterable[Order]) -> tuple[int, int]:
    order_writer = CopyWriter(f"{SCHEMA}.orders", ORDER_COLUMNS)
    line_writer = CopyWriter(f"{SCHEMA}.order_lines", ORDER_LINE_COLUMNS)
    order_total = line_total = 0
    for batch in _batches(orders, ORDERS_PER_BATCH):
        order_rows = [order.row for order in batch]
        line_rows = [line for order in batch for line in order.lines]

        def write(c: psycopg.Connection[Any], order_rows=order_rows, line_rows=line_rows) -> None:
            order_writer.write(c, order_rows)
            line_writer.write(c, line_rows)

        run_transaction(conn, write, name="copy orders", idempotent=False)
        order_total += len(order_rows)
        line_total += len(line_rows)
        if order_total % (ORDERS_PER_BATCH * 20) == 0:
            _log.info("copied %d orders so far", order_total)
    return order_total, line_total


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
