"""DatabaseExtractor against a real source database: full and incremental pulls, type conversion,
and the errors a source database can produce."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from psycopg import sql

from etl_shared import RetryPolicy, SourceFatalError, SourceTransientError
from etl_staging import Batch, DatabaseExtractor, encode_batch
from etl_staging._config import DatabaseEntity
from etl_staging._extract import Restart, rows_after

pytestmark = pytest.mark.integration


@pytest.fixture
def source_url(db_server: Any) -> str:
    url: str = db_server.create_database("src")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema shop")
        conn.execute(
            "create table shop.orders (order_id integer primary key, customer text,"
            " updated_at timestamptz not null)"
        )
        conn.execute(
            "insert into shop.orders select i, 'c' || (i % 3), timestamptz '2024-01-01 00:00:00+00'"
            " + i * interval '1 hour' from generate_series(1, 10) as i order by random()"
        )
    return url


def entity(**fields: Any) -> DatabaseEntity:
    return DatabaseEntity.model_validate({"name": "orders", "table": "shop.orders", **fields})


def pull(
    url: str, ent: DatabaseEntity, watermark: str | None = None, batch_size: int = 4
) -> tuple[list[Batch], DatabaseExtractor]:
    ex = DatabaseExtractor("shop", ent, url=url, batch_size=batch_size)
    items = list(ex.extract(watermark))
    assert all(isinstance(i, Batch) for i in items)
    return items, ex  # type: ignore[return-value]


def test_full_pull_is_ordered_by_key_in_batches(source_url: str) -> None:
    found, ex = pull(source_url, entity(key=["order_id"]))

    assert [len(b.rows) for b in found] == [4, 4, 2]
    assert all(b.columns == ["order_id", "customer", "updated_at"] for b in found)
    assert [row[0] for b in found for row in b.rows] == list(range(1, 11))
    assert ex.state.watermark_after is None


def test_query_orders_by_cursor_then_key() -> None:
    ex = DatabaseExtractor(
        "shop", entity(key=["order_id", "updated_at"], cursor="updated_at"), url="", batch_size=1
    )

    query, params = ex.query("2024-01-01T00:00:00+00:00")

    text = query.as_string(None)
    assert text == ('select * from "shop"."orders" where "updated_at" > %s order by "updated_at", "order_id"')
    assert params == ("2024-01-01T00:00:00+00:00",)


def test_incremental_pull_returns_rows_after_the_watermark(source_url: str) -> None:
    ent = entity(key=["order_id"], cursor="updated_at")

    first, ex = pull(source_url, ent)
    assert sum(len(b.rows) for b in first) == 10
    watermark = ex.state.watermark_after
    assert watermark is not None
    assert dt.datetime.fromisoformat(watermark) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)

    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute(
            "insert into shop.orders values (11, 'new', timestamptz '2024-01-02 00:00:00+00'),"
            " (12, 'new', timestamptz '2024-01-01 23:00:00+00')"
        )
        conn.execute("update shop.orders set customer = 'changed', updated_at = now() where order_id = 3")

    second, ex2 = pull(source_url, ent, watermark)

    rows = [row for b in second for row in b.rows]
    assert [r[0] for r in rows] == [12, 11, 3]
    assert [r[1] for r in rows] == ["new", "new", "changed"]
    assert dt.datetime.fromisoformat(ex2.state.watermark_after or "") == rows[-1][2]


def test_incremental_pull_without_new_rows_keeps_the_watermark(source_url: str) -> None:
    ent = entity(cursor="updated_at")
    _, ex = pull(source_url, ent)

    again, ex2 = pull(source_url, ent, ex.state.watermark_after)

    assert again == []
    assert ex2.state.watermark_after == ex.state.watermark_after


def test_integer_cursor_watermark(source_url: str) -> None:
    ent = entity(cursor="order_id")

    found, ex = pull(source_url, ent, watermark="7")

    assert [row[0] for b in found for row in b.rows] == [8, 9, 10]
    assert ex.state.watermark_after == "10"


def test_values_convert_faithfully_to_json(db_server: Any) -> None:
    url = db_server.create_database("src")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table public.kinds (id integer primary key, amount numeric(30, 10), at timestamptz,"
            " day date, ref uuid, blob bytea, doc jsonb, note text, ratio double precision, flag boolean,"
            " big bigint)"
        )
        conn.execute(
            "insert into public.kinds values"
            " (1, 12345678901234567890.0123456789, '2024-02-29 23:59:59.123456+02', '2024-02-29',"
            "  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10'::bytea,"
            '  \'{"a": [1, {"b": null}], "c": "d"}\', \'héllo\', 0.5, true, 9223372036854775807),'
            " (2, null, null, null, null, null, null, null, null, null, null)"
        )

    found, _ = pull(
        url, DatabaseEntity.model_validate({"name": "kinds", "table": "public.kinds", "key": ["id"]})
    )
    decoded = orjson.loads(encode_batch(found[0].columns, found[0].rows))

    assert decoded["columns"] == [
        "id",
        "amount",
        "at",
        "day",
        "ref",
        "blob",
        "doc",
        "note",
        "ratio",
        "flag",
        "big",
    ]
    full, empty = decoded["rows"]
    assert full[0] == 1
    assert full[1] == "12345678901234567890.0123456789"
    assert Decimal(full[1]) == Decimal("12345678901234567890.0123456789")
    at = dt.datetime.fromisoformat(full[2])
    assert at.tzinfo is not None
    assert at == dt.datetime(2024, 2, 29, 21, 59, 59, 123456, tzinfo=dt.UTC)
    assert full[3] == "2024-02-29"
    assert uuid.UUID(full[4]) == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert base64.b64decode(full[5]) == b"\x00\xff\x10"
    assert full[6] == {"a": [1, {"b": None}], "c": "d"}
    assert full[7:] == ["héllo", 0.5, True, 9223372036854775807]
    assert empty == [2] + [None] * 10


def test_network_and_range_values_convert_to_json(db_server: Any) -> None:
    url = db_server.create_database("src")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table public.net (id integer primary key, ip inet, net cidr, span int4range,"
            " period daterange, nothing int4range, tags text[], amounts numeric[])"
        )
        conn.execute(
            "insert into public.net values (1, '2001:db8::1', '10.0.0.0/8', '[1,5)', '[2024-01-01,)',"
            " 'empty', '{a,b}', '{1.10,2}')"
        )

    found, _ = pull(url, DatabaseEntity.model_validate({"name": "net", "table": "public.net"}))
    (row,) = orjson.loads(encode_batch(found[0].columns, found[0].rows))["rows"]

    assert row == [
        1,
        "2001:db8::1",
        "10.0.0.0/8",
        {"lower": 1, "upper": 5, "bounds": "[)"},
        {"lower": "2024-01-01", "upper": None, "bounds": "[)"},
        {"empty": True},
        ["a", "b"],
        ["1.10", "2"],
    ]


def test_missing_table_is_fatal(source_url: str) -> None:
    ex = DatabaseExtractor("shop", entity(table="shop.nothing"), url=source_url, batch_size=10)

    with pytest.raises(SourceFatalError, match=r"source shop, table shop\.nothing: table does not exist"):
        list(ex.extract(None))


@pytest.mark.parametrize("watermark", [None, "2024-01-01"])
def test_missing_cursor_column_is_fatal(source_url: str, watermark: str | None) -> None:
    ex = DatabaseExtractor("shop", entity(cursor="changed_at"), url=source_url, batch_size=10)

    with pytest.raises(SourceFatalError, match="changed_at") as info:
        list(ex.extract(watermark))
    assert "shop.orders" in str(info.value)


def test_missing_key_column_is_fatal(source_url: str) -> None:
    ex = DatabaseExtractor("shop", entity(key=["nope"]), url=source_url, batch_size=10)

    with pytest.raises(SourceFatalError, match="nope"):
        list(ex.extract(None))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_source_is_transient() -> None:
    url = f"postgresql://nobody:hunter2@127.0.0.1:{_closed_port()}/shop"
    ex = DatabaseExtractor("shop", entity(), url=url, batch_size=10)

    with pytest.raises(
        SourceTransientError, match=r"source shop, table shop\.orders: source database failed"
    ) as info:
        list(ex.extract(None))
    assert "hunter2" not in str(info.value)


def _terminate_extraction(db_server: Any, url: str) -> None:
    """Kill the extractor's source connection from a second connection (as a node restart would)."""
    database = urlsplit(url).path.lstrip("/")
    with psycopg.connect(db_server.admin_url, autocommit=True) as admin:
        terminated = admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = 'etl-staging-extract' and datname = %s",
            (database,),
        ).fetchall()
    assert terminated == [(True,)]


FAST = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.01)


def _interrupted(
    url: str, db_server: Any, ent: DatabaseEntity, *, after_batches: int = 1, batch_size: int = 3
) -> tuple[list[Any], DatabaseExtractor]:
    """The items of an extraction whose source connection is killed after ``after_batches`` batches."""
    ex = DatabaseExtractor("shop", ent, url=url, batch_size=batch_size, retry=FAST)
    items = ex.extract(None)
    found = [next(items) for _ in range(after_batches)]
    _terminate_extraction(db_server, url)
    return [*found, *items], ex


def test_a_source_connection_lost_mid_read_resumes_after_the_last_row_by_key(
    source_url: str, db_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    undisturbed, _ = pull(source_url, entity(key=["order_id"]), batch_size=3)

    found, _ = _interrupted(source_url, db_server, entity(key=["order_id"]))

    assert found == undisturbed  # the same batches, each row once
    assert [len(b.rows) for b in found] == [3, 3, 3, 1]
    assert "resuming after the last row read" in caplog.text
    assert "SQLSTATE 57P01" in caplog.text


def test_an_incremental_read_resumes_in_cursor_then_key_order_with_nulls(
    source_url: str, db_server: Any
) -> None:
    """A full pull of an incremental entity includes rows whose cursor is NULL (sorted last on
    PostgreSQL, first on CockroachDB); a resume must neither lose nor repeat them."""
    with psycopg.connect(source_url, autocommit=True) as conn:
        conn.execute("alter table shop.orders alter column updated_at drop not null")
        conn.execute("insert into shop.orders values (11, 'c1', null), (12, 'c2', null), (13, 'c0', null)")
        conn.execute(
            "update shop.orders set updated_at = timestamptz '2024-02-01 00:00:00+00' where order_id > 7"
        )
    ent = entity(key=["order_id"], cursor="updated_at")
    undisturbed, plain = pull(source_url, ent, batch_size=3)

    for after_batches in (1, 3, 4):
        found, ex = _interrupted(source_url, db_server, ent, after_batches=after_batches)
        assert found == undisturbed, after_batches
        assert ex.state.watermark_after == plain.state.watermark_after


def test_a_read_without_a_key_starts_again_and_says_so(source_url: str, db_server: Any) -> None:
    """No key: the order is not unique, so the read cannot resume; it starts again from the first row
    after a Restart item (the pull then discards what it wrote)."""
    undisturbed, _ = pull(source_url, entity(), batch_size=4)

    found, _ = _interrupted(source_url, db_server, entity(), after_batches=2, batch_size=4)

    assert isinstance(found[2], Restart)
    assert found[:2] == undisturbed[:2]
    assert sorted(r[0] for b in found[3:] for r in b.rows) == list(range(1, 11))


def test_a_source_gone_for_good_mid_read_is_transient(source_url: str, db_server: Any) -> None:
    ex = DatabaseExtractor("shop", entity(key=["order_id"]), url=source_url, batch_size=3, retry=FAST)
    items = ex.extract(None)
    first = next(items)
    assert isinstance(first, Batch)
    assert [row[0] for row in first.rows] == [1, 2, 3]

    database = urlsplit(source_url).path.lstrip("/")
    with psycopg.connect(db_server.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("alter database {} allow_connections false").format(sql.Identifier(database)))
    _terminate_extraction(db_server, source_url)

    with pytest.raises(SourceTransientError, match="source database failed"):
        list(items)


@pytest.mark.parametrize("nulls_last", [True, False], ids=["nulls-last", "nulls-first"])
def test_rows_after_matches_the_order_with_nulls_either_way(database_url: str, nulls_last: bool) -> None:
    """For every row of a two-column order with NULLs, the condition selects exactly the rows after it,
    NULLs placed as the server sorts them (PostgreSQL lets the test ask for either)."""
    values = [None, 1, 2]
    rows = [(a, b, n) for n, (a, b) in enumerate((a, b) for a in values for b in values)]
    placement = "nulls last" if nulls_last else "nulls first"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table probe (a int, b int, n int primary key)")
        with conn.cursor() as cur:
            cur.executemany("insert into probe values (%s, %s, %s)", rows)
        ordered = conn.execute(
            f"select a, b, n from probe order by a {placement}, b {placement}, n"
        ).fetchall()
        for index, (a, b, n) in enumerate(ordered):
            condition, params = rows_after(["a", "b", "n"], [a, b, n], nulls_last=nulls_last)
            query = sql.SQL("select a, b, n from probe where {} order by a {p}, b {p}, n").format(
                condition, p=sql.SQL(placement)
            )
            assert conn.execute(query, params).fetchall() == ordered[index + 1 :], (a, b, n)
