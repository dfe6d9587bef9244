"""The Watershed upload: CSV, import template and xAPI JSON from ``semantic.watershed_statements``."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import etl_semantic._watershed as watershed
from etl_semantic._watershed import (
    CSV_HEADER,
    ExportFile,
    build_template,
    export_watershed,
    render_statement,
    validate_statement,
)
from etl_shared import Database, JobAudit, TransformError, apply_migrations

pytestmark = pytest.mark.integration

HOME = "https://shop.example.com"
VIEWED = "http://id.tincanapi.com/verb/viewed"
ADDED = "http://activitystrea.ms/schema/1.0/add"
PURCHASED = "http://id.tincanapi.com/verb/purchased"
PRODUCT = "http://activitystrea.ms/schema/1.0/product"
ORDER = "https://shop.example.com/xapi/activities/order"
CET = timezone(timedelta(hours=1))


def _statement_id(source: str, source_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{HOME}/xapi/statements/{source}/{source_id}"))


ID_E1, ID_E2, ID_E3 = (_statement_id("web_event", e) for e in ("e-1001", "e-1002", "e-1003"))
ID_O1, ID_O2 = (_statement_id("order", o) for o in ("5001", "5002"))
# The two orders share a timestamp: the statement id breaks the tie.
FIRST_ORDER, SECOND_ORDER = sorted([(ID_O1, "5001"), (ID_O2, "5002")])

COLUMNS = (
    "ws_statement_id, ws_timestamp, ws_actor_home_page, ws_actor_account, ws_verb_id, ws_verb_display,"
    " ws_object_id, ws_object_type, ws_object_name, ws_result_amount, ws_result_currency, ws_source,"
    " ws_source_id"
)
ROWS: list[tuple[Any, ...]] = [
    (ID_E1, datetime(2024, 3, 1, 9, 15, 30, 123456, tzinfo=UTC), HOME, "cust_7f3a9c", VIEWED, "viewed",
     f"{HOME}/products/42", PRODUCT, "Espresso Machine", None, None, "web_event", "e-1001"),
    # 09:16:02.5 at +01:00 is 08:16:02.500Z: the first statement.
    (ID_E2, datetime(2024, 3, 1, 9, 16, 2, 500000, tzinfo=CET), HOME, "cust_21be04", VIEWED, "viewed",
     f"{HOME}/products/7", PRODUCT, "Crème brûlée torch (日本製)", None, None, "web_event", "e-1002"),
    (ID_O1, datetime(2024, 3, 1, 10, 0, tzinfo=UTC), HOME, "cust_7f3a9c", PURCHASED, "purchased",
     f"{HOME}/orders/5001", ORDER, 'Order 5001: "Deluxe" grinder, 2 pcs', Decimal("249.90"), "USD", "order",
     "5001"),
    (ID_O2, datetime(2024, 3, 1, 10, 0, tzinfo=UTC), HOME, "cust_21be04", PURCHASED, "purchased",
     f"{HOME}/orders/5002", ORDER, "Order 5002", Decimal("1234567.5"), "USD", "order", "5002"),
    (ID_E3, datetime(2024, 3, 2, 18, 45, 59, 999999, tzinfo=UTC), HOME, "cust_21be04", ADDED, "added",
     f"{HOME}/products/42", PRODUCT, "Espresso Machine", None, None, "web_event", "e-1003"),
]  # fmt: skip

NAMES = {
    "5001": ('"Order 5001: ""Deluxe"" grinder, 2 pcs"', "249.90", f"{HOME}/orders/5001", "cust_7f3a9c"),
    "5002": ("Order 5002", "1234567.50", f"{HOME}/orders/5002", "cust_21be04"),
}


def _order_line(statement_id: str, order: str) -> str:
    name, amount, object_id, account = NAMES[order]
    return (
        f"{statement_id},2024-03-01T10:00:00.000Z,{HOME},{account},{PURCHASED},purchased,"
        f"{object_id},{ORDER},{name},{amount},USD,order,{order}"
    )


EXPECTED_CSV = (
    "\n".join(
        [
            "statement_id,timestamp,actor_home_page,actor_account_name,verb_id,verb_display,object_id,"
            "object_type,object_name,result_amount,result_currency,source,source_id",
            f"{ID_E2},2024-03-01T08:16:02.500Z,{HOME},cust_21be04,{VIEWED},viewed,{HOME}/products/7,{PRODUCT},"
            "Crème brûlée torch (日本製),,,web_event,e-1002",
            f"{ID_E1},2024-03-01T09:15:30.123Z,{HOME},cust_7f3a9c,{VIEWED},viewed,{HOME}/products/42,{PRODUCT},"
            "Espresso Machine,,,web_event,e-1001",
            _order_line(*FIRST_ORDER),
            _order_line(*SECOND_ORDER),
            f"{ID_E3},2024-03-02T18:45:59.999Z,{HOME},cust_21be04,{ADDED},added,{HOME}/products/42,{PRODUCT},"
            "Espresso Machine,,,web_event,e-1003",
        ]
    )
    + "\n"
)


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, base_delay_s=0.001)
    apply_migrations(database)
    with database.connect() as conn:
        conn.execute(
            """
            create table semantic.watershed_statements (
                ws_statement_id text not null,
                ws_timestamp timestamptz not null,
                ws_actor_home_page text not null,
                ws_actor_account text not null,
                ws_verb_id text not null,
                ws_verb_display text not null,
                ws_object_id text not null,
                ws_object_type text not null,
                ws_object_name text not null,
                ws_result_amount numeric(14, 2),
                ws_result_currency text,
                ws_source text not null,
                ws_source_id text not null
            )
            """
        )
        with conn.cursor() as cur:
            cur.executemany(
                f"insert into semantic.watershed_statements ({COLUMNS})"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                ROWS,
            )
    return database


def _export(db: Database, folder: Path, stem: str = "watershed") -> list[ExportFile]:
    with db.connect() as conn:
        return export_watershed(conn, folder, stem)


def _by_kind(files: list[ExportFile]) -> dict[str, ExportFile]:
    return {f.kind: f for f in files}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _xapi(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


# ---------------------------------------------------------------------------------------------------
# The three files


def test_export_writes_three_files_and_describes_them(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "upload" / "2024-03-02"
    files = _export(db, folder)

    assert [(f.kind, f.path, f.rows) for f in files] == [
        ("watershed_csv", folder / "watershed.csv", 5),
        ("watershed_template", folder / "watershed.template.json", 0),
        ("watershed_xapi", folder / "watershed.xapi.json", 5),
    ]
    assert sorted(p.name for p in folder.iterdir()) == [
        "watershed.csv",
        "watershed.template.json",
        "watershed.xapi.json",
    ]
    for file in files:
        data = file.path.read_bytes()
        assert file.bytes == len(data)
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert data.endswith(b"\n") and b"\r" not in data


def test_csv_header_and_rows_are_exact(db: Database, tmp_path: Path) -> None:
    csv_file = _by_kind(_export(db, tmp_path))["watershed_csv"]

    assert csv_file.path.read_bytes() == EXPECTED_CSV.encode("utf-8")
    rows = _csv_rows(csv_file.path)
    assert tuple(rows[0]) == CSV_HEADER
    names = {row["source_id"]: row["object_name"] for row in rows}
    assert names["5001"] == 'Order 5001: "Deluxe" grinder, 2 pcs'
    assert names["e-1002"] == "Crème brûlée torch (日本製)"


def test_template_file_is_the_documented_format(db: Database, tmp_path: Path) -> None:
    template = json.loads(_by_kind(_export(db, tmp_path))["watershed_template"].path.read_text("utf-8"))

    assert template == build_template()
    assert list(template)[:3] == ["format", "version", "xapi_version"]
    assert (template["format"], template["version"], template["xapi_version"]) == (
        "etl-watershed-csv-template",
        1,
        "1.0.3",
    )
    assert [c["name"] for c in template["columns"]] == list(CSV_HEADER)
    assert {c["name"] for c in template["columns"] if c["type"] == "number"} == {"result_amount"}
    assert {c["name"] for c in template["columns"] if not c["required"]} == {
        "result_amount",
        "result_currency",
    }


def test_template_renders_every_csv_row_into_the_xapi_statement(db: Database, tmp_path: Path) -> None:
    files = _by_kind(_export(db, tmp_path))
    template = json.loads(files["watershed_template"].path.read_text("utf-8"))
    rows = _csv_rows(files["watershed_csv"].path)
    statements = _xapi(files["watershed_xapi"].path)

    assert len(rows) == len(statements) == 5
    for row, statement in zip(rows, statements, strict=True):
        assert render_statement(template, row) == statement
    assert [s["id"] for s in statements] == [ID_E2, ID_E1, FIRST_ORDER[0], SECOND_ORDER[0], ID_E3]


def test_xapi_statements_have_the_documented_shape(db: Database, tmp_path: Path) -> None:
    path = _by_kind(_export(db, tmp_path))["watershed_xapi"].path
    statements = {s["id"]: s for s in _xapi(path)}

    assert statements[ID_O1] == {
        "id": ID_O1,
        "timestamp": "2024-03-01T10:00:00.000Z",
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": "cust_7f3a9c"}},
        "verb": {"id": PURCHASED, "display": {"en-US": "purchased"}},
        "object": {
            "objectType": "Activity",
            "id": f"{HOME}/orders/5001",
            "definition": {"type": ORDER, "name": {"en-US": 'Order 5001: "Deluxe" grinder, 2 pcs'}},
        },
        "result": {
            "extensions": {
                f"{HOME}/xapi/extensions/amount": Decimal("249.90"),
                f"{HOME}/xapi/extensions/currency": "USD",
            }
        },
        "context": {
            "platform": "web shop",
            "extensions": {f"{HOME}/xapi/extensions/source": {"type": "order", "id": "5001"}},
        },
    }
    assert "result" not in statements[ID_E2]
    assert statements[ID_E2]["object"]["definition"]["name"] == {"en-US": "Crème brûlée torch (日本製)"}
    text = path.read_text("utf-8")
    # Exact decimals, UTF-8 text, one statement per line.
    assert '"https://shop.example.com/xapi/extensions/amount":249.90,' in text
    assert '"https://shop.example.com/xapi/extensions/amount":1234567.50,' in text
    assert "日本製" in text and "\\u" not in text
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and text.count("\n") == 7


def test_every_exported_statement_is_valid(db: Database, tmp_path: Path) -> None:
    statements = _xapi(_by_kind(_export(db, tmp_path))["watershed_xapi"].path)
    assert [validate_statement(s) for s in statements] == [[]] * 5


def test_empty_table_gives_header_only_and_an_empty_array(db: Database, tmp_path: Path) -> None:
    with db.connect() as conn:
        conn.execute("delete from semantic.watershed_statements")
    files = _by_kind(_export(db, tmp_path))
    assert files["watershed_csv"].path.read_text("utf-8") == ",".join(CSV_HEADER) + "\n"
    assert files["watershed_xapi"].path.read_text("utf-8") == "[\n]\n"
    assert (files["watershed_csv"].rows, files["watershed_xapi"].rows) == (0, 0)


def test_rows_are_streamed_in_fetches(db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.connect() as conn:
        conn.execute(
            f"insert into semantic.watershed_statements ({COLUMNS})"
            " select md5('bulk' || i::text)::uuid::text, timestamptz '2024-04-01 00:00:00+00' + i * interval '1 s',"
            " %s, 'cust_bulk', %s, 'viewed', %s || '/products/' || i::text, %s, 'Product ' || i::text,"
            " null, null, 'web_event', 'bulk-' || i::text from generate_series(1, 23) as i",
            (HOME, VIEWED, HOME, PRODUCT),
        )
    monkeypatch.setattr(watershed, "FETCH_ROWS", 4)
    with pytest.raises(TransformError, match=r"must be a lower-case RFC 4122 UUID"):
        _export(db, tmp_path / "md5")  # md5 text is not an RFC 4122 UUID (no version and variant bits)

    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_statement_id = %s || lpad(substr(ws_source_id, 6), 12, '0')"
            " where ws_source = 'web_event' and ws_source_id like 'bulk-%%'",
            ("7d3c1c2e-4b1a-5c3d-9e4f-",),
        )
    files = _by_kind(_export(db, tmp_path / "ok"))
    assert files["watershed_csv"].rows == files["watershed_xapi"].rows == 28
    assert len(_xapi(files["watershed_xapi"].path)) == 28


def test_an_autocommit_connection_exports_the_same(db: Database, tmp_path: Path) -> None:
    """The job exports on an autocommit connection: the server-side cursor gets its own transaction."""
    expected = _export(db, tmp_path / "plain")
    with db.connect(autocommit=True) as conn:
        files = export_watershed(conn, tmp_path / "autocommit", "watershed")
    assert [f.sha256 for f in files] == [f.sha256 for f in expected]


def _bulk(db: Database, count: int = 23) -> None:
    """``count`` more valid web events, for reads of many fetches."""
    with db.connect() as conn:
        conn.execute(
            f"insert into semantic.watershed_statements ({COLUMNS})"
            " select '7d3c1c2e-4b1a-5c3d-9e4f-' || lpad(i::text, 12, '0'),"
            " timestamptz '2024-04-01 00:00:00+00' + (i / 2) * interval '1 s',"  # pairs share a timestamp
            " %s, 'cust_bulk', %s, 'viewed', %s || '/products/' || i::text, %s, 'Product ' || i::text,"
            " null, null, 'web_event', 'bulk-' || i::text from generate_series(1, %s) as i",
            (HOME, VIEWED, HOME, PRODUCT, count),
        )


def _kill_after(monkeypatch: pytest.MonkeyPatch, database_url: str, pid: int, rows: int) -> list[int]:
    """Terminate backend ``pid`` (from a second connection) once the export has built ``rows`` statements."""
    built: list[int] = []
    statement = watershed.WatershedExport._statement

    def build_then_kill(row: Any) -> dict[str, Any]:
        built.append(1)
        if len(built) == rows:
            with psycopg.connect(database_url, autocommit=True) as admin:
                assert admin.execute("select pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        return statement(row)

    monkeypatch.setattr(watershed.WatershedExport, "_statement", staticmethod(build_then_kill))
    return built


def test_a_connection_lost_mid_read_resumes_by_key_and_the_files_are_identical(
    db: Database,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _bulk(db)
    monkeypatch.setattr(watershed, "FETCH_ROWS", 4)
    expected = _export(db, tmp_path / "undisturbed")

    conn = db.open_connection(autocommit=True)
    try:
        _kill_after(monkeypatch, database_url, conn.info.backend_pid, rows=6)  # in the second fetch
        files = export_watershed(
            conn, tmp_path / "disturbed", "watershed", reconnect=lambda: db.open_connection(autocommit=True)
        )
    finally:
        conn.close()

    assert [(f.kind, f.rows, f.sha256) for f in files] == [(f.kind, f.rows, f.sha256) for f in expected]
    assert files[0].rows == 28
    assert (
        "watershed export of semantic.watershed_statements: connection lost mid-read (SQLSTATE 57P01"
        in caplog.text
    )
    assert "resuming after the last row read" in caplog.text


def test_without_reconnect_a_lost_connection_fails_the_export_and_leaves_no_file(
    db: Database, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bulk(db)
    monkeypatch.setattr(watershed, "FETCH_ROWS", 4)
    conn = db.open_connection(autocommit=True)
    try:
        _kill_after(monkeypatch, database_url, conn.info.backend_pid, rows=6)
        with pytest.raises(psycopg.OperationalError):
            export_watershed(conn, tmp_path / "out", "watershed")
    finally:
        conn.close()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary files were removed


def test_an_order_without_a_reporting_amount_keeps_its_currency(db: Database, tmp_path: Path) -> None:
    """The reporting amount is null while the FX rate is unknown: the statement has the currency only."""
    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_result_amount = null where ws_source_id = '5001'"
        )
    files = _by_kind(_export(db, tmp_path))
    template = json.loads(files["watershed_template"].path.read_text("utf-8"))
    rows = _csv_rows(files["watershed_csv"].path)
    statements = {s["id"]: s for s in _xapi(files["watershed_xapi"].path)}

    assert statements[ID_O1]["result"] == {"extensions": {f"{HOME}/xapi/extensions/currency": "USD"}}
    assert [render_statement(template, row) for row in rows] == list(statements.values())
    assert next(r for r in rows if r["source_id"] == "5001")["result_amount"] == ""


def test_rows_come_from_a_server_side_cursor(db: Database) -> None:
    with db.connect() as conn:
        rows = watershed._stream_rows(conn)
        first = next(rows)
        cursors = conn.execute("select name from pg_catalog.pg_cursors").fetchall()
        rest = list(rows)
    assert ("watershed_export",) in cursors
    assert [first.statement_id, *(r.statement_id for r in rest)] == [
        ID_E2,
        ID_E1,
        FIRST_ORDER[0],
        SECOND_ORDER[0],
        ID_E3,
    ]


# ---------------------------------------------------------------------------------------------------
# Determinism


def test_two_exports_of_the_same_table_are_byte_identical(db: Database, tmp_path: Path) -> None:
    first = _export(db, tmp_path / "first", "ws")
    second = _export(db, tmp_path / "second", "ws")
    again = _export(db, tmp_path / "first", "ws")  # over the previous files

    for a, b, c in zip(first, second, again, strict=True):
        assert a.sha256 == b.sha256 == c.sha256
        assert (a.rows, a.bytes) == (b.rows, b.bytes) == (c.rows, c.bytes)
        assert a.path.read_bytes() == b.path.read_bytes()


def test_a_changed_row_changes_the_checksums(db: Database, tmp_path: Path) -> None:
    before = _by_kind(_export(db, tmp_path / "before"))
    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_object_name = 'Espresso Machine Pro'"
            " where ws_source_id = 'e-1001'"
        )
    after = _by_kind(_export(db, tmp_path / "after"))

    assert after["watershed_csv"].sha256 != before["watershed_csv"].sha256
    assert after["watershed_xapi"].sha256 != before["watershed_xapi"].sha256
    assert after["watershed_template"].sha256 == before["watershed_template"].sha256


# ---------------------------------------------------------------------------------------------------
# Invalid rows


def test_an_invalid_row_raises_and_leaves_no_file(db: Database, tmp_path: Path) -> None:
    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_verb_id = 'viewed' where ws_source_id = 'e-1003'"
        )
    folder = tmp_path / "out"

    with pytest.raises(TransformError) as raised:
        _export(db, folder)

    assert f"statement {ID_E3}" in str(raised.value)
    assert "verb.id: must be an absolute IRI, not 'viewed'" in str(raised.value)
    assert list(folder.iterdir()) == []


def test_a_failed_export_keeps_the_previous_files(db: Database, tmp_path: Path) -> None:
    good = _export(db, tmp_path)
    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_source = 'CRM feed' where ws_source_id = '5002'"
        )

    with pytest.raises(
        TransformError,
        match=rf"invalid row \(CRM feed 5002\): statement {ID_O2}: ws_source: 'CRM feed' is not a name",
    ):
        _export(db, tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.path.name for f in good)
    for file in good:
        assert hashlib.sha256(file.path.read_bytes()).hexdigest() == file.sha256


def test_an_amount_without_currency_is_invalid(db: Database, tmp_path: Path) -> None:
    with db.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_result_currency = null where ws_source_id = '5002'"
        )
    with pytest.raises(
        TransformError, match=rf"statement {ID_O2}: ws_result_currency: is null but ws_result_amount"
    ):
        _export(db, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stem", ["", "..", "a/b"])
def test_a_file_stem_must_be_a_plain_name(db: Database, tmp_path: Path, stem: str) -> None:
    with pytest.raises(ValueError, match="file stem"):
        _export(db, tmp_path, stem)


# ---------------------------------------------------------------------------------------------------
# render_statement


def _csv_cells(**overrides: str) -> dict[str, str]:
    row = dict.fromkeys(CSV_HEADER, "x") | {"result_amount": "", "result_currency": ""}
    row.update(overrides)
    return row


def test_render_drops_the_result_of_a_row_without_amount() -> None:
    row = _csv_cells(actor_home_page=HOME, result_amount="", result_currency="", source="web_event")
    statement = render_statement(build_template(), row)
    assert "result" not in statement
    assert statement["context"]["extensions"] == {
        f"{HOME}/xapi/extensions/source": {"type": "web_event", "id": "x"}
    }


def test_render_makes_numbers_of_whole_numeric_placeholders_only() -> None:
    template = build_template()
    template["statement"]["result"]["response"] = "paid {result_amount} {result_currency}"
    row = _csv_cells(actor_home_page=HOME, result_amount="19.99", result_currency="EUR")
    result = render_statement(template, row)["result"]
    assert result["extensions"][f"{HOME}/xapi/extensions/amount"] == Decimal("19.99")
    assert result["response"] == "paid 19.99 EUR"


def test_render_keeps_an_empty_required_cell_and_refuses_bad_input() -> None:
    assert render_statement(build_template(), _csv_cells(object_name=""))["object"]["definition"]["name"] == {
        "en-US": ""
    }
    with pytest.raises(ValueError, match="not a number"):
        render_statement(build_template(), _csv_cells(result_amount="12,50"))
    with pytest.raises(ValueError, match="no column 'source_id'"):
        render_statement(build_template(), {k: v for k, v in _csv_cells().items() if k != "source_id"})
    unknown = build_template()
    unknown["statement"]["verb"]["id"] = "{verb}"
    with pytest.raises(ValueError, match=r"\{verb\} names no column"):
        render_statement(unknown, _csv_cells())
    with pytest.raises(ValueError, match="not a etl-watershed-csv-template"):
        render_statement({**build_template(), "version": 2}, _csv_cells())


# ---------------------------------------------------------------------------------------------------
# validate_statement

STATEMENT_ID = "2f1c6f0e-8d4b-5a7e-9c3d-1b2a3c4d5e6f"


def _valid_statement() -> dict[str, Any]:
    return {
        "id": STATEMENT_ID,
        "timestamp": "2024-03-01T10:00:00.000Z",
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": "cust_7f3a9c"}},
        "verb": {"id": VIEWED, "display": {"en-US": "viewed"}},
        "object": {
            "objectType": "Activity",
            "id": f"{HOME}/products/42",
            "definition": {
                "type": PRODUCT,
                "name": {"en-US": "Espresso Machine", "de-DE": "Espressomaschine"},
            },
        },
        "result": {"extensions": {f"{HOME}/xapi/extensions/amount": Decimal("1.00")}},
        "context": {"platform": "web shop", "extensions": {f"{HOME}/xapi/extensions/source": {"id": "1"}}},
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(statement: dict[str, Any]) -> None:
        node = statement
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(statement: dict[str, Any]) -> None:
        node = statement
        for key in parents:
            node = node[key]
        del node[last]

    return change


DEFECTS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("missing actor", _delete("actor"), "actor: is required"),
    ("missing verb", _delete("verb"), "verb: is required"),
    ("missing object", _delete("object"), "object: is required"),
    ("actor with two IFIs", _set("actor.mbox", "mailto:someone@example.com"),
     "actor: an Agent needs exactly one inverse functional identifier (found mbox, account)"),
    ("actor without IFI", _delete("actor.account"),
     "actor: an Agent needs exactly one inverse functional identifier (found none)"),
    ("account without homePage", _delete("actor.account.homePage"), "actor.account.homePage: is required"),
    ("account homePage not an IRL", _set("actor.account.homePage", "shop.example.com"),
     "actor.account.homePage: must be an http(s) IRL"),
    ("account with empty name", _set("actor.account.name", ""), "actor.account.name: must be a non-empty string"),
    ("non-IRI verb id", _set("verb.id", "viewed"), "verb.id: must be an absolute IRI, not 'viewed'"),
    ("http IRI without host", _set("verb.id", "http://"), "verb.id: must be an absolute IRI"),
    ("non-IRI object id", _set("object.id", "products/42"), "object.id: must be an absolute IRI"),
    ("unknown object type", _set("object.objectType", "Product"), "object.objectType: must be one of"),
    ("non-UUID id", _set("id", "statement-1"), "id: must be a lower-case RFC 4122 UUID"),
    ("upper-case UUID", _set("id", STATEMENT_ID.upper()), "id: must be a lower-case RFC 4122 UUID"),
    ("UUID without version bits", _set("id", "2f1c6f0e-8d4b-0a7e-9c3d-1b2a3c4d5e6f"), "id: must be a lower-case"),
    ("timestamp without zone", _set("timestamp", "2024-03-01T10:00:00"),
     "timestamp: must be ISO 8601 with a time zone"),
    ("timestamp not a date", _set("timestamp", "2024-02-30T10:00:00Z"), "timestamp: must be ISO 8601"),
    ("display not a language map", _set("verb.display", "viewed"), "verb.display: must be an object, not a string"),
    ("language map with a bad tag", _set("verb.display", {"en_US": "viewed"}),
     "verb.display.en_US: key is not an RFC 5646 language tag"),
    ("language map with a non-string", _set("object.definition.name", {"en-US": 42}),
     "object.definition.name.en-US: must be a string, not a number"),
    ("extension key not an IRI", _set("result.extensions", {"amount": 1}),
     "result.extensions['amount']: extension key is not an absolute IRI"),
    ("context extension key not an IRI", _set("context.extensions", {"source": "x"}),
     "context.extensions['source']: extension key is not an absolute IRI"),
    ("unknown top-level property", _set("source", "order"), ": source: unknown property"),
    ("unknown actor property", _set("actor.email", "a@example.com"), "actor.email: unknown property"),
]  # fmt: skip


def test_the_reference_statement_is_valid() -> None:
    assert validate_statement(_valid_statement()) == []


@pytest.mark.parametrize(("defect", "change", "expected"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_validate_statement_catches(
    defect: str, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    statement = _valid_statement()
    change(statement)

    problems = validate_statement(statement)

    assert problems, f"{defect} was not caught"
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"statement {statement['id']}: ") for p in problems), problems


def test_validate_statement_accepts_the_other_shapes_of_xapi() -> None:
    statement = _valid_statement()
    del statement["id"]  # optional in xAPI: the LRS assigns one
    statement["timestamp"] = "2024-03-01T11:00:00.5+01:00"
    statement["actor"] = {"objectType": "Group", "member": [{"mbox": "mailto:a@example.com"}]}
    statement["object"] = {"objectType": "StatementRef", "id": STATEMENT_ID}
    statement["context"]["language"] = "zh-Hant-TW"
    statement["version"] = "1.0.3"
    assert validate_statement(statement) == []

    sub = copy.deepcopy(_valid_statement())
    sub["object"] = {
        "objectType": "SubStatement",
        "actor": {"openid": "https://id.example.com/a"},
        "verb": {"id": "urn:x-verb:viewed"},
        "object": {"id": "urn:isbn:9780131103627"},
    }
    assert validate_statement(sub) == []
    sub["object"]["verb"]["id"] = "viewed"
    assert validate_statement(sub) == [
        f"statement {STATEMENT_ID}: object.verb.id: must be an absolute IRI, not 'viewed'"
    ]


def test_validate_statement_rejects_what_is_not_an_object() -> None:
    assert validate_statement([]) == ["statement (no id): statement: must be an object, not an array"]
    assert validate_statement(
        {"actor": {"account": {"homePage": HOME, "name": "n"}}, "verb": {"id": VIEWED}}
    ) == ["statement (no id): object: is required"]


# ---------------------------------------------------------------------------------------------------
# Audit


def test_record_exports_writes_ops_exports(db: Database, tmp_path: Path) -> None:
    audit = JobAudit(db, run_id="run-ws-1", zone="semantic", job_name="semantic")
    audit.start()
    files = _export(db, tmp_path)

    audit.record_exports(files)
    audit.record_exports(files)  # recording the same files again is harmless
    audit.record_exports([])

    with db.connect() as conn:
        rows = conn.execute(
            "select job_id, run_id, zone, kind, path, row_count, byte_count, sha256, exported_at <= now()"
            " from ops.exports order by kind"
        ).fetchall()
    assert rows == [
        (audit.job_id, "run-ws-1", "semantic", f.kind, str(f.path), f.rows, f.bytes, f.sha256, True)
        for f in sorted(files, key=lambda f: f.kind)
    ]


def test_ops_exports_has_the_documented_columns(database_url: str) -> None:
    apply_migrations(Database(database_url))
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "select column_name, data_type, is_nullable from information_schema.columns"
            " where table_schema = 'ops' and table_name = 'exports' order by ordinal_position"
        ).fetchall()
    assert columns == [
        ("job_id", "uuid", "NO"),
        ("run_id", "text", "NO"),
        ("zone", "text", "NO"),
        ("kind", "text", "NO"),
        ("path", "text", "NO"),
        ("row_count", "bigint", "NO"),
        ("byte_count", "bigint", "NO"),
        ("sha256", "text", "NO"),
        ("exported_at", "timestamp with time zone", "NO"),
    ]


def test_csv_module_reads_what_was_written(db: Database, tmp_path: Path) -> None:
    """The standard CSV reader (as an import tool would) gets the original values back."""
    text = _by_kind(_export(db, tmp_path))["watershed_csv"].path.read_text("utf-8")
    names = [row[8] for row in csv.reader(io.StringIO(text))][1:]
    assert sorted(names) == sorted(r[8] for r in ROWS)


# ---------------------------------------------------------------------------------------------------
# Voiding statements, the streaming validation and the fast encoder


def _voiding_statement(target: str = STATEMENT_ID) -> dict[str, Any]:
    return {
        "id": "6b1d2a3c-4e5f-5a6b-8c7d-0e1f2a3b4c5d",
        "timestamp": "2024-03-02T10:00:00.000Z",
        "actor": {"objectType": "Agent", "account": {"homePage": HOME, "name": "cust_7f3a9c"}},
        "verb": {"id": watershed.VOIDED_VERB, "display": {"en-US": "voided"}},
        "object": {"objectType": "StatementRef", "id": target},
    }


def test_a_voiding_statement_refers_to_the_voided_statement() -> None:
    assert validate_statement(_voiding_statement()) == []
    activity = _voiding_statement()
    activity["object"] = {"objectType": "Activity", "id": f"{HOME}/orders/5001"}
    assert any(
        "a voiding statement's object must be a StatementRef" in p for p in validate_statement(activity)
    )
    itself = _voiding_statement(target="6b1d2a3c-4e5f-5a6b-8c7d-0e1f2a3b4c5d")
    assert any("a statement cannot void itself" in p for p in validate_statement(itself))
    not_uuid = _voiding_statement(target="5001")
    assert any("object.id: must be a lower-case RFC 4122 UUID" in p for p in validate_statement(not_uuid))


def test_the_voiding_statement_of_a_row_is_valid_and_stable() -> None:
    row = watershed.WatershedRow(*ROWS[2])
    voided_at = datetime(2024, 3, 5, 6, 0, tzinfo=UTC)
    statement = watershed.voiding_statement(row, voided_at)
    assert validate_statement(statement) == []
    assert statement["object"] == {"objectType": "StatementRef", "id": ID_O1}
    assert statement["actor"]["account"] == {"homePage": HOME, "name": "cust_7f3a9c"}
    assert statement["timestamp"] == "2024-03-05T06:00:00.000Z"
    assert watershed.voiding_statement(row, voided_at) == statement  # the same id every time
    assert statement["id"] != ID_O1


@pytest.mark.parametrize(("defect", "change", "expected"), DEFECTS, ids=[d[0] for d in DEFECTS])
def test_the_streaming_checker_finds_what_the_full_validation_finds(
    defect: str, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    checker = watershed.StatementChecker()
    assert checker.problems(_valid_statement()) == []  # its shape is known now
    statement = _valid_statement()
    change(statement)
    assert checker.problems(statement) == validate_statement(statement) != [], defect


def test_the_streaming_checker_checks_every_rows_own_values() -> None:
    checker = watershed.StatementChecker()
    assert checker.problems(_valid_statement()) == []
    for path, value in (
        ("id", "not-a-uuid"),
        ("timestamp", "2024-13-01T00:00:00Z"),
        ("actor.account.name", ""),
        ("object.id", "no scheme"),
        ("object.definition.name", {"en-US": None}),
    ):
        statement = _valid_statement()
        _set(path, value)(statement)
        assert checker.problems(statement) == validate_statement(statement) != [], path
    other = _valid_statement()
    other["id"], other["object"]["id"] = "2f1c6f0e-8d4b-5a7e-9c3d-1b2a3c4d5e70", f"{HOME}/products/43"
    assert checker.problems(other) == []
    assert checker.problems(_voiding_statement()) == []
    assert checker.problems(_voiding_statement(target="6b1d2a3c-4e5f-5a6b-8c7d-0e1f2a3b4c5d")) != []


def test_the_fast_encoder_writes_what_the_exact_encoder_writes() -> None:
    for value in (
        _valid_statement(),
        _voiding_statement(),
        {
            "text": 'Crème "brûlée" \\ / \t\n\u2028\x1f\x7f 日本製',
            "amounts": [Decimal("0.10"), Decimal("1234567.50")],
        },
        {"empty": {}, "list": [], "none": None, "true": True, "n": 42},
    ):
        assert watershed.encode_json_bytes(value) == watershed.encode_json(value).encode("utf-8")
    with pytest.raises(TypeError):  # orjson's JSONEncodeError, from the ValueError of the NaN
        watershed.encode_json_bytes({"amount": Decimal("NaN")})


# ---------------------------------------------------------------------------------------------------
# The incremental export of a change ledger


@pytest.fixture
def ledger(db: Database) -> Database:
    """The test table with the change ledger's columns: every row created by run r1."""
    with db.connect() as conn:
        conn.execute(
            "alter table semantic.watershed_statements add column ws_row_hash text not null default 'h',"
            " add column ws_is_voided boolean not null default false,"
            " add column ws_run_id text not null default 'r1',"
            " add column ws_changed_at timestamptz not null default '2024-03-03T00:00:00Z'"
        )
    return db


def _changes(db: Database, folder: Path, run_id: str) -> dict[str, ExportFile]:
    return _by_kind(
        watershed.export_watershed_changes(db, folder, "watershed", run_id, job_id=str(uuid.uuid4()))
    )


def test_the_first_export_of_a_ledger_is_every_row_and_its_manifest(ledger: Database, tmp_path: Path) -> None:
    files = _changes(ledger, tmp_path, "r1")
    assert set(files) == {
        "watershed_csv",
        "watershed_voided_csv",
        "watershed_template",
        "watershed_xapi",
        "watershed_manifest",
    }
    assert files["watershed_csv"].path.read_text(encoding="utf-8") == EXPECTED_CSV
    assert files["watershed_voided_csv"].path.read_text() == ",".join(watershed.VOIDED_CSV_HEADER) + "\n"
    # the same statements as the full export of the same rows, byte for byte
    full = _by_kind(_export(ledger, tmp_path / "full"))
    assert files["watershed_xapi"].path.read_bytes() == full["watershed_xapi"].path.read_bytes()
    manifest = json.loads(files["watershed_manifest"].path.read_bytes())
    assert manifest["statements"] == 5 and manifest["export"] == "watershed"
    assert [(b["sequence"], b["run_id"], b["statements"], b["voided"]) for b in manifest["batches"]] == [
        (1, "r1", 5, 0)
    ]
    listed = {f["kind"]: f for f in manifest["batches"][0]["files"]}
    for kind, file in files.items():
        if kind != "watershed_manifest":
            assert listed[kind] == {
                "kind": kind,
                "name": file.path.name,
                "rows": file.rows,
                "bytes": file.bytes,
                "sha256": hashlib.sha256(file.path.read_bytes()).hexdigest(),
            }


def test_a_ledger_export_writes_only_the_runs_not_exported(ledger: Database, tmp_path: Path) -> None:
    first = _changes(ledger, tmp_path, "r1")
    first_bytes = {kind: f.path.read_bytes() for kind, f in first.items()}

    # nothing changed since: no batch, the manifest of the batches so far
    nothing = _changes(ledger, tmp_path, "r2")
    assert set(nothing) == {"watershed_manifest"}
    assert (
        json.loads(nothing["watershed_manifest"].path.read_bytes())["batches"]
        == json.loads(first_bytes["watershed_manifest"])["batches"]
    )

    # run r3 voids order 5001 and issues its new statement
    new_id = _statement_id("order", "5001-v2")
    with ledger.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_is_voided = true, ws_run_id = 'r3',"
            " ws_changed_at = '2024-03-04T05:06:07.891Z' where ws_statement_id = %s",
            (ID_O1,),
        )
        conn.execute(
            f"insert into semantic.watershed_statements ({COLUMNS}, ws_run_id)"
            f" select %s, ws_timestamp, ws_actor_home_page, ws_actor_account, ws_verb_id, ws_verb_display,"
            " ws_object_id, ws_object_type, ws_object_name, 260.00, ws_result_currency, ws_source, ws_source_id,"
            " 'r3' from semantic.watershed_statements where ws_statement_id = %s",
            (new_id, ID_O1),
        )
    third = _changes(ledger, tmp_path, "r3")
    statements = _xapi(third["watershed_xapi"].path)
    assert [s["verb"]["id"] for s in statements] == [watershed.VOIDED_VERB, PURCHASED]
    assert statements[0]["object"] == {"objectType": "StatementRef", "id": ID_O1}
    assert statements[0]["timestamp"] == "2024-03-04T05:06:07.891Z"
    assert statements[1]["id"] == new_id
    assert statements[1]["result"]["extensions"][f"{HOME}/xapi/extensions/amount"] == Decimal("260.00")
    assert [validate_statement(s) for s in statements] == [[], []]
    assert _csv_rows(third["watershed_voided_csv"].path) == [
        {
            "statement_id": statements[0]["id"],
            "timestamp": "2024-03-04T05:06:07.891Z",
            "actor_home_page": HOME,
            "actor_account_name": "cust_7f3a9c",
            "voided_statement_id": ID_O1,
        }
    ]
    assert [r["statement_id"] for r in _csv_rows(third["watershed_csv"].path)] == [new_id]
    manifest = json.loads(third["watershed_manifest"].path.read_bytes())
    assert [(b["run_id"], b["statements"], b["voided"]) for b in manifest["batches"]] == [
        ("r1", 5, 0),
        ("r3", 1, 1),
    ]
    assert manifest["statements"] == 5

    # a rerun of r1 and of r3 writes the same bytes as before
    third_bytes = {kind: f.path.read_bytes() for kind, f in third.items()}
    assert {k: f.path.read_bytes() for k, f in _changes(ledger, tmp_path, "r3").items()} == third_bytes
    again = _changes(ledger, tmp_path, "r1")
    # (r1's rows are its own but for the one r3 voided since: only the manifest of r1 is the same)
    assert again["watershed_manifest"].path.read_bytes() == first_bytes["watershed_manifest"]


def test_an_invalid_row_in_a_ledger_export_leaves_no_batch(ledger: Database, tmp_path: Path) -> None:
    with ledger.connect() as conn:
        conn.execute(
            "update semantic.watershed_statements set ws_object_id = 'no scheme' where ws_source_id = 'e-1002'"
        )
    with pytest.raises(TransformError, match=r"object\.id: must be an absolute IRI"):
        _changes(ledger, tmp_path, "r1")
    assert list(tmp_path.iterdir()) == []
    with ledger.connect() as conn:
        assert conn.execute("select count(*) from ops.export_batches").fetchone() == (0,)
