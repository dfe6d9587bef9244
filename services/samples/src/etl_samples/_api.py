"""The sample REST sources: a CRM API (OAuth2 client credentials, cursor pages) and an FX rates API.

Standard library only: ``ThreadingHTTPServer`` on a background thread. Records are served from the
files ``generate`` writes under ``<data_dir>/sources``; nothing is held in memory but an index of line
offsets per CRM file and one raw line per FX day. The files are re-indexed when they change (a new
``generate`` run renames new files into place), so the server may start before the data exists.

``Faults`` switches on the failures a robust client must survive; tests and demos set them at runtime
through ``SampleApiServer.faults``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import csv
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple, Self
from urllib.parse import parse_qs, urlencode, urlsplit

from ._files import FX_FILE_NAME

_log = logging.getLogger(__name__)

DEMO_CLIENT_ID = "demo-client"
DEMO_CLIENT_SECRET = "demo-secret"  # noqa: S105 - the documented demo credential, not a secret
CRM_RESOURCES: Mapping[str, str] = {
    "accounts": "account_id",
    "contacts": "contact_id",
    "opportunities": "opportunity_id",
}
DEFAULT_PAGE_LIMIT = 100
FX_PAGE_SIZE_DEFAULT = 1000
FX_PAGE_SIZE_MAX = 10_000
_MISSING_VALUES = frozenset({"", "N/A"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Faults:
    """Failures to inject. Counters count down as they fire; flags stay on until cleared, except
    ``truncate_next_body``, which fires once."""

    fx_down: bool = False  # every FX request answers 503
    crm_500_times: int = 0  # the next N CRM requests answer 500
    crm_429_times: int = 0  # the next N CRM requests answer 429 with Retry-After: 1
    expire_tokens_after_requests: int | None = None  # a token is refused after N CRM requests
    truncate_next_body: bool = False  # the next CRM or FX data response is cut in half (once)
    cursor_loop: bool = False  # next_cursor always points back to the first page


class _Response(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


def _json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return _Response(status, body, dict(headers or {}))


def _error(status: int, error: str, detail: str | None = None, **headers: str) -> _Response:
    payload = {"error": error} if detail is None else {"error": error, "detail": detail}
    return _json_response(status, payload, {name.replace("_", "-"): value for name, value in headers.items()})


class _BadRequest(Exception):
    """A query parameter is wrong: 400 with ``detail``."""


class _NoData(Exception):
    """A source file does not exist (yet): 503."""


class _Token(NamedTuple):
    expires_at: float  # time.monotonic()
    crm_requests: int


def _file_identity(handle: BinaryIO) -> tuple[int, int, int, int]:
    status = os.fstat(handle.fileno())
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _open_source(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise _NoData(f"{path} does not exist: run `etl-samples generate` first") from None


def _parse_instant(text: Any) -> datetime:
    """An ISO 8601 timestamp or date as an aware UTC datetime (naive means UTC)."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _CrmEntry(NamedTuple):
    updated_at: datetime
    id: str
    offset: int
    length: int


class _CrmIndex:
    """Line offsets of one JSON Lines file, ordered by (updated_at, id); rebuilt when the file changes."""

    def __init__(self, path: Path, id_field: str) -> None:
        self.path = path
        self.id_field = id_field
        self._lock = threading.Lock()
        self._identity: tuple[int, ...] | None = None
        self._entries: list[_CrmEntry] = []

    @contextlib.contextmanager
    def open(self) -> Iterator[tuple[BinaryIO, list[_CrmEntry]]]:
        """The file and an index that matches its contents."""
        with _open_source(self.path) as handle:
            identity = _file_identity(handle)
            with self._lock:
                if identity != self._identity:
                    started = time.monotonic()
                    self._entries = self._scan(handle)
                    self._identity = identity
                    _log.info(
                        "indexed %d records of %s in %.2f s",
                        len(self._entries),
                        self.path,
                        time.monotonic() - started,
                    )
                entries = self._entries
            yield handle, entries

    def _scan(self, handle: BinaryIO) -> list[_CrmEntry]:
        entries = []
        offset = 0
        handle.seek(0)
        for line in handle:
            if line.strip():
                record = json.loads(line)
                try:
                    updated_at = _parse_instant(record.get("updated_at"))
                except ValueError:
                    updated_at = _EPOCH
                entries.append(_CrmEntry(updated_at, str(record.get(self.id_field)), offset, len(line)))
            offset += len(line)
        entries.sort()
        return entries


def _encode_cursor(resource: str, after: _CrmEntry | None) -> str:
    position = None if after is None else [after.updated_at.isoformat(), after.id]
    raw = json.dumps({"v": 1, "r": resource, "after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(resource: str, cursor: str) -> tuple[datetime, str] | None:
    """The (updated_at, id) the page starts after; None for the first page."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if payload.get("v") != 1 or payload.get("r") != resource:
            raise ValueError("another resource's cursor")
        position = payload["after"]
        if position is None:
            return None
        updated_at, record_id = position
        return _parse_instant(updated_at), str(record_id)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _BadRequest(f"invalid cursor for {resource}") from exc


class _FxHistory(NamedTuple):
    currencies: tuple[str, ...]  # the header's columns after Date
    days: list[str]  # ascending ISO dates
    lines: list[str]  # the raw CSV row of each day
    before: list[int]  # before[i]: the number of rates on days[:i]; len(days) + 1 entries


class _FxIndex:
    """The ECB history (newest first in the file) as ascending days; rebuilt when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._identity: tuple[int, ...] | None = None
        self._history = _FxHistory((), [], [], [0])

    def history(self) -> _FxHistory:
        with _open_source(self.path) as handle:
            identity = _file_identity(handle)
            with self._lock:
                if identity != self._identity:
                    self._history = self._scan(handle)
                    self._identity = identity
                    _log.info("indexed %d FX days of %s", len(self._history.days), self.path)
                return self._history

    @staticmethod
    def _scan(handle: BinaryIO) -> _FxHistory:
        text = handle.read().decode("utf-8-sig")
        header, *rows = text.splitlines()
        currencies = tuple(name.strip() for name in header.split(",")[1:])
        by_day: dict[str, tuple[str, int]] = {}
        for line in rows:
            cells = line.split(",")
            if not cells[0].strip():
                continue
            day = date.fromisoformat(cells[0].strip()).isoformat()
            by_day[day] = (line, len(_rates_of(currencies, line)))
        days = sorted(by_day)
        before = [0]
        for day in days:
            before.append(before[-1] + by_day[day][1])
        return _FxHistory(currencies, days, [by_day[day][0] for day in days], before)


def _rates_of(currencies: tuple[str, ...], line: str) -> list[tuple[str, str]]:
    """The (currency, rate) pairs of a row, in currency order, without N/A and empty cells."""
    cells = next(csv.reader([line]))[1:]
    pairs = (
        (currency, cell.strip())
        for currency, cell in zip(currencies, cells, strict=False)
        if currency and cell.strip() not in _MISSING_VALUES
    )
    return sorted(pairs)


class _RateLimiter:
    """At most ``per_second`` admitted requests in any sliding second; refused ones do not count."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._admitted and self._admitted[0] <= now - 1.0:
                self._admitted.popleft()
            if len(self._admitted) + 1 > self.per_second:
                return False
            self._admitted.append(now)
            return True


class SampleApiServer:
    """The sample CRM and FX REST APIs over the files under ``<data_dir>/sources``.

    ``start()`` serves on a background thread (``port=0`` picks a free port, see ``url``); ``stop()``
    or leaving the ``with`` block shuts it down. ``faults`` may be replaced or changed at any time.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_id: str = DEMO_CLIENT_ID,
        client_secret: str = DEMO_CLIENT_SECRET,
        token_ttl_s: float = 3600,
        rate_limit_per_s: float | None = 20.0,
        page_limit_max: int = 500,
        faults: Faults | None = None,
        api_key: str | None = None,
    ) -> None:
        if page_limit_max < 1:
            raise ValueError(f"page_limit_max must be at least 1, not {page_limit_max}")
        if rate_limit_per_s is not None and rate_limit_per_s <= 0:
            raise ValueError(f"rate_limit_per_s must be positive or None, not {rate_limit_per_s}")
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self.rate_limit_per_s = rate_limit_per_s
        self.page_limit_max = page_limit_max
        self.api_key = api_key
        self._faults = faults or Faults()
        self._faults_lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._tokens_lock = threading.Lock()
        self._limiter = None if rate_limit_per_s is None else _RateLimiter(rate_limit_per_s)
        crm_dir = self.data_dir / "sources" / "crm"
        self._crm = {
            name: _CrmIndex(crm_dir / f"{name}.jsonl", field) for name, field in CRM_RESOURCES.items()
        }
        self._fx = _FxIndex(self.data_dir / "sources" / "fx" / FX_FILE_NAME)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            raise RuntimeError("the sample API server is already running")
        httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        httpd.api = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sample-api", daemon=True
        )
        self._thread.start()
        _log.debug("sample API server listening on %s", self.url)
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._faults_lock:
            self._faults = faults

    # -- dispatch ----------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Response:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/health":
            return self._only(method, "GET") or _json_response(200, {"status": "ok"})
        is_crm = path.startswith("/crm/v1/") and path.removeprefix("/crm/v1/") in CRM_RESOURCES
        if path not in ("/oauth/token", "/fx/v1/rates") and not is_crm:
            return _error(404, "not_found", f"no resource at {path}")
        if self._limiter is not None and not self._limiter.admit():
            return _error(429, "rate_limited", "too many requests", Retry_After="1")
        try:
            if path == "/oauth/token":
                return self._only(method, "POST") or self._token(headers, body)
            if path == "/fx/v1/rates":
                return self._only(method, "GET") or self._fx_rates(query, headers)
            return self._only(method, "GET") or self._crm_page(path.removeprefix("/crm/v1/"), query, headers)
        except _BadRequest as exc:
            return _error(400, "invalid_request", str(exc))
        except _NoData as exc:
            return _error(503, "no_data", str(exc), Retry_After="5")

    @staticmethod
    def _only(method: str, allowed: str) -> _Response | None:
        if method == allowed:
            return None
        return _error(405, "method_not_allowed", f"use {allowed}", Allow=allowed)

    # -- OAuth -------------------------------------------------------------------------------------

    def _token(self, headers: Mapping[str, str], body: bytes) -> _Response:
        form = {name: values[-1] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = headers.get("Authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = client_secret = None
        if not (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return _error(401, "invalid_client", WWW_Authenticate='Basic realm="etl-samples"')
        token = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._tokens_lock:
            for stale in [key for key, value in self._tokens.items() if value.expires_at <= now]:
                del self._tokens[stale]
            self._tokens[token] = _Token(now + self.token_ttl_s, 0)
        payload = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": max(1, math.ceil(self.token_ttl_s)),
        }
        return _json_response(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authorize_crm(self, headers: Mapping[str, str]) -> _Response | None:
        """None when the bearer token is valid (and counts the request), else the 401 to answer."""
        authorization = headers.get("Authorization", "")
        if authorization[:7].lower() != "bearer ":
            return _error(401, "unauthorized", "a bearer token is required", WWW_Authenticate="Bearer")
        token = authorization[7:].strip()
        limit = self.faults.expire_tokens_after_requests
        with self._tokens_lock:
            state = self._tokens.get(token)
            if state is not None and state.expires_at <= time.monotonic():
                state = None
            if state is not None and limit is not None and state.crm_requests >= limit:
                state = None
            if state is None:
                self._tokens.pop(token, None)
                return _error(
                    401,
                    "invalid_token",
                    "the access token is unknown or expired",
                    WWW_Authenticate='Bearer error="invalid_token"',
                )
            self._tokens[token] = state._replace(crm_requests=state.crm_requests + 1)
        return None

    # -- CRM ---------------------------------------------------------------------------------------

    def _crm_fault(self) -> _Response | None:
        with self._faults_lock:
            faults = self._faults
            if faults.crm_500_times > 0:
                faults.crm_500_times -= 1
                return _error(500, "internal_error", "injected fault")
            if faults.crm_429_times > 0:
                faults.crm_429_times -= 1
                return _error(429, "rate_limited", "injected fault", Retry_After="1")
        return None

    def _crm_page(self, resource: str, query: Mapping[str, str], headers: Mapping[str, str]) -> _Response:
        refused = self._crm_fault() or self._authorize_crm(headers)
        if refused is not None:
            return refused
        limit = _int_parameter(query, "limit", DEFAULT_PAGE_LIMIT)
        if limit < 1:
            raise _BadRequest("limit must be at least 1")
        limit = min(limit, self.page_limit_max)
        since = None
        if query.get("updated_since"):
            try:
                since = _parse_instant(query["updated_since"])
            except ValueError:
                raise _BadRequest("updated_since must be an ISO 8601 timestamp") from None
        after = _decode_cursor(resource, query["cursor"]) if query.get("cursor") else None

        with self._crm[resource].open() as (handle, entries):
            start = 0 if since is None else bisect.bisect_left(entries, since, key=lambda entry: entry[0])
            if after is not None:
                start = max(start, bisect.bisect_right(entries, after, key=lambda entry: entry[:2]))
            page = entries[start : start + limit]
            records = []
            for entry in page:
                handle.seek(entry.offset)
                records.append(handle.read(entry.length).strip())
        if self.faults.cursor_loop:
            next_cursor: str | None = _encode_cursor(resource, None)
        else:
            next_cursor = _encode_cursor(resource, page[-1]) if start + limit < len(entries) else None
        body = (
            b'{"data":[' + b",".join(records) + b'],"next_cursor":' + json.dumps(next_cursor).encode() + b"}"
        )
        return self._maybe_truncated(_Response(200, body, {}))

    def _maybe_truncated(self, response: _Response) -> _Response:
        with self._faults_lock:
            if not self._faults.truncate_next_body:
                return response
            self._faults.truncate_next_body = False
        return response._replace(body=response.body[: len(response.body) // 2])

    # -- FX ----------------------------------------------------------------------------------------

    def _fx_rates(self, query: Mapping[str, str], headers: Mapping[str, str]) -> _Response:
        if self.faults.fx_down:
            return _error(503, "service_unavailable", "injected fault")
        if self.api_key is not None and not hmac.compare_digest(
            headers.get("X-Api-Key", "").encode(), self.api_key.encode()
        ):
            return _error(401, "invalid_api_key", "the X-Api-Key header is missing or wrong")
        start, end = _date_parameter(query, "start"), _date_parameter(query, "end")
        if start and end and start > end:
            raise _BadRequest("start is after end")
        page = _int_parameter(query, "page", 1)
        page_size = _int_parameter(query, "page_size", FX_PAGE_SIZE_DEFAULT)
        if page < 1:
            raise _BadRequest("page must be at least 1")
        if not 1 <= page_size <= FX_PAGE_SIZE_MAX:
            raise _BadRequest(f"page_size must be between 1 and {FX_PAGE_SIZE_MAX}")

        history = self._fx.history()
        first_day = 0 if start is None else bisect.bisect_left(history.days, start)
        end_day = len(history.days) if end is None else bisect.bisect_right(history.days, end)
        first = history.before[first_day] + (page - 1) * page_size  # the page's rates by global number
        stop = min(first + page_size, history.before[end_day])
        rates: list[dict[str, str]] = []
        day = bisect.bisect_right(history.before, first) - 1
        while first < stop and day < end_day and history.before[day] < stop:
            skip = max(0, first - history.before[day])
            for currency, rate in _rates_of(history.currencies, history.lines[day])[skip:]:
                if len(rates) == stop - first:
                    break
                rates.append({"date": history.days[day], "currency": currency, "rate": rate})
            day += 1
        response = _json_response(200, {"base": "EUR", "rates": rates})
        if stop < history.before[end_day]:
            params = {**query, "page": str(page + 1), "page_size": str(page_size)}
            authority = headers.get("Host") or f"{self.host}:{self.port}"
            response.headers["Link"] = f'<http://{authority}/fx/v1/rates?{urlencode(params)}>; rel="next"'
        return self._maybe_truncated(response)


def _int_parameter(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise _BadRequest(f"{name} must be a whole number") from None


def _date_parameter(query: Mapping[str, str], name: str) -> str | None:
    text = query.get(name)
    if not text:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise _BadRequest(f"{name} must be a date, YYYY-MM-DD") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    server_version = "etl-samples"
    timeout = 60  # idle keep-alive connections

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        api: SampleApiServer = self.server.api  # type: ignore[attr-defined]
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            response = api.handle(method, self.path, self.headers, body)
        except Exception:
            _log.exception("sample API request %s %s failed", method, self.path)
            response = _error(500, "internal_error")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)
