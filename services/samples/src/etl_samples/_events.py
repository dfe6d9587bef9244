"""Web behaviour events: sessions of page views, searches, product views, cart additions and checkouts.

Events cover the last ``Scale.event_days`` days of the calendar (60 for the default 2000 orders, the
whole calendar from about 25,600 orders), about ``orders * 5`` in total with more on weekends and a
rising trend. Each day's events are generated together (at most a day in memory), sorted by time,
and written to one file whose format (csv, jsonl, xml) rotates with the day.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote_plus

from . import _calendar as cal
from ._commerce import CUSTOMER_ID_BASE, PRODUCT_ID_BASE, Commerce
from ._randomness import Weighted, stream, uuid4_from
from ._reference import CATEGORIES, SEARCH_TERMS, USER_AGENTS
from ._scale import Scale

EVENT_FIELDS = (
    "event_id", "occurred_at", "customer_id", "session_id", "event_type", "product_id", "page_url",
    "user_agent",
)  # fmt: skip
EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "search")
FORMATS = ("csv", "jsonl", "xml")
SITE = "https://shop.example.com"

_ANONYMOUS_SHARE = 0.3
_SESSION_LENGTHS: Weighted[int] = Weighted(
    [(1, 25), (2, 20), (3, 17), (4, 13), (5, 10), (6, 7), (7, 5), (8, 3)]
)
_FIRST_EVENT: Weighted[str] = Weighted([("page_view", 70), ("search", 30)])
_NEXT_EVENT: dict[str, Weighted[str]] = {
    "page_view": Weighted([("product_view", 60), ("search", 20), ("page_view", 20)]),
    "search": Weighted([("product_view", 80), ("search", 20)]),
    "product_view": Weighted([("add_to_cart", 30), ("product_view", 50), ("page_view", 20)]),
    "add_to_cart": Weighted([("checkout", 45), ("product_view", 40), ("page_view", 15)]),
    "checkout": Weighted([("page_view", 100)]),
}
_DAY_MS = 86_400_000
_SEARCH_URLS = tuple(f"{SITE}/search?q={quote_plus(term, safe=',')}" for term in SEARCH_TERMS)
_CATEGORY_URLS = tuple(
    f"{SITE}/c/{quote_plus(category.name.lower().replace(' & ', '-and-'))}" for category in CATEGORIES.items
)

Event = dict[str, Any]


class EventDay(NamedTuple):
    day: date
    format: str
    events: list[Event]


def format_for(day: date) -> str:
    """The file format of a day's drop: rotates csv, jsonl, xml."""
    return FORMATS[day.toordinal() % len(FORMATS)]


def daily_counts(scale: Scale) -> Iterator[tuple[date, int]]:
    """Events per day, summing exactly to ``scale.web_events``; days without events are skipped."""
    days = scale.event_days
    first = cal.LAST_DAY - timedelta(days=days - 1)
    weights = []
    for offset in range(days):
        weekday = (first + timedelta(days=offset)).weekday()
        weights.append({5: 1.25, 6: 1.15}.get(weekday, 1.0) * (1 + 0.5 * offset / days))
    total_weight, cumulative, allocated = sum(weights), 0.0, 0
    for offset, weight in enumerate(weights):
        cumulative += weight
        target = round(scale.web_events * cumulative / total_weight)
        if target > allocated:
            yield first + timedelta(days=offset), target - allocated
            allocated = target


def event_days(commerce: Commerce) -> Iterator[EventDay]:
    rng = stream(commerce.seed, "web-events")
    for day, count in daily_counts(commerce.scale):
        yield EventDay(day, format_for(day), _day_events(rng, commerce, day, count))


def _day_events(rng: random.Random, commerce: Commerce, day: date, count: int) -> list[Event]:
    day_prefix = f"{day.isoformat()}T"
    registered_by = datetime(day.year, day.month, day.day, tzinfo=cal.START.tzinfo)
    timed: list[tuple[int, Event]] = []
    while len(timed) < count:
        customer_id = None
        if rng.random() >= _ANONYMOUS_SHARE:
            customer_id = CUSTOMER_ID_BASE + commerce.pick_customer_index(rng, registered_by) + 1
        session_id = f"s-{rng.getrandbits(64):016x}"
        user_agent = USER_AGENTS.pick(rng.random())
        moment_ms = rng.randrange(_DAY_MS)  # since midnight
        event_type = _FIRST_EVENT.pick(rng.random())
        product_id: int | None = None
        for _ in range(min(count - len(timed), _SESSION_LENGTHS.pick(rng.random()))):
            if event_type == "product_view":
                product_id = PRODUCT_ID_BASE + commerce.pick_product_index(rng) + 1
            event = {
                "event_id": uuid4_from(rng),
                "occurred_at": cal.iso_millis(day_prefix, moment_ms),
                "customer_id": customer_id,
                "session_id": session_id,
                "event_type": event_type,
                "product_id": product_id if event_type in ("product_view", "add_to_cart") else None,
                "page_url": _page_url(rng, event_type, product_id),
                "user_agent": user_agent,
            }
            timed.append((moment_ms, event))
            moment_ms = min(_DAY_MS - 1, moment_ms + rng.randrange(3_000, 240_000))
            event_type = _NEXT_EVENT[event_type].pick(rng.random())
    timed.sort(key=lambda pair: pair[0])  # stable: ties keep their generated order
    return [event for _, event in timed]


def _page_url(rng: random.Random, event_type: str, product_id: int | None) -> str:
    if event_type == "product_view":
        return f"{SITE}/products/{product_id}"
    if event_type == "add_to_cart":
        return f"{SITE}/cart/add?product={product_id}"
    if event_type == "checkout":
        return f"{SITE}/checkout"
    if event_type == "search":
        return rng.choice(_SEARCH_URLS)
    if rng.random() < 0.3:
        return f"{SITE}/"
    return rng.choice(_CATEGORY_URLS)
