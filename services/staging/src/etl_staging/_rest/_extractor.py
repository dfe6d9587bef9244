"""RestExtractor: one REST entity streamed page by page as payloads (bodies as fetched) and batches."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from etl_shared import EtlError, SourceFatalError

from .._extract import Batch, ExtractState, Payload, _to_batch
from ._auth import build_authenticator
from ._client import PauseGate, RateBudget, RestClient
from ._duplicates import DuplicateCounter
from ._models import Incremental, RestAuth, RestConnection, RestEntity
from ._paginators import make_paginator
from ._paths import MISSING, assign, lookup

_log = logging.getLogger(__name__)


class RestExtractor:
    """Extract one entity of a ``kind: rest`` source.

    ``budget`` and ``gate`` let the entities of one source share a rate budget and the pauses the
    server asks for; by default each extractor builds its own (the budget from
    ``connection.rate_limit``). ``sleep`` and ``clock`` are injectable for tests.

    A record sent twice within the pull (overlapping pages) is stored twice and counted
    (``duplicate_records`` in the metadata, by the ``reconcile_keys`` key when the entity has one).
    """

    def __init__(
        self,
        source: str,
        connection: RestConnection,
        auth: RestAuth,
        entity: RestEntity,
        *,
        batch_size: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        budget: RateBudget | None = None,
        gate: PauseGate | None = None,
    ) -> None:
        self.source = source
        self.entity = entity
        self.batch_size = batch_size
        self.state = ExtractState()
        self.url = _join(connection.resolve_base_url(), entity.path)
        if budget is None:
            budget = RateBudget.from_config(connection.rate_limit, clock=clock, sleep=sleep)
        self.client = RestClient(
            connection,
            build_authenticator(auth, clock=clock),
            budget=budget,
            gate=gate,
            sleep=sleep,
            clock=clock,
        )
        listing = entity.reconcile_keys
        self.duplicates = DuplicateCounter(listing.key if listing is not None else None)

    def extract(
        self, watermark: str | None = None, window: tuple[datetime, datetime] | None = None
    ) -> Iterator[Batch | Payload]:
        """Pages from the watermark on; with ``window`` (a backfill) from its start instead, sending its
        end too when the API takes one (``until_param``), and keeping only the records whose cursor is
        in [start, end) (a record without a cursor value is kept)."""
        entity = self.entity
        request = self._first_request(watermark, window)
        inside = _window_filter(entity.incremental, window)
        paginator = make_paginator(entity.pagination)
        tracker = _WatermarkTracker(entity.incremental, watermark)
        self.state.watermark_after = watermark
        chunk: list[dict[str, Any]] = []
        _log.info("extracting %s from %s", entity.name, self.client.redactor.url(self.url))
        try:
            for page in self.client.paginate(request, paginator, records_path=entity.records_path):
                self.state.bytes_read += len(page.body)
                if entity.keep_payload:
                    yield Payload(f"page-{page.number:06d}", page.content_type, page.body)
                for record in page.records:
                    if not inside(record):
                        continue
                    tracker.observe(record)
                    self.duplicates.add(record)
                    chunk.append(record)
                    if len(chunk) >= self.batch_size:
                        yield _to_batch(chunk)
                        chunk = []
                self.state.watermark_after = tracker.watermark
            if chunk:
                yield _to_batch(chunk)
        except EtlError as exc:
            message = self.client.redactor.text(f"source {self.source}, entity {entity.name}: {exc}")
            raise type(exc)(message) from None
        finally:
            counters = self.client.counters
            self.state.metadata = {
                "pages": counters.pages,
                "requests": counters.requests,
                "retries": counters.retries,
                "url": self.client.redactor.url(self.url),
                **self.duplicates.metadata(),
            }
            self.duplicates.warn(self.source, entity.name)
            self.client.close()

    def _first_request(
        self, watermark: str | None, window: tuple[datetime, datetime] | None = None
    ) -> requests.Request:
        entity = self.entity
        params: dict[str, Any] = dict(entity.params)
        body = copy.deepcopy(entity.body) if entity.method == "POST" else None
        if entity.method == "POST" and body is None:
            body = {}
        if entity.incremental is not None:
            bounds: dict[str, Any] = {}
            if window is not None:
                bounds[entity.incremental.param] = format_moment(entity.incremental, window[0])
                if entity.incremental.until_param:
                    last = (
                        window[1] - timedelta(microseconds=1)
                        if entity.incremental.format == "date"
                        else window[1]
                    )
                    bounds[entity.incremental.until_param] = format_moment(entity.incremental, last)
            else:
                start = incremental_start(entity.incremental, watermark)
                if start is not None:
                    bounds[entity.incremental.param] = start
            for name, value in bounds.items():
                if entity.method == "POST":
                    body = assign(body or {}, name, value)
                else:
                    params[name] = value
        return requests.Request(entity.method, self.url, params=params, json=body)


def _join(base_url: str, path: str) -> str:
    if not path:
        return base_url
    return base_url.rstrip("/") + "/" + path.lstrip("/")


# ------------------------------------------------------------------------------ incremental


def incremental_start(config: Incremental, watermark: str | None) -> str | int | float | None:
    """The value of the incremental parameter: the stored watermark minus the lookback window
    (formatted per ``config.format``), ``initial`` on the first pull, or None (no parameter)."""
    if watermark is None:
        return config.initial
    if config.format == "epoch":
        number = _epoch(watermark, what="stored watermark")
        start = number - config.lookback_s
        return int(start) if float(start).is_integer() else start
    moment = _moment(watermark, what="stored watermark")
    if config.format == "iso" and config.lookback_s == 0:
        return watermark
    moment -= timedelta(seconds=config.lookback_s)
    if config.format == "date":
        return moment.date().isoformat()
    text = moment.isoformat()
    if watermark.endswith(("Z", "z")) and text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def format_moment(config: Incremental, moment: datetime) -> str | int | float:
    """A point in time as the API's incremental parameter takes it (``config.format``)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if config.format == "epoch":
        value = moment.timestamp()
        return int(value) if value.is_integer() else value
    if config.format == "date":
        return moment.date().isoformat()
    text = moment.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _window_filter(
    config: Incremental | None, window: tuple[datetime, datetime] | None
) -> Callable[[dict[str, Any]], bool]:
    """A test keeping the records whose cursor is in the backfill window (all records without one)."""
    if config is None or window is None:
        return lambda record: True
    tracker = _WatermarkTracker(config, None)
    if config.format == "epoch":
        low: Any = window[0].timestamp()
        high: Any = window[1].timestamp()
    else:
        low, high = window

    def inside(record: dict[str, Any]) -> bool:
        value = lookup(record, config.cursor_field)
        if value is MISSING or value is None:
            return True
        key = tracker._key(value, what=f"cursor field {config.cursor_field!r} value")
        return bool(low <= key < high)

    return inside


def _moment(value: Any, *, what: str) -> datetime:
    if not isinstance(value, str):
        raise SourceFatalError(f"{what} {value!r} is not an ISO 8601 date or timestamp")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SourceFatalError(f"{what} {value!r} is not an ISO 8601 date or timestamp") from None
    return moment


def _epoch(value: Any, *, what: str) -> float:
    if isinstance(value, bool):
        raise SourceFatalError(f"{what} {value!r} is not an epoch number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceFatalError(f"{what} {value!r} is not an epoch number") from None
    if not math.isfinite(number):
        raise SourceFatalError(f"{what} {value!r} is not an epoch number")
    return number


class _WatermarkTracker:
    """The largest cursor value seen, never below the previous watermark (the lookback re-reads
    older records). ISO values compare as instants (naive ones as UTC), epoch values as numbers."""

    def __init__(self, config: Incremental | None, previous: str | None) -> None:
        self.config = config
        self.watermark = previous
        self._best: Any = None
        if config is not None and previous is not None:
            self._best = self._key(previous, what="stored watermark")

    def observe(self, record: dict[str, Any]) -> None:
        if self.config is None:
            return
        value = lookup(record, self.config.cursor_field)
        if value is MISSING or value is None:
            return
        key = self._key(value, what=f"cursor field {self.config.cursor_field!r} value")
        if self._best is None or key > self._best:
            self._best = key
            self.watermark = value if isinstance(value, str) else _number_text(value)

    def _key(self, value: Any, *, what: str) -> Any:
        assert self.config is not None
        if self.config.format == "epoch":
            return _epoch(value, what=what)
        moment = _moment(value, what=what)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
