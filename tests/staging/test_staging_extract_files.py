"""FileExtractor over real files: CSV, JSON Lines, JSON, XML, gzip, payloads and globs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from etl_shared import SourceFatalError
from etl_staging import Batch, FileExtractor, Payload
from etl_staging._config import FileEntity


def extractor(
    tmp_path: Path,
    *files: dict[str, Any],
    batch_size: int = 100,
    keep_payload: bool = False,
    payload_chunk_bytes: int = 8 * 1024 * 1024,
) -> FileExtractor:
    entity = FileEntity.model_validate({"name": "things", "files": list(files), "keep_payload": keep_payload})
    return FileExtractor(
        "src", entity, data_dir=tmp_path, batch_size=batch_size, payload_chunk_bytes=payload_chunk_bytes
    )


def batches(ex: FileExtractor) -> list[Batch]:
    items = list(ex.extract())
    return [item for item in items if isinstance(item, Batch)]


def records(ex: FileExtractor) -> list[dict[str, Any]]:
    return [dict(zip(b.columns, row, strict=True)) for b in batches(ex) for row in b.rows]


def fatal(ex: FileExtractor) -> str:
    with pytest.raises(SourceFatalError) as info:
        list(ex.extract())
    return str(info.value)


# ------------------------------------------------------------------------------ CSV


def test_csv_with_bom_semicolons_quoted_commas_and_newlines(tmp_path: Path) -> None:
    text = 'id;name;note\r\n1;"Smith, Jane";"line one\r\nline two"\r\n2;Bob;"say ""hi"""\r\n\r\n3;Ann;\r\n'
    (tmp_path / "people.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    ex = extractor(tmp_path, {"path": "{data_dir}/people.csv", "format": "csv", "delimiter": ";"})
    found = batches(ex)

    assert [b.columns for b in found] == [["id", "name", "note"]]
    assert found[0].rows == [
        ["1", "Smith, Jane", "line one\r\nline two"],
        ["2", "Bob", 'say "hi"'],
        ["3", "Ann", ""],
    ]
    assert [f["path"] for f in ex.state.metadata["files"]] == [str(tmp_path / "people.csv")]
    assert ex.state.metadata["files"][0]["bytes"] == (tmp_path / "people.csv").stat().st_size
    assert len(ex.state.metadata["files"][0]["sha256"]) == 64
    assert ex.state.bytes_read == (tmp_path / "people.csv").stat().st_size


def test_csv_is_batched_by_batch_size(tmp_path: Path) -> None:
    lines = ["n,square"] + [f"{i},{i * i}" for i in range(1, 8)]
    (tmp_path / "n.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    found = batches(extractor(tmp_path, {"path": "{data_dir}/n.csv", "format": "csv"}, batch_size=3))

    assert [len(b.rows) for b in found] == [3, 3, 1]
    assert all(b.columns == ["n", "square"] for b in found)
    assert [row[0] for b in found for row in b.rows] == [str(i) for i in range(1, 8)]


def test_csv_header_is_renamed_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(" id , value\n1,x\n", encoding="utf-8")

    ex = extractor(tmp_path, {"path": "{data_dir}/a.csv", "format": "csv", "rename": {"id": "account_id"}})

    assert records(ex) == [{"account_id": "1", "value": "x"}]


def test_empty_csv_gives_no_batch(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")

    assert batches(extractor(tmp_path, {"path": "{data_dir}/empty.csv", "format": "csv"})) == []


def test_csv_wrong_field_count_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,2\n3,"multi\nline"\n4,5,6\n', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/bad.csv", "format": "csv"}))

    assert str(path) in message
    assert "source src" in message
    # Line 5 of the file: the quoted newline makes record 3 span lines 3-4.
    assert "line 5" in message
    assert "3 fields, the header has 2" in message


def test_csv_quoting_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n1,2\n3,"x"y\n', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/bad.csv", "format": "csv"}))

    assert str(path) in message
    assert "line 3" in message
    assert "malformed CSV" in message


def test_latin1_read_as_utf8_says_to_set_encoding(tmp_path: Path) -> None:
    path = tmp_path / "cities.csv"
    path.write_bytes("city,country\nMünchen,DE\nZürich,CH\n".encode("latin-1"))

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/cities.csv", "format": "csv"}))

    assert str(path) in message
    assert "set 'encoding'" in message

    ex = extractor(tmp_path, {"path": "{data_dir}/cities.csv", "format": "csv", "encoding": "latin-1"})
    assert records(ex) == [{"city": "München", "country": "DE"}, {"city": "Zürich", "country": "CH"}]


# ------------------------------------------------------------------------------ JSON


def test_jsonl_records_become_batches_with_the_union_of_keys(tmp_path: Path) -> None:
    lines = [
        {"id": 1, "name": "a"},
        {"id": 2, "extra": {"nested": [1, 2]}},
        {"name": "c", "id": 3, "late": True},
        {"id": 4},
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")

    found = batches(extractor(tmp_path, {"path": "{data_dir}/r.jsonl", "format": "jsonl"}, batch_size=3))

    assert [b.columns for b in found] == [["id", "name", "extra", "late"], ["id"]]
    assert found[0].rows == [
        [1, "a", None, None],
        [2, None, {"nested": [1, 2]}, None],
        [3, "c", None, True],
    ]
    assert found[1].rows == [[4]]


def test_jsonl_over_many_chunks_keeps_every_record_and_line_number_whichever_way_a_chunk_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of plain records are parsed in one pass, a chunk with a blank line, a bad line or a long
    number line by line: the records, their order, their line numbers and the renames are the same."""
    import etl_staging._extract as extract

    monkeypatch.setattr(extract, "JSONL_CHUNK_BYTES", 256)  # many chunks, each a few lines
    lines = [json.dumps({"id": n, "v": f"x{n}", "nested": {"n": n}}) for n in range(1, 301)]
    lines[40] = ""  # a blank line: its chunk is read line by line
    lines[120] = '{"id": 121, "v": 12345678901234567890123, "nested": {"n": 121}}'  # the exact parser
    lines[200] = '{"id": 201, "v": "x201", "nested": '  # a bad line, quarantined
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    entity = FileEntity.model_validate(
        {
            "name": "things",
            "files": [{"path": "{data_dir}/r.jsonl", "format": "jsonl", "rename": {"v": "value"}}],
            "on_bad_record": "quarantine",
            "max_bad_share": 0.5,
        }
    )
    ex = FileExtractor("src", entity, data_dir=tmp_path, batch_size=7)
    items = list(ex.extract())
    found = [item for item in items if isinstance(item, Batch)]

    assert [len(b.rows) for b in found[:-1]] == [7] * (len(found) - 1)
    ids = [row[0] for b in found for row in b.rows]
    assert ids == [n for n in range(1, 301) if n not in (41, 201)]
    assert all(b.columns == ["id", "value", "nested"] for b in found)
    where = [b.where(i) for b in found for i in range(len(b.rows))]
    assert where[:2] == [f"file {tmp_path / 'r.jsonl'}, line 1", f"file {tmp_path / 'r.jsonl'}, line 2"]
    assert [int(w.rsplit(" ", 1)[1]) for w in where] == ids  # each record's own line
    big = next(row for b in found for row in b.rows if row[0] == 121)
    assert str(big[1]) == "12345678901234567890123"
    rejected = [item for item in items if isinstance(item, extract.Rejected)]
    assert [(r.unit, r.position) for r in rejected] == [("line", 201)]


def test_jsonl_malformed_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\n\n{"id": 2}\n{"id": \n', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/r.jsonl", "format": "jsonl"}))

    assert str(path) in message
    assert "line 4" in message
    assert "malformed JSON" in message


def test_jsonl_with_bom_and_crlf_reads_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(
        b'\xef\xbb\xbf{"id": 1, "city": "M\xc3\xbcnchen"}\r\n{"id": 2, "city": "Z\xc3\xbcrich"}\r\n'
    )

    found = records(extractor(tmp_path, {"path": "{data_dir}/bom.jsonl", "format": "jsonl"}))

    assert found == [{"id": 1, "city": "München"}, {"id": 2, "city": "Zürich"}]


def test_jsonl_in_the_wrong_encoding_names_the_line_and_says_to_set_encoding(tmp_path: Path) -> None:
    path = tmp_path / "cities.jsonl"
    path.write_bytes('{"city": "Paris"}\n{"city": "München"}\n'.encode("latin-1"))

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/cities.jsonl", "format": "jsonl"}))

    assert str(path) in message
    assert "line 2" in message
    assert "not valid utf-8" in message
    assert "set 'encoding'" in message

    ex = extractor(tmp_path, {"path": "{data_dir}/cities.jsonl", "format": "jsonl", "encoding": "latin-1"})
    assert records(ex) == [{"city": "Paris"}, {"city": "München"}]


def test_jsonl_line_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\n[1, 2]\n', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/r.jsonl", "format": "jsonl"}))

    assert "line 2" in message
    assert "expected a JSON object, got an array" in message


def test_json_array_document(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('[{"id": 1, "v": 1.5}, {"id": 2, "w": null}]', encoding="utf-8")

    found = batches(extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json"}))

    assert [(b.columns, b.rows) for b in found] == [(["id", "v", "w"], [[1, 1.5, None], [2, None, None]])]


def test_json_object_with_records_path(tmp_path: Path) -> None:
    document = {"meta": {"page": 1}, "data": {"items": [{"id": "a"}, {"id": "b"}]}}
    (tmp_path / "r.json").write_text(json.dumps(document), encoding="utf-8")

    ex = extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json", "records_path": "data.items"})

    assert records(ex) == [{"id": "a"}, {"id": "b"}]


def test_json_missing_records_path_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"data": {"rows": []}}), encoding="utf-8")

    message = fatal(
        extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json", "records_path": "data.items"})
    )

    assert str(path) in message
    assert "records path 'data.items' not found" in message


def test_json_object_without_records_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"items": [{"id": 1}]}), encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json"}))

    assert "expected a list of records at the top, got an object" in message


def test_json_record_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text('[{"id": 1}, 2]', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json"}))

    assert "record 2: expected a JSON object, got a number" in message


def test_malformed_json_document_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('[{"id": 1},', encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/r.json", "format": "json"}))

    assert str(path) in message
    assert "malformed JSON" in message


# ------------------------------------------------------------------------------- XML

XML_EVENTS = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://example.com/events" xmlns:x="http://example.com/extra">
  <event id="e1" x:channel="web">
    <type>click</type>
    <amount>1.50</amount>
  </event>
  <event id="e2">
    <type>view</type>
    <device><os>linux</os><browser kind="desktop">firefox</browser></device>
  </event>
</feed>
"""


def test_xml_with_default_namespace_attributes_and_rename(tmp_path: Path) -> None:
    (tmp_path / "events.xml").write_text(XML_EVENTS, encoding="utf-8")

    ex = extractor(
        tmp_path,
        {
            "path": "{data_dir}/*.xml",
            "format": "xml",
            "records_path": "{http://example.com/events}event",
            "rename": {"id": "event_id"},
        },
    )
    found = batches(ex)

    assert found[0].columns == ["event_id", "x:channel", "type", "amount", "device"]
    assert records(ex) == [
        {"event_id": "e1", "x:channel": "web", "type": "click", "amount": "1.50", "device": None},
        {
            "event_id": "e2",
            "x:channel": None,
            "type": "view",
            "amount": None,
            "device": {"os": "linux", "browser": {"@kind": "desktop", "#text": "firefox"}},
        },
    ]


def test_xml_without_records_path_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "events.xml").write_text(XML_EVENTS, encoding="utf-8")

    message = fatal(extractor(tmp_path, {"path": "{data_dir}/events.xml", "format": "xml"}))

    assert "records_path" in message


def test_malformed_xml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "events.xml"
    path.write_text("<feed><event id='1'><type>x</type></event><event>", encoding="utf-8")

    message = fatal(
        extractor(tmp_path, {"path": "{data_dir}/events.xml", "format": "xml", "records_path": "event"})
    )

    assert str(path) in message
    assert "malformed XML after record 1" in message


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE feed [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<feed><event><type>&lol9;</type></event></feed>
"""


def test_xml_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lol.xml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")

    message = fatal(
        extractor(tmp_path, {"path": "{data_dir}/lol.xml", "format": "xml", "records_path": "event"})
    )

    assert str(path) in message
    assert "unsafe XML" in message


def test_xml_external_entity_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret", encoding="utf-8")
    document = (
        f'<?xml version="1.0"?>\n<!DOCTYPE feed [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        "<feed><event><type>&xxe;</type></event></feed>\n"
    )
    (tmp_path / "xxe.xml").write_text(document, encoding="utf-8")

    message = fatal(
        extractor(tmp_path, {"path": "{data_dir}/xxe.xml", "format": "xml", "records_path": "event"})
    )

    assert "unsafe XML" in message
    assert "top secret" not in message


# ------------------------------------------------------------------------ gzip, payloads, globs


def test_gzip_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress("\ufeffid,v\n1,x\n2,y\n".encode()))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"id": 3, "v": "z"}\n'))

    ex = extractor(
        tmp_path,
        {"path": "{data_dir}/*.csv.gz", "format": "csv"},
        {"path": "{data_dir}/*.jsonl.gz", "format": "jsonl"},
    )

    assert records(ex) == [{"id": "1", "v": "x"}, {"id": "2", "v": "y"}, {"id": 3, "v": "z"}]


def test_gzip_xml(tmp_path: Path) -> None:
    (tmp_path / "e.xml.gz").write_bytes(gzip.compress(XML_EVENTS.encode()))

    ex = extractor(
        tmp_path,
        {"path": "{data_dir}/e.xml.gz", "format": "xml", "records_path": "{http://example.com/events}event"},
    )

    assert [r["id"] for r in records(ex)] == ["e1", "e2"]


def test_payload_chunks_concatenate_to_the_file_bytes(tmp_path: Path) -> None:
    rows = "".join(f"{i},name {i}\n" for i in range(500))
    plain = ("id,name\n" + rows).encode()
    (tmp_path / "big.csv").write_bytes(plain)
    (tmp_path / "big2.csv.gz").write_bytes(gzip.compress(plain))

    ex = extractor(
        tmp_path, {"path": "{data_dir}/big*", "format": "csv"}, keep_payload=True, payload_chunk_bytes=1000
    )
    items = list(ex.extract())

    payloads = [i for i in items if isinstance(i, Payload)]
    by_file: dict[str, list[Payload]] = {}
    for p in payloads:
        by_file.setdefault(p.name.split("#")[0], []).append(p)
    assert b"".join(p.body for p in by_file["big.csv"]) == plain
    assert b"".join(p.body for p in by_file["big2.csv.gz"]) == (tmp_path / "big2.csv.gz").read_bytes()
    assert [p.name for p in by_file["big.csv"]] == [
        f"big.csv#{n}" for n in range(1, len(by_file["big.csv"]) + 1)
    ]
    assert len(by_file["big.csv"]) > 1
    assert all(len(p.body) <= 1000 for p in payloads)
    assert {p.content_type for p in by_file["big.csv"]} == {"text/csv"}
    assert {p.content_type for p in by_file["big2.csv.gz"]} == {"text/csv+gzip"}
    assert sum(len(b.rows) for b in items if isinstance(b, Batch)) == 1000


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_payload_chunks_follow_the_parser_through_the_file(tmp_path: Path, name: str) -> None:
    """The file as fetched is stored while it is parsed: the chunks come between the batches, each once
    the parser has read its bytes, rather than all of them before the first batch."""
    lines = b"".join(
        json.dumps({"id": i, "note": f"event {i:07d} " + "x" * 80}).encode() + b"\n" for i in range(40_000)
    )
    body = gzip.compress(lines, compresslevel=1) if name.endswith(".gz") else lines
    (tmp_path / name).write_bytes(body)

    ex = extractor(
        tmp_path,
        {"path": f"{{data_dir}}/{name}", "format": "jsonl"},
        batch_size=1000,
        keep_payload=True,
        payload_chunk_bytes=64 * 1024,
    )
    items = list(ex.extract())

    kinds = "".join("B" if isinstance(i, Batch) else "P" for i in items)
    assert kinds.count("B") == 40
    assert kinds.startswith("B")  # nothing is stored before the parser has read it
    assert "PB" in kinds.rstrip("P")  # batches come after some of the chunks, not all at the end
    payloads = [i for i in items if isinstance(i, Payload)]
    assert b"".join(p.body for p in payloads) == body
    assert [p.name for p in payloads] == [f"{name}#{n}" for n in range(1, len(payloads) + 1)]
    assert [
        r["id"]
        for b in items
        if isinstance(b, Batch)
        for r in (dict(zip(b.columns, row, strict=True)) for row in b.rows)
    ] == list(range(40_000))


def test_no_payloads_without_keep_payload(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n", encoding="utf-8")

    items = list(extractor(tmp_path, {"path": "{data_dir}/a.csv", "format": "csv"}).extract())

    assert not any(isinstance(i, Payload) for i in items)


def test_globs_with_data_dir_are_sorted_and_skip_folders(tmp_path: Path) -> None:
    folder = tmp_path / "in" / "2024"
    folder.mkdir(parents=True)
    (folder / "b.csv").write_text("id\n2\n", encoding="utf-8")
    (folder / "a.csv").write_text("id\n1\n", encoding="utf-8")
    (folder / "c.txt").write_text("id\n9\n", encoding="utf-8")
    (tmp_path / "in" / "top.csv").write_text("id\n0\n", encoding="utf-8")
    (tmp_path / "in" / "dir.csv").mkdir()

    ex = extractor(tmp_path, {"path": "{data_dir}/in/**/*.csv", "format": "csv"})

    assert [r["id"] for r in records(ex)] == ["1", "2", "0"]
    assert [f["path"] for f in ex.state.metadata["files"]] == [
        str(folder / "a.csv"),
        str(folder / "b.csv"),
        str(tmp_path / "in/top.csv"),
    ]


def test_no_matching_file_gives_nothing(tmp_path: Path) -> None:
    ex = extractor(tmp_path, {"path": "{data_dir}/missing/*.csv", "format": "csv"})

    assert list(ex.extract()) == []
    assert ex.state.metadata == {"files": [], "skipped_files": []}
