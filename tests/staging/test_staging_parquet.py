"""Parquet files: real files written with pyarrow, read by record batches, values stored exactly."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from extraction_memory import peak_extraction_kib

from etl_shared import SourceFatalError
from etl_staging import Batch, FileExtractor, Payload
from etl_staging._config import FileEntity
from etl_staging.cli import main

PARIS = "Europe/Paris"


def extractor(tmp_path: Path, name: str, *, batch_size: int = 100, **entity: Any) -> FileExtractor:
    config = FileEntity.model_validate(
        {
            "name": "things",
            "keep_payload": False,
            "files": [{"path": f"{{data_dir}}/{name}", "format": "parquet"}],
            **entity,
        }
    )
    return FileExtractor("src", config, data_dir=tmp_path, batch_size=batch_size)


def batches(ex: FileExtractor) -> list[Batch]:
    return [item for item in ex.extract() if isinstance(item, Batch)]


def fatal(ex: FileExtractor) -> str:
    with pytest.raises(SourceFatalError) as info:
        list(ex.extract())
    return str(info.value)


# Every type, with its extremes, and what the stored batch holds for it (JSON numbers parsed as
# Decimal where they have a fraction, so that a digit lost or added shows).
TYPES: list[tuple[str, pa.DataType, list[Any], list[Any]]] = [
    ("i64", pa.int64(), [-(2**63), 2**63 - 1, None], [-(2**63), 2**63 - 1, None]),
    ("u64", pa.uint64(), [0, 2**64 - 1, None], [0, 2**64 - 1, None]),
    ("i8", pa.int8(), [-128, 127, None], [-128, 127, None]),
    ("flag", pa.bool_(), [True, False, None], [True, False, None]),
    ("text", pa.string(), ["Zürich \u2603", "", None], ["Zürich \u2603", "", None]),
    (
        "amount",
        pa.decimal128(38, 9),
        [Decimal("12345678901234567890.123456789"), Decimal("-0.100000000"), None],
        [Decimal("12345678901234567890.123456789"), Decimal("-0.100000000"), None],
    ),
    ("wide", pa.decimal256(76, 0), [Decimal(10**75), Decimal(-1), None], [10**75, -1, None]),
    ("f64", pa.float64(), [0.1, 1e300, None], [Decimal("0.1"), Decimal("1e+300"), None]),
    ("f32", pa.float32(), [0.1, 3.4e38, None], [Decimal("0.1"), Decimal("3.4E+38"), None]),
    (
        "ts_ns_zone",
        pa.timestamp("ns", tz=PARIS),
        [1_000_000_000_123_456_789, -1, None],
        ["2001-09-09T03:46:40.123456789+02:00", "1970-01-01T00:59:59.999999999+01:00", None],
    ),
    (
        "ts_ns",
        pa.timestamp("ns"),
        [1_700_000_000_000_000_001, 0, None],
        ["2023-11-14T22:13:20.000000001", "1970-01-01T00:00:00.000000000", None],
    ),
    (
        "ts_us_utc",
        pa.timestamp("us", tz="UTC"),
        [
            dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
            dt.datetime(1, 1, 1, tzinfo=dt.UTC),
            None,
        ],
        ["2024-02-29T23:59:59.999999+00:00", "0001-01-01T00:00:00.000000+00:00", None],
    ),
    (
        "ts_ms",
        pa.timestamp("ms"),
        [dt.datetime(2024, 1, 1, 12, 0, 0, 5000), dt.datetime(2024, 1, 1), None],
        ["2024-01-01T12:00:00.005", "2024-01-01T00:00:00.000", None],
    ),
    (
        "ts_s",  # Parquet has no unit of seconds: pyarrow writes them as milliseconds
        pa.timestamp("s", tz="+05:30"),
        [0, 86_400, None],
        ["1970-01-01T05:30:00.000+05:30", "1970-01-02T05:30:00.000+05:30", None],
    ),
    (
        "day",
        pa.date32(),
        [dt.date(2024, 2, 29), dt.date(9999, 12, 31), None],
        ["2024-02-29", "9999-12-31", None],
    ),
    (
        "at_us",
        pa.time64("us"),
        [dt.time(23, 59, 59, 999999), dt.time(0), None],
        ["23:59:59.999999", "00:00:00.000000", None],
    ),
    (
        "at_ns",
        pa.time64("ns"),
        [1, 86_399_999_999_999, None],
        ["00:00:00.000000001", "23:59:59.999999999", None],
    ),
    (
        "at_ms",
        pa.time32("ms"),
        [dt.time(8, 30, 0, 250000), dt.time(0), None],
        ["08:30:00.250", "00:00:00.000", None],
    ),
    ("blob", pa.binary(), [b"\x00\xff\x10", b"", None], ["AP8Q", "", None]),
    ("fixed", pa.binary(2), [b"ab", b"\x00\x00", None], ["YWI=", "AAA=", None]),
    ("wait", pa.duration("ms"), [1500, -1, None], [Decimal("1.500"), Decimal("-0.001"), None]),
    ("label", pa.dictionary(pa.int32(), pa.string()), ["a", "b", None], ["a", "b", None]),
]
NESTED: list[tuple[str, pa.DataType, list[Any], list[Any]]] = [
    ("ints", pa.list_(pa.int64()), [[1, 2, None], [], None], [[1, 2, None], [], None]),
    (
        "stamps",
        pa.large_list(pa.timestamp("ns", tz="UTC")),
        [[1], [], None],
        [["1970-01-01T00:00:00.000000001+00:00"], [], None],
    ),
    (
        "pair",
        pa.list_(pa.float32(), 2),
        [[0.1, 0.2], [1.0, 2.0], None],
        [[Decimal("0.1"), Decimal("0.2")], [1, 2], None],
    ),
    (
        "address",
        pa.struct([("city", pa.string()), ("zip", pa.string()), ("geo", pa.struct([("lat", pa.float64())]))]),
        [
            {"city": "Berlin", "zip": "10115", "geo": {"lat": 52.52}},
            {"city": None, "zip": None, "geo": None},
            None,
        ],
        [
            {"city": "Berlin", "zip": "10115", "geo": {"lat": Decimal("52.52")}},
            {"city": None, "zip": None, "geo": None},
            None,
        ],
    ),
    (
        "attributes",
        pa.map_(pa.string(), pa.decimal128(10, 2)),
        [[("size", Decimal("1.50")), ("weight", Decimal("2.00"))], [], None],
        [{"size": Decimal("1.50"), "weight": Decimal("2.00")}, {}, None],
    ),
    (
        "codes",
        pa.map_(pa.int32(), pa.string()),
        [[(1, "a"), (2, "b")], [], None],
        [[[1, "a"], [2, "b"]], [], None],
    ),
    (
        "events",
        pa.list_(pa.struct([("at", pa.timestamp("ns")), ("n", pa.uint64())])),
        [[{"at": 5, "n": 2**64 - 1}], [], None],
        [[{"at": "1970-01-01T00:00:00.000000005", "n": 2**64 - 1}], [], None],
    ),
]


def typed_table(columns: list[tuple[str, pa.DataType, list[Any], list[Any]]]) -> pa.Table:
    return pa.table({name: pa.array(values, type=arrow_type) for name, arrow_type, values, _ in columns})


def test_batches_are_the_schemas_columns_in_order(tmp_path: Path) -> None:
    pq.write_table(typed_table(TYPES), tmp_path / "all.parquet")

    (batch,) = batches(extractor(tmp_path, "all.parquet"))

    assert batch.columns == [name for name, *_ in TYPES]
    assert batch.header is True
    assert batch.json_numbers is True
    assert batch.where is not None
    assert batch.where(2) == f"file {tmp_path / 'all.parquet'}, row 3"


def test_rename_applies_to_the_column_names(tmp_path: Path) -> None:
    pq.write_table(pa.table({"ID": [1], "Name": ["a"]}), tmp_path / "r.parquet")
    config = {"path": "{data_dir}/r.parquet", "format": "parquet", "rename": {"ID": "id", "Name": "name"}}
    entity = FileEntity.model_validate({"name": "e", "keep_payload": False, "files": [config]})

    found = batches(FileExtractor("s", entity, data_dir=tmp_path, batch_size=10))

    assert [(b.columns, b.rows) for b in found] == [(["id", "name"], [[1, "a"]])]


def test_a_file_larger_than_batch_size_streams_in_batches_with_their_row_numbers(tmp_path: Path) -> None:
    table = pa.table({"n": pa.array(range(2500), pa.int64()), "square": [i * i for i in range(2500)]})
    pq.write_table(table, tmp_path / "n.parquet", row_group_size=700)  # batches cross row groups

    found = batches(extractor(tmp_path, "n.parquet", batch_size=1000))

    assert sum(len(b.rows) for b in found) == 2500
    assert all(len(b.rows) <= 1000 for b in found) and len(found) >= 3
    assert [row[0] for b in found for row in b.rows] == list(range(2500))
    second = found[1]
    assert second.where is not None
    assert second.where(0) == f"file {tmp_path / 'n.parquet'}, row {second.rows[0][0] + 1}"


def test_float_nan_and_infinities_are_stored_as_named_strings(tmp_path: Path) -> None:
    table = pa.table(
        {
            "f64": pa.array([float("nan"), float("inf"), float("-inf"), 1.5]),
            "f32": pa.array([float("nan"), float("inf"), float("-inf"), 1.5], pa.float32()),
            "in_list": pa.array([[float("nan")], [], None, [2.0]]),
        }
    )
    pq.write_table(table, tmp_path / "nan.parquet")

    (batch,) = batches(extractor(tmp_path, "nan.parquet"))

    assert batch.rows == [
        ["NaN", "NaN", ["NaN"]],
        ["Infinity", "Infinity", []],
        ["-Infinity", "-Infinity", None],
        [1.5, Decimal("1.5"), [2.0]],
    ]


def test_a_value_json_cannot_hold_names_its_row_and_column(tmp_path: Path) -> None:
    table = pa.table({"id": [1, 2, 3], "at": pa.array([0, 0, 2**62], pa.timestamp("us"))})  # year ~146,000
    pq.write_table(table, tmp_path / "far.parquet")

    message = fatal(extractor(tmp_path, "far.parquet"))

    assert f"file {tmp_path / 'far.parquet'}, row 3, column 'at'" in message


def test_a_map_with_a_key_twice_names_its_row(tmp_path: Path) -> None:
    table = pa.table({"m": pa.array([[("a", 1)], [("a", 1), ("a", 2)]], pa.map_(pa.string(), pa.int64()))})
    pq.write_table(table, tmp_path / "twice.parquet")

    message = fatal(extractor(tmp_path, "twice.parquet"))

    assert "row 2, column 'm'" in message
    assert "same key twice" in message


def test_a_corrupt_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "junk.parquet").write_bytes(b"PAR1 this is not parquet at all" * 10)

    message = fatal(extractor(tmp_path, "junk.parquet"))

    assert str(tmp_path / "junk.parquet") in message
    assert "not a readable Parquet file" in message


def test_a_truncated_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    pq.write_table(typed_table(TYPES), tmp_path / "whole.parquet")
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])

    message = fatal(extractor(tmp_path, "cut.parquet"))

    assert str(tmp_path / "cut.parquet") in message


def test_damaged_pages_are_a_source_error_naming_the_file(tmp_path: Path) -> None:
    table = pa.table({"text": [f"row {i} " * 20 for i in range(5000)]})
    pq.write_table(table, tmp_path / "ok.parquet", compression="snappy")
    data = bytearray((tmp_path / "ok.parquet").read_bytes())
    for offset in range(200, len(data) // 2, 97):  # the pages; the footer stays readable
        data[offset] ^= 0xFF
    (tmp_path / "bad.parquet").write_bytes(bytes(data))

    message = fatal(extractor(tmp_path, "bad.parquet"))

    assert str(tmp_path / "bad.parquet") in message


def test_a_parquet_file_in_a_zip_or_gzip_is_refused_naming_it(tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": [1]}), tmp_path / "plain.parquet")
    data = (tmp_path / "plain.parquet").read_bytes()
    (tmp_path / "one.parquet.gz").write_bytes(gzip.compress(data))
    with zipfile.ZipFile(tmp_path / "drop.zip", "w") as archive:
        archive.writestr("inner.parquet", data)

    gz = fatal(extractor(tmp_path, "one.parquet.gz"))
    zipped = fatal(extractor(tmp_path, "drop.zip"))

    assert str(tmp_path / "one.parquet.gz") in gz and "seekable" in gz
    assert f"{tmp_path / 'drop.zip'}!inner.parquet" in zipped and "zip archive or gzip" in zipped


def test_keep_payload_stores_the_file_bytes_as_fetched(tmp_path: Path) -> None:
    table = pa.table(
        {"n": pa.array(range(20_000), pa.int64()), "text": [f"value {i}" for i in range(20_000)]}
    )
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=5000)
    config = FileEntity.model_validate(
        {"name": "e", "keep_payload": True, "files": [{"path": "{data_dir}/p.parquet", "format": "parquet"}]}
    )
    items = list(
        FileExtractor("s", config, data_dir=tmp_path, batch_size=5000, payload_chunk_bytes=10_000).extract()
    )

    payloads = [item for item in items if isinstance(item, Payload)]
    assert b"".join(p.body for p in payloads) == (tmp_path / "p.parquet").read_bytes()
    assert {p.content_type for p in payloads} == {"application/vnd.apache.parquet"}
    assert sum(len(b.rows) for b in items if isinstance(b, Batch)) == 20_000
    # the payload chunks come while the batches are read, not all before them
    kinds = [type(item).__name__ for item in items]
    assert kinds.index("Batch") < len(kinds) - 1 - kinds[::-1].index("Payload")


# ------------------------------------------------------------------------- memory


def _write_rows(path: Path, count: int) -> None:
    """``count`` rows of mostly incompressible text, in one row group (pyarrow's default size)."""
    texts = [os.urandom(60).hex() for _ in range(count)]
    table = pa.table(
        {"id": pa.array(range(count), pa.int64()), "text": texts, "amount": [i / 7 for i in range(count)]}
    )
    pq.write_table(table, path)


def test_peak_memory_stays_flat_when_the_file_doubles(tmp_path: Path) -> None:
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    _write_rows(small, 200_000)
    _write_rows(large, 400_000)  # ~60 MB in one row group: read whole, it would show

    (small_count, small_rss), (large_count, large_rss) = (
        peak_extraction_kib(tmp_path, {"path": str(small), "format": "parquet"}, batch_size=5000),
        peak_extraction_kib(tmp_path, {"path": str(large), "format": "parquet"}, batch_size=5000),
    )

    assert (small_count, large_count) == (200_000, 400_000)
    assert large_rss < small_rss * 1.3, json.dumps({"small_kib": small_rss, "large_kib": large_rss})


# ------------------------------------------------------------------------- the job


SOURCES = """
sources:
  - name: lake
    kind: file
    batch_size: 2
    entities:
      - name: typed
        files: [{path: "{data_dir}/typed.parquet", format: parquet}]
      - name: nested
        keep_payload: false
        files: [{path: "{data_dir}/nested.parquet", format: parquet}]
"""


@pytest.fixture
def env(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES)
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    return tmp_path


def stored(url: str, entity: str) -> tuple[list[str], list[list[Any]]]:
    """The committed batches of an entity as stored, numbers with a fraction read as Decimal."""
    with psycopg.connect(url) as conn:
        texts = conn.execute(
            "select b.data::text from staging.pull_batches b join staging.pulls p using (pull_id)"
            " where p.status = 'committed' and p.entity = %s order by b.batch_no",
            (entity,),
        ).fetchall()
    columns: list[str] = []
    rows: list[list[Any]] = []
    for (text,) in texts:
        batch = json.loads(text, parse_float=Decimal)
        columns = batch["columns"]
        rows += batch["rows"]
    return columns, rows


@pytest.mark.integration
def test_every_type_is_stored_exactly(env: Path, database_url: str) -> None:
    pq.write_table(typed_table(TYPES), env / "typed.parquet")
    pq.write_table(typed_table(NESTED), env / "nested.parquet")

    assert main(["run"]) == 0

    for entity, columns in (("typed", TYPES), ("nested", NESTED)):
        names, rows = stored(database_url, entity)
        assert names == [name for name, *_ in columns]
        assert len(rows) == 3  # in two batches (batch_size 2)
        for index, (name, _type, _values, expected) in enumerate(columns):
            assert [row[index] for row in rows] == expected, name
    with psycopg.connect(database_url) as conn:
        payloads = conn.execute(
            "select y.content_type, y.body from staging.pull_payloads y join staging.pulls p using (pull_id)"
            " where p.entity = 'typed' order by y.seq"
        ).fetchall()
        batch_counts = conn.execute(
            "select p.entity, p.batch_count from staging.pulls p where p.status = 'committed' order by p.entity"
        ).fetchall()
    assert {content_type for content_type, _ in payloads} == {"application/vnd.apache.parquet"}
    assert b"".join(body for _, body in payloads) == (env / "typed.parquet").read_bytes()
    assert batch_counts == [("nested", 2), ("typed", 2)]
