"""Qlik conventions of the semantic zone and the generated load script (etl_semantic._qlik)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import psycopg
import pytest

from etl_semantic._qlik import (
    QlikScriptFile,
    association_problems,
    load_script,
    main,
    naming_problems,
    qlik_app_tables,
    qlik_apps,
    semantic_tables,
    write_load_script,
)
from etl_shared import ConfigurationError, Database, TransformError, apply_migrations, exit_code_for

# A small semantic schema that follows the convention: keys end in _key, every other field carries its
# table's subject. Column order on purpose not alphabetical (semantic_tables keeps ordinal order).
STAR_DDL = """
create table semantic.dim_customer (
    customer_key text primary key, customer_id bigint, customer_email text, customer_name text
);
create table semantic.dim_product (product_key text primary key, product_id bigint, product_name text);
create table semantic.dim_date (date_key text primary key, date_value date, date_year int);
create table semantic.dim_geography (geography_key text primary key, geography_country_code text);
create table semantic.fct_sales (
    sales_key text primary key, customer_key text, product_key text, date_key text,
    sales_quantity int, sales_net_amount numeric(12, 2)
);
create table semantic.fct_orders (
    order_key text primary key, customer_key text, date_key text, order_status text
);
create table semantic.customer_360 (customer_key text primary key, c360_orders int, c360_revenue numeric);
create table semantic.validated_x (customer_key text, customer_email text);
create table semantic.dbt_scratch (customer_email text);
create table semantic.fct_sales__dbt_tmp (sales_key text, customer_email text);
"""

STAR = {
    "customer_360": ["customer_key", "c360_orders", "c360_revenue"],
    "dim_customer": ["customer_key", "customer_id", "customer_email", "customer_name"],
    "dim_date": ["date_key", "date_value", "date_year"],
    "dim_geography": ["geography_key", "geography_country_code"],
    "dim_product": ["product_key", "product_id", "product_name"],
    "fct_orders": ["order_key", "customer_key", "date_key", "order_status"],
    "fct_sales": [
        "sales_key",
        "customer_key",
        "product_key",
        "date_key",
        "sales_quantity",
        "sales_net_amount",
    ],
}


def _semantic_database(url: str, ddl: str = STAR_DDL) -> None:
    apply_migrations(Database(url, base_delay_s=0.001))
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, ddl.split(";")):
            conn.execute(statement)


def _tables(**tables: list[str]) -> dict[str, list[str]]:
    return dict(tables)


# --- semantic_tables -------------------------------------------------------------------------------


@pytest.mark.integration
def test_semantic_tables_reads_columns_in_ordinal_order_and_skips_dbt_work_tables(database_url: str) -> None:
    _semantic_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("create table public.dim_elsewhere (elsewhere_key text)")
        tables = semantic_tables(conn)

    assert tables == STAR
    assert list(tables) == sorted(STAR)


@pytest.mark.integration
def test_semantic_tables_of_an_empty_schema(database_url: str) -> None:
    apply_migrations(Database(database_url, base_delay_s=0.001))
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert semantic_tables(conn) == {}
        assert semantic_tables(conn, schema="no_such_schema") == {}


# --- naming_problems -------------------------------------------------------------------------------


def test_naming_problems_none_when_only_keys_are_shared() -> None:
    assert naming_problems(STAR) == []


def test_naming_problems_name_the_shared_field_and_its_tables() -> None:
    tables = {**STAR, "fct_sales": [*STAR["fct_sales"], "customer_email"]}

    problems = naming_problems(tables)

    assert len(problems) == 1
    assert "customer_email" in problems[0]
    assert "dim_customer and fct_sales" in problems[0]
    assert "_key" in problems[0]


def test_naming_problems_one_per_field_listing_every_table() -> None:
    tables = _tables(
        dim_customer=["customer_key", "name", "status"],
        dim_product=["product_key", "name"],
        fct_orders=["customer_key", "status"],
        fct_sales=["customer_key", "product_key", "name"],
    )

    problems = naming_problems(tables)

    assert len(problems) == 2
    assert problems[0].startswith("field name is in tables dim_customer, dim_product and fct_sales")
    assert problems[1].startswith("field status is in tables dim_customer and fct_orders")


def test_naming_problems_with_another_key_suffix() -> None:
    tables = _tables(dim_customer=["customer_id", "customer_key"], fct_sales=["customer_id", "customer_key"])

    assert [p.split(" is in")[0] for p in naming_problems(tables)] == ["field customer_id"]
    assert [p.split(" is in")[0] for p in naming_problems(tables, key_suffix="_id")] == ["field customer_key"]


# --- qlik_app_tables and association_problems -------------------------------------------------------


def test_the_app_is_the_sales_star() -> None:
    app = qlik_app_tables(STAR, "fct_sales")

    # fct_orders and customer_360 share keys with fct_sales but would loop; dim_geography shares none.
    assert list(app) == ["dim_customer", "dim_date", "dim_product", "fct_sales"]
    assert app["fct_sales"] == STAR["fct_sales"]
    assert association_problems(app) == []


def test_no_app_without_fct_sales() -> None:
    assert (
        qlik_app_tables({name: fields for name, fields in STAR.items() if name != "fct_sales"}, "fct_sales")
        == {}
    )
    assert association_problems({}) == []


def test_two_shared_fields_are_a_synthetic_key() -> None:
    tables = _tables(
        dim_customer=["customer_key", "segment_key", "customer_name"],
        fct_sales=["sales_key", "customer_key", "segment_key", "sales_quantity"],
    )

    problems = association_problems(tables)

    assert problems == [
        "synthetic key: tables dim_customer and fct_sales share 2 fields (customer_key, segment_key);"
        " two tables may share one key field only"
    ]


def test_a_second_fact_sharing_two_dimensions_makes_a_loop() -> None:
    tables = {name: STAR[name] for name in ("dim_customer", "dim_date", "fct_orders", "fct_sales")}

    problems = association_problems(tables)

    assert any(
        p.startswith("synthetic key: tables fct_orders and fct_sales share 2 fields") for p in problems
    )
    loops = [p for p in problems if p.startswith("circular reference")]
    assert loops == [
        "circular reference: tables fct_orders and fct_sales are associated in a loop"
        " (fct_orders - customer_key - fct_sales - date_key - fct_orders)"
    ]


def test_a_snowflaked_dimension_closing_a_loop_is_a_circular_reference() -> None:
    # fct_sales -> dim_customer -> dim_geography -> currency_key -> back to fct_sales; no pair of tables
    # shares two fields, so this is a pure loop; dim_currency hangs off the loop and is not in it.
    tables = _tables(
        dim_currency=["currency_key", "currency_name"],
        dim_customer=["customer_key", "geography_key", "customer_name"],
        dim_geography=["geography_key", "currency_key", "geography_country_code"],
        fct_sales=["sales_key", "customer_key", "currency_key", "sales_quantity"],
    )

    problems = association_problems(tables)

    assert problems == [
        "circular reference: tables dim_customer, dim_geography and fct_sales are associated in a loop"
        " (dim_customer - customer_key - fct_sales - currency_key - dim_geography - geography_key"
        " - dim_customer)"
    ]


def test_two_independent_loops_are_both_reported() -> None:
    tables = _tables(
        a=["x_key", "y_key"],
        b=["y_key", "z_key"],
        c=["z_key", "x_key", "u_key"],
        d=["u_key", "v_key"],
        e=["v_key", "w_key"],
        f=["w_key", "u2_key", "x_key"],
    )

    loops = [p for p in association_problems(tables) if p.startswith("circular reference")]

    assert len(loops) == 2  # the graph's cycle rank
    assert "tables a, b and c" in loops[0]


def test_a_key_in_three_tables_is_a_hub_not_a_loop() -> None:
    tables = {name: STAR[name] for name in ("customer_360", "dim_customer", "fct_sales")}

    assert association_problems(tables) == []


def test_a_table_sharing_nothing_is_disconnected() -> None:
    tables = {**qlik_app_tables(STAR, "fct_sales"), "dim_geography": STAR["dim_geography"]}

    assert association_problems(tables) == [
        "disconnected: table dim_geography shares no field with any other table"
    ]
    assert association_problems({"fct_sales": STAR["fct_sales"]}) == []


# --- load_script -----------------------------------------------------------------------------------

GOLDEN = """\
// Qlik load script of the semantic star schema (database schema semantic), 3 tables.
// Generated by etl_semantic._qlik from the schema's column lists: do not edit, the next run
// overwrites it. Regenerate: python -m etl_semantic._qlik --out FOLDER (reads ETL_DATABASE_URL).

LIB CONNECT TO 'ETL_SEMANTIC';

[dim_customer]:
LOAD
    customer_key,
    customer_id,
    customer_email;
SQL SELECT "customer_key", "customer_id", "customer_email" FROM "semantic"."dim_customer";

[dim_date]:
LOAD
    date_key,
    date_value;
SQL SELECT "date_key", "date_value" FROM "semantic"."dim_date";

[fct_sales]:
LOAD
    sales_key,
    customer_key,
    date_key,
    sales_quantity;
SQL SELECT "sales_key", "customer_key", "date_key", "sales_quantity" FROM "semantic"."fct_sales";
"""


def test_load_script_is_exactly_the_golden_text() -> None:
    tables = _tables(
        fct_sales=["sales_key", "customer_key", "date_key", "sales_quantity"],
        dim_date=["date_key", "date_value"],
        dim_customer=["customer_key", "customer_id", "customer_email"],
    )

    first = load_script(tables)
    second = load_script(dict(reversed(tables.items())))

    assert first == GOLDEN
    assert first.encode() == second.encode() == load_script(tables).encode()
    assert "\r" not in first and first.endswith(";\n")


def test_load_script_orders_dimensions_then_facts_then_the_rest() -> None:
    script = load_script(
        _tables(zz=["z_key"], fct_b=["b_key"], dim_z=["z_key"], fct_a=["a_key"], dim_a=["a_key"])
    )

    labels = [line for line in script.splitlines() if line.endswith("]:")]
    assert labels == ["[dim_a]:", "[dim_z]:", "[fct_a]:", "[fct_b]:", "[zz]:"]


def test_load_script_quotes_what_qlik_would_misread() -> None:
    script = load_script(
        _tables(**{"dim_odd table": ["odd_key", "odd amount", "from", "odd]x", 'odd"q', "1st"]}),
        connection="ETL's DB",
        schema="sem",
    )

    assert "LIB CONNECT TO 'ETL''s DB';" in script
    assert "[dim_odd table]:\nLOAD\n    odd_key,\n    [odd amount],\n    [from],\n    [odd]]x],\n" in script
    assert '    [odd"q],\n    [1st];\n' in script
    assert (
        'SQL SELECT "odd_key", "odd amount", "from", "odd]x", "odd""q", "1st" FROM "sem"."dim_odd table";'
        in (script)
    )


def test_load_script_refuses_a_table_without_columns() -> None:
    with pytest.raises(TransformError, match="no columns"):
        load_script({"dim_empty": []})


# --- qlik_apps: the apps the models declare --------------------------------------------------------

APP_MODEL = {
    "resource_type": "model",
    "name": "fct_sales",
    "alias": "fct_sales",
    "original_file_path": "models/star/fct_sales.sql",
    "config": {"meta": {"etl_qlik_app": "semantic_star"}},
}


def test_the_apps_are_the_facts_that_declare_one() -> None:
    other = {
        **APP_MODEL,
        "name": "fct_claims",
        "alias": "claims",
        "config": {"meta": {"etl_qlik_app": "claims"}},
    }
    plain = {**APP_MODEL, "name": "fct_orders", "config": {"meta": {}}}
    manifest = {"nodes": {"model.s.a": APP_MODEL, "model.s.b": other, "model.s.c": plain}}
    assert qlik_apps(manifest) == {"semantic_star": "fct_sales", "claims": "claims"}


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"etl_qlik_app": "semantic_star"}, "app 'semantic_star' is already the app of fct_sales"),
        ({"etl_qlik_app": "Bad Name"}, "must be an app name"),
    ],
)
def test_a_bad_app_declaration_names_the_model(second: dict, message: str) -> None:
    bad = {**APP_MODEL, "name": "fct_two", "alias": None, "config": {"meta": second}}
    manifest = {"nodes": {"model.s.a": APP_MODEL, "model.s.b": bad}}
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        qlik_apps(manifest)
    assert "model fct_two" in str(raised.value)


# --- write_load_script -----------------------------------------------------------------------------


@pytest.mark.integration
def test_write_load_script_writes_the_app_script(database_url: str, tmp_path: Path) -> None:
    _semantic_database(database_url)
    folder = tmp_path / "exports" / "qlik"

    with psycopg.connect(database_url, autocommit=True) as conn:
        written = write_load_script(conn, folder, "semantic_star", "fct_sales")
        again = write_load_script(conn, folder, "semantic_star", "fct_sales")

    data = (folder / "semantic_star.qvs").read_bytes()
    assert written == QlikScriptFile(
        kind="qlik_load_script",
        path=folder / "semantic_star.qvs",
        rows=4,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    assert again == written
    assert data.decode() == load_script(qlik_app_tables(STAR, "fct_sales"))
    assert '"semantic"."fct_sales"' in data.decode() and "fct_orders" not in data.decode()
    assert [p.name for p in folder.iterdir()] == ["semantic_star.qvs"]  # no temporary file left


@pytest.mark.integration
def test_write_load_script_refuses_a_shared_non_key_field(database_url: str, tmp_path: Path) -> None:
    _semantic_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("alter table semantic.fct_sales add column customer_email text")
        conn.execute("alter table semantic.dim_customer add column date_key text")

        with pytest.raises(TransformError) as raised:
            write_load_script(conn, tmp_path / "out", "semantic_star", "fct_sales")

    message = str(raised.value)
    assert "3 problem(s)" in message
    assert "field customer_email is in tables dim_customer and fct_sales" in message
    assert "synthetic key: tables dim_customer and fct_sales share 3 fields" in message
    assert "circular reference: tables dim_customer and fct_sales" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_write_load_script_keeps_the_previous_script_on_failure(database_url: str, tmp_path: Path) -> None:
    _semantic_database(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        written = write_load_script(conn, tmp_path, "app", "fct_sales")
        conn.execute("alter table semantic.customer_360 add column order_status text")
        with pytest.raises(
            TransformError, match="field order_status is in tables customer_360 and fct_orders"
        ):
            write_load_script(conn, tmp_path, "app", "fct_sales")

    assert hashlib.sha256(written.path.read_bytes()).hexdigest() == written.sha256
    assert [p.name for p in tmp_path.iterdir()] == ["app.qvs"]


@pytest.mark.integration
def test_write_load_script_needs_fct_sales(database_url: str, tmp_path: Path) -> None:
    apply_migrations(Database(database_url, base_delay_s=0.001))
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(TransformError, match=r"no table semantic\.fct_sales"):
            write_load_script(conn, tmp_path, "semantic_star", "fct_sales")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_main_writes_the_script_or_exits_with_the_error_code(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _semantic_database(database_url)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path / "data"))
    # the apps come from the semantic job's last manifest: none yet
    assert main(["--out", str(tmp_path / "a")]) == exit_code_for(ConfigurationError("x"))
    assert "run the semantic job" in capsys.readouterr().err
    manifest = tmp_path / "data" / "dbt" / "semantic" / "target" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"nodes": {"model.semantic.fct_sales": APP_MODEL}}))

    assert main(["--out", str(tmp_path / "a")]) == 0
    assert "semantic_star.qvs (4 tables" in capsys.readouterr().out
    assert (tmp_path / "a" / "semantic_star.qvs").is_file()

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("alter table semantic.dim_product add column sales_quantity int")
    assert main(["--out", str(tmp_path / "b")]) == exit_code_for(TransformError("x"))
    assert "field sales_quantity is in tables dim_product and fct_sales" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
