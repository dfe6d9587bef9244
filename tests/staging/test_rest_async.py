"""``kind: rest_async``: fan-out requests with aiohttp against a real, threaded loopback server.

Sleeps of the extractor (retry waits, rate budget) are injected and recorded, so nothing waits on the
wall clock except the server's own per-request delays used to answer out of order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import ConfigurationError, SourceFatalError, SourceTransientError
from etl_staging import Batch, Payload, load_sources
from etl_staging._rest import AsyncRestEntity, AsyncRestExtractor, RateBudget, RestAuth, RestConnection
from etl_staging.cli import main

SECRET = "5up3r-s3cret-key"


class FakeTime:
    """Recorded sleeps advancing a fake clock (shared with a RateBudget)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class InFlight:
    """Counts the requests the server is answering at once."""

    def __init__(self) -> None:
        self.current = 0
        self.max = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.current += 1
            self.max = max(self.max, self.current)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


def make_extractor(
    base_url: str,
    entity: dict[str, Any],
    *,
    fake: FakeTime | None = None,
    auth: dict[str, Any] | None = None,
    concurrency: int = 4,
    batch_size: int = 1000,
    budget: RateBudget | None = None,
    today: date = date(2024, 3, 10),
    **connection: Any,
) -> AsyncRestExtractor:
    fake = fake or FakeTime()
    return AsyncRestExtractor(
        "api",
        RestConnection.model_validate({"base_url": base_url, "max_retries": 3, **connection}),
        TypeAdapter(RestAuth).validate_python(auth or {"type": "none"}),
        AsyncRestEntity.model_validate({"name": "things", **entity}),
        batch_size=batch_size,
        concurrency=concurrency,
        budget=budget,
        sleep=fake.sleep,
        clock=fake.clock,
        random=lambda: 0.5,
        today=lambda: today,
    )


def records(ex: AsyncRestExtractor) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(None)
        if isinstance(item, Batch)
        for row in item.rows
    ]


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(document), status=status, headers=headers, content_type="application/json")


DAYS = [f"2024-03-{day:02d}" for day in range(1, 11)]


# ------------------------------------------------------------------------------ fan-out order


def test_ten_dates_come_out_in_date_order_although_answered_out_of_order(api: HTTPServer) -> None:
    answered: list[str] = []

    def handler(request: Request) -> Response:
        day = request.path.rsplit("/", 1)[1]
        time.sleep(0.02 * (10 - int(day[-2:])))  # the first days answer last
        answered.append(day)
        return json_response({"data": [{"day": day, "n": n} for n in range(2)]})

    for day in DAYS:
        api.expect_request(f"/v1/reports/{day}", query_string="units=eur").respond_with_handler(handler)
    ex = make_extractor(
        api.url_for("/v1"),
        {
            "path": "/reports/{day}",
            "params": {"units": "eur"},
            "records_path": "data",
            "fan_out": {"type": "dates", "name": "day", "start": "2024-03-01", "end": "2024-03-10"},
        },
        concurrency=10,
    )

    items = list(ex.extract(None))

    assert answered != DAYS  # the server really answered out of order
    got = [dict(zip(b.columns, row, strict=True)) for b in items if isinstance(b, Batch) for row in b.rows]
    assert got == [{"day": day, "n": n} for day in DAYS for n in range(2)]
    assert [p.name for p in items if isinstance(p, Payload)] == [f"request-{i:06d}" for i in range(1, 11)]
    assert ex.state.metadata["requests"] == 10 and ex.state.metadata["pages"] == 10
    assert ex.state.metadata["retries"] == 0
    assert ex.state.metadata["url"].endswith("/v1/reports/{day}")


def test_account_ids_as_a_query_parameter_in_list_order(api: HTTPServer) -> None:
    accounts = ["acc-7", "acc-3", "acc-9", "acc-1", "acc-5", "acc-2"]
    delays = {"acc-7": 0.08, "acc-3": 0.0, "acc-9": 0.05, "acc-1": 0.01, "acc-5": 0.06, "acc-2": 0.0}

    def handler(request: Request) -> Response:
        account = request.args["account"]
        time.sleep(delays[account])
        return json_response([{"account": account, "line": i} for i in range(3)])

    api.expect_request("/balances").respond_with_handler(handler)
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/balances", "fan_out": {"type": "values", "name": "account", "values": accounts}},
        batch_size=4,
    )

    batches = [item for item in ex.extract(None) if isinstance(item, Batch)]

    assert [len(b.rows) for b in batches] == [4, 4, 4, 4, 2]  # batches span responses
    assert [row[0] for b in batches for row in b.rows] == [a for a in accounts for _ in range(3)]


def test_relative_dates_with_a_step_and_a_format(api: HTTPServer) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.args["on"])
        return json_response([{"on": request.args["on"]}])

    api.expect_request("/fx").respond_with_handler(handler)
    fan_out = {"type": "dates", "name": "on", "start": "today-6d", "end": "today", "step_days": 3}
    ex = make_extractor(api.url_for("/"), {"path": "/fx", "fan_out": fan_out | {"format": "%Y%m%d"}})

    assert [r["on"] for r in records(ex)] == ["20240304", "20240307", "20240310"]
    assert sorted(seen) == ["20240304", "20240307", "20240310"]


def test_pages_with_a_count_read_from_the_first_page(api: HTTPServer) -> None:
    requested: list[int] = []

    def handler(request: Request) -> Response:
        # The placeholder is in a parameter value: the page is sent there, not also as `p`.
        assert "p" not in request.args and request.args["q"] == "x"
        page = int(request.args["page"])
        requested.append(page)
        time.sleep(0.01 * (5 - page))
        return json_response({"meta": {"pages": 4}, "items": [{"page": page, "i": i} for i in range(2)]})

    api.expect_request("/search").respond_with_handler(handler)
    entity = {
        "path": "/search",
        "params": {"page": "{p}", "q": "x"},
        "records_path": "items",
        "fan_out": {"type": "pages", "param": "p", "count_path": "meta.pages"},
    }
    ex = make_extractor(api.url_for("/"), entity)

    got = records(ex)

    assert [(r["page"], r["i"]) for r in got] == [(p, i) for p in range(1, 5) for i in range(2)]
    assert requested[0] == 1 and sorted(requested) == [1, 2, 3, 4]  # page 1 once, first
    assert ex.state.metadata["requests"] == 4


def test_pages_with_a_bad_count_path_is_fatal(api: HTTPServer) -> None:
    api.expect_request("/search").respond_with_json({"meta": {"pages": "many"}, "items": []})
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/search", "fan_out": {"type": "pages", "param": "page", "count_path": "meta.pages"}},
    )
    with pytest.raises(SourceFatalError, match=r"count_path 'meta\.pages' is not a page count"):
        records(ex)


# ---------------------------------------------------------------------- concurrency and budget


def test_concurrency_is_bounded(api: HTTPServer) -> None:
    inflight = InFlight()

    def handler(request: Request) -> Response:
        with inflight:
            time.sleep(0.03)
        return json_response([{"v": request.args["v"]}])

    api.expect_request("/items").respond_with_handler(handler)
    values = [f"{i:02d}" for i in range(20)]
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": values}},
        concurrency=3,
    )

    assert [r["v"] for r in records(ex)] == values
    assert 2 <= inflight.max <= 3


class RecordingBudget(RateBudget):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delays: list[float] = []

    def reserve(self) -> float:
        delay = super().reserve()
        self.delays.append(delay)
        return delay


def test_one_rate_budget_is_shared_by_the_entities_of_a_source(api: HTTPServer) -> None:
    api.expect_request("/items").respond_with_handler(lambda r: json_response([{"v": r.args["v"]}]))
    fake = FakeTime()
    # 2 requests per second on a clock that stands still: every request after the burst of two must
    # wait half a second more than the one before, whatever order the coroutines reserve in.
    budget = RecordingBudget(2, 1.0, clock=lambda: 1000.0)
    entity = {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": list("abcdef")}}

    for _ in range(2):  # two entities of one source, one budget
        ex = make_extractor(api.url_for("/"), entity, fake=fake, budget=budget, concurrency=4)
        assert [r["v"] for r in records(ex)] == list("abcdef")

    assert sorted(budget.delays) == [0.0, 0.0] + [0.5 * k for k in range(1, 11)]  # one per request
    assert sorted(fake.sleeps) == [0.5 * k for k in range(1, 11)]  # waited through the injected sleep


# ------------------------------------------------------------------------------------ retries


def test_429_with_retry_after_and_503_are_retried(api: HTTPServer) -> None:
    calls: dict[str, int] = {}

    def handler(request: Request) -> Response:
        v = request.args["v"]
        calls[v] = calls.get(v, 0) + 1
        if v == "a" and calls[v] == 1:
            return json_response({"error": "slow down"}, 429, {"Retry-After": "7"})
        if v == "b" and calls[v] <= 2:
            return Response("unavailable", status=503)
        return json_response([{"v": v}])

    api.expect_request("/items").respond_with_handler(handler)
    fake = FakeTime()
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": ["a", "b", "c"]}},
        fake=fake,
        backoff_base_s=1.0,
    )

    assert [r["v"] for r in records(ex)] == ["a", "b", "c"]
    assert calls == {"a": 2, "b": 3, "c": 1}
    # b's own backoff 0.5 * 1 and 0.5 * 2 (jitter 0.5); a's Retry-After, which b waits out too
    assert {0.5, 1.0, 7.0} <= set(fake.sleeps)
    assert fake.now >= 1000.0 + 7.0
    assert ex.state.metadata["retries"] == 3 and ex.state.metadata["requests"] == 6


def test_retries_exhausted_is_transient(api: HTTPServer) -> None:
    api.expect_request("/items").respond_with_data("busy", status=502)
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": ["a"]}},
        max_retries=2,
    )
    with pytest.raises(SourceTransientError, match=r"HTTP 502; gave up after 3 attempts"):
        records(ex)


def test_a_retry_after_beyond_the_limit_fails_at_once(api: HTTPServer) -> None:
    api.expect_request("/items").respond_with_data("", status=429, headers={"Retry-After": "600"})
    fake = FakeTime()
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": ["a"]}},
        fake=fake,
        max_retry_wait_s=60,
    )
    with pytest.raises(SourceTransientError, match="more than max_retry_wait_s=60"):
        records(ex)
    assert fake.sleeps == []


def test_a_connection_error_is_retried_then_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTime()
    ex = make_extractor(
        f"http://127.0.0.1:{port}",
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": ["a"]}},
        fake=fake,
        max_retries=2,
    )
    with pytest.raises(SourceTransientError, match="ConnectionError") as info:
        records(ex)
    assert len(fake.sleeps) == 2
    assert info.value.__cause__ is None


def test_a_404_is_fatal_names_the_redacted_url_and_never_shows_the_key(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ASYNC_TEST_KEY", SECRET)
    seen: list[str | None] = []

    def handler(request: Request) -> Response:
        seen.append(request.args.get("apikey"))
        day = request.path.rsplit("/", 1)[1]
        if day == "2024-03-02" and seen.count(SECRET) <= 3:
            return Response("overloaded", status=503)  # a retry warning is logged with the URL
        if day == "2024-03-03":
            return Response(f"no such day for apikey={SECRET}", status=404)
        return json_response([{"day": day}])

    api.expect_request(re.compile(r"^/days/\d{4}-\d{2}-\d{2}$")).respond_with_handler(handler)
    ex = make_extractor(
        api.url_for("/"),
        {
            "path": "/days/{day}",
            "fan_out": {"type": "dates", "name": "day", "start": "2024-03-01", "end": "2024-03-04"},
        },
        auth={"type": "api_key", "in": "query", "name": "apikey", "value_env": "ASYNC_TEST_KEY"},
        concurrency=1,
    )

    with pytest.raises(SourceFatalError) as info:
        records(ex)

    message = str(info.value)
    assert "source api, entity things" in message
    assert "not found (HTTP 404)" in message and "/days/2024-03-03?apikey=***" in message
    assert set(seen) == {SECRET}  # the key was sent on every request
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    assert "apikey=***" in logged
    for text in (message, logged, json.dumps(ex.state.metadata)):
        assert SECRET not in text


def test_bearer_token_and_a_closed_generator_stops_the_loop(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_TEST_TOKEN", SECRET)
    api.expect_request("/items", headers={"Authorization": f"Bearer {SECRET}"}).respond_with_handler(
        lambda r: json_response([{"v": r.args["v"]}])
    )
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": [str(i) for i in range(50)]}},
        auth={"type": "bearer", "token_env": "ASYNC_TEST_TOKEN"},
        batch_size=1,
        concurrency=2,
    )
    items = ex.extract(None)
    first = [next(items) for _ in range(3)]
    items.close()  # the runner stops early when another pull fails

    assert [i.rows for i in first if isinstance(i, Batch)] == [[["0"]]]
    assert not any(t.name == "rest-async" for t in threading.enumerate())
    assert ex.state.metadata["requests"] < 50


def test_oauth2_token_fetched_once_and_refreshed_after_a_401(
    api: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_CLIENT_ID", "client")
    monkeypatch.setenv("ASYNC_CLIENT_SECRET", SECRET)
    tokens: list[str] = []
    rejected: list[str] = []

    def token(request: Request) -> Response:
        tokens.append(f"tok-{len(tokens) + 1}")
        return json_response({"access_token": tokens[-1], "expires_in": 3600})

    def items(request: Request) -> Response:
        v = request.args["v"]
        if v == "c" and not rejected:
            rejected.append(v)
            return Response("expired", status=401)
        assert request.headers["Authorization"] == f"Bearer {tokens[-1]}"
        return json_response([{"v": v}])

    api.expect_request("/oauth/token", method="POST").respond_with_handler(token)
    api.expect_request("/items").respond_with_handler(items)
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": api.url_for("/oauth/token"),
        "client_id_env": "ASYNC_CLIENT_ID",
        "client_secret_env": "ASYNC_CLIENT_SECRET",
    }
    ex = make_extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": list("abcde")}},
        auth=auth,
        concurrency=1,
    )

    assert [r["v"] for r in records(ex)] == list("abcde")
    assert tokens == ["tok-1", "tok-2"]
    assert ex.state.metadata["requests"] == 6 + 2  # five, the 401 once more, two tokens


# ------------------------------------------------------------------------------ configuration


SOURCE = """
sources:
  - name: metrics
    kind: rest_async
    concurrency: {concurrency}
    connection: {{base_url: "http://127.0.0.1:1"}}
    entities:
      - name: daily
        path: /daily/{{day}}
        fan_out: {fan_out}
"""


def write(tmp_path: Path, fan_out: str, concurrency: int = 8) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCE.format(fan_out=fan_out, concurrency=concurrency), encoding="utf-8")
    return path


def test_a_valid_rest_async_source_loads(tmp_path: Path) -> None:
    sources = load_sources(write(tmp_path, "{type: dates, name: day, start: today-30d}"))
    source = sources.sources[0]
    assert source.kind == "rest_async" and source.concurrency == 8
    assert source.entities[0].fan_out.end == "today"


@pytest.mark.parametrize(
    ("fan_out", "concurrency", "expected"),
    [
        ("{type: dates, name: day, start: yesterday}", 8, "field entities.0.fan_out.dates.start"),
        ("{type: dates, name: day, start: 2024-02-01, end: 2024-01-01}", 8, "start is after end"),
        ("{type: weeks, name: day}", 8, "field entities.0.fan_out"),
        ("{type: values, name: day, values: []}", 8, "fan_out.values.values"),
        ("{type: values, name: account, values: [a]}", 8, "placeholder {day} is not the fan-out"),
        ("{type: pages, param: day, count: 3, count_path: meta.pages}", 8, "exactly one of count"),
        ("{type: pages, param: day}", 8, "exactly one of count"),
        ("{type: dates, name: day, start: today}", 65, "field concurrency"),
    ],
)
def test_a_bad_rest_async_source_names_the_source_and_field(
    tmp_path: Path, fan_out: str, concurrency: int, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_sources(write(tmp_path, fan_out, concurrency))
    assert "source 'metrics'" in str(info.value)
    assert expected in str(info.value)


# ---------------------------------------------------------------------------------- the runner


@pytest.mark.usefixtures("_restore_logging")
def test_the_staging_job_pulls_a_rest_async_source(
    api: HTTPServer, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(request: Request) -> Response:
        account = request.path.rsplit("/", 1)[1]
        time.sleep(0.03 if account == "a1" else 0)
        return json_response({"rows": [{"account": account, "amount": 1.5}]})

    api.expect_request(re.compile(r"^/accounts/a\d$")).respond_with_handler(handler)
    path = tmp_path / "sources.yml"
    path.write_text(
        f"""
sources:
  - name: ledger
    kind: rest_async
    concurrency: 3
    connection: {{base_url: "{api.url_for("/")}", rate_limit: {{requests: 100, per: second}}}}
    entities:
      - name: balances
        path: /accounts/{{account}}
        records_path: rows
        fan_out: {{type: values, name: account, values: [a1, a2, a3, a4]}}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(path))

    assert main(["run", "--source", "ledger"]) == 0

    with psycopg.connect(database_url) as conn:
        pull = conn.execute(
            "select record_count, payload_count, metadata from staging.pulls"
            " where source = 'ledger' and status = 'committed'"
        ).fetchone()
        data = conn.execute("select data from staging.pull_batches order by batch_no").fetchall()
    assert pull is not None
    records_stored, payloads, metadata = pull
    assert (records_stored, payloads) == (4, 4)
    assert metadata["requests"] == 4 and metadata["pages"] == 4
    assert [row[0] for (batch,) in data for row in batch["rows"]] == ["a1", "a2", "a3", "a4"]
