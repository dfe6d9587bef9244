"""Schema contracts per source entity (strict or loose): new, missing and mistyped columns of a
database source and of file sources (CSV, JSON Lines), end to end with etl-staging on a real warehouse
and a real source database, and `etl status` showing what was found."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import psycopg
import pytest
from ops_support import etl, etl_json, rows

from etl_shared import ConfigurationError
from etl_staging import load_sources
from etl_staging._contract import ContractChecker, ContractViolation, value_text
from etl_staging.cli import main

pytestmark = pytest.mark.integration


def sources_yaml(shop: str = "", web: str = "", feed: str = "") -> str:
    """A database source (customers full, orders incremental) and a file source (CSV and JSON Lines),
    each entity with the contract lines given (indented under the entity)."""

    def block(text: str) -> str:
        return textwrap.indent(textwrap.dedent(text).strip("\n"), " " * 8) + "\n" if text.strip() else ""

    return (
        "sources:\n"
        "  - name: shop\n"
        "    kind: database\n"
        "    batch_size: 2\n"
        "    connection: {url_env: CONTRACT_TEST_SHOP_URL}\n"
        "    entities:\n"
        "      - name: customers\n"
        "        table: shop.customers\n"
        "        key: [customer_id]\n"
        + block(shop)
        + "      - {name: orders, table: shop.orders, key: [order_id],"
        " cursor: updated_at}\n"
        "  - name: web\n"
        "    kind: file\n"
        "    batch_size: 2\n"
        "    entities:\n"
        "      - name: events\n"
        '        files: [{path: "{data_dir}/files/events*.csv", format: csv}]\n'
        + block(web)
        + "      - name: feed\n"
        '        files: [{path: "{data_dir}/files/feed.jsonl", format: jsonl}]\n' + block(feed)
    )


STRICT_CUSTOMERS = """
contract: strict
columns: {customer_id: integer, name: text, code: integer}
"""
EVENTS = "event_id,kind,amount\n1,click,1.5\n2,view,2\n3,click,3.25\n"
FEED = '{"id": 1, "at": "2024-01-01T00:00:00Z"}\n{"id": 2, "at": "2024-01-02T00:00:00Z"}\n'


@pytest.fixture
def source_url(db_server: Any) -> str:
    url: str = db_server.create_database("src")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema shop")
        conn.execute("create table shop.customers (customer_id integer primary key, name text, code text)")
        conn.execute("insert into shop.customers values (1, 'Ann', '10'), (2, 'Bob', '20'), (3, 'Cy', '30')")
        conn.execute(
            "create table shop.orders (order_id integer primary key, amount numeric(12, 2),"
            " updated_at timestamptz not null)"
        )
        conn.execute(
            "insert into shop.orders select i, i * 10.5, timestamptz '2024-01-01 00:00+00' + i * interval '1 day'"
            " from generate_series(1, 3) as i"
        )
    return url


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, source_url: str) -> str:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "events.csv").write_text(EVENTS, encoding="utf-8")
    (tmp_path / "files" / "feed.jsonl").write_text(FEED, encoding="utf-8")
    write_sources(tmp_path)
    for name in ("ETL_PUSHGATEWAY_URL", "ETL_OPENLINEAGE_URL", "ETL_OPENLINEAGE_FILE", "ETL_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(tmp_path / "sources.yml"))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CONTRACT_TEST_SHOP_URL", source_url)
    return database_url


def write_sources(tmp_path: Path, **contracts: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(sources_yaml(**contracts), encoding="utf-8")
    return path


def source_sql(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def committed(url: str, entity: str) -> list[tuple[Any, ...]]:
    """(pull id, records, watermark after, metadata columns) of the entity's committed pulls, oldest first."""
    return rows(
        url,
        "select pull_id, record_count, watermark_after, metadata -> 'columns' from staging.pulls"
        " where entity = %s and status = 'committed' order by committed_at",
        (entity,),
    )


def changes(url: str, entity: str) -> list[tuple[Any, ...]]:
    """(kind, column, action, contract, declared type, failing values, detail) of the entity's findings."""
    return rows(
        url,
        "select kind, column_name, action, contract, declared_type, failing_values, detail"
        " from ops.schema_changes where entity = %s order by detected_at, kind, column_name",
        (entity,),
    )


def last_job(url: str) -> tuple[Any, ...]:
    return rows(
        url, "select status, exit_code, error, counts from ops.job_runs order by started_at desc limit 1"
    )[0]


# ------------------------------------------------------------------------ the declaration


def test_contract_declarations_validate_with_errors_naming_source_and_entity(tmp_path: Path) -> None:
    listed = load_sources(
        write_sources(tmp_path, shop="contract: loose\ncolumns: [customer_id, {name: text}, {code: bigint}]")
    )
    shop = listed.sources[0]
    assert shop.entities[0].columns == {"customer_id": None, "name": "text", "code": "bigint"}
    assert shop.effective_contract("customers") == "loose"
    assert shop.effective_contract("orders") == "loose"  # the documented default

    with pytest.raises(ConfigurationError) as info:
        load_sources(write_sources(tmp_path, shop="contract: strict"))
    assert "source 'shop' entity 'customers': contract strict needs the entity's columns" in str(info.value)

    with pytest.raises(ConfigurationError) as info:
        load_sources(write_sources(tmp_path, web="columns: {event_id: integr}"))
    message = str(info.value)
    assert "source 'web' field entities.0.columns.event_id (entity 'events')" in message
    assert "'integer'" in message

    with pytest.raises(ConfigurationError) as info:
        load_sources(write_sources(tmp_path, feed="contract: sometimes\ncolumns: [id]"))
    assert "(entity 'feed')" in str(info.value) and "'strict' or 'loose'" in str(info.value)

    # A source's contract is the default of its entities; strict then needs every entity's columns.
    text = sources_yaml(web="columns: {event_id: integer}").replace(
        "    kind: file\n", "    kind: file\n    contract: strict\n"
    )
    (tmp_path / "sources.yml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="source 'web' entity 'feed': contract strict needs"):
        load_sources(tmp_path / "sources.yml")
    text = text.replace(
        'feed.jsonl", format: jsonl}]\n', 'feed.jsonl", format: jsonl}]\n        contract: loose\n'
    )
    (tmp_path / "sources.yml").write_text(text, encoding="utf-8")
    web = load_sources(tmp_path / "sources.yml").sources[1]
    assert (web.effective_contract("events"), web.effective_contract("feed")) == ("strict", "loose")


def test_values_are_checked_with_the_conformed_zones_casts() -> None:
    import datetime as dt
    from decimal import Decimal

    checker = ContractChecker(
        source="s",
        entity="e",
        contract="loose",
        declared={"i": "integer", "n": "numeric", "b": "boolean", "d": "date", "t": "timestamptz", "x": None},
        previous=None,
    )
    good = [
        [
            1,
            Decimal("1.50"),
            True,
            dt.date(2024, 1, 2),
            dt.datetime(2024, 1, 2, 3, 4, tzinfo=dt.UTC),
            {"k": 1},
        ],
        [" 7 ", "-2.5e3", "Yes", "2024-01-02", "2024-01-02 03:04:05.123+01:00", None],
        [None, "", "f", None, "2024-01-02", "anything"],
    ]
    checker.check_batch(["i", "n", "b", "d", "t", "x"], good, batch_no=1)
    assert checker.finish() == []

    bad = [["1.0", "1,5", "maybe", "02/01/2024", "yesterday"], [10**10, "NaN!", "2", "2024-01-02T00:00", "x"]]
    checker.check_batch(["i", "n", "b", "d", "t"], bad, batch_no=2)
    found = {c.column: (c.kind, c.failing_values, c.detail) for c in checker.finish()}
    assert found["i"] == ("type_mismatch", 2, "first value '1.0' at record 4 of the pull (batch 2, row 1)")
    assert {name: count for name, (_, count, _) in found.items()} == {"i": 2, "n": 2, "b": 2, "d": 2, "t": 2}
    assert value_text(Decimal("10.50")) == "10.50" and value_text("  ") is None


def test_a_strict_checker_stops_at_the_first_value_that_does_not_cast() -> None:
    checker = ContractChecker(
        source="s", entity="e", contract="strict", declared={"id": "bigint", "at": None}, previous=None
    )
    checker.check_batch(["id", "at"], [["1", "a"]], batch_no=1)
    with pytest.raises(ContractViolation) as info:
        checker.check_batch(
            ["id", "at"], [["2", "b"], ["two", "c"]], batch_no=2, where=lambda i: f"line {i + 5}"
        )
    assert str(info.value) == (
        "source s, entity e: column 'id' declared bigint: value 'two' at record 3 of the pull (batch 2, row 2;"
        " line 6) does not cast to bigint (contract strict: the pull is not committed)"
    )
    assert info.value.exit_code == 4


# ------------------------------------------------------------------------ database source


def test_database_loose_new_and_vanished_columns_warn_and_the_pulls_commit(
    env: str, source_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--source", "shop"]) == 0
    ((_, _, _, columns),) = committed(env, "customers")
    assert columns == ["customer_id", "name", "code"]
    assert changes(env, "customers") == []  # a first pull without a declaration has nothing to compare with

    source_sql(
        source_url,
        "alter table shop.customers add column email text",
        "alter table shop.customers drop column code",
    )
    capsys.readouterr()

    assert main(["run", "--source", "shop"]) == 0

    out = capsys.readouterr().out
    assert "source shop, entity customers: new column 'email' (not in the previous pull)" in out
    assert "source shop, entity customers: column 'code' of the previous pull is gone" in out
    pulls = committed(env, "customers")
    assert len(pulls) == 2 and pulls[1][3] == ["customer_id", "name", "email"]
    assert changes(env, "customers") == [
        ("missing_column", "code", "warned", "loose", None, None,
         "in the previous pull, in no record of this one (values now null)"),
        ("new_column", "email", "warned", "loose", None, None, "not in the previous pull"),
    ]  # fmt: skip
    assert changes(env, "orders") == []
    status, code, _, counts = last_job(env)
    assert (status, code) == ("succeeded", 0)
    assert [c["column"] for c in counts["schema_changes"]["shop.customers"]] == ["email", "code"]

    # Seen once: the next pull compares with this one.
    assert main(["run", "--source", "shop"]) == 0
    assert len(changes(env, "customers")) == 2


def test_database_loose_declared_column_missing_or_mistyped_warns_and_commits(
    env: str, source_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sources(tmp_path, shop="columns: {customer_id: integer, name: text, code: integer, region: text}")
    source_sql(source_url, "update shop.customers set code = 'x' || code where customer_id >= 2")
    capsys.readouterr()

    assert main(["run", "--source", "shop", "--entity", "customers"]) == 0

    out = capsys.readouterr().out
    assert "declared column 'region' is missing" in out
    assert "column 'code' declared integer: value 'x20' at record 2 of the pull (batch 1, row 2)" in out
    assert len(committed(env, "customers")) == 1
    assert changes(env, "customers") == [
        ("missing_column", "region", "warned", "loose", "text", None, "declared, not in batch 1"),
        ("type_mismatch", "code", "warned", "loose", "integer", 2,
         "first value 'x20' at record 2 of the pull (batch 1, row 2)"),
    ]  # fmt: skip


def test_database_strict_missing_declared_column_exits_4_commits_nothing_and_a_fixed_rerun_succeeds(
    env: str, source_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sources(tmp_path, shop=STRICT_CUSTOMERS)
    assert main(["run", "--source", "shop"]) == 0
    ((good, records, _, _),) = committed(env, "customers")
    assert records == 3
    source_sql(
        source_url,
        "alter table shop.customers drop column code",
        "insert into shop.orders values (9, 1, now())",
    )
    watermark = rows(env, "select value from staging.watermarks where entity = 'orders'")

    assert main(["run", "--source", "shop"]) == 4

    # The entity's previous data stays as it was; the other entity of the run went on.
    assert [p[0] for p in committed(env, "customers")] == [good]
    assert len(committed(env, "orders")) == 2
    assert rows(env, "select value from staging.watermarks where entity = 'orders'") != watermark
    failed = rows(
        env,
        "select pull_id, error, batch_count from staging.pulls where entity = 'customers' and status = 'failed'",
    )
    assert len(failed) == 1 and "ContractViolation" in failed[0][1]
    assert rows(env, "select count(*) from staging.pull_batches where pull_id = %s", (failed[0][0],)) == [
        (0,)
    ]
    status, code, error, _ = last_job(env)
    assert (status, code) == ("failed", 4)
    assert "source shop, entity customers: declared column 'code' is missing (not in batch 1)" in error
    assert changes(env, "customers") == [
        ("missing_column", "code", "failed", "strict", "integer", None, "declared, not in batch 1")
    ]

    # etl status: the change, the entity's contract broken, --check fails until it is fixed.
    code, report = etl_json(capsys, "status")
    entity = next(e for e in report["staging_pulls"] if e["entity"] == "customers")
    assert entity["contract_broken"] is True and report["contract_broken"] == ["shop.customers"]
    assert [(c["kind"], c["column"], c["action"]) for c in entity["schema_changes"]] == [
        ("missing_column", "code", "failed")
    ]
    code, text = etl(capsys, "status")
    assert "schema changes, last 7 days: 1  CONTRACT BROKEN: the newest pull was stopped (strict)" in text
    assert "FAILED missing_column code (integer): declared, not in batch 1" in text
    assert "shop.customers schema contract broken" in text
    assert etl(capsys, "status", "--check")[0] == 1

    source_sql(source_url, "alter table shop.customers add column code integer")

    assert main(["run", "--source", "shop", "--entity", "customers"]) == 0

    assert len(committed(env, "customers")) == 2
    _, report = etl_json(capsys, "status")
    entity = next(e for e in report["staging_pulls"] if e["entity"] == "customers")
    assert entity["contract_broken"] is False and report["contract_broken"] == []
    assert len(entity["schema_changes"]) == 1  # still listed, as history


def test_database_strict_value_that_does_not_cast_names_the_record_and_keeps_the_watermark(
    env: str, source_url: str, tmp_path: Path
) -> None:
    orders = "contract: strict\ncolumns: {order_id: integer, amount: numeric, updated_at: timestamptz}"
    text = sources_yaml().replace(
        "      - {name: orders, table: shop.orders, key: [order_id], cursor: updated_at}\n",
        "      - name: orders\n        table: shop.orders\n        key: [order_id]\n        cursor: updated_at\n"
        + textwrap.indent(orders, " " * 8)
        + "\n",
    )
    (tmp_path / "sources.yml").write_text(text, encoding="utf-8")
    assert main(["run", "--source", "shop", "--entity", "orders"]) == 0
    (watermark,) = rows(env, "select value from staging.watermarks where entity = 'orders'")
    # The source turns the amount into text and sends one that no longer reads as a number.
    source_sql(
        source_url,
        "alter table shop.orders alter column amount type text",
        "insert into shop.orders values (4, '40.00', timestamptz '2024-02-01 00:00+00'),"
        " (5, '50,00', timestamptz '2024-02-02 00:00+00'), (6, '60.00', timestamptz '2024-02-03 00:00+00')",
    )

    assert main(["run", "--source", "shop", "--entity", "orders"]) == 4

    _, code, error, _ = last_job(env)
    assert code == 4
    assert (
        "source shop, entity orders: column 'amount' declared numeric: value '50,00' at record 2 of the pull"
        " (batch 1, row 2) does not cast to numeric (contract strict: the pull is not committed)"
    ) in error
    assert len(committed(env, "orders")) == 1
    assert rows(env, "select value from staging.watermarks where entity = 'orders'") == [watermark]
    assert changes(env, "orders") == [
        ("type_mismatch", "amount", "failed", "strict", "numeric", 1,
         "first value '50,00' at record 2 of the pull (batch 1, row 2)"),
    ]  # fmt: skip

    source_sql(source_url, "update shop.orders set amount = '50.00' where order_id = 5")

    assert main(["run", "--source", "shop", "--entity", "orders"]) == 0

    pulls = committed(env, "orders")
    assert [p[1] for p in pulls] == [3, 3]  # the rerun pulls what the stopped pull could not
    assert pulls[1][2].startswith("2024-02-03")


# ------------------------------------------------------------------------ file sources


def test_csv_strict_missing_column_and_bad_value_name_the_file_and_line_and_a_fixed_file_reruns(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sources(tmp_path, web="contract: strict\ncolumns: {event_id: integer, kind: text, amount: numeric}")
    assert main(["run", "--source", "web", "--entity", "events"]) == 0
    assert len(committed(env, "events")) == 1

    # A second file of the drop lost a column: the first batch of that file says so.
    late = tmp_path / "files" / "events_late.csv"
    late.write_text("event_id,kind\n4,view\n", encoding="utf-8")

    assert main(["run", "--source", "web", "--entity", "events"]) == 4

    _, _, error, _ = last_job(env)
    assert f"declared column 'amount' is missing (not in batch 3, file {late}, line 2)" in error
    assert len(committed(env, "events")) == 1

    late.write_text("event_id,kind,amount\n4,view,4\n5,view,five\n", encoding="utf-8")

    assert main(["run", "--source", "web", "--entity", "events"]) == 4

    _, _, error, _ = last_job(env)
    assert (
        "column 'amount' declared numeric: value 'five' at record 5 of the pull (batch 3, row 2;"
        f" file {late}, line 3) does not cast to numeric"
    ) in error
    assert len(committed(env, "events")) == 1
    assert [(k, c, a) for k, c, a, *_ in changes(env, "events")] == [
        ("missing_column", "amount", "failed"),
        ("type_mismatch", "amount", "failed"),
    ]

    late.write_text("event_id,kind,amount\n4,view,4\n5,view,5\n", encoding="utf-8")
    capsys.readouterr()

    assert main(["run", "--source", "web", "--entity", "events"]) == 0

    assert [p[1] for p in committed(env, "events")] == [3, 5]


def test_csv_new_column_warns_in_strict_mode_and_the_pull_commits(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sources(tmp_path, web="contract: strict\ncolumns: {event_id: integer, kind: text}")
    capsys.readouterr()

    assert main(["run", "--source", "web", "--entity", "events"]) == 0

    assert "new column 'amount' (not in the declared columns)" in capsys.readouterr().out
    assert changes(env, "events") == [
        ("new_column", "amount", "warned", "strict", None, None, "not in the declared columns")
    ]
    assert len(committed(env, "events")) == 1


def test_jsonl_loose_new_missing_and_mistyped_fields_warn_with_the_line_and_commit(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_sources(tmp_path, feed="columns: {id: integer, at: timestamptz, score: numeric}")
    feed = tmp_path / "files" / "feed.jsonl"
    assert main(["run", "--source", "web", "--entity", "feed"]) == 0
    assert changes(env, "feed") == [
        (
            "missing_column",
            "score",
            "warned",
            "loose",
            "numeric",
            None,
            "declared, not in any record of the pull",
        )
    ]
    feed.write_text(
        FEED + '{"id": 3, "at": "2024-01-03T00:00:00Z", "score": 1.5, "tag": "a"}\n'
        '\n{"id": "four", "at": "soon", "score": "high"}\n',
        encoding="utf-8",
    )
    capsys.readouterr()

    assert main(["run", "--source", "web", "--entity", "feed"]) == 0

    out = capsys.readouterr().out
    assert f"value 'four' at record 4 of the pull (batch 2, row 2; file {feed}, line 5)" in out
    assert [p[1] for p in committed(env, "feed")] == [2, 4]
    second = rows(
        env,
        "select kind, column_name, failing_values from ops.schema_changes where entity = 'feed'"
        " and pull_id = %s order by kind, column_name",
        (committed(env, "feed")[1][0],),
    )
    assert second == [
        ("new_column", "tag", None),
        ("type_mismatch", "at", 1),
        ("type_mismatch", "id", 1),
        ("type_mismatch", "score", 1),
    ]


def test_jsonl_strict_stops_the_entity_and_the_other_entities_of_the_run_go_on(
    env: str, tmp_path: Path
) -> None:
    write_sources(tmp_path, feed="contract: strict\ncolumns: {id: integer, at: timestamptz}")
    (tmp_path / "files" / "feed.jsonl").write_text(FEED + '{"id": 3, "at": "tomorrow"}\n', encoding="utf-8")

    assert main(["run"]) == 4

    status, _, error, _ = last_job(env)
    assert status == "failed"
    assert "value 'tomorrow' at record 3 of the pull (batch 2, row 1; file" in error and "line 3)" in error
    assert committed(env, "feed") == []
    assert {e: len(committed(env, e)) for e in ("customers", "orders", "events")} == {
        "customers": 1,
        "orders": 1,
        "events": 1,
    }
    assert [(k, c, a) for k, c, a, *_ in changes(env, "feed")] == [("type_mismatch", "at", "failed")]
