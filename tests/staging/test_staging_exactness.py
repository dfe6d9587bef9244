"""Staging keeps what a file sent, exactly, or says where it could not: numbers, bad bytes, empty
files, bad records set aside, zip members traced, JSON documents streamed."""

from __future__ import annotations

import json
import textwrap
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from extraction_memory import peak_extraction_kib
from ops_support import rows

from etl_shared import Database, SourceFatalError, apply_migrations
from etl_staging import FileExtractor
from etl_staging._config import FileEntity
from etl_staging._extract import locate_decode_error
from etl_staging._json import loads, needs_exact
from etl_staging._raw import encode_batch
from etl_staging._rest._client import _parse_json
from etl_staging.cli import main

#: numbers a 64-bit float does not keep, and some it does (their stored value must be theirs too)
NUMBERS = [
    "1e400",
    "1E-400",
    "123456789012345678901234.5678",
    "18446744073709551617",
    "-18446744073709551617",
    "0.1",
    "1.50",
    "-0.0",
    "12345678901234567890123",
    "3.141592653589793238462643383279",
    "9223372036854775807",
    "42",
    "2.5e-3",
]


def entity(**options: Any) -> FileEntity:
    return FileEntity.model_validate({"name": "things", **options})


def sources(tmp_path: Path, entity_yaml: str) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(
        "sources:\n  - name: src\n    kind: file\n    batch_size: 2\n    entities:\n"
        + textwrap.indent(textwrap.dedent(entity_yaml), "      "),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(tmp_path / "sources.yml"))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    return database_url


def pulls(url: str) -> list[tuple[Any, ...]]:
    return rows(url, "select status, record_count, metadata, error from staging.pulls order by started_at")


# ------------------------------------------------------------------------------- numbers


def test_the_fast_path_is_taken_only_where_a_float_keeps_the_number() -> None:
    assert not needs_exact(b'{"id": 12, "price": 19.99, "at": "2026-01-01T10:00:00.123456Z"}')
    assert not needs_exact(b'{"phone": "+4412345678901", "sku": "SKU-032631", "city": "Krak\xc3\xb3w"}')
    assert needs_exact(b'{"uuid": "3e4f1e2d"}')  # a digit and an "e" in a string: the exact path, same values
    for number in ("1e5", "0.0000000000000001", "1234567890123.4567", "12345678901234567"):
        assert needs_exact(('{"x": ' + number + "}").encode())
        assert needs_exact("[" + number + "]")
    # a match inside a string only costs the exact parser, never a value
    assert loads(b'{"s": "a:12345678901234567890", "x": 1.5}') == {"s": "a:12345678901234567890", "x": 1.5}


def test_every_json_number_is_written_back_with_its_exact_value() -> None:
    document = "[" + ", ".join(NUMBERS) + "]"
    values = loads(document.encode())
    encoded = encode_batch(["v"], [[value] for value in values], json_numbers=True)
    written = json.loads(encoded, parse_float=Decimal, parse_int=Decimal)["rows"]
    assert [row[0] for row in written] == [Decimal(n) for n in NUMBERS]


def test_rest_bodies_keep_their_numbers() -> None:
    body = b'{"data": [{"id": 18446744073709551617, "amount": 123456789012345678901234.5678, "r": 1e400}]}'
    (record,) = _parse_json(body)["data"]
    assert record == {
        "id": 18446744073709551617,
        "amount": Decimal("123456789012345678901234.5678"),
        "r": Decimal("1e400"),
    }


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_numbers_are_stored_exactly_in_the_warehouse(env: str, tmp_path: Path, fmt: str) -> None:
    records = [f'{{"id": {i}, "value": {number}}}' for i, number in enumerate(NUMBERS)]
    text = (
        "\n".join(records) + "\n" if fmt == "jsonl" else '{"data": {"items": [' + ", ".join(records) + "]}}"
    )
    (tmp_path / f"n.{fmt}").write_text(text, encoding="utf-8")
    records_path = ", records_path: data.items" if fmt == "json" else ""
    sources(
        tmp_path,
        f'- name: numbers\n  files: [{{path: "{{data_dir}}/n.{fmt}", format: {fmt}{records_path}}}]\n',
    )

    assert main(["run"]) == 0

    stored = rows(
        env,
        "select r.value ->> 1 from staging.pull_batches as b"
        " cross join lateral jsonb_array_elements(b.data -> 'rows') as r (value)"
        " order by b.batch_no, (r.value ->> 0)::int",
    )
    assert [Decimal(value) for (value,) in stored] == [Decimal(n) for n in NUMBERS]
    # and as numbers, not strings: the warehouse compares them as numerics
    assert rows(
        env,
        "select count(*) from staging.pull_batches as b"
        " cross join lateral jsonb_array_elements(b.data -> 'rows') as r (value)"
        " where jsonb_typeof(r.value -> 1) = 'number'",
    ) == [(len(NUMBERS),)]


# ------------------------------------------------------------------------------ bad bytes


@pytest.mark.integration
def test_a_nul_in_a_csv_fails_the_pull_naming_file_and_line(env: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"id,name\n1,Ann\n2,B\x00b\n3,Cy\n")
    sources(tmp_path, '- name: people\n  files: [{path: "{data_dir}/people.csv", format: csv}]\n')

    assert main(["run"]) == 3

    ((status, _, _, error),) = pulls(env)
    assert status == "failed"
    assert f"file {path}, line 3: a NUL character" in error
    assert "UntranslatableCharacter" not in error
    assert rows(env, "select count(*) from staging.pull_batches") == [(0,)]


@pytest.mark.integration
def test_a_nul_escape_in_json_lines_and_in_a_json_document_names_its_record(env: str, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"id": 1}\n{"id": 2, "n": "x\\u0000y"}\n', encoding="utf-8")
    sources(tmp_path, '- name: lines\n  files: [{path: "{data_dir}/a.jsonl", format: jsonl}]\n')
    assert main(["run"]) == 3
    assert "a.jsonl, line 2: a NUL character" in pulls(env)[-1][3]

    (tmp_path / "b.json").write_text('[{"id": 1}, {"id": 2, "n": {"k": ["x\\u0000"]}}]', encoding="utf-8")
    sources(tmp_path, '- name: doc\n  files: [{path: "{data_dir}/b.json", format: json}]\n')
    assert main(["run"]) == 3
    error = pulls(env)[-1][3]
    assert "record 2 of the pull" in error and "b.json, record 2" in error and "field 'n'" in error


def test_invalid_utf8_in_json_lines_gives_the_line_and_the_byte_of_the_file(tmp_path: Path) -> None:
    good = '{"id": 1, "name": "padding to move the bad byte well past a read buffer"}\n'
    path = tmp_path / "r.jsonl"
    path.write_bytes(good.encode() * 3011 + b'{"id": 2, "name": "bad \xff"}\n')
    ex = FileExtractor(
        "src",
        entity(files=[{"path": "{data_dir}/r.jsonl", "format": "jsonl"}]),
        data_dir=tmp_path,
        batch_size=100,
    )
    with pytest.raises(SourceFatalError) as info:
        list(ex.extract())
    offset = len(good) * 3011 + len('{"id": 2, "name": "bad ')
    assert f"line 3012: not valid utf-8 at byte {offset:,} of the file" in str(info.value)


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_decoding_error_gives_the_true_byte_offset_and_line(tmp_path: Path, fmt: str) -> None:
    filler = "x" * 60
    if fmt == "csv":
        head, lines, tail = "id,note\n", [f"{i},{filler}\n" for i in range(3010)], '3010,"bad \xff"\n'
    else:
        head, lines, tail = (
            "[\n",
            [f'{{"id": {i}, "n": "{filler}"}},\n' for i in range(3010)],
            '{"n": "\xff"}]\n',
        )
    before = (head + "".join(lines)).encode("latin-1")
    path = tmp_path / f"r.{fmt}"
    path.write_bytes(before + tail.encode("latin-1"))
    ex = FileExtractor(
        "src",
        entity(files=[{"path": f"{{data_dir}}/r.{fmt}", "format": fmt, "encoding": "utf-8"}]),
        data_dir=tmp_path,
        batch_size=100,
    )
    with pytest.raises(SourceFatalError) as info:
        list(ex.extract())
    offset = len(before) + tail.encode("latin-1").index(b"\xff")
    assert f"line 3,012: not valid utf-8 at byte {offset:,} of the file" in str(info.value)
    assert locate_decode_error(lambda: path.open("rb"), "utf-8") == (offset, 3012, "invalid start byte")


# --------------------------------------------------------------------------- bad records


@pytest.mark.integration
def test_quarantined_records_are_kept_with_file_line_and_reason_and_shown_by_status(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = "".join(f"{i},name {i}\n" for i in range(1, 200))
    (tmp_path / "people.csv").write_bytes(
        b"id,name\n" + good.encode() + b"200,B\x00b\n201,too,many\n202,ok\n"
    )
    (tmp_path / "events.jsonl").write_text(
        "".join(f'{{"id": {i}}}\n' for i in range(300)) + "{not json\n", encoding="utf-8"
    )
    sources(
        tmp_path,
        """\
        - name: people
          on_bad_record: quarantine
          files: [{path: "{data_dir}/people.csv", format: csv}]
        - name: events
          on_bad_record: quarantine
          files: [{path: "{data_dir}/events.jsonl", format: jsonl}]
        """,
    )

    assert main(["run"]) == 0

    by_entity = {
        entity: (records, metadata)
        for entity, records, metadata in rows(env, "select entity, record_count, metadata from staging.pulls")
    }
    assert by_entity["people"][0] == 200 and by_entity["people"][1]["rejected_records"] == 2
    assert by_entity["events"][0] == 300 and by_entity["events"][1]["rejected_records"] == 1
    rejected = rows(
        env,
        "select p.entity, r.origin, r.unit, r.position, r.reason, r.content from staging.rejected_records as r"
        " join staging.pulls as p using (pull_id) order by p.entity, r.seq",
    )
    assert rejected == [
        ("events", str(tmp_path / "events.jsonl"), "line", 301, rejected[0][4], "{not json"),
        ("people", str(tmp_path / "people.csv"), "line", 201, rejected[1][4], "200,B\\u0000b"),
        ("people", str(tmp_path / "people.csv"), "line", 202, "3 fields, the header has 2", "201,too,many"),
    ]
    assert rejected[0][4].startswith("malformed JSON")
    assert "NUL" in rejected[1][4]

    from etl_pipeline.cli import main as etl

    capsys.readouterr()
    etl(["status"])
    out = capsys.readouterr().out
    assert "2 record(s) of the last pull could not be read" in out
    assert f"{tmp_path / 'people.csv'}, line 202: 3 fields, the header has 2" in out


@pytest.mark.integration
def test_more_rejected_records_than_the_share_fail_the_pull(env: str, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"id": 1}\n[2]\n{"id": 3}\n"four"\n', encoding="utf-8")
    sources(
        tmp_path,
        """\
        - name: events
          on_bad_record: quarantine
          max_bad_share: 0.25
          files: [{path: "{data_dir}/events.jsonl", format: jsonl}]
        """,
    )

    assert main(["run"]) == 3

    ((status, _, _, error),) = pulls(env)
    assert status == "failed"
    assert "2 of 4 records could not be read (50.00%), more than max_bad_share 25.00%" in error
    assert "events.jsonl, line 2: expected a JSON object, got an array" in error
    assert rows(env, "select count(*) from staging.rejected_records") == [(0,)]


# ---------------------------------------------------------------------------- empty files


@pytest.mark.integration
@pytest.mark.parametrize("content", ["", "id,name\n"])
def test_an_empty_file_warns_by_default_and_fails_where_the_entity_says(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(content, encoding="utf-8")
    sources(tmp_path, '- name: people\n  files: [{path: "{data_dir}/people.csv", format: csv}]\n')

    assert main(["run"]) == 0
    ((status, records, metadata, _),) = pulls(env)
    assert (status, records, metadata["empty_files"]) == ("committed", 0, [str(path)])
    warnings = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(e["level"] == "WARNING" and "holds no record" in e["message"] for e in warnings)

    sources(
        tmp_path,
        '- name: people\n  on_empty: fail\n  files: [{path: "{data_dir}/people.csv", format: csv}]\n',
    )
    assert main(["run"]) == 3
    assert f"file {path}: holds no record" in pulls(env)[-1][3]


def test_an_empty_record_list_is_empty_and_a_missing_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"data": []}', encoding="utf-8")
    ex = FileExtractor(
        "src",
        entity(
            files=[{"path": "{data_dir}/a.json", "format": "json", "records_path": "data"}], on_empty="fail"
        ),
        data_dir=tmp_path,
        batch_size=10,
    )
    with pytest.raises(SourceFatalError, match="holds no record"):
        list(ex.extract())
    ex = FileExtractor(
        "src",
        entity(files=[{"path": "{data_dir}/a.json", "format": "json", "records_path": "items"}]),
        data_dir=tmp_path,
        batch_size=10,
    )
    with pytest.raises(SourceFatalError, match="records path 'items' not found"):
        list(ex.extract())


# ----------------------------------------------------------------------------- archives


@pytest.mark.integration
def test_each_batch_of_a_zip_names_its_member(env: str, tmp_path: Path) -> None:
    archive = tmp_path / "drop.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("north.csv", "id,region\n1,n\n2,n\n3,n\n")
        out.writestr("south.csv", "id,region\n4,s\n")
    (tmp_path / "west.csv").write_text("id,region\n5,w\n", encoding="utf-8")
    sources(
        tmp_path,
        '- name: sales\n  files: [{path: "{data_dir}/drop.zip", format: csv},'
        ' {path: "{data_dir}/west.csv", format: csv}]\n',
    )

    assert main(["run"]) == 0

    origins = rows(env, "select batch_no, record_count, origin from staging.pull_batches order by batch_no")
    assert origins == [
        (1, 2, f"{archive}!north.csv"),
        (2, 1, f"{archive}!north.csv"),
        (3, 1, f"{archive}!south.csv"),
        (4, 1, str(tmp_path / "west.csv")),
    ]
    ((_, _, metadata, _),) = pulls(env)
    assert metadata["record_origins"] == [
        {"origin": f"{archive}!north.csv", "first_batch": 1, "last_batch": 2, "records": 3},
        {"origin": f"{archive}!south.csv", "first_batch": 3, "last_batch": 3, "records": 1},
        {"origin": str(tmp_path / "west.csv"), "first_batch": 4, "last_batch": 4, "records": 1},
    ]


# ------------------------------------------------------------------------------ streaming


def test_a_json_document_is_streamed_peak_memory_flat_when_the_file_doubles(tmp_path: Path) -> None:
    record = '{"id": %d, "name": "customer %d", "note": "' + "n" * 200 + '", "amount": 12.34}'
    paths = []
    for count in (60_000, 120_000):
        path = tmp_path / f"d{count}.json"
        with path.open("w", encoding="utf-8") as out:
            out.write('{"meta": {"n": ' + str(count) + '}, "data": [')
            out.write(", ".join(record % (i, i) for i in range(count)))
            out.write("]}")
        paths.append(path)
    (small_records, small), (big_records, big) = (
        peak_extraction_kib(tmp_path, {"path": str(p), "format": "json", "records_path": "data"})
        for p in paths
    )
    assert (small_records, big_records) == (60_000, 120_000)
    assert paths[1].stat().st_size > 2 * 15_000_000
    # reading the whole document would add its size (30 MB) and more for its objects
    assert big - small < 10_000, (small, big)


def test_database_decimals_stay_strings() -> None:
    # a database's numeric column keeps its documented form; only source JSON numbers are numbers
    assert json.loads(encode_batch(["v"], [[Decimal("12.30")]])) == {"columns": ["v"], "rows": [["12.30"]]}


@pytest.mark.integration
def test_writer_refuses_nul_from_any_source(database_url: str) -> None:
    from etl_staging import RawPullWriter

    db = Database(database_url, application_name="etl-test")
    apply_migrations(db)

    writer = RawPullWriter(
        db, run_id="r", job_id=None, source="api", entity="things", mode="full", watermark_before=None
    )
    writer.open()
    with pytest.raises(SourceFatalError, match=r"record 2 of the pull \(page 1, record 2\): field 'b'"):
        writer.add_batch(["a", "b"], [[1, "ok"], [2, ["x\x00"]]], where=lambda i: f"page 1, record {i + 1}")
    writer.fail("test")


@pytest.mark.parametrize("chunk", [7, 64, 1024 * 1024])
def test_json_lines_read_in_chunks_keep_lines_numbers_and_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    import etl_staging._extract as extract

    monkeypatch.setattr(extract, "JSONL_CHUNK_BYTES", chunk)
    long_value = "x" * 300  # a line longer than the small chunks
    text = (
        '{"id": 1, "v": 1e400}\r\n\n  \n{"id": 2, "v": "'
        + long_value
        + '"}\n{"id": 3, "v": 12345678901234567890}\n'
        '{"id": 4, "v": 0.5}'  # no newline at the end
    )
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ex = FileExtractor(
        "src",
        entity(
            files=[{"path": "{data_dir}/r.jsonl", "format": "jsonl"}],
            on_bad_record="quarantine",
            max_bad_share=1,
        ),
        data_dir=tmp_path,
        batch_size=100,
    )
    (batch,) = [item for item in ex.extract() if hasattr(item, "rows")]
    assert batch.rows == [[1, Decimal("1e400")], [2, long_value], [3, 12345678901234567890], [4, 0.5]]
    assert [batch.where(i) for i in range(4)] == [f"file {path}, line {n}" for n in (1, 4, 5, 6)]

    path.write_bytes(b'{"id": 1}\n' * 5 + b'{"id": "\xff"}\n')
    with pytest.raises(
        SourceFatalError, match=r"line 6: not valid utf-8 at byte 58 of the file, byte 8 of the line"
    ):
        list(
            FileExtractor(
                "src",
                entity(files=[{"path": "{data_dir}/r.jsonl", "format": "jsonl"}]),
                data_dir=tmp_path,
                batch_size=9,
            ).extract()
        )


@pytest.mark.parametrize(
    ("name", "content", "extra"),
    [
        ("e.json", b"", {}),
        ("w.json", b"\xef\xbb\xbf \r\n", {}),
        ("e.xml", b"  \n", {"records_path": "r"}),
        ("e.jsonl", b"\n\n", {}),
        ("e.csv", b"", {}),
    ],
)
def test_a_blank_document_is_an_empty_file_not_a_malformed_one(
    tmp_path: Path, name: str, content: bytes, extra: dict[str, Any]
) -> None:
    (tmp_path / name).write_bytes(content)
    group = {"path": f"{{data_dir}}/{name}", "format": name.split(".")[1], **extra}
    ex = FileExtractor("src", entity(files=[group]), data_dir=tmp_path, batch_size=10)
    assert [item for item in ex.extract() if hasattr(item, "rows")] == []
    assert ex.empty_files == [str(tmp_path / name)]
    ex = FileExtractor("src", entity(files=[group], on_empty="fail"), data_dir=tmp_path, batch_size=10)
    with pytest.raises(SourceFatalError, match="holds no record"):
        list(ex.extract())


def test_a_file_of_nul_bytes_is_not_blank(tmp_path: Path) -> None:
    (tmp_path / "z.json").write_bytes(b"\x00" * 4096)  # a file allocated and never written
    ex = FileExtractor(
        "src",
        entity(files=[{"path": "{data_dir}/z.json", "format": "json"}]),
        data_dir=tmp_path,
        batch_size=10,
    )
    with pytest.raises(SourceFatalError, match="malformed JSON"):
        list(ex.extract())


def test_records_with_the_same_keys_in_another_order_keep_their_columns() -> None:
    from etl_staging._extract import _to_batch

    batch = _to_batch([{"a": 1, "b": 2}, {"b": 3, "a": 4}])
    assert (batch.columns, batch.rows) == (["a", "b"], [[1, 2], [4, 3]])
    batch = _to_batch([{"a": 1, "b": 2}, {"a": 3, "c": 5}, {"b": 6}])
    assert (batch.columns, batch.rows) == (["a", "b", "c"], [[1, 2, None], [3, None, 5], [None, 6, None]])
    batch = _to_batch([{"a": 1}, {"a": 2, "b": 3}])
    assert (batch.columns, batch.rows) == (["a", "b"], [[1, None], [2, 3]])
