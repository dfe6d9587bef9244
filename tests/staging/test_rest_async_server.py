"""``kind: rest_async`` against a hostile loopback API: rate-limit storms, expiring tokens with 5xx, refused
credentials, and what a real job run logs and stores when it goes wrong.

Everything runs on the wall clock (real sleeps, real threads): the server records when each request
arrived and which pauses it announced, and the tests assert on that record.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import SourceFatalError
from etl_staging import Batch
from etl_staging._rest import AsyncRestEntity, AsyncRestExtractor, RestAuth, RestConnection
from etl_staging.cli import main

SECRET = "cl13nt-s3cret"


@pytest.fixture
def oauth_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("STORM_CLIENT_ID", "etl")
    monkeypatch.setenv("STORM_CLIENT_SECRET", SECRET)
    return {"client_id_env": "STORM_CLIENT_ID", "client_secret_env": "STORM_CLIENT_SECRET"}


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(document), status=status, headers=headers, content_type="application/json")


def extractor(
    base_url: str,
    entity: dict[str, Any],
    *,
    concurrency: int,
    auth: dict[str, Any] | None = None,
    **connection: Any,
) -> AsyncRestExtractor:
    """An extractor on the real clock and the real asyncio.sleep."""
    return AsyncRestExtractor(
        "api",
        RestConnection.model_validate({"base_url": base_url, "backoff_base_s": 0.01, **connection}),
        TypeAdapter(RestAuth).validate_python(auth or {"type": "none"}),
        AsyncRestEntity.model_validate({"name": "things", **entity}),
        batch_size=50,
        concurrency=concurrency,
    )


def records(ex: AsyncRestExtractor) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(None)
        if isinstance(item, Batch)
        for row in item.rows
    ]


# ------------------------------------------------------------------------------ a 429 storm

STYLES = (
    "retry-after-seconds",
    "retry-after-date",
    "ratelimit-reset",
    "x-ratelimit-reset-epoch",
    "remaining-0",
)


class StormApi:
    """A rate-limited API: ``quota`` requests, then a pause it announces, in one of :data:`STYLES` in
    turn (a 429 with ``Retry-After`` in seconds or as an HTTP date, a 429 with ``RateLimit-Reset`` in
    seconds or ``X-RateLimit-Reset`` as a Unix time, or the last allowed answer, a 200, saying
    ``X-RateLimit-Remaining: 0``). Inside a pause every request gets a 429 with the time left.

    It records every request's arrival and every pause it announced: [sent, end). A pause is announced
    only once no other answer has left for ``quiet_s``, so that every request arriving inside it was
    sent by a client that had received it: one sent in reply to an earlier answer has arrived by then
    (it could not know of the pause, and gets a 429 like any request over the quota). ``quiet_s`` is
    0.3 s: with 0.1 s, a request sent just before a pause arrived 1 ms after it was announced once, on a
    machine whose two cores were shared by three test suites and benchmarks (load average 7).
    """

    def __init__(self, *, quota: int, pause_s: float = 0.3, quiet_s: float = 0.3) -> None:
        self.quota = quota
        self.pause_s = pause_s
        self.quiet_s = quiet_s
        self.arrivals: list[float] = []
        self.windows: list[tuple[float, float, str]] = []
        self.statuses: Counter[int] = Counter()
        self._cond = threading.Condition()
        self._used = 0
        self._pause_end: float | None = None
        self._announcing = False
        self._last_answer = 0.0

    def inside(self) -> list[tuple[float, tuple[float, float, str]]]:
        """The requests that arrived inside an announced pause."""
        return [(t, w) for t in self.arrivals for w in self.windows if w[0] <= t < w[1]]

    def handle(self, request: Request) -> Response:
        with self._cond:
            self.arrivals.append(time.time())
            while self._announcing:
                self._cond.wait()
            now = time.time()
            if self._pause_end is not None and now < self._pause_end:
                return self._answer(429, {"Retry-After": f"{self._pause_end - now:.3f}"})
            if self._pause_end is not None:
                self._pause_end, self._used = None, 0
            self._used += 1
            style = STYLES[len(self.windows) % len(STYLES)]
            if self._used < self.quota or (self._used == self.quota and style != "remaining-0"):
                return self._answer(200, {}, request)
            return self._announce(style, request)

    def _announce(self, style: str, request: Request) -> Response:
        self._announcing = True
        try:
            while (left := self._last_answer + self.quiet_s - time.time()) > 0:
                self._cond.wait(left)
            start = time.time()
            if style in ("retry-after-date", "x-ratelimit-reset-epoch", "remaining-0"):
                end = float(math.ceil(start + 0.1))  # whole seconds: an HTTP date, a Unix time
            else:
                end = start + self.pause_s
            self.windows.append((start, end, style))
            self._pause_end = end
            if style == "retry-after-seconds":
                return self._answer(429, {"Retry-After": f"{self.pause_s:g}"})
            if style == "retry-after-date":
                when = format_datetime(datetime.fromtimestamp(end, UTC), usegmt=True)
                return self._answer(429, {"Retry-After": when})
            if style == "ratelimit-reset":
                return self._answer(429, {"RateLimit-Remaining": "0", "RateLimit-Reset": f"{self.pause_s:g}"})
            if style == "x-ratelimit-reset-epoch":
                return self._answer(429, {"X-RateLimit-Reset": str(int(end))})
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(end))}
            return self._answer(200, headers, request)
        finally:
            self._announcing = False
            self._cond.notify_all()

    def _answer(self, status: int, headers: dict[str, str], request: Request | None = None) -> Response:
        self.statuses[status] += 1
        if status != 200:
            return json_response({"error": "slow down"}, status, headers)
        assert request is not None
        self._last_answer = time.time()
        page = int(request.args["page"])
        return json_response({"items": [{"page": page, "i": i} for i in range(3)]}, 200, headers)


@pytest.mark.parametrize(("concurrency", "pages", "quota"), [(8, 30, 5), (1, 16, 3)])
def test_a_429_storm_pauses_every_worker_and_nothing_arrives_inside_a_pause(
    api: HTTPServer, concurrency: int, pages: int, quota: int
) -> None:
    storm = StormApi(quota=quota)
    api.expect_request("/items").respond_with_handler(storm.handle)
    ex = extractor(
        api.url_for("/"),
        {
            "path": "/items",
            "records_path": "items",
            "fan_out": {"type": "pages", "param": "page", "count": pages},
        },
        concurrency=concurrency,
        max_retries=12,
        max_retry_wait_s=10,
    )

    got = records(ex)

    assert got == [{"page": p, "i": i} for p in range(1, pages + 1) for i in range(3)]
    assert {style for _, _, style in storm.windows} == set(STYLES)  # every kind of pause was announced
    assert storm.inside() == []  # and not one request arrived inside one
    assert ex.state.metadata["pages"] == pages
    assert ex.state.metadata["requests"] == len(storm.arrivals)
    assert ex.state.metadata["retries"] == storm.statuses[429]  # only the requests refused retried


# --------------------------------------------------------------- expiring tokens and 5xx


class ExpiringTokens:
    """An OAuth2 API whose token dies after ``life`` accepted requests. Only the newest token is valid,
    so a refresh while the token is alive kills it under the other workers. One request in four gets a
    503 before its token is even looked at."""

    def __init__(self, httpserver: HTTPServer, *, life: int, refuse_new: bool = False) -> None:
        self.life = life
        self.refuse_new = refuse_new  # every token after the first is refused (revoked credentials)
        self.issued: list[tuple[str, float]] = []
        self.died: dict[str, float] = {}
        self.uses: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._count = 0
        self._lock = threading.Lock()
        httpserver.expect_request("/oauth/token", method="POST").respond_with_handler(self.token)
        httpserver.expect_request("/items").respond_with_handler(self.items)
        self.token_url = httpserver.url_for("/oauth/token")

    def token(self, request: Request) -> Response:
        with self._lock:
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append((token, time.time()))
        return json_response({"access_token": token, "expires_in": 3600})  # it says an hour; it lies

    def items(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            self._count += 1
            if self._count % 4 == 0:
                return self._answer(503)
            newest = self.issued[-1][0] if self.issued else None
            refused = self.refuse_new and token != "tok-1"
            if token != newest or self.uses[token] >= self.life or refused:
                return self._answer(401)
            self.uses[token] += 1
            if self.uses[token] == self.life:
                self.died[token] = time.time()
            self.statuses[200] += 1
        return json_response([{"v": request.args["v"], "token": token}])

    def _answer(self, status: int) -> Response:
        self.statuses[status] += 1
        return Response("no", status=status)


def test_expiring_tokens_with_5xx_at_concurrency_8_refresh_once_per_expiry(
    api: HTTPServer, oauth_env: dict[str, str]
) -> None:
    values = [f"{i:03d}" for i in range(40)]
    for run in range(5):
        api.clear()
        # a token lives 12 uses, more than the 8 requests in flight: with fewer, a token can die under
        # the other workers before the request that fetched it is answered once, and that request
        # meets a refused fresh token (fatal by design); seen once under load in a full suite
        tokens = ExpiringTokens(api, life=12)
        ex = extractor(
            api.url_for("/"),
            {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": values}},
            concurrency=8,
            auth={"type": "oauth2_client_credentials", "token_url": tokens.token_url, **oauth_env},
            max_retries=10,
        )

        got = records(ex)

        assert [r["v"] for r in got] == values, f"run {run + 1}"
        assert tokens.statuses[401] > 0 and tokens.statuses[503] > 0  # both faults really happened
        # one refresh per expiry: every token after the first was issued once the one before had died
        for (before, _), (token, issued_at) in zip(tokens.issued, tokens.issued[1:], strict=False):
            assert before in tokens.died, f"run {run + 1}: {token} issued while {before} was alive"
            assert issued_at >= tokens.died[before], f"run {run + 1}: {token} issued early"
        assert len(tokens.died) <= len(tokens.issued) <= len(tokens.died) + 1
        assert len(tokens.issued) >= len(values) // 12
        # a 401 costs no retry: only the 503s were retried
        assert ex.state.metadata["retries"] == tokens.statuses[503]


def test_a_401_right_after_a_refresh_is_fatal_and_refreshes_once(
    api: HTTPServer, oauth_env: dict[str, str]
) -> None:
    tokens = ExpiringTokens(api, life=5, refuse_new=True)
    ex = extractor(
        api.url_for("/"),
        {"path": "/items", "fan_out": {"type": "values", "name": "v", "values": [str(i) for i in range(30)]}},
        concurrency=8,
        auth={"type": "oauth2_client_credentials", "token_url": tokens.token_url, **oauth_env},
    )

    with pytest.raises(SourceFatalError) as info:
        records(ex)

    message = str(info.value)
    assert "source api, entity things" in message
    assert "credentials refused (HTTP 401) right after a token refresh" in message
    assert [token for token, _ in tokens.issued] == ["tok-1", "tok-2"]  # one refresh, not one per worker
    assert "tok-2" not in message and SECRET not in message


# --------------------------------------------------------------------------- a real job run

JOB_SOURCES = """
sources:
  - name: metrics
    kind: rest_async
    concurrency: 4
    connection: {{base_url: "{base}", backoff_base_s: 0.01, max_retries: 4}}
    auth:
      type: oauth2_client_credentials
      token_url: "{base}/oauth/token"
      client_id_env: STORM_CLIENT_ID
      client_secret_env: STORM_CLIENT_SECRET
    entities:
      - name: daily
        path: /daily/{{day}}
        fan_out: {{type: values, name: day, values: [d1, d2, d3, d4]}}
      - name: broken
        path: /broken/{{item}}
        fan_out: {{type: values, name: item, values: [b1, b2, b3]}}
"""


class FaultyApi:
    """``/daily``: d2 answers 503 once, d3 a 429 (Retry-After 0.1) once, d4 a 401 once (the token is
    refreshed). ``/broken``: b1 answers 503 once, b3 is not found."""

    def __init__(self, httpserver: HTTPServer) -> None:
        self.tokens = 0
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        httpserver.expect_request("/oauth/token", method="POST").respond_with_handler(self.token)
        httpserver.expect_request(re.compile(r"^/(daily|broken)/\w+$")).respond_with_handler(self.answer)

    def token(self, request: Request) -> Response:
        with self._lock:
            self.tokens += 1
            return json_response({"access_token": f"tok-{self.tokens}", "expires_in": 3600})

    def answer(self, request: Request) -> Response:
        value = request.path.rsplit("/", 1)[1]
        with self._lock:
            self.seen[value] += 1
            first = self.seen[value] == 1
        if value in ("d2", "b1") and first:
            return Response("busy", status=503)
        if value == "d3" and first:
            return json_response({"error": "slow down"}, 429, {"Retry-After": "0.1"})
        if value == "d4" and first:
            return Response("expired", status=401)
        if value == "b3":
            return Response("no such item", status=404)
        return json_response([{"value": value, "n": n} for n in range(2)])


def job_events(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("_restore_logging")
def test_a_job_run_logs_with_its_context_and_a_failed_pull_keeps_its_counters(
    api: HTTPServer,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    oauth_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    faulty = FaultyApi(api)
    path = tmp_path / "sources.yml"
    path.write_text(JOB_SOURCES.format(base=api.url_for("").rstrip("/")), encoding="utf-8")
    monkeypatch.setenv("ETL_DATABASE_URL", database_url)
    monkeypatch.setenv("ETL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ETL_SOURCES_FILE", str(path))
    monkeypatch.setenv("ETL_RUN_ID", "storm-run-1")
    monkeypatch.setenv("ETL_PARALLELISM", "1")
    capsys.readouterr()

    assert main(["run", "--source", "metrics"]) == 3  # a source failure

    events = job_events(capsys.readouterr().out)
    ours = [e for e in events if e["logger"].startswith("etl_staging._rest")]
    retries = [e for e in ours if "retry 1/4" in e["message"]]
    refresh = [e for e in ours if "refreshing the token" in e["message"]]
    pause = [e for e in ours if "every request of the source waits" in e["message"]]
    assert len(retries) == 3 and len(refresh) == 1 and len(pause) == 1  # d2, d3, b1; d4; d3
    for event in ours:
        assert (event["run_id"], event["zone"], event["source"]) == ("storm-run-1", "staging", "metrics")
        assert event["entity"] in ("daily", "broken")
    errors = [e for e in events if e["level"] == "ERROR"]
    assert [e["logger"] for e in errors] == ["etl_staging._runner", "etl_shared._job"]  # the entity, the job
    for error in errors:
        assert "metrics" in error["message"] and "not found (HTTP 404)" in error["message"]
        assert (error["run_id"], error["source"], error["entity"]) == ("storm-run-1", "metrics", "broken")
    assert faulty.tokens == 3  # one per entity, and daily's refresh

    with psycopg.connect(database_url) as conn:
        pulls = dict(
            conn.execute(
                "select entity || ':' || status, metadata from staging.pulls where source = 'metrics'"
            ).fetchall()
        )
    assert set(pulls) == {"daily:committed", "broken:failed"}
    daily, broken = pulls["daily:committed"], pulls["broken:failed"]
    assert (daily["pages"], daily["retries"], daily["duplicate_records"]) == (4, 2, 0)
    assert daily["requests"] == 4 + 3 + 2  # four, three of them again, two tokens
    # the failed pull kept what it counted: b1 twice (one retry), b2, b3's 404, a token; the records
    # before the failure are in the fan-out order, so b1 and b2 are the pages
    assert (broken["pages"], broken["retries"], broken["requests"]) == (2, 1, 4 + 1)
    assert broken["url"].endswith("/broken/{item}") and broken["duplicate_records"] == 0
