"""Lineage: edges recorded by the jobs in ops.lineage_edges, `etl lineage RUN_ID`, and the OpenLineage
run events every zone job emits (to a real HTTP server on loopback and to a file)."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ops_support
import pytest
from conformed_warehouse import CUSTOMER_COLUMNS, Warehouse
from ops_support import etl, etl_json, rows, staging
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import Dataset, OpenLineageEmitter, database_namespace
from etl_shared._lineage import OPENLINEAGE_SCHEMA_URL, PRODUCER, dbt_edges, pipeline_run_uuid

ops_env = ops_support.ops_env
source_url = ops_support.source_url  # the shared fixtures

pytestmark = pytest.mark.integration


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _names(datasets: list[dict[str, str]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def test_staging_jobs_emit_start_and_complete_or_fail_over_http_and_to_a_file(
    ops_env: str,
    source_url: str,
    tmp_path: Path,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[dict[str, Any]] = []

    def collect(request: Request) -> Response:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Authorization"] == "Bearer lineage-token"
        received.append(json.loads(request.data))
        return Response("", status=201)

    httpserver.expect_request("/api/v1/lineage", method="POST").respond_with_handler(collect)
    monkeypatch.setenv("ETL_OPENLINEAGE_URL", httpserver.url_for("/api/v1/lineage"))
    monkeypatch.setenv("ETL_OPENLINEAGE_FILE", str(tmp_path / "lineage" / "events.jsonl"))
    monkeypatch.setenv("ETL_OPENLINEAGE_API_KEY", "lineage-token")

    assert staging("run", "--source", "shop", run_id="ol-1", monkeypatch=monkeypatch) == 0

    from_file = _events(tmp_path / "lineage" / "events.jsonl")
    assert received == from_file
    assert [e["eventType"] for e in received] == ["START", "COMPLETE"]
    ((job_id,),) = rows(ops_env, "select job_id from ops.job_runs where run_id = 'ol-1'")
    warehouse = database_namespace(ops_env)
    source = database_namespace(source_url)
    assert warehouse == "postgres://localhost:5432" + urlsplit(ops_env).path
    for event in received:
        assert event["schemaURL"] == OPENLINEAGE_SCHEMA_URL
        assert event["producer"] == PRODUCER
        assert event["run"]["runId"] == str(job_id)
        assert event["job"] == {"namespace": "etl", "name": "staging:shop", "facets": {}}
        assert event["run"]["facets"]["parent"]["run"]["runId"] == str(pipeline_run_uuid("ol-1"))
        assert event["run"]["facets"]["etl"]["run_id"] == "ol-1"
        uuid.UUID(event["run"]["runId"])
    start, complete = received
    assert start["inputs"] == [] and start["outputs"] == []
    assert _names(complete["inputs"]) == {(source, "shop.customers"), (source, "shop.orders")}
    assert _names(complete["outputs"]) == {(warehouse, "staging.pulls"), (warehouse, "staging.pull_batches")}
    assert complete["run"]["facets"]["etl"]["exit_code"] == 0
    assert "password" not in json.dumps(received) and "@" not in source

    # A failing job: FAIL with the error, and the datasets of what it did pull.
    (tmp_path / "files" / "events.csv").write_text("event_id,kind\n1\n", encoding="utf-8")
    assert staging("run", run_id="ol-2", monkeypatch=monkeypatch) == 3

    start, end = received[2:]
    assert (start["eventType"], end["eventType"]) == ("START", "FAIL")
    error = end["run"]["facets"]["errorMessage"]
    assert error["message"].startswith("SourceFatalError:") and error["programmingLanguage"] == "python"
    assert error["_schemaURL"].startswith("https://openlineage.io/spec/facets/")
    assert end["run"]["facets"]["etl"]["exit_code"] == 3
    assert (source, "shop.orders") in _names(end["inputs"])
    assert all(not name.endswith("events.csv") for _, name in _names(end["inputs"]))
    assert len(_events(tmp_path / "lineage" / "events.jsonl")) == 4


def test_an_unreachable_lineage_backend_never_fails_the_job(
    ops_env: str, tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # A backend answering 500, then one nobody listens on, and a file that cannot be written.
    httpserver.expect_request("/lineage").respond_with_data("boom", status=500)
    monkeypatch.setenv("ETL_OPENLINEAGE_URL", httpserver.url_for("/lineage"))
    monkeypatch.setenv("ETL_OPENLINEAGE_FILE", str(tmp_path / "files" / "events.csv" / "not-a-folder.jsonl"))

    assert staging("run", "--source", "web", run_id="down-1", monkeypatch=monkeypatch) == 0

    assert len(httpserver.log) == 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("ETL_OPENLINEAGE_URL", f"http://127.0.0.1:{port}/lineage")

    assert staging("run", "--source", "web", run_id="down-2", monkeypatch=monkeypatch) == 0

    warnings = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "OpenLineage" in r.getMessage()
    ]
    assert any("was not accepted" in w and "500" in w for w in warnings)
    assert any("was not accepted" in w and "refused" in w.lower() for w in warnings)
    assert any("cannot append" in w for w in warnings)
    assert rows(ops_env, "select status from ops.job_runs order by started_at") == [
        ("succeeded",),
        ("succeeded",),
    ]


def test_emitter_without_configuration_does_nothing(tmp_path: Path) -> None:
    emitter = OpenLineageEmitter(zone="staging", job_name="staging", run_id="r")
    emitter.start(uuid.uuid4())
    emitter.finish(None, failed=True, error="x")
    assert not emitter.enabled and list(tmp_path.iterdir()) == []


def test_dbt_edges_resolve_ephemeral_models_and_sources(tmp_path: Path) -> None:
    manifest = {
        "nodes": {
            "model.p.validated_x": {
                "resource_type": "model",
                "schema": "conformed",
                "name": "validated_x",
                "alias": "validated_x",
                "config": {"materialized": "table"},
                "depends_on": {"nodes": ["source.p.staging.pull_batches", "model.p.eph", "seed.p.codes"]},
            },
            "model.p.eph": {
                "resource_type": "model",
                "schema": "conformed",
                "name": "eph",
                "config": {"materialized": "ephemeral"},
                "depends_on": {"nodes": ["source.p.staging.pulls"]},
            },
            "seed.p.codes": {"resource_type": "seed", "schema": "conformed", "name": "codes", "config": {}},
            "model.p.x": {
                "resource_type": "model",
                "schema": "conformed",
                "name": "x",
                "alias": "x",
                "config": {"materialized": "incremental"},
                "depends_on": {"nodes": ["model.p.validated_x", "test.p.not_a_parent"]},
            },
            "model.p.not_built": {
                "resource_type": "model",
                "schema": "conformed",
                "name": "not_built",
                "config": {"materialized": "table"},
                "depends_on": {"nodes": ["model.p.x"]},
            },
        },
        "sources": {
            "source.p.staging.pull_batches": {
                "schema": "staging",
                "name": "pull_batches",
                "identifier": "pull_batches",
            },
            "source.p.staging.pulls": {"schema": "staging", "name": "pulls", "identifier": "pulls"},
        },
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")

    edges = dbt_edges(path, ["conformed.validated_x", "conformed.x"], "postgres://h:1/db")

    assert sorted((i.name, o.name) for i, o in edges) == [
        ("conformed.codes", "conformed.validated_x"),
        ("conformed.validated_x", "conformed.x"),
        ("staging.pull_batches", "conformed.validated_x"),
        ("staging.pulls", "conformed.validated_x"),
    ]
    assert all(i.namespace == "postgres://h:1/db" == o.namespace for i, o in edges)
    assert Dataset("a", "b") < Dataset("a", "c")


T0 = "2025-01-01T08:00:00Z"


def test_lineage_of_a_run_from_pull_to_semantic_tables_and_exports(
    warehouse: Warehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conformed and semantic zones built for real (dbt): the pull's path to the tables and files,
    from the audit tables, and each zone's OpenLineage events with its datasets."""
    pull = warehouse.pull(
        "oltp",
        "customers",
        CUSTOMER_COLUMNS,
        [
            [1, "ann@example.com", "Ann", "Lee", None, "DE", T0, T0],
            [2, "bob@example.com", "Bob", "Ray", None, "FR", T0, T0],
        ],
    )
    events = tmp_path / "openlineage.jsonl"

    assert warehouse.run(run_id="L1", openlineage_file=str(events)) == 0
    assert warehouse.semantic(run_id="L1", openlineage_file=str(events)) == 0

    code, data = etl_json(capsys, "lineage", "L1")

    assert code == 0
    assert [(j["zone"], j["status"]) for j in data["jobs"]] == [
        ("conformed", "succeeded"),
        ("semantic", "succeeded"),
    ]
    (item,) = data["pulls"]
    assert (item["pull_id"], item["source"], item["entity"], item["records"]) == (
        str(pull),
        "oltp",
        "customers",
        2,
    )
    assert item["consumed_by"] == [
        {"consumer": "customer_history", "disposition": "processed", "run_id": "L1", "note": None}
    ]
    assert {"conformed.validated_customer", "conformed.customer_history", "conformed.customer"} <= set(
        item["conformed_tables"]
    )
    assert not any("sales_order" in t for t in item["conformed_tables"])
    assert "semantic.dim_customer" in item["semantic_tables"]
    exported = rows(warehouse.url, "select path from ops.exports where run_id = 'L1'")
    assert exported and {e["path"] for e in item["exports"]} == {p for (p,) in exported}
    assert {
        "zone": "conformed",
        "input": "staging.pull_batches",
        "output": "conformed.validated_customer",
    } in data["edges"]
    assert {"zone": "semantic", "input": "conformed.customer", "output": "semantic.dim_customer"} in data[
        "edges"
    ]

    code, text = etl(capsys, "lineage", "L1")
    assert code == 0
    assert f"oltp.customers  pull {pull}  committed, 2 records, made by run " in text
    assert "consumed by customer_history: processed (run L1)" in text
    assert "semantic.dim_customer" in text

    namespace = database_namespace(warehouse.url)
    emitted = _events(events)
    assert [(e["job"]["name"], e["eventType"]) for e in emitted] == [
        ("conformed", "START"),
        ("conformed", "COMPLETE"),
        ("semantic", "START"),
        ("semantic", "COMPLETE"),
    ]
    conformed_end, semantic_end = emitted[1], emitted[3]
    assert (namespace, "staging.pull_batches") in _names(conformed_end["inputs"])
    assert (namespace, "conformed.customer") in _names(conformed_end["outputs"])
    assert (namespace, "conformed.customer") not in _names(conformed_end["inputs"])
    assert (namespace, "conformed.customer") in _names(semantic_end["inputs"])
    assert (namespace, "semantic.dim_customer") in _names(semantic_end["outputs"])
    assert {p for (p,) in exported} <= {name for _, name in _names(semantic_end["outputs"])}

    code, text = etl(capsys, "lineage", "no-such-run")
    assert code == 0 and "nothing recorded for this run id" in text
