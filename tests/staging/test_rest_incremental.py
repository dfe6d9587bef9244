"""Incremental REST pulls: the start parameter from the stored watermark and lookback, the new watermark."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import SourceFatalError
from etl_staging import Batch
from etl_staging._rest import (
    Incremental,
    RestAuth,
    RestConnection,
    RestEntity,
    RestExtractor,
    incremental_start,
)

EVENTS = [
    {"id": 1, "updated_at": "2024-05-01T09:00:00Z"},
    {"id": 2, "updated_at": "2024-05-01T10:30:00.500000Z"},
    {"id": 3, "updated_at": "2024-05-01T10:30:00Z"},
    {"id": 4, "updated_at": None},
]


def make_extractor(httpserver: HTTPServer, entity: dict[str, Any]) -> RestExtractor:
    return RestExtractor(
        "api",
        RestConnection(base_url=httpserver.url_for("/api/")),
        TypeAdapter(RestAuth).validate_python({"type": "none"}),
        RestEntity.model_validate({"name": "events", "path": "events", **entity}),
        batch_size=1000,
        sleep=lambda seconds: None,
    )


def run(ex: RestExtractor, watermark: str | None) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(watermark)
        if isinstance(item, Batch)
        for row in item.rows
    ]


def serve(httpserver: HTTPServer, records: list[dict[str, Any]]) -> None:
    httpserver.expect_request("/api/events").respond_with_json({"data": records})


INCREMENTAL = {"param": "updated_since", "cursor_field": "updated_at", "lookback_s": 3600}


def test_first_pull_sends_initial_and_keeps_the_largest_cursor(httpserver: HTTPServer) -> None:
    serve(httpserver, EVENTS)
    entity = {"records_path": "data", "incremental": {**INCREMENTAL, "initial": "2024-01-01T00:00:00Z"}}
    ex = make_extractor(httpserver, entity)

    assert run(ex, None) == EVENTS
    assert httpserver.log[0][0].args["updated_since"] == "2024-01-01T00:00:00Z"
    # Compared as instants: .5 s after 10:30:00 wins although "." sorts before "Z".
    assert ex.state.watermark_after == "2024-05-01T10:30:00.500000Z"


def test_first_pull_without_initial_sends_no_parameter(httpserver: HTTPServer) -> None:
    serve(httpserver, EVENTS[:1])
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": INCREMENTAL})

    run(ex, None)
    assert "updated_since" not in httpserver.log[0][0].args
    assert ex.state.watermark_after == "2024-05-01T09:00:00Z"


def test_next_pull_starts_a_lookback_before_the_watermark(httpserver: HTTPServer) -> None:
    serve(httpserver, EVENTS[:1])  # only an old record comes back inside the lookback window
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": INCREMENTAL})

    run(ex, "2024-05-01T09:30:00Z")

    assert httpserver.log[0][0].args["updated_since"] == "2024-05-01T08:30:00Z"
    assert ex.state.watermark_after == "2024-05-01T09:30:00Z"  # never moves back


def test_no_records_keep_the_watermark(httpserver: HTTPServer) -> None:
    serve(httpserver, [])
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": INCREMENTAL})

    assert run(ex, "2024-05-01T09:30:00+02:00") == []
    assert httpserver.log[0][0].args["updated_since"] == "2024-05-01T08:30:00+02:00"
    assert ex.state.watermark_after == "2024-05-01T09:30:00+02:00"
    assert ex.state.metadata == {
        "pages": 1,
        "requests": 1,
        "retries": 0,
        "url": httpserver.url_for("/api/events"),
        "duplicate_records": 0,
    }


def test_epoch_cursors(httpserver: HTTPServer) -> None:
    serve(httpserver, [{"id": 1, "ts": 1714557600}, {"id": 2, "ts": "1714561200"}, {"id": 3, "ts": 99}])
    incremental = {"param": "since", "cursor_field": "ts", "lookback_s": 600, "format": "epoch"}
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": incremental})

    run(ex, "1714550000")

    assert httpserver.log[0][0].args["since"] == "1714549400"
    assert ex.state.watermark_after == "1714561200"


def test_nested_cursor_field_and_date_format(httpserver: HTTPServer) -> None:
    serve(
        httpserver,
        [{"id": 1, "meta": {"changed": "2024-05-03"}}, {"id": 2, "meta": {"changed": "2024-05-02"}}],
    )
    incremental = {"param": "from", "cursor_field": "meta.changed", "lookback_s": 86400, "format": "date"}
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": incremental})

    run(ex, "2024-05-01")

    assert httpserver.log[0][0].args["from"] == "2024-04-30"
    assert ex.state.watermark_after == "2024-05-03"


def test_post_puts_the_start_in_the_body(httpserver: HTTPServer) -> None:
    def handler(request: Request) -> Response:
        return Response(json.dumps({"hits": EVENTS[:2]}), content_type="application/json")

    httpserver.expect_request("/api/events", method="POST").respond_with_handler(handler)
    entity = {
        "method": "POST",
        "body": {"query": {"type": "order"}},
        "records_path": "hits",
        "incremental": {"param": "query.updated_after", "cursor_field": "updated_at"},
    }
    ex = make_extractor(httpserver, entity)

    run(ex, "2024-04-01T00:00:00Z")

    assert httpserver.log[0][0].get_json() == {
        "query": {"type": "order", "updated_after": "2024-04-01T00:00:00Z"}
    }
    assert ex.state.watermark_after == "2024-05-01T10:30:00.500000Z"


def test_a_cursor_value_that_is_not_a_timestamp_is_fatal(httpserver: HTTPServer) -> None:
    serve(httpserver, [{"id": 1, "updated_at": "yesterday"}])
    ex = make_extractor(httpserver, {"records_path": "data", "incremental": INCREMENTAL})

    with pytest.raises(
        SourceFatalError, match="cursor field 'updated_at' value 'yesterday' is not an ISO 8601"
    ):
        run(ex, None)


@pytest.mark.parametrize(
    ("config", "watermark", "expected"),
    [
        ({"format": "iso"}, None, None),
        ({"format": "iso", "initial": "2020-01-01"}, None, "2020-01-01"),
        ({"format": "iso"}, "2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
        ({"format": "iso", "lookback_s": 90}, "2024-05-01T10:00:00", "2024-05-01T09:58:30"),
        ({"format": "iso", "lookback_s": 60}, "2024-05-01T00:00:30.250Z", "2024-04-30T23:59:30.250000Z"),
        ({"format": "date", "lookback_s": 60}, "2024-05-01T00:00:30Z", "2024-04-30"),
        ({"format": "epoch", "lookback_s": 60}, "1000", 940),
        ({"format": "epoch", "lookback_s": 1}, "1000.5", 999.5),
    ],
)
def test_incremental_start(config: dict[str, Any], watermark: str | None, expected: Any) -> None:
    incremental = Incremental.model_validate({"param": "since", "cursor_field": "ts", **config})
    assert incremental_start(incremental, watermark) == expected
