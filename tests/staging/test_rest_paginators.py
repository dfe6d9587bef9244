"""One class per paginator, each against a real HTTP server on loopback with a small data generator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import SourceFatalError
from etl_staging import Batch, Payload
from etl_staging._rest import RestAuth, RestConnection, RestEntity, RestExtractor


def people(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"person {i}"} for i in range(1, count + 1)]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_extractor(httpserver: HTTPServer, entity: dict[str, Any], **connection: Any) -> RestExtractor:
    fake = FakeTime()
    return RestExtractor(
        "api",
        RestConnection.model_validate({"base_url": httpserver.url_for("/"), "max_retries": 2, **connection}),
        TypeAdapter(RestAuth).validate_python({"type": "none"}),
        RestEntity.model_validate({"name": "people", "path": "/people", **entity}),
        batch_size=1000,
        sleep=fake.sleep,
        clock=fake.clock,
    )


def records(ex: RestExtractor, watermark: str | None = None) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(watermark)
        if isinstance(item, Batch)
        for row in item.rows
    ]


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(document), status=status, headers=headers, content_type="application/json")


def fatal(ex: RestExtractor) -> str:
    with pytest.raises(SourceFatalError) as info:
        records(ex)
    return str(info.value)


class TestSinglePage:
    def test_nested_records_path(self, httpserver: HTTPServer) -> None:
        httpserver.expect_request("/people").respond_with_json({"data": {"result": {"items": people(3)}}})
        ex = make_extractor(httpserver, {"records_path": "data.result.items"})

        assert records(ex) == people(3)
        assert ex.state.metadata["pages"] == 1 and ex.state.metadata["requests"] == 1

    def test_body_is_the_list(self, httpserver: HTTPServer) -> None:
        httpserver.expect_request("/people").respond_with_json(people(2))
        assert records(make_extractor(httpserver, {})) == people(2)

    def test_a_missing_records_path_is_fatal(self, httpserver: HTTPServer) -> None:
        httpserver.expect_request("/people").respond_with_json({"items": []})
        assert "records path 'data' not found" in fatal(make_extractor(httpserver, {"records_path": "data"}))

    def test_scalar_records_are_refused(self, httpserver: HTTPServer) -> None:
        httpserver.expect_request("/people").respond_with_json([1, 2])
        assert "record 0 is a int, not a JSON object" in fatal(make_extractor(httpserver, {}))


class TestOffset:
    @staticmethod
    def serve(
        httpserver: HTTPServer, data: list[dict[str, Any]], *, cap: int = 1000, total: bool = True
    ) -> None:
        def handler(request: Request) -> Response:
            offset, limit = int(request.args["offset"]), min(int(request.args["limit"]), cap)
            body: dict[str, Any] = {"data": data[offset : offset + limit]}
            if total:
                body["meta"] = {"total": len(data)}
            return json_response(body)

        httpserver.expect_request("/people").respond_with_handler(handler)

    def test_stops_when_the_total_is_reached(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(25))
        pagination = {"type": "offset", "limit": 10, "total_path": "meta.total"}
        ex = make_extractor(httpserver, {"records_path": "data", "pagination": pagination})

        assert records(ex) == people(25)
        offsets = [r.args["offset"] for r, _ in httpserver.log]
        assert offsets == ["0", "10", "20"]

    def test_stops_on_an_empty_page_without_a_total(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(20), total=False)
        ex = make_extractor(
            httpserver, {"records_path": "data", "pagination": {"type": "offset", "limit": 10}}
        )

        assert records(ex) == people(20)
        assert len(httpserver.log) == 3

    def test_a_server_capping_the_limit_loses_nothing(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(23), cap=7)
        pagination = {"type": "offset", "limit": 50, "total_path": "meta.total"}
        ex = make_extractor(httpserver, {"records_path": "data", "pagination": pagination})

        assert records(ex) == people(23)
        assert [r.args["offset"] for r, _ in httpserver.log] == ["0", "7", "14", "21"]

    def test_a_server_ignoring_the_offset_is_a_loop(self, httpserver: HTTPServer) -> None:
        httpserver.expect_request("/people").respond_with_json({"data": people(3)})
        ex = make_extractor(
            httpserver, {"records_path": "data", "pagination": {"type": "offset", "limit": 3}}
        )
        assert "pagination loop detected" in fatal(ex)

    def test_custom_parameter_names(self, httpserver: HTTPServer) -> None:
        data = people(4)

        def handler(request: Request) -> Response:
            skip, take = int(request.args["skip"]), int(request.args["take"])
            return json_response(data[skip : skip + take])

        httpserver.expect_request("/people").respond_with_handler(handler)
        pagination = {"type": "offset", "offset_param": "skip", "limit_param": "take", "limit": 3}
        assert records(make_extractor(httpserver, {"pagination": pagination})) == data


class TestPageNumber:
    @staticmethod
    def serve(httpserver: HTTPServer, data: list[dict[str, Any]], *, size: int, first: int = 1) -> None:
        pages = (len(data) + size - 1) // size

        def handler(request: Request) -> Response:
            page = int(request.args["page"]) - first
            return json_response({"items": data[page * size : (page + 1) * size], "total_pages": pages})

        httpserver.expect_request("/people").respond_with_handler(handler)

    def test_stops_at_the_page_count(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(10), size=4)
        pagination = {
            "type": "page_number",
            "size_param": "size",
            "size": 4,
            "total_pages_path": "total_pages",
        }
        ex = make_extractor(httpserver, {"records_path": "items", "pagination": pagination})

        assert records(ex) == people(10)
        assert [(r.args["page"], r.args["size"]) for r, _ in httpserver.log] == [
            ("1", "4"),
            ("2", "4"),
            ("3", "4"),
        ]

    def test_zero_based_pages_stop_on_an_empty_page(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(5), size=2, first=0)
        pagination = {"type": "page_number", "start_page": 0}
        ex = make_extractor(httpserver, {"records_path": "items", "pagination": pagination})

        assert records(ex) == people(5)
        assert [r.args["page"] for r, _ in httpserver.log] == ["0", "1", "2", "3"]

    def test_max_pages_is_a_safety_limit(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(10), size=2)
        ex = make_extractor(
            httpserver, {"records_path": "items", "pagination": {"type": "page_number", "max_pages": 3}}
        )
        assert "more than max_pages=3 pages" in fatal(ex)


class TestCursorBody:
    @staticmethod
    def serve(httpserver: HTTPServer, data: list[dict[str, Any]], size: int) -> None:
        def handler(request: Request) -> Response:
            start = int(request.args.get("cursor", "c0")[1:])
            following = f"c{start + size}" if start + size < len(data) else None
            return json_response({"items": data[start : start + size], "meta": {"next_cursor": following}})

        httpserver.expect_request("/people").respond_with_handler(handler)

    def test_follows_the_cursor_until_it_is_missing(self, httpserver: HTTPServer) -> None:
        self.serve(httpserver, people(7), size=3)
        pagination = {"type": "cursor_body", "cursor_path": "meta.next_cursor", "cursor_param": "cursor"}
        ex = make_extractor(httpserver, {"records_path": "items", "pagination": pagination})

        assert records(ex) == people(7)
        assert [r.args.get("cursor") for r, _ in httpserver.log] == [None, "c3", "c6"]

    def test_a_repeated_cursor_is_a_loop(self, httpserver: HTTPServer) -> None:
        pages = iter([("A", 1), ("B", 2), ("A", 3)])

        def handler(request: Request) -> Response:
            cursor, ident = next(pages)
            return json_response({"items": [{"id": ident}], "next": cursor})

        httpserver.expect_request("/people").respond_with_handler(handler)
        pagination = {"type": "cursor_body", "cursor_path": "next", "cursor_param": "after"}
        message = fatal(make_extractor(httpserver, {"records_path": "items", "pagination": pagination}))

        assert "pagination loop detected at cursor 'A'" in message
        assert message.startswith("source api, entity people:")


class TestCursorHeader:
    def test_follows_the_header(self, httpserver: HTTPServer) -> None:
        data = people(5)

        def handler(request: Request) -> Response:
            start = int(request.args.get("page_token", "0"))
            headers = {"X-Next-Page": str(start + 2)} if start + 2 < len(data) else {}
            return json_response(data[start : start + 2], headers=headers)

        httpserver.expect_request("/people").respond_with_handler(handler)
        pagination = {"type": "cursor_header", "header": "X-Next-Page", "cursor_param": "page_token"}

        assert records(make_extractor(httpserver, {"pagination": pagination})) == data
        assert len(httpserver.log) == 3


class TestLinkHeader:
    @staticmethod
    def serve(httpserver: HTTPServer, data: list[dict[str, Any]], *, absolute: bool) -> None:
        def handler(request: Request) -> Response:
            page = int(request.args.get("page", "1"))
            headers = {}
            if page * 2 < len(data):
                target = f"/people?page={page + 1}&per_page=2"
                url = httpserver.url_for(target) if absolute else target
                headers["Link"] = (
                    f'<{url}>; rel="next", <{httpserver.url_for("/people?page=1")}>; rel="first"'
                )
            return json_response(data[(page - 1) * 2 : page * 2], headers=headers)

        httpserver.expect_request("/people").respond_with_handler(handler)

    @pytest.mark.parametrize("absolute", [True, False])
    def test_follows_rel_next(self, httpserver: HTTPServer, absolute: bool) -> None:
        self.serve(httpserver, people(5), absolute=absolute)
        ex = make_extractor(httpserver, {"pagination": {"type": "link_header"}})

        assert records(ex) == people(5)
        assert [r.args.get("page") for r, _ in httpserver.log] == [None, "2", "3"]

    def test_a_link_to_another_host_is_refused(self, httpserver: HTTPServer) -> None:
        headers = {"Link": '<https://elsewhere.example/people?page=2>; rel="next"'}
        httpserver.expect_request("/people").respond_with_response(json_response(people(1), headers=headers))
        message = fatal(make_extractor(httpserver, {"pagination": {"type": "link_header"}}))
        assert "another host (https://elsewhere.example)" in message


class TestNextUrlBody:
    def test_follows_the_next_url(self, httpserver: HTTPServer) -> None:
        data = people(5)

        def handler(request: Request) -> Response:
            page = int(request.args.get("p", "0"))
            following = f"/people?p={page + 1}" if (page + 1) * 2 < len(data) else None
            return json_response({"results": data[page * 2 : (page + 1) * 2], "links": {"next": following}})

        httpserver.expect_request("/people").respond_with_handler(handler)
        pagination = {"type": "next_url_body", "next_path": "links.next"}

        assert (
            records(make_extractor(httpserver, {"records_path": "results", "pagination": pagination})) == data
        )

    def test_a_link_back_to_the_first_page_is_a_loop(self, httpserver: HTTPServer) -> None:
        def handler(request: Request) -> Response:
            page = int(request.args.get("p", "0"))
            following = "/people?p=1" if page == 0 else "/people?kind=all"
            return json_response({"results": [{"id": page}], "next": following})

        httpserver.expect_request("/people").respond_with_handler(handler)
        ex = make_extractor(
            httpserver,
            {
                "params": {"kind": "all"},
                "records_path": "results",
                "pagination": {"type": "next_url_body", "next_path": "next"},
            },
        )
        assert "pagination loop detected at URL" in fatal(ex)


class TestPostBody:
    def test_search_after_cursor_in_the_body(self, httpserver: HTTPServer) -> None:
        data = people(7)

        def handler(request: Request) -> Response:
            query = request.get_json()
            assert query["filter"] == {"active": True}
            after = query.get("search_after", [0, ""])[0]
            hits = [r for r in data if r["id"] > after][: query["size"]]
            following = [hits[-1]["id"], "x"] if hits else None
            return json_response({"hits": hits, "next": following})

        httpserver.expect_request("/people/search", method="POST").respond_with_handler(handler)
        entity = {
            "path": "/people/search",
            "method": "POST",
            "body": {"filter": {"active": True}, "size": 3},
            "records_path": "hits",
            "pagination": {"type": "post_body", "cursor_path": "next", "body_cursor_field": "search_after"},
        }
        ex = make_extractor(httpserver, entity)

        assert records(ex) == data
        bodies = [r.get_json() for r, _ in httpserver.log]
        assert [b.get("search_after") for b in bodies] == [None, [3, "x"], [6, "x"], [7, "x"]]
        assert ex.entity.body == {"filter": {"active": True}, "size": 3}  # the configuration is untouched

    def test_offset_in_a_nested_body_field(self, httpserver: HTTPServer) -> None:
        data = people(5)

        def handler(request: Request) -> Response:
            page = request.get_json()["page"]
            rows = data[page["from"] : page["from"] + page["size"]]
            return json_response({"result": {"rows": rows, "total": len(data)}})

        httpserver.expect_request("/people/query", method="POST").respond_with_handler(handler)
        pagination = {
            "type": "post_body",
            "body_offset_field": "page.from",
            "body_limit_field": "page.size",
            "limit": 2,
            "total_path": "result.total",
        }
        entity = {
            "path": "/people/query",
            "method": "POST",
            "records_path": "result.rows",
            "pagination": pagination,
        }

        assert records(make_extractor(httpserver, entity)) == data
        assert [r.get_json()["page"] for r, _ in httpserver.log] == [
            {"from": 0, "size": 2},
            {"from": 2, "size": 2},
            {"from": 4, "size": 2},
        ]


def test_pages_are_streamed_as_payloads_and_batches(httpserver: HTTPServer) -> None:
    """A payload per page as fetched; batches cut by batch_size across pages, never the whole set."""
    TestPageNumber.serve(httpserver, people(5), size=2)
    ex = make_extractor(httpserver, {"records_path": "items", "pagination": {"type": "page_number"}})
    ex.batch_size = 3
    stream = ex.extract(None)

    first = next(stream)
    assert isinstance(first, Payload) and first.name == "page-000001"
    assert first.content_type == "application/json"
    assert json.loads(first.body)["items"] == people(2)
    assert len(httpserver.log) == 1  # nothing fetched ahead
    rest = list(stream)

    kinds = [type(item).__name__ for item in rest]
    assert kinds == ["Payload", "Batch", "Payload", "Payload", "Batch"]
    batches = [item for item in rest if isinstance(item, Batch)]
    assert [len(b.rows) for b in batches] == [3, 2]
    assert batches[0].columns == ["id", "name"]
    assert ex.state.bytes_read == sum(len(i.body) for i in [first, *rest] if isinstance(i, Payload))


def test_batch_columns_are_the_union_of_keys_in_first_seen_order(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/people").respond_with_json(
        [{"id": 1, "tags": ["a"]}, {"id": 2, "nested": {"k": 1}, "tags": None}]
    )
    items = list(make_extractor(httpserver, {"keep_payload": False}).extract(None))

    assert items == [
        Batch(["id", "tags", "nested"], [[1, ["a"], None], [2, None, {"k": 1}]], json_numbers=True)
    ]
