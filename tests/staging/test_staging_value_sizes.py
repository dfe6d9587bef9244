"""Value sizes: batches cut by bytes as well as records, payload chunks within their limit, and a record
over the budget stored alone (with a warning) or refused (above the hard limit). CockroachDB's limits are
tested on the embedded PostgreSQL by selecting them explicitly (ETL_VALUE_SIZES=cockroachdb); every test
checks the sizes actually stored and that the records read back are the ones written, in order."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from ops_support import rows

from etl_shared import ConfigurationError, Database, SourceFatalError, apply_migrations
from etl_staging import COCKROACHDB, POSTGRESQL, RawPullWriter, ValueSizes, resolve_value_sizes, value_sizes
from etl_staging.cli import StagingSettings, main

KIB = 1024
MIB = 1024 * KIB

pytestmark = pytest.mark.integration

SMALL = ValueSizes(batch_bytes=2 * KIB, payload_chunk_bytes=1 * KIB, record_max_bytes=16 * KIB)


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url, application_name="etl-test")
    apply_migrations(database)
    return database


def writer(db: Database, sizes: ValueSizes, **kwargs: Any) -> RawPullWriter:
    return RawPullWriter(
        db,
        run_id="run-1",
        job_id=None,
        source=kwargs.pop("source", "shop"),
        entity=kwargs.pop("entity", "orders"),
        mode="full",
        watermark_before=None,
        sizes=sizes,
        **kwargs,
    )


def stored_batches(url: str, pull_id: Any = None) -> list[tuple[int, int, int, dict[str, Any]]]:
    """(batch_no, record_count, compact JSON bytes, data) of every batch, in order. The size is the
    stored value's JSON re-encoded without whitespace, as staging sends it (PostgreSQL's jsonb text
    output adds a space after every comma and colon); the tests' values are integers and strings, which
    re-encode exactly."""
    found = rows(
        url,
        "select batch_no, record_count, data::text from staging.pull_batches"
        + (" where pull_id = %s" if pull_id else "")
        + " order by pull_id, batch_no",
        (pull_id,) if pull_id else (),
    )
    out = []
    for batch_no, count, text in found:
        data = orjson.loads(text)
        out.append((batch_no, count, len(orjson.dumps(data)), data))
    return out


def records_of(batches: list[tuple[int, int, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [dict(zip(data["columns"], row, strict=True)) for *_, data in batches for row in data["rows"]]


def order_records(n: int, *, seed: int = 7, start: int = 0) -> list[dict[str, Any]]:
    """Records of varied size (a note of 0-300 characters, a nested object), as a source sends them."""
    rng = random.Random(seed)
    return [
        {
            "order_id": i,
            "status": rng.choice(["placed", "paid", "shipped"]),
            "amount": f"{rng.randint(100, 99999) / 100:.2f}",
            "note": "é" * rng.randint(0, 150) + "x" * rng.randint(0, 150),
            "address": {
                "city": rng.choice(["Zürich", "Málaga", "Kraków"]),
                "zip": str(rng.randint(1000, 99999)),
            },
        }
        for i in range(start, start + n)
    ]


def as_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    columns = list(records[0])
    return columns, [[record[c] for c in columns] for record in records]


# --------------------------------------------------------------------------- the profiles


def test_profiles_and_overrides() -> None:
    assert value_sizes("auto", cockroachdb=True) is COCKROACHDB
    assert value_sizes("auto", cockroachdb=False) is POSTGRESQL
    assert value_sizes("cockroachdb") is COCKROACHDB
    # CockroachDB: every stored value within 1 MiB
    assert COCKROACHDB.batch_bytes < MIB and COCKROACHDB.payload_chunk_bytes <= MIB
    assert COCKROACHDB.record_max_bytes < 64 * MIB  # kv.raft.command.max_size
    assert POSTGRESQL.record_max_bytes < 255 * MIB  # jsonb's largest value

    mixed = value_sizes("cockroachdb", batch_bytes=4096)
    assert (mixed.batch_bytes, mixed.payload_chunk_bytes, mixed.record_max_bytes) == (4096, MIB, 32 * MIB)
    assert mixed.profile == "cockroachdb with settings"
    with pytest.raises(ConfigurationError, match="larger than the largest record"):
        value_sizes("cockroachdb", batch_bytes=64 * MIB)
    with pytest.raises(ConfigurationError, match="unknown profile"):
        value_sizes("oracle")
    with pytest.raises(ValueError, match="CockroachDB"):
        value_sizes("auto")


def test_auto_on_postgresql_is_postgresqls(db: Database) -> None:
    assert resolve_value_sizes(db) is POSTGRESQL
    assert resolve_value_sizes(db, "cockroachdb") is COCKROACHDB
    settings = StagingSettings(value_sizes="cockroachdb", payload_chunk_bytes=4096)
    sizes = settings.resolve_value_sizes(db)
    assert (sizes.batch_bytes, sizes.payload_chunk_bytes) == (COCKROACHDB.batch_bytes, 4096)


# --------------------------------------------------------------------------- the writer


def test_batches_are_cut_at_cockroachdbs_budget_and_read_back_the_same(
    database_url: str, db: Database
) -> None:
    """20,000 records of about 280 bytes in extractor batches of 5,000 records (1.4 MB of JSON each):
    every stored batch is within CockroachDB's budget, and the records come back in order."""
    records = order_records(20_000)
    w = writer(db, COCKROACHDB, write_behind=True)
    w.open()
    for start in range(0, len(records), 5000):
        columns, chunk = as_rows(records[start : start + 5000])
        assert len(orjson.dumps({"columns": columns, "rows": chunk})) > 1.5 * COCKROACHDB.batch_bytes
        w.add_batch(columns, chunk)
    summary = w.commit(watermark_after=None)

    batches = stored_batches(database_url)
    assert [b[0] for b in batches] == list(range(1, len(batches) + 1))
    assert summary.batches == len(batches) and summary.records == 20_000
    assert sum(b[1] for b in batches) == 20_000
    assert all(count == len(data["rows"]) for _, count, _, data in batches)
    assert max(size for _, _, size, _ in batches) <= COCKROACHDB.batch_bytes
    assert w.json_bytes == sum(size for _, _, size, _ in batches)
    # cut by bytes, not into crumbs: each 5,000-record batch became two or three stored ones
    assert 8 <= len(batches) <= 12
    assert records_of(batches) == records
    # and PostgreSQL's own measure of the stored jsonb stays under 1 MiB too
    (largest,) = rows(database_url, "select max(pg_column_size(data)) from staging.pull_batches")[0]
    assert largest < MIB


def test_a_small_budget_keeps_every_batch_within_it(database_url: str, db: Database) -> None:
    records = order_records(600, seed=3)
    w = writer(db, SMALL, write_behind=False)
    w.open()
    for start in range(0, len(records), 100):
        w.add_batch(*as_rows(records[start : start + 100]))
    w.add_batch(["order_id"], [])  # an empty batch is still not stored
    w.commit(watermark_after=None)

    batches = stored_batches(database_url)
    sizes = [size for _, _, size, _ in batches]
    assert max(sizes) <= SMALL.batch_bytes
    assert records_of(batches) == records
    assert [b[0] for b in batches] == list(range(1, len(batches) + 1))
    # about as few batches as the bytes need (each extractor batch may end in a part-filled one)
    assert len(batches) <= 2 * sum(sizes) / SMALL.batch_bytes + 6


def test_a_record_over_the_budget_is_stored_alone_with_a_warning(
    database_url: str, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    records = order_records(40, seed=5)
    records[17]["note"] = "y" * 5000  # 5 KB of JSON, the budget is 2 KiB
    columns, batch = as_rows(records)
    w = writer(db, SMALL, write_behind=False, source="crm", entity="contacts")
    pull_id = w.open()
    with caplog.at_level(logging.WARNING, logger="etl_staging._raw"):
        w.add_batch(columns, batch, where=lambda i: f"file contacts.jsonl, line {i + 101}")
    summary = w.commit(watermark_after=None)

    batches = stored_batches(database_url)
    alone = [b for b in batches if b[2] > SMALL.batch_bytes]
    assert len(alone) == 1 and alone[0][1] == 1 and alone[0][3]["rows"][0][0] == 17
    assert all(size <= SMALL.batch_bytes for batch_no, _, size, _ in batches if batch_no != alone[0][0])
    assert records_of(batches) == records
    (warning,) = [r.getMessage() for r in caplog.records if "over the batch budget" in r.getMessage()]
    assert "source crm, entity contacts" in warning
    assert "record 18 of the pull (file contacts.jsonl, line 118)" in warning
    assert f"stored alone as batch {alone[0][0]}" in warning
    assert rows(database_url, "select metadata from staging.pulls where pull_id = %s", (pull_id,)) == [
        ({"oversized_records": 1},)
    ]
    assert summary.records == 40


def test_a_record_over_the_hard_limit_is_refused(db: Database) -> None:
    w = writer(db, SMALL, write_behind=False, source="crm", entity="contacts")
    w.open()
    w.add_batch(["id", "blob"], [[1, "small"]])
    with pytest.raises(SourceFatalError) as caught:
        w.add_batch(["id", "blob"], [[2, "ok"], [3, "z" * 20_000]])
    message = str(caught.value)
    assert "source crm, entity contacts: record 3 of the pull is 20,0" in message
    assert "16,384 bytes" in message and "ETL_RECORD_MAX_BYTES" in message
    assert caught.value.exit_code == 3


def test_payloads_are_stored_in_chunks_within_the_limit(database_url: str, db: Database) -> None:
    body = bytes(random.Random(1).getrandbits(8) for _ in range(2600))
    w = writer(db, SMALL, write_behind=False)
    pull_id = w.open()
    w.add_payload("page-000001", "application/json", body)
    w.add_payload("page-000002", "application/json", b"[]")
    summary = w.commit(watermark_after=None)

    stored = rows(
        database_url,
        "select seq, name, byte_count, octet_length(body), checksum, body from staging.pull_payloads"
        " where pull_id = %s order by seq",
        (pull_id,),
    )
    assert [(s[0], s[1], s[2]) for s in stored] == [
        (1, "page-000001#1", 1024),
        (2, "page-000001#2", 1024),
        (3, "page-000001#3", 552),
        (4, "page-000002", 2),
    ]
    assert all(s[3] == s[2] <= SMALL.payload_chunk_bytes for s in stored)
    assert b"".join(bytes(s[5]) for s in stored[:3]) == body
    assert all(s[4] == hashlib.sha256(bytes(s[5])).hexdigest() for s in stored)
    assert (summary.payloads, summary.bytes) == (4, 2602)


# --------------------------------------------------------------------------- the job


SOURCES = """
sources:
  - name: web
    kind: file
    batch_size: 5000
    entities:
      - name: orders
        files: [{path: "{data_dir}/orders.jsonl", format: jsonl}]
"""


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Path:
    sources = tmp_path / "sources.yml"
    sources.write_text(SOURCES, encoding="utf-8")
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(sources))
    monkeypatch.setenv("ETL_SECRETS_DIR", str(tmp_path))
    return tmp_path / "orders.jsonl"


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> bytes:
    body = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)
    path.write_bytes(body)
    return body


def stored_payload(url: str) -> tuple[bytes, int]:
    found = rows(url, "select body from staging.pull_payloads order by seq")
    return b"".join(bytes(b) for (b,) in found), max(len(b) for (b,) in found)


def test_the_job_with_cockroachdbs_sizes_on_postgresql(
    job_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ETL_VALUE_SIZES=cockroachdb: a 4 MB file is stored in batches within 768 KiB and payload chunks
    of at most 1 MiB, and read back the same."""
    records = order_records(12_000, seed=11)
    body = write_jsonl(job_env, records)
    assert len(body) > 3 * MIB
    monkeypatch.setenv("ETL_VALUE_SIZES", "cockroachdb")

    assert main(["run"]) == 0

    batches = stored_batches(database_url)
    assert len(batches) >= 4
    assert max(size for _, _, size, _ in batches) <= COCKROACHDB.batch_bytes
    assert records_of(batches) == records
    payload, largest = stored_payload(database_url)
    assert payload == body and largest <= MIB
    ((count, batch_count),) = rows(database_url, "select record_count, batch_count from staging.pulls")
    assert (count, batch_count) == (12_000, len(batches))


def test_the_job_with_a_set_budget_warns_of_a_record_over_it(
    job_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    records = order_records(300, seed=13)
    records[250]["note"] = "w" * 3000
    body = write_jsonl(job_env, records)
    monkeypatch.setenv("ETL_BATCH_BYTES", "2048")
    monkeypatch.setenv("ETL_PAYLOAD_CHUNK_BYTES", "4096")

    with caplog.at_level(logging.WARNING, logger="etl_staging._raw"):
        assert main(["run"]) == 0

    batches = stored_batches(database_url)
    assert sorted(size for _, _, size, _ in batches)[-2] <= 2048 < max(size for _, _, size, _ in batches)
    assert records_of(batches) == records
    payload, largest = stored_payload(database_url)
    assert payload == body and largest <= 4096
    warnings = [r.getMessage() for r in caplog.records if "over the batch budget" in r.getMessage()]
    assert len(warnings) == 1
    assert "source web, entity orders: record 251 of the pull" in warnings[0]
    assert "orders.jsonl, line 251)" in warnings[0]


def test_the_job_refuses_a_record_over_the_hard_limit(
    job_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = order_records(20, seed=17)
    records[12]["note"] = "v" * 5000
    write_jsonl(job_env, records)
    monkeypatch.setenv("ETL_BATCH_BYTES", "2048")
    monkeypatch.setenv("ETL_RECORD_MAX_BYTES", "4096")

    assert main(["run"]) == 3

    assert rows(database_url, "select status from staging.pulls") == [("failed",)]
    assert rows(database_url, "select count(*) from staging.pull_batches") == [(0,)]
    (error,) = rows(database_url, "select error from ops.job_runs")[0]
    assert "record 13 of the pull" in error and "line 13" in error and "4,096 bytes" in error


@pytest.mark.parametrize(
    ("name", "value"),
    [("ETL_BATCH_BYTES", "100"), ("ETL_VALUE_SIZES", "oracle"), ("ETL_BATCH_BYTES", str(200 * MIB))],
)
def test_bad_value_sizes_exit_2(
    job_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    write_jsonl(job_env, order_records(3))
    monkeypatch.setenv(name, value)
    assert main(["run"]) == 2
