"""AsyncRestExtractor: one ``kind: rest_async`` entity fetched with aiohttp, many requests at once.

The fan-out requests (dates, values, pages) run on an event loop in a helper thread, at most
``concurrency`` in flight, under the same rules as the synchronous client: the source's
:class:`RateBudget` and :class:`PauseGate` (a ``Retry-After`` or rate-limit reset pauses every request
of the source, not only the one that received it), :func:`decide` on every answer or error (aiohttp
answers and exceptions are translated to their ``requests`` equivalents first, so the classification
stays in one place), the same authenticators (an OAuth2 token is refreshed once for all the requests
that meet its 401), and a :class:`Redactor` on every URL and message. The helper thread and the token
fetches run in the caller's logging context (run id, zone, source, entity).

The synchronous caller takes the responses **in fan-out order**: request i's records always come before
request i + 1's, whatever order the server answers in. Memory stays bounded: at most ``2 * concurrency``
requests are started but not yet handed over (the reorder window) and ``concurrency`` more wait in the
hand-over queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random as _random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import requests
from requests.structures import CaseInsensitiveDict
from yarl import URL

from etl_shared import ConfigurationError, EtlError, SourceFatalError

from ._async_models import MAX_REQUESTS, AsyncRestEntity, DatesFanOut, PagesFanOut, fill
from ._auth import Authenticator, OAuth2ClientCredentialsAuthenticator, build_authenticator
from ._client import (
    BrokenBody,
    PauseGate,
    RateBudget,
    Redactor,
    RestClient,
    RestCounters,
    RetryPolicy,
    _parse_json,
    after_401,
    decide,
    log_retry,
    observe_pause,
    records_at,
)
from ._duplicates import DuplicateCounter
from ._models import RestAuth, RestConnection
from ._paths import MISSING, lookup

if TYPE_CHECKING:
    from .._extract import Batch, Payload

_log = logging.getLogger(__name__)

USER_AGENT = "etl-staging/0.1 (+aiohttp)"
AsyncSleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class _Call:
    index: int  # position in the fan-out: the order the records are stored in
    url: str
    params: dict[str, Any]


@dataclass
class _Fetched:
    index: int
    url: str  # redacted
    content_type: str
    body: bytes
    document: Any
    records: list[Any]


class AsyncRestExtractor:
    """Extract one entity of a ``kind: rest_async`` source (see the module docstring).

    ``budget`` is the source's shared rate budget (by default one is built from
    ``connection.rate_limit``) and ``gate`` its shared pause gate (by default this extractor's own);
    ``sleep`` (a coroutine function), ``clock`` (of the gate), ``random`` and ``today`` are injectable
    for tests.
    """

    def __init__(
        self,
        source: str,
        connection: RestConnection,
        auth: RestAuth,
        entity: AsyncRestEntity,
        *,
        batch_size: int,
        concurrency: int,
        budget: RateBudget | None = None,
        gate: PauseGate | None = None,
        sleep: AsyncSleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        from .._extract import ExtractState

        self.source = source
        self.connection = connection
        self.entity = entity
        self.batch_size = batch_size
        self.concurrency = max(1, concurrency)
        self.state = ExtractState()
        self.base_url = connection.resolve_base_url()
        self.url = _join(self.base_url, entity.path)
        self.budget = budget if budget is not None else RateBudget.from_config(connection.rate_limit)
        self.gate = gate if gate is not None else PauseGate(clock=clock)
        self.policy = RetryPolicy.from_connection(connection)
        self.auth: Authenticator = build_authenticator(auth)
        self.redactor = Redactor(self.auth)
        self.counters = RestCounters()
        # no declared key on a fan-out entity: a record sent twice is the same record twice
        self.duplicates = DuplicateCounter()
        self._sleep = sleep
        self._random = random
        self._today = today
        # OAuth2 tokens come from the synchronous client (its retries, its budget), fetched in a worker
        # thread and shared by every request of this extractor, one fetch at a time.
        self._token_client: RestClient | None = None
        if isinstance(self.auth, OAuth2ClientCredentialsAuthenticator):
            self._token_client = RestClient(connection, self.auth, budget=self.budget)
        self._slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------------ synchronous side

    def extract(self, watermark: str | None = None) -> Iterator[Batch | Payload]:
        from .._extract import Payload, _to_batch

        entity = self.entity
        self.state.watermark_after = watermark
        chunk: list[dict[str, Any]] = []
        pipeline: _Pipeline | None = None
        _log.info(
            "extracting %s from %s (%s fan-out, concurrency %d)",
            entity.name,
            self.redactor.url(self.url),
            entity.fan_out.type,
            self.concurrency,
        )
        try:
            values = self._fan_out_values()
            pipeline = _Pipeline(lambda queue: self._produce(values, queue), maxsize=self.concurrency)
            for fetched in pipeline:
                self.state.bytes_read += len(fetched.body)
                if entity.keep_payload:
                    yield Payload(f"request-{fetched.index + 1:06d}", fetched.content_type, fetched.body)
                for record in fetched.records:
                    self.duplicates.add(record)
                    chunk.append(record)
                    if len(chunk) >= self.batch_size:
                        yield _to_batch(chunk)
                        chunk = []
            if chunk:
                yield _to_batch(chunk)
        except EtlError as exc:
            message = self.redactor.text(f"source {self.source}, entity {entity.name}: {exc}")
            raise type(exc)(message) from None
        finally:
            if pipeline is not None:
                pipeline.close()
            token_requests = 0
            if self._token_client is not None:
                token_requests = self._token_client.counters.requests
                self._token_client.close()
            self.state.metadata = {
                "pages": self.counters.pages,
                "requests": self.counters.requests + token_requests,
                "retries": self.counters.retries,
                "url": self.redactor.url(self.url),
                **self.duplicates.metadata(),
            }
            self.duplicates.warn(self.source, entity.name)

    def _fan_out_values(self) -> list[str] | None:
        """The fan-out values in order; None when the first page tells the page count."""
        fan_out = self.entity.fan_out
        if isinstance(fan_out, DatesFanOut):
            try:
                return fan_out.dates(self._today())
            except ValueError as exc:
                raise ConfigurationError(f"fan_out dates: {exc}") from None
        if isinstance(fan_out, PagesFanOut):
            if fan_out.count is None:
                return None
            return [str(fan_out.start + i) for i in range(fan_out.count)]
        return list(fan_out.values)

    # ---------------------------------------------------------------------------- event loop side

    async def _produce(self, values: Sequence[str] | None, out: asyncio.Queue[Any]) -> None:
        """Fetch every fan-out request, handing the responses to ``out`` in fan-out order."""
        self._slots = asyncio.Semaphore(self.concurrency)
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connection.timeout_s, sock_read=self.connection.timeout_s
        )
        connector = aiohttp.TCPConnector(
            limit=self.concurrency, ssl=None if self.connection.verify_tls else False
        )
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.connection.headers}
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
            first_index = 0
            if values is None:
                fan_out = self.entity.fan_out
                assert isinstance(fan_out, PagesFanOut)
                first = await self._fetch(session, self._call(0, str(fan_out.start)))
                total = self._page_count(first)
                await out.put(first)
                values = [str(fan_out.start + i) for i in range(1, total)]
                first_index = 1
            window: deque[asyncio.Task[_Fetched]] = deque()
            try:
                for index, value in enumerate(values, start=first_index):
                    window.append(asyncio.create_task(self._fetch(session, self._call(index, value))))
                    if len(window) >= 2 * self.concurrency:
                        await out.put(await window[0])
                        window.popleft()
                while window:
                    await out.put(await window[0])
                    window.popleft()
            finally:
                for task in window:
                    task.cancel()
                await asyncio.gather(*window, return_exceptions=True)

    def _call(self, index: int, value: str) -> _Call:
        entity = self.entity
        name = entity.fan_out.name
        path = fill(entity.path, name, quote(value, safe=""))
        params = {
            key: fill(item, name, value) if isinstance(item, str) else item
            for key, item in entity.params.items()
        }
        if entity.sends_variable_as_param:
            params[name] = value
        return _Call(index, _join(self.base_url, path), params)

    def _page_count(self, first: _Fetched) -> int:
        fan_out = self.entity.fan_out
        assert isinstance(fan_out, PagesFanOut) and fan_out.count_path is not None
        total = lookup(first.document, fan_out.count_path) if first.document is not None else MISSING
        if total is MISSING or isinstance(total, bool) or not isinstance(total, int) or total < 0:
            shown = "missing" if total is MISSING else repr(total)[:40]
            raise SourceFatalError(
                f"{first.url}: count_path {fan_out.count_path!r} is not a page count ({shown})"
            )
        if total > MAX_REQUESTS:
            raise SourceFatalError(f"{first.url}: {total} pages is more than {MAX_REQUESTS} requests")
        return total

    async def _fetch(self, session: aiohttp.ClientSession, call: _Call) -> _Fetched:
        """One fan-out request under the retry policy (the same decisions as the synchronous client)."""
        attempt = 0
        refreshed = False  # this request had the token refreshed since its last retryable failure
        while True:
            outcome: requests.Response | BaseException
            response: requests.Response | None = None
            document: Any = None
            # Credentials are applied once the request holds a slot and its budget, right before it is
            # sent, so a token refreshed meanwhile by another request is the one used.
            async with self._slot():
                prepared = await self._prepare(call)
                url = self.redactor.url(str(prepared.url))
                where = f"GET {url}"
                try:
                    response = await self._send(session, prepared)
                    # before the slot is given up: the next request must find the gate closed
                    observe_pause(self.gate, response, self.policy, where)
                    if response.ok:
                        self.auth.accepted(prepared)
                        document = _parse_json(response.content)
                    outcome = response
                except (aiohttp.ClientError, TimeoutError, BrokenBody) as exc:
                    outcome = _as_requests_error(exc)
            if response is not None and response.status_code == 401:
                verdict = self.auth.after_401(prepared, may_refresh=not refreshed)
                if verdict != "fatal":
                    refreshed = after_401(verdict, where, self.redactor) or refreshed
                    continue
            decision = decide(outcome, attempt, self.policy, random=self._random)
            if decision.action == "accept":
                assert response is not None
                self.counters.pages += 1
                records = records_at(
                    document, self.entity.records_path, where=f"request {call.index + 1} ({url})"
                )
                content_type = response.headers.get("Content-Type") or "application/json"
                return _Fetched(call.index, url, content_type, response.content, document, records)
            if decision.action == "fail":
                raise decision.error(self.redactor.text(f"{where}: {decision.reason}"))
            attempt += 1
            refreshed = False
            self.counters.retries += 1
            log_retry(
                where, self.redactor.text(decision.reason), attempt, self.policy.max_retries, decision.wait
            )
            if decision.announced is None:
                await self._sleep(decision.wait)  # the server's pause is waited at the gate, by all

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of ``concurrency`` request slots, the end of any pause the server announced, then the
        request's turn in the rate budget."""
        assert self._slots is not None
        async with self._slots:
            await self.gate.wait_async(self._sleep)
            if self.budget is not None:
                await self.budget.acquire_async(self._sleep)
            yield

    async def _prepare(self, call: _Call) -> requests.PreparedRequest:
        """The request with credentials applied by the synchronous authenticator (an OAuth2 token fetch
        blocks, so that one runs in a worker thread)."""
        request = requests.Request("GET", call.url, params=call.params)
        if self._token_client is not None:
            return await asyncio.to_thread(self._authorize, request)
        return self._authorize(request)

    def _authorize(self, request: requests.Request) -> requests.PreparedRequest:
        prepared: requests.PreparedRequest = self.auth(request.prepare())
        return prepared

    async def _send(
        self, session: aiohttp.ClientSession, prepared: requests.PreparedRequest
    ) -> requests.Response:
        # the last look at the gate: a pause announced while this request waited for its budget or token
        await self.gate.wait_async(self._sleep)
        self.counters.requests += 1
        # A redirect would carry an API key header to wherever it points: follow none then.
        async with session.request(
            "GET",
            URL(str(prepared.url), encoded=True),
            headers=dict(prepared.headers),
            allow_redirects=not self.auth.credential_headers,
        ) as answer:
            try:
                body = await answer.read()
            except aiohttp.ClientPayloadError as exc:
                expected = answer.headers.get("Content-Length") or "unknown"
                raise BrokenBody(f"body cut off of {expected} bytes ({type(exc).__name__})", 0) from None
            self.counters.bytes += len(body)
            _log.debug(
                "GET %s -> %d (%d bytes)", self.redactor.url(str(answer.url)), answer.status, len(body)
            )
            return _as_response(answer, body)


# ------------------------------------------------------------------------------ translation


def _as_response(answer: aiohttp.ClientResponse, body: bytes) -> requests.Response:
    """An aiohttp answer as a ``requests.Response``, the type :func:`decide` classifies."""
    response = requests.Response()
    response.status_code = answer.status
    response.headers = CaseInsensitiveDict(dict(answer.headers))
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]
    response.url = str(answer.url)
    response.reason = answer.reason or ""
    return response


def _as_requests_error(exc: BaseException) -> BaseException:
    """The ``requests`` exception :func:`decide` knows for an aiohttp (or timeout) exception."""
    if isinstance(exc, BrokenBody):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return requests.exceptions.SSLError(text)
    if isinstance(exc, aiohttp.ServerTimeoutError | TimeoutError):
        return requests.Timeout(f"timed out: {text}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return requests.ConnectionError(text)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return BrokenBody(f"body cut off ({text})", 0)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return requests.exceptions.TooManyRedirects(text)
    if isinstance(exc, aiohttp.InvalidURL):
        return requests.exceptions.InvalidURL(text)
    return exc


def _join(base_url: str, path: str) -> str:
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# ------------------------------------------------------------------------------- the pipeline

_DONE: Any = object()


@dataclass
class _Failure:
    error: BaseException


class _Pipeline:
    """Runs a producer coroutine on its own event loop in a helper thread; iterating takes what it
    puts in the (bounded) queue, in order. Closing cancels the producer and waits for the thread."""

    def __init__(self, produce: Callable[[asyncio.Queue[Any]], Awaitable[None]], *, maxsize: int) -> None:
        self._produce = produce
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        # the loop's log lines carry the caller's context (run id, zone, source, entity)
        self._thread = threading.Thread(
            target=contextvars.copy_context().run, args=(self._run,), name="rest-async", daemon=True
        )
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._task = self._loop.create_task(self._guarded())
            self._started.set()
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._started.set()
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    async def _guarded(self) -> None:
        try:
            await self._produce(self._queue)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self._queue.put(_Failure(exc))
        else:
            await self._queue.put(_DONE)
        await self._queue.join()  # the loop lives until the caller has taken everything

    async def _take(self) -> Any:
        item = await self._queue.get()
        self._queue.task_done()
        return item

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = asyncio.run_coroutine_threadsafe(self._take(), self._loop).result()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item

    def close(self) -> None:
        if self._thread.is_alive() and self._task is not None:
            # RuntimeError: the loop closed in between, the producer is done.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join()
