"""Retry policy, Retry-After, broken connections and bodies, timeouts and the rate budget.

A real HTTP server on loopback (and, for broken connections, a raw socket server); sleeps are injected
and recorded so nothing waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import requests
from pydantic import TypeAdapter
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from etl_shared import SourceFatalError, SourceTransientError
from etl_staging import Batch
from etl_staging._rest import (
    PauseGate,
    RateBudget,
    RestAuth,
    RestConnection,
    RestEntity,
    RestExtractor,
    RetryPolicy,
    announced_pause,
    decide,
)
from etl_staging._rest import retry_after_seconds as parse_retry_after

DATA = [{"id": i} for i in range(1, 7)]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_extractor(
    base_url: str,
    fake: FakeTime,
    entity: dict[str, Any] | None = None,
    *,
    gate: PauseGate | None = None,
    **connection: Any,
) -> RestExtractor:
    return RestExtractor(
        "api",
        RestConnection.model_validate({"base_url": base_url, "max_retries": 3, **connection}),
        TypeAdapter(RestAuth).validate_python({"type": "none"}),
        RestEntity.model_validate({"name": "things", "path": "/things", **(entity or {})}),
        batch_size=1000,
        sleep=fake.sleep,
        clock=fake.clock,
        gate=gate,
    )


def records(ex: RestExtractor) -> list[dict[str, Any]]:
    return [
        dict(zip(item.columns, row, strict=True))
        for item in ex.extract(None)
        if isinstance(item, Batch)
        for row in item.rows
    ]


def failing_then_ok(
    statuses: list[int], headers: dict[str, str] | None = None
) -> Callable[[Request], Response]:
    """A handler answering the given statuses first, then the data."""
    pending = list(statuses)

    def handler(request: Request) -> Response:
        if pending:
            return Response("busy", status=pending.pop(0), headers=headers)
        return Response(json.dumps(DATA), content_type="application/json")

    return handler


# ------------------------------------------------------------------------- status table


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_backoff(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([status, status]))
    fake = FakeTime()
    ex = make_extractor(httpserver.url_for("/"), fake, backoff_base_s=1, backoff_max_s=1.5)

    assert records(ex) == DATA
    assert len(httpserver.log) == 3
    assert ex.state.metadata["retries"] == 2 and ex.state.metadata["requests"] == 3
    # Full jitter: each wait is within [0, min(max, base * 2**attempt)].
    assert len(fake.sleeps) == 2
    assert 0 <= fake.sleeps[0] <= 1 and 0 <= fake.sleeps[1] <= 1.5


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (400, "HTTP 400: busy"),
        (401, "credentials refused (HTTP 401)"),
        (403, "credentials refused (HTTP 403)"),
        (404, "not found (HTTP 404)"),
        (422, "HTTP 422: busy"),
    ],
)
def test_other_4xx_fail_at_once(httpserver: HTTPServer, status: int, words: str) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([status] * 10))
    fake = FakeTime()
    ex = make_extractor(httpserver.url_for("/"), fake)

    with pytest.raises(SourceFatalError) as info:
        records(ex)

    assert words in str(info.value)
    assert f"GET {httpserver.url_for('/things')}" in str(info.value)
    assert len(httpserver.log) == 1 and fake.sleeps == []
    assert info.value.retryable is False


def test_5xx_that_never_ends_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([503] * 10))
    fake = FakeTime()
    ex = make_extractor(httpserver.url_for("/"), fake, max_retries=3)

    with pytest.raises(SourceTransientError, match=r"HTTP 503; gave up after 4 attempts") as info:
        records(ex)

    assert len(httpserver.log) == 4 and len(fake.sleeps) == 3
    assert info.value.retryable is True
    assert ex.state.metadata == {
        "pages": 0,
        "requests": 4,
        "retries": 3,
        "url": httpserver.url_for("/things"),
        "duplicate_records": 0,
    }


def test_500s_then_success_completes_with_every_page(httpserver: HTTPServer) -> None:
    failures = {2: [500, 502], 3: [503]}

    def handler(request: Request) -> Response:
        page = int(request.args["page"])
        if failures.get(page):
            return Response("oops", status=failures[page].pop(0))
        return Response(json.dumps(DATA[(page - 1) * 2 : page * 2]), content_type="application/json")

    httpserver.expect_request("/things").respond_with_handler(handler)
    ex = make_extractor(httpserver.url_for("/"), FakeTime(), {"pagination": {"type": "page_number"}})

    assert records(ex) == DATA
    assert ex.state.metadata["pages"] == 4 and ex.state.metadata["retries"] == 3


# --------------------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds_is_honoured(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([429], {"Retry-After": "7"}))
    fake = FakeTime()

    assert records(make_extractor(httpserver.url_for("/"), fake)) == DATA
    assert fake.sleeps == [7.0]


def test_retry_after_as_an_http_date_is_honoured(httpserver: HTTPServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([503], {"Retry-After": when}))
    fake = FakeTime()

    assert records(make_extractor(httpserver.url_for("/"), fake)) == DATA
    assert len(fake.sleeps) == 1 and 27 <= fake.sleeps[0] <= 31


def test_retry_after_above_the_maximum_fails_without_waiting(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([429], {"Retry-After": "3600"}))
    fake = FakeTime()
    ex = make_extractor(httpserver.url_for("/"), fake, max_retry_wait_s=60)

    with pytest.raises(
        SourceTransientError, match=r"wait 3600s \(Retry-After\), more than max_retry_wait_s=60"
    ):
        records(ex)
    assert fake.sleeps == [] and len(httpserver.log) == 1


def test_retry_after_parsing() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", lambda: now) == 120
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", lambda: now) == 30
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", lambda: now) == 0  # in the past
    assert parse_retry_after("soon", lambda: now) is None
    assert parse_retry_after("nan", lambda: now) is None
    assert parse_retry_after(None, lambda: now) is None


# ------------------------------------------------------------------ rate-limit resets, pauses


def answer(status: int, headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "7"}, (7.0, "Retry-After")),
        (503, {"Retry-After": "Wed, 01 May 2024 12:00:30 GMT"}, (30.0, "Retry-After")),
        (429, {"Retry-After": "soon", "RateLimit-Reset": "12"}, (12.0, "RateLimit-Reset")),
        (429, {"RateLimit-Reset": "12"}, (12.0, "RateLimit-Reset")),  # a 429 needs no Remaining
        (429, {"X-RateLimit-Reset": str(int(NOW.timestamp()) + 45)}, (45.0, "X-RateLimit-Reset")),
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"}, (20.0, "X-RateLimit-Reset")),
        (200, {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "3"}, (3.0, "X-Rate-Limit-Reset")),
        (
            200,
            {"RateLimit-Remaining": "0", "RateLimit-Reset": "Wed, 01 May 2024 12:01:00 GMT"},
            (60.0, "RateLimit-Reset"),
        ),
        (200, {"RateLimit-Remaining": "1", "RateLimit-Reset": "20"}, None),  # something remains
        (200, {"RateLimit-Reset": "20"}, None),
        (200, {"Retry-After": "7"}, None),  # a Retry-After only means something on a 429 or 5xx
        (429, {}, None),
        (429, {"RateLimit-Reset": "later"}, None),
        (
            200,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW.timestamp()) - 5)},
            (0.0, "X-RateLimit-Reset"),
        ),
    ],
)
def test_the_pause_a_response_announces(
    status: int, headers: dict[str, str], expected: tuple[float, str] | None
) -> None:
    assert announced_pause(answer(status, headers), lambda: NOW) == expected


def test_a_429_with_only_a_rate_limit_reset_waits_it(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_handler(
        failing_then_ok([429], {"RateLimit-Limit": "100", "RateLimit-Reset": "12"})
    )
    fake = FakeTime()
    ex = make_extractor(httpserver.url_for("/"), fake)

    assert records(ex) == DATA
    assert fake.sleeps == [12.0] and ex.state.metadata["retries"] == 1


def test_nothing_remaining_on_a_page_pauses_before_the_next_one(httpserver: HTTPServer) -> None:
    sent: list[float] = []
    fake = FakeTime()

    def handler(request: Request) -> Response:
        sent.append(fake.now)
        page = int(request.args["page"])
        headers = {"RateLimit-Remaining": "0", "RateLimit-Reset": "30"} if page == 1 else {}
        rows = DATA[(page - 1) * 3 : page * 3]
        return Response(json.dumps(rows), content_type="application/json", headers=headers)

    httpserver.expect_request("/things").respond_with_handler(handler)
    ex = make_extractor(httpserver.url_for("/"), fake, {"pagination": {"type": "page_number"}})

    assert records(ex) == DATA
    assert sent == [1000.0, 1030.0, 1030.0]  # page 2 waited for the reset, page 3 did not
    assert fake.sleeps == [30.0] and ex.state.metadata["retries"] == 0


def test_a_reset_on_a_page_beyond_the_limit_pauses_the_limit(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: Request) -> Response:
        rows = DATA if request.args["page"] == "1" else []
        headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}
        return Response(json.dumps(rows), content_type="application/json", headers=headers)

    httpserver.expect_request("/things").respond_with_handler(handler)
    fake = FakeTime()
    ex = make_extractor(
        httpserver.url_for("/"), fake, {"pagination": {"type": "page_number"}}, max_retry_wait_s=60
    )

    assert records(ex) == DATA
    assert fake.sleeps == [60.0]  # the page was accepted: the pull waits what it may, then asks again
    assert "X-RateLimit-Reset asks for a pause of 3600s; pausing max_retry_wait_s=60s" in caplog.text


def test_a_pause_gate_holds_the_other_entities_of_the_source(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_handler(failing_then_ok([429], {"Retry-After": "9"}))
    fake = FakeTime()
    gate = PauseGate(clock=fake.clock)
    first = make_extractor(httpserver.url_for("/"), fake, gate=gate)
    second = make_extractor(httpserver.url_for("/"), fake, gate=gate)
    gate.hold(5)  # a pause another entity of the source was told of

    assert records(first) == DATA
    assert fake.sleeps == [5.0, 9.0]  # the shared pause first, then its own 429's
    gate.hold(4)
    assert records(second) == DATA
    assert fake.sleeps == [5.0, 9.0, 4.0] and second.state.metadata["retries"] == 0


def test_a_pause_gate_extended_while_waiting_is_waited_again() -> None:
    fake = FakeTime()
    gate = PauseGate(clock=fake.clock)
    extended: list[float] = []

    def sleep(seconds: float) -> None:
        fake.sleep(seconds)
        if not extended:
            extended.append(seconds)
            gate.hold(2)  # another request is told to wait more while this one sleeps

    assert gate.hold(3) == "new" and gate.hold(1) is None and gate.remaining() == 3.0
    assert gate.wait(sleep) == 5.0 and fake.sleeps == [3.0, 2.0]
    assert gate.remaining() == 0.0 and gate.wait(sleep) == 0.0
    assert gate.hold(1) == "new" and gate.hold(2) == "extended"


def test_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(max_retries=10, backoff_base_s=0.5, backoff_max_s=5, max_retry_wait_s=60)
    error = requests.ConnectionError("connection reset by peer")
    waits = [decide(error, attempt, policy, random=lambda: 1.0).wait for attempt in range(6)]
    assert waits == [0.5, 1, 2, 4, 5, 5]
    assert decide(error, 3, policy, random=lambda: 0.25).wait == 1.0
    assert decide(error, 10, policy).action == "fail"


# ---------------------------------------------------------------- broken connections/bodies


class RawServer:
    """A socket server on 127.0.0.1 answering its n-th connection with the n-th script."""

    def __init__(self, scripts: list[Callable[[socket.socket], None]]) -> None:
        self.scripts = scripts
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for script in self.scripts:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._answer, args=(conn, script), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket, script: Callable[[socket.socket], None]) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            script(conn)

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(*scripts: Callable[[socket.socket], None]) -> RawServer:
        servers.append(RawServer(list(scripts)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def reset_after_partial_headers(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN


def truncated_body(conn: socket.socket) -> None:
    body = json.dumps(DATA).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    conn.sendall(head.encode() + body[:10])


def good_answer(conn: socket.socket) -> None:
    body = json.dumps(DATA).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    conn.sendall(head.encode() + body)


def silence(conn: socket.socket) -> None:
    time.sleep(0.6)


def test_a_connection_reset_mid_response_is_retried(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(reset_after_partial_headers, good_answer)
    fake = FakeTime()
    ex = make_extractor(server.url, fake)

    assert records(ex) == DATA
    assert server.requests == 2 and len(fake.sleeps) == 1 and ex.state.metadata["retries"] == 1


def test_a_truncated_body_is_retried(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(truncated_body, good_answer)
    ex = make_extractor(server.url, FakeTime())

    assert records(ex) == DATA
    assert server.requests == 2 and ex.state.metadata["retries"] == 1


def test_a_body_truncated_every_time_names_the_url_and_offset(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(truncated_body, truncated_body)
    ex = make_extractor(server.url, FakeTime(), max_retries=1)

    with pytest.raises(SourceTransientError) as info:
        records(ex)
    assert f"GET {server.url}things: body cut off at byte 10 of" in str(info.value)


def test_a_read_timeout_is_retried(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(silence, good_answer)
    ex = make_extractor(server.url, FakeTime(), timeout_s=0.2)

    assert records(ex) == DATA
    assert ex.state.metadata["retries"] == 1


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeTime()
    ex = make_extractor(f"http://127.0.0.1:{port}/", fake, max_retries=2)

    with pytest.raises(SourceTransientError, match=r"ConnectionError.*gave up after 3 attempts"):
        records(ex)
    assert len(fake.sleeps) == 2


def test_malformed_json_is_retried_then_names_the_url_and_byte(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/things").respond_with_data(
        '{"data": [{"id": 1}, {"id"', content_type="application/json"
    )
    fake = FakeTime()
    ex = make_extractor(
        httpserver.url_for("/"), fake, {"records_path": "data", "params": {"q": "x"}}, max_retries=2
    )

    with pytest.raises(SourceTransientError) as info:
        records(ex)

    message = str(info.value)
    assert f"GET {httpserver.url_for('/things')}?q=x: malformed JSON at byte 26 of 26" in message
    assert "gave up after 3 attempts" in message
    assert len(httpserver.log) == 3


def test_malformed_json_once_then_good(httpserver: HTTPServer) -> None:
    answers = ["<html>gateway</html>", json.dumps(DATA)]
    httpserver.expect_request("/things").respond_with_handler(
        lambda request: Response(answers.pop(0), content_type="application/json")
    )
    assert records(make_extractor(httpserver.url_for("/"), FakeTime())) == DATA


# ----------------------------------------------------------------------------- rate budget


def test_rate_budget_allows_a_burst_then_spaces_requests() -> None:
    fake = FakeTime()
    budget = RateBudget(5, 1.0, clock=fake.clock, sleep=fake.sleep)

    waits = [budget.acquire() for _ in range(12)]

    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:] == pytest.approx([0.2] * 7)
    assert sum(fake.sleeps) == pytest.approx(1.4)


def test_rate_budget_refills_while_idle() -> None:
    fake = FakeTime()
    budget = RateBudget(2, 60.0, clock=fake.clock, sleep=fake.sleep)
    assert [budget.acquire() for _ in range(3)] == [0, 0, 30]
    fake.now += 120
    assert [budget.acquire() for _ in range(2)] == [0, 0]


def test_rate_budget_reservations_are_shared_by_threads_and_coroutines() -> None:
    fake = FakeTime()
    budget = RateBudget(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    delays: list[float] = []
    lock = threading.Lock()

    def reserve() -> None:
        delay = budget.reserve()
        with lock:
            delays.append(delay)

    threads = [threading.Thread(target=reserve) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Nobody shares a slot: 10 immediate, then one every 0.1s.
    assert sorted(delays) == pytest.approx([0.0] * 10 + [0.1 * i for i in range(1, 21)])
    fake.now += 2.05  # the next free slot is 2.1s after the first reservation
    assert asyncio.run(budget.acquire_async()) == pytest.approx(0.05)


def test_rate_limit_of_the_connection_spaces_the_pages(httpserver: HTTPServer) -> None:
    data = [{"id": i} for i in range(1, 13)]

    def handler(request: Request) -> Response:
        page = int(request.args["page"])
        body = {"items": data[page - 1 : page], "pages": len(data)}
        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/things").respond_with_handler(handler)
    fake = FakeTime()
    entity = {"records_path": "items", "pagination": {"type": "page_number", "total_pages_path": "pages"}}
    ex = make_extractor(httpserver.url_for("/"), fake, entity, rate_limit={"requests": 5, "per": "second"})

    assert records(ex) == data
    assert ex.state.metadata["requests"] == 12
    assert sum(fake.sleeps) == pytest.approx(1.4)
