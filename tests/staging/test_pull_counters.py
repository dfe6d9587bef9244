"""What a pull's metadata tells when it goes wrong: a failed pull keeps the counters its extractor had
(every source kind), and a record sent twice within a pull is stored twice and counted."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ops_support import create_shop, rows
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_staging import Batch
from etl_staging._rest import DuplicateCounter, RestAuth, RestConnection, RestEntity, RestExtractor
from etl_staging.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> Path:
    """The job's environment; returns the sources file to write."""
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_PARALLELISM", "1")
    path = tmp_path / "sources.yml"
    monkeypatch.setenv("ETL_SOURCES_FILE", str(path))
    return path


def pulls(url: str) -> dict[str, tuple[str, int, dict[str, Any]]]:
    """source.entity -> (status, records, metadata) of its newest pull."""
    found = rows(
        url,
        "select source || '.' || entity, status, record_count, metadata from staging.pulls"
        " order by started_at",
    )
    return {name: (status, records, metadata) for name, status, records, metadata in found}


def stored(url: str, name: str) -> list[list[Any]]:
    source, entity = name.split(".")
    data = rows(
        url,
        "select b.data from staging.pull_batches b join staging.pulls p using (pull_id)"
        " where p.source = %s and p.entity = %s and p.status = 'committed' order by b.batch_no",
        (source, entity),
    )
    return [row for (batch,) in data for row in batch["rows"]]


def json_response(document: Any) -> Response:
    return Response(json.dumps(document), content_type="application/json")


# ------------------------------------------------------------------------ failed pulls


def test_a_failed_rest_pull_keeps_its_pages_requests_and_retries(
    httpserver: HTTPServer, job_env: Path, database_url: str
) -> None:
    seen: dict[int, int] = {}

    def handler(request: Request) -> Response:
        page = int(request.args["page"])
        seen[page] = seen.get(page, 0) + 1
        if page == 2 and seen[page] == 1:
            return Response("busy", status=503)
        if page == 3:
            return Response("gone", status=404)
        return json_response([{"id": page * 10 + i} for i in range(2)])

    httpserver.expect_request("/things").respond_with_handler(handler)
    job_env.write_text(
        f"""
sources:
  - name: api
    kind: rest
    connection: {{base_url: "{httpserver.url_for("/")}", backoff_base_s: 0.01}}
    entities:
      - {{name: things, path: /things, pagination: {{type: page_number}}}}
""",
        encoding="utf-8",
    )

    assert main(["run"]) == 3

    status, _, metadata = pulls(database_url)["api.things"]
    assert status == "failed"
    assert (metadata["pages"], metadata["requests"], metadata["retries"]) == (2, 4, 1)
    assert metadata["url"] == httpserver.url_for("/things") and metadata["duplicate_records"] == 0


def test_a_failed_file_pull_keeps_the_files_it_read(job_env: Path, tmp_path: Path, database_url: str) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"id": 1}\n{"id": 2}\n', encoding="utf-8")
    (folder / "b.jsonl").write_text('{"id": 3}\n{"id": \n', encoding="utf-8")
    job_env.write_text(
        """
sources:
  - name: drop
    kind: file
    entities:
      - name: events
        files: [{path: "{data_dir}/drop/*.jsonl", format: jsonl}]
""",
        encoding="utf-8",
    )

    assert main(["run"]) == 3

    status, _, metadata = pulls(database_url)["drop.events"]
    assert status == "failed"
    assert [Path(f["path"]).name for f in metadata["files"]] == ["a.jsonl", "b.jsonl"]
    assert metadata["files"][0]["bytes"] == 20 and len(metadata["files"][0]["sha256"]) == 64


def test_a_database_pull_stopped_by_its_contract_keeps_the_column_types(
    job_env: Path, database_url: str, db_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_url = db_server.create_database("src")
    create_shop(source_url)
    monkeypatch.setenv("COUNTERS_SHOP_URL", source_url)
    job_env.write_text(
        """
sources:
  - name: shop
    kind: database
    connection: {url_env: COUNTERS_SHOP_URL}
    entities:
      - name: customers
        table: shop.customers
        contract: strict
        columns: {customer_id: integer, email: text}
""",
        encoding="utf-8",
    )

    assert main(["run"]) == 4  # the strict contract

    status, _, metadata = pulls(database_url)["shop.customers"]
    assert status == "failed"
    assert metadata["column_types"] == {"customer_id": "int4", "name": "text"}


# --------------------------------------------------------------------------- duplicates


def test_overlapping_rest_pages_store_the_record_twice_and_count_it(
    httpserver: HTTPServer, job_env: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # offset pages of 3 while a record is inserted at the front between page 1 and page 2: the last
    # record of page 1 comes again at the top of page 2
    pages = {0: [1, 2, 3], 3: [3, 4, 5], 6: [6], 7: []}
    httpserver.expect_request("/people").respond_with_handler(
        lambda request: json_response(
            [{"id": i, "name": f"p{i}"} for i in pages[int(request.args["offset"])]]
        )
    )
    job_env.write_text(
        f"""
sources:
  - name: crm
    kind: rest
    connection: {{base_url: "{httpserver.url_for("/")}"}}
    entities:
      - {{name: people, path: /people, pagination: {{type: offset, limit: 3}}}}
""",
        encoding="utf-8",
    )
    capsys.readouterr()

    assert main(["run"]) == 0

    status, records, metadata = pulls(database_url)["crm.people"]
    assert (status, records, metadata["duplicate_records"]) == ("committed", 7, 1)
    assert [row[0] for row in stored(database_url, "crm.people")] == [1, 2, 3, 3, 4, 5, 6]  # as sent
    warnings = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "sent more than once" in line
    ]
    assert [w["level"] for w in warnings] == ["WARNING"]
    assert warnings[0]["duplicate_records"] == 1 and warnings[0]["source"] == "crm"
    assert "records sent more than once in this pull: 1 (identical records)" in warnings[0]["message"]


def test_overlapping_rest_async_answers_store_the_records_twice_and_count_them(
    httpserver: HTTPServer, job_env: Path, database_url: str
) -> None:
    # two regions whose answers share the accounts they have in common
    regions = {"eu": [1, 2, 3], "emea": [2, 3, 4], "us": [5]}
    httpserver.expect_request(re.compile(r"^/accounts/\w+$")).respond_with_handler(
        lambda request: json_response(
            [{"id": i, "tier": "gold"} for i in regions[request.path.rsplit("/", 1)[1]]]
        )
    )
    job_env.write_text(
        f"""
sources:
  - name: ledger
    kind: rest_async
    concurrency: 3
    connection: {{base_url: "{httpserver.url_for("/")}"}}
    entities:
      - name: accounts
        path: /accounts/{{region}}
        fan_out: {{type: values, name: region, values: [eu, emea, us]}}
""",
        encoding="utf-8",
    )

    assert main(["run"]) == 0

    status, records, metadata = pulls(database_url)["ledger.accounts"]
    assert (status, records, metadata["duplicate_records"]) == ("committed", 7, 2)
    assert [row[0] for row in stored(database_url, "ledger.accounts")] == [1, 2, 3, 2, 3, 4, 5]


def test_duplicates_by_the_declared_key_count_a_record_changed_between_pages(
    httpserver: HTTPServer,
) -> None:
    pages = {
        1: [{"region": "eu", "id": 1, "at": "2024-01-01"}, {"region": "eu", "id": 2, "at": "2024-01-02"}],
        2: [{"region": "eu", "id": 2, "at": "2024-01-05"}, {"region": "us", "id": 2, "at": "2024-01-03"}],
        3: [],
    }
    httpserver.expect_request("/items").respond_with_handler(
        lambda request: json_response(pages[int(request.args["page"])])
    )
    ex = RestExtractor(
        "api",
        RestConnection(base_url=httpserver.url_for("/")),
        TypeAdapter(RestAuth).validate_python({"type": "none"}),
        RestEntity.model_validate(
            {
                "name": "items",
                "path": "/items",
                "pagination": {"type": "page_number"},
                "incremental": {"param": "since", "cursor_field": "at"},
                "reconcile_keys": {"path": "/items/keys", "key": ["region", "id"]},
            }
        ),
        batch_size=100,
    )

    got = [row for item in ex.extract(None) if isinstance(item, Batch) for row in item.rows]

    assert len(got) == 4  # eu/2 twice, as sent: once as it was, once as it became
    assert ex.state.metadata["duplicate_records"] == 1
    assert ex.state.metadata["duplicate_key"] == ["region", "id"]


def test_the_duplicate_counter_is_bounded_and_exact_below_its_bound() -> None:
    counter = DuplicateCounter()
    for i in range(5000):  # past the first table (1024 slots): it grows and keeps every digest
        assert counter.add({"id": i, "amount": Decimal(f"{i}.10")}) is False
    assert all(counter.add({"amount": Decimal(f"{i}.10"), "id": i}) for i in range(5000))  # key order
    assert counter.add({"id": 10**30}) is False and counter.add({"id": 10**30}) is True  # past 64 bits
    assert counter.metadata() == {"duplicate_records": 5001}

    bounded = DuplicateCounter(["id"], limit=3)
    for i in [1, 2, 3, 4, 5, 1, 4]:
        bounded.add({"id": i, "v": "x"})
    assert bounded.tracked == 3
    # 1 came again and is counted; 4 came again but was never tracked: the count is a lower bound
    assert bounded.metadata() == {"duplicate_records": 1, "duplicate_key": ["id"], "duplicates_tracked": 3}

    keyed = DuplicateCounter(["id"])
    assert keyed.add({"id": None, "v": 1}) is False and keyed.add({"id": None, "v": 2}) is False
    assert keyed.add({"id": None, "v": 1}) is True  # without a key value: the whole record
