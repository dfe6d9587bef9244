"""A synchronous REST client over ``requests``: timeouts, retries, a rate budget and redaction.

* Every request has a (connect, read) timeout.
* :func:`decide` is the one place where a response or an exception becomes accept / retry / fail:
  429, 500, 502, 503, 504, connection errors, timeouts and broken or malformed bodies are retried with
  exponential backoff and full jitter, honouring ``Retry-After`` up to ``max_retry_wait_s``; any other
  4xx fails at once as :class:`SourceFatalError`; retries exhausted is :class:`SourceTransientError`.
* A :class:`RateBudget` spaces requests client-side (shared by threads, reusable by asyncio code).
* A :class:`PauseGate` holds every request of a source while a pause the server announced lasts
  (``Retry-After``, or a rate-limit reset header with nothing remaining): see :func:`announced_pause`.
* A 401 is the authenticator's to judge (:meth:`Authenticator.after_401`): a token replaced meanwhile is
  sent again, a token that served before is refreshed once for every request holding it, a token
  refused right after a refresh fails the pull.
* URLs and messages pass through a :class:`Redactor` before reaching a log line or an exception.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random as _random
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from etl_shared import SourceError, SourceFatalError, SourceTransientError, redact

from .._json import JsonError
from .._json import loads as json_loads
from ._auth import Authenticator, Verdict
from ._models import RateLimit, RestConnection
from ._paginators import BasePaginator
from ._paths import MISSING, lookup

_log = logging.getLogger(__name__)

USER_AGENT = "etl-staging/0.1 (+requests)"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 64 * 1024


# ------------------------------------------------------------------------------ rate budget


class RateBudget:
    """At most ``requests`` per ``per_seconds``, bursts included (GCRA, a token bucket by arrival time).

    :meth:`reserve` books the next slot and returns how long to wait for it, so the same budget serves
    threads (:meth:`acquire` sleeps) and coroutines (:meth:`acquire_async` awaits) alike.
    """

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests < 1 or per_seconds <= 0:
            raise ValueError("a rate budget needs requests >= 1 and per_seconds > 0")
        self.interval = per_seconds / requests
        self.tolerance = per_seconds - self.interval  # the burst: `requests` back to back
        self._clock = clock
        self._sleep = sleep
        self._next_arrival: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        limit: RateLimit | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RateBudget | None:
        if limit is None:
            return None
        return cls(limit.requests, limit.per_seconds, clock=clock, sleep=sleep)

    def reserve(self) -> float:
        """Book the next request; the seconds to wait before sending it (0 when within budget)."""
        with self._lock:
            now = self._clock()
            arrival = now if self._next_arrival is None else max(self._next_arrival, now)
            self._next_arrival = arrival + self.interval
            delay = arrival - self.tolerance - now
            return delay if delay > 1e-9 else 0.0  # float noise is no reason to sleep

    def acquire(self) -> float:
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay

    async def acquire_async(self, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> float:
        delay = self.reserve()
        if delay > 0:
            await sleep(delay)
        return delay


# ------------------------------------------------------------------------------ pause gate


class PauseGate:
    """A pause the server asked for, shared by every request of a source: none is sent before it ends.

    A ``Retry-After`` or a rate-limit reset (:func:`announced_pause`) closes the gate until then
    (:meth:`hold`); every request waits at it right before it is sent (:meth:`wait` in threads,
    :meth:`wait_async` in coroutines). One answer so pauses all the workers of a source and its entities
    pulled in parallel, not only the request that received it; that request retries within its own
    retry budget, the ones that only waited spend none.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: float | None = None
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> Literal["new", "extended"] | None:
        """Close the gate for ``seconds`` from now, never ending a longer pause early: ``"new"`` when it
        was open, ``"extended"`` when the pause now ends later, None when it already lasted longer."""
        with self._lock:
            now = self._clock()
            until = now + seconds
            if self._until is not None and until <= self._until:
                return None
            was_open = self._until is None or self._until <= now
            self._until = until
            return "new" if was_open else "extended"

    def remaining(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return self._pause()[0]

    def _pause(self) -> tuple[float, float | None]:
        with self._lock:
            left = 0.0 if self._until is None else self._until - self._clock()
            return (left if left > 1e-9 else 0.0), self._until  # float noise is no reason to sleep

    def _ended(self, until: float | None) -> bool:
        """After sleeping through the pause that ended at ``until``: True unless it was extended."""
        with self._lock:
            return self._until == until

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Sleep until the gate is open, again when the pause was extended meanwhile; the seconds slept."""
        waited = 0.0
        while True:
            left, until = self._pause()
            if left <= 0:
                return waited
            sleep(left)
            waited += left
            if self._ended(until):
                return waited

    async def wait_async(self, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> float:
        waited = 0.0
        while True:
            left, until = self._pause()
            if left <= 0:
                return waited
            await sleep(left)
            waited += left
            if self._ended(until):
                return waited


# ------------------------------------------------------------------------------- redaction

_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "password",
        "secret",
        "signature",
        "sig",
        "code",
    }
)
_MASK = "***"


class Redactor:
    """Removes credentials from URLs and messages: the authenticator's secret values wherever they
    appear, values of secret query parameters, user:password@ and bearer tokens."""

    def __init__(self, auth: Authenticator) -> None:
        self._auth = auth
        self.params = frozenset(p.lower() for p in _SECRET_PARAMS | auth.secret_params)
        names = "|".join(re.escape(p) for p in sorted(self.params, key=len, reverse=True))
        self._param_pattern = re.compile(rf"(?i)(?<![A-Za-z0-9_-])({names})=([^&\s'\"]+)")

    def url(self, url: str) -> str:
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.text(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{_MASK}@{netloc.rsplit('@', 1)[1]}"
        query = urlencode(
            [
                (k, _MASK if k.lower() in self.params else v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*:/,@",
        )
        return self.text(urlunsplit((parts.scheme, netloc, parts.path, query, "")))

    def text(self, text: str) -> str:
        for value in self._auth.secret_values():
            if len(value) >= 4:
                for form in {value, quote(value), quote(value, safe=""), quote_plus(value)}:
                    text = text.replace(form, _MASK)
        text = self._param_pattern.sub(rf"\1={_MASK}", text)
        return redact(text)


class _ScrubUrllib3(logging.Filter):
    """urllib3 logs request lines (query strings included) at DEBUG: scrub them with every live
    client's redactor before any handler sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(self.redactors)
        if redactors:
            message = record.getMessage()
            for redactor in redactors:
                message = redactor.text(message)
            record.msg, record.args = message, None
        return True


_URLLIB3_SCRUBBER = _ScrubUrllib3()


def _scrub_urllib3_logs(redactor: Redactor) -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _URLLIB3_SCRUBBER not in logger.filters:
        logger.addFilter(_URLLIB3_SCRUBBER)
    _URLLIB3_SCRUBBER.redactors.add(redactor)


# ---------------------------------------------------------------------------- retry policy


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_wait_s: float = 120.0

    @classmethod
    def from_connection(cls, connection: RestConnection) -> RetryPolicy:
        return cls(
            connection.max_retries,
            connection.backoff_base_s,
            connection.backoff_max_s,
            connection.max_retry_wait_s,
        )


class BrokenBody(Exception):
    """A 2xx body that was cut off or is not JSON: worth another attempt."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.offset = offset


@dataclass(frozen=True)
class Decision:
    action: Literal["accept", "retry", "fail"]
    reason: str = ""
    wait: float = 0.0
    error: type[SourceError] = SourceTransientError
    #: the header the wait comes from (the server's pause, waited at the source's PauseGate); None:
    #: the request's own backoff
    announced: str | None = None


def decide(
    outcome: requests.Response | BaseException,
    attempt: int,
    policy: RetryPolicy,
    *,
    random: Callable[[], float] = _random.random,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Decision:
    """Accept, retry (after how long) or fail (with which error): the only place this is decided.

    ``attempt`` counts the retries already made for this request.
    """
    retryable: str | None = None
    retry_after: float | None = None
    announced = "Retry-After"
    if isinstance(outcome, requests.Response):
        status = outcome.status_code
        if status < 300:
            return Decision("accept")
        if status in RETRY_STATUSES:
            retryable = f"HTTP {status}"
            pause = announced_pause(outcome, now)
            if pause is not None:
                retry_after, announced = pause
        elif status in (401, 403):
            return Decision("fail", f"credentials refused (HTTP {status})", error=SourceFatalError)
        elif status == 404:
            return Decision("fail", "not found (HTTP 404)", error=SourceFatalError)
        elif 400 <= status < 500:
            return Decision("fail", f"HTTP {status}{_excerpt(outcome)}", error=SourceFatalError)
        elif status >= 500:
            return Decision("fail", f"HTTP {status}{_excerpt(outcome)}", error=SourceTransientError)
        else:
            return Decision("fail", f"unexpected HTTP {status}", error=SourceFatalError)
    elif isinstance(outcome, BrokenBody):
        retryable = str(outcome)
    elif isinstance(outcome, requests.exceptions.SSLError):
        return Decision("fail", f"TLS failed: {_first_line(outcome)}", error=SourceFatalError)
    elif isinstance(
        outcome,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        retryable = f"{type(outcome).__name__}: {_first_line(outcome)}"
    elif isinstance(
        outcome,
        requests.exceptions.TooManyRedirects
        | requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.InvalidHeader,
    ):
        return Decision("fail", f"{type(outcome).__name__}: {_first_line(outcome)}", error=SourceFatalError)
    else:
        return Decision(
            "fail", f"{type(outcome).__name__}: {_first_line(outcome)}", error=SourceTransientError
        )

    if retry_after is not None and retry_after > policy.max_retry_wait_s:
        return Decision(
            "fail",
            f"{retryable}: the server asks to wait {retry_after:.0f}s ({announced}),"
            f" more than max_retry_wait_s={policy.max_retry_wait_s:g}",
        )
    if attempt >= policy.max_retries:
        return Decision("fail", f"{retryable}; gave up after {attempt + 1} attempts")
    if retry_after is not None:
        return Decision("retry", retryable, wait=retry_after, announced=announced)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2**attempt)
    return Decision("retry", retryable, wait=random() * ceiling)


def log_retry(where: str, reason: str, attempt: int, max_retries: int, wait: float) -> None:
    """The one warning line of a retried request (shared by the sync and async clients)."""
    _log.warning("%s: %s; retry %d/%d in %.1fs", where, reason, attempt, max_retries, wait)


REFUSED_AFTER_REFRESH = (
    "credentials refused (HTTP 401) right after a token refresh: the API refuses the new token too"
    " (check the client id and secret, its grants and scope)"
)


def after_401(verdict: Verdict, where: str, redactor: Redactor) -> bool:
    """Act on the authenticator's verdict on a 401 (anything but ``"fatal"``, which :func:`decide`
    turns into "credentials refused"): True when the request had the token refreshed, False when it is
    sent again with a token another request fetched; a token refused right after a refresh fails."""
    if verdict == "refused":
        raise SourceFatalError(redactor.text(f"{where}: {REFUSED_AFTER_REFRESH}"))
    if verdict == "refresh":
        _log.info("%s: 401, refreshing the token (once for every request holding it)", where)
        return True
    _log.info("%s: 401 with a token replaced meanwhile; sending again with the current one", where)
    return False


def retry_after_seconds(value: str | None, now: Callable[[], datetime]) -> float | None:
    """``Retry-After`` as seconds to wait: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


#: Rate-limit header families, each ``<prefix>-Remaining`` / ``<prefix>-Reset``: the IETF draft's
#: (reset in delta seconds) and the common X- forms (reset in delta seconds or epoch seconds).
RATE_LIMIT_PREFIXES = ("RateLimit", "X-RateLimit", "X-Rate-Limit")
#: A reset above this is a Unix time (2001-09-09 on), not a number of seconds to wait.
_EPOCH_RESET = 1e9


def announced_pause(
    response: requests.Response, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> tuple[float, str] | None:
    """The pause a response asks of every request of the source, in seconds, and the header saying so:
    the ``Retry-After`` of a 429 or 5xx (seconds or an HTTP date), else a rate-limit reset
    (``RateLimit-Reset``, ``X-RateLimit-Reset``, ``X-Rate-Limit-Reset``: seconds, a Unix time or an HTTP
    date) on a 429, or on any answer whose matching ``...-Remaining`` is 0. None: no pause."""
    status = response.status_code
    headers = response.headers
    if status in RETRY_STATUSES:
        seconds = retry_after_seconds(headers.get("Retry-After"), now)
        if seconds is not None:
            return seconds, "Retry-After"
    for prefix in RATE_LIMIT_PREFIXES:
        reset = headers.get(f"{prefix}-Reset")
        if reset is None:
            continue
        if status != 429 and not _nothing_remaining(headers.get(f"{prefix}-Remaining")):
            continue
        seconds = _reset_seconds(reset, now)
        if seconds is not None:
            return seconds, f"{prefix}-Reset"
    return None


def _nothing_remaining(value: str | None) -> bool:
    try:
        return value is not None and float(value.strip()) <= 0
    except ValueError:
        return False


def _reset_seconds(value: str, now: Callable[[], datetime]) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return retry_after_seconds(value, now)  # an HTTP date, or nothing usable
    if not math.isfinite(number):
        return None
    if number > _EPOCH_RESET:
        return max(0.0, number - now().timestamp())
    return max(0.0, number)


def observe_pause(
    gate: PauseGate,
    response: requests.Response,
    policy: RetryPolicy,
    where: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Close ``gate`` for the pause ``response`` announces (:func:`announced_pause`), before the request
    that received it gives up its turn. A 2xx's pause is kept to ``max_retry_wait_s``; an error's longer
    pause fails that request instead (:func:`decide`) and holds no one."""
    found = announced_pause(response, now)
    if found is None:
        return
    seconds, header = found
    if seconds > policy.max_retry_wait_s:
        if not response.ok:
            return
        _log.warning(
            "%s: %s asks for a pause of %.0fs; pausing max_retry_wait_s=%gs",
            where,
            header,
            seconds,
            policy.max_retry_wait_s,
        )
        seconds = policy.max_retry_wait_s
    if seconds <= 0:
        return
    if gate.hold(seconds) == "new":
        _log.info(
            "%s: HTTP %d, %s: every request of the source waits %.1fs",
            where,
            response.status_code,
            header,
            seconds,
        )


def _excerpt(response: requests.Response) -> str:
    text = response.content[:300].decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return f": {text[:200]}" if text else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------- client


@dataclass
class RestCounters:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    bytes: int = 0


@dataclass
class Page:
    number: int
    url: str  # redacted
    response: requests.Response
    body: bytes
    document: Any
    records: list[Any]

    @property
    def content_type(self) -> str:
        return self.response.headers.get("Content-Type") or "application/json"


class _Session(requests.Session):
    """requests drops ``Authorization`` when a redirect leaves the host; drop API key headers too."""

    def __init__(self, credential_headers: frozenset[str]) -> None:
        super().__init__()
        self.credential_headers = credential_headers

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        if response.request is not None and self.should_strip_auth(
            str(response.request.url), str(prepared_request.url)
        ):
            for name in self.credential_headers:
                prepared_request.headers.pop(name, None)
        super().rebuild_auth(prepared_request, response)


class RestClient:
    def __init__(
        self,
        connection: RestConnection,
        auth: Authenticator,
        *,
        budget: RateBudget | None = None,
        gate: PauseGate | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = (connection.timeout_s, connection.timeout_s)
        self.policy = RetryPolicy.from_connection(connection)
        self.verify = connection.verify_tls
        self.auth = auth
        self.budget = budget
        # the source's pauses (Retry-After, rate-limit resets); by default this client's own
        self.gate = gate if gate is not None else PauseGate(clock=clock)
        self.counters = RestCounters()
        self.redactor = Redactor(auth)
        self._sleep = sleep
        self._random = random
        self.session = _Session(auth.credential_headers)
        adapter = HTTPAdapter(max_retries=0)  # retries are ours (decide), never urllib3's
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self.session.headers.update(connection.headers)
        auth.bind(self._token_transport)
        _scrub_urllib3_logs(self.redactor)

    def close(self) -> None:
        self.session.close()

    def paginate(
        self, request: requests.Request, paginator: BasePaginator, *, records_path: str
    ) -> Iterator[Page]:
        """Pages of an entity, one at a time, as the paginator walks them."""
        paginator.init_request(request)
        while True:
            response, body, document = self.exchange(request)
            self.counters.pages += 1
            url = self.redactor.url(response.url)
            records = records_at(document, records_path, where=f"page {self.counters.pages} ({url})")
            paginator.update_state(response, records, document)
            yield Page(self.counters.pages, url, response, body, document, records)
            if not paginator.has_next_page:
                return
            paginator.update_request(request)

    def exchange(
        self, request: requests.Request, *, authenticate: bool = True
    ) -> tuple[requests.Response, bytes, Any]:
        """Send a request under the retry policy; the accepted response, its body and its JSON."""
        attempt = 0
        refreshed = False  # this request had the token refreshed since its last retryable failure
        while True:
            prepared = self._prepare(request, authenticate)
            where = f"{prepared.method} {self._url(prepared)}"
            outcome: requests.Response | BaseException
            response: requests.Response | None = None
            body, document = b"", None
            try:
                response, body = self._send(prepared)
                observe_pause(self.gate, response, self.policy, where)
                if response.status_code == 401 and authenticate:
                    verdict = self.auth.after_401(prepared, may_refresh=not refreshed)
                    if verdict != "fatal":
                        refreshed = after_401(verdict, where, self.redactor) or refreshed
                        continue
                if response.ok:
                    if authenticate:
                        self.auth.accepted(prepared)
                    document = _parse_json(body)
                outcome = response
            except (requests.RequestException, BrokenBody) as exc:
                outcome = exc
            decision = decide(outcome, attempt, self.policy, random=self._random)
            if decision.action == "accept":
                assert response is not None
                return response, body, document
            if decision.action == "fail":
                raise decision.error(self.redactor.text(f"{where}: {decision.reason}"))
            attempt += 1
            refreshed = False
            self.counters.retries += 1
            log_retry(
                where, self.redactor.text(decision.reason), attempt, self.policy.max_retries, decision.wait
            )
            if decision.announced is None:
                self._sleep(decision.wait)  # the server's pause is waited at the gate, before sending

    def _prepare(self, request: requests.Request, authenticate: bool) -> requests.PreparedRequest:
        attempt = requests.Request(
            method=request.method,
            url=request.url,
            headers=dict(request.headers or {}),
            params=dict(request.params or {}),
            data=request.data,
            json=request.json,
            auth=self.auth if authenticate else request.auth,
        )
        return self.session.prepare_request(attempt)

    def _send(self, prepared: requests.PreparedRequest) -> tuple[requests.Response, bytes]:
        self.gate.wait(self._sleep)
        if self.budget is not None:
            self.budget.acquire()
            self.gate.wait(self._sleep)  # a pause announced while this request waited for its turn
        self.counters.requests += 1
        settings = self.session.merge_environment_settings(prepared.url, {}, True, self.verify, None)
        started = time.monotonic()
        response = self.session.send(prepared, timeout=self.timeout, allow_redirects=True, **settings)
        try:
            buffer = bytearray()
            try:
                for chunk in response.iter_content(_CHUNK):
                    buffer += chunk
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError) as exc:
                received = len(buffer) + _partial_bytes(exc)
                self.counters.bytes += received
                expected = response.headers.get("Content-Length")
                raise BrokenBody(
                    f"body cut off at byte {received} of {expected or 'unknown'} ({type(exc).__name__})",
                    received,
                ) from None
            body = bytes(buffer)
            self.counters.bytes += len(body)
            response._content = body  # what requests does itself: .content/.json() keep working
            response._content_consumed = True
        finally:
            response.close()
        _log.debug(
            "%s %s -> %d (%d bytes in %.2fs)",
            prepared.method,
            self._url(prepared),
            response.status_code,
            len(body),
            time.monotonic() - started,
        )
        return response, body

    def _token_transport(self, request: requests.Request) -> Any:
        return self.exchange(request, authenticate=False)[2]

    def _url(self, prepared: requests.PreparedRequest) -> str:
        return self.redactor.url(str(prepared.url))


def _partial_bytes(exc: BaseException) -> int:
    """Bytes of the failed read that urllib3 received before the connection broke (IncompleteRead)."""
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        partial = getattr(item, "partial", None)
        if isinstance(partial, int):
            return partial
        if isinstance(partial, bytes):
            return len(partial)
        if isinstance(item, BaseException):
            pending.extend(item.args)
    return 0


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json_loads(body)  # numbers exact (_json.py)
    except JsonError as exc:
        # the parsers count characters; report the byte offset.
        pos = exc.pos or 0
        offset = len(body.decode("utf-8", errors="replace")[:pos].encode("utf-8"))
        raise BrokenBody(f"malformed JSON at byte {offset} of {len(body)}: {exc.reason}", offset) from None


def records_at(document: Any, path: str, *, where: str) -> list[Any]:
    """The record list at ``path``; a single object is one record, null or no body is none."""
    if document is None:
        return []
    value = lookup(document, path)
    if value is MISSING:
        raise SourceFatalError(f"{where}: records path {path!r} not found in the response")
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise SourceFatalError(f"{where}: expected a list of records at {path!r}, got {type(value).__name__}")
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise SourceFatalError(f"{where}: record {index} is a {type(record).__name__}, not a JSON object")
    return value
