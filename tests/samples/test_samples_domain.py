"""The generator without a database: public API, sizes, determinism of the streams, messiness."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pytest

import etl_samples
from etl_samples._calendar import AS_OF, DAYS, FIRST_DAY, LAST_DAY
from etl_samples._commerce import CUSTOMER_ID_BASE, ORDER_STATUSES, PRODUCT_ID_BASE, Commerce
from etl_samples._crm import STAGES, crm_records
from etl_samples._events import EVENT_FIELDS, EVENT_TYPES, FORMATS, daily_counts, event_days, format_for
from etl_samples._scale import Scale


def test_public_api_is_stable() -> None:
    modules = {
        "Faults": "etl_samples._api",
        "GenerationSummary": "etl_samples._generate",
        "SampleApiServer": "etl_samples._api",
        "generate": "etl_samples._generate",
    }
    assert sorted(etl_samples.__all__) == sorted(modules)
    for name, module in modules.items():
        assert getattr(etl_samples, name).__module__ == module


@pytest.mark.parametrize(
    ("orders", "customers", "products", "accounts", "event_days"),
    [
        (1, 50, 40, 12, 60),
        (300, 50, 40, 12, 60),
        (2000, 250, 100, 62, 60),
        (100_000, 12_500, 5000, 3125, 731),
        (1_000_000, 125_000, 5000, 31_250, 731),
    ],
)
def test_scale(orders: int, customers: int, products: int, accounts: int, event_days: int) -> None:
    scale = Scale(orders)
    assert (scale.customers, scale.products, scale.accounts, scale.event_days) == (
        customers,
        products,
        accounts,
        event_days,
    )
    assert scale.web_events == 5 * orders


def test_scale_rejects_no_orders() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Scale(0)


def test_streams_restart_identically_and_depend_on_the_seed() -> None:
    first, again, other = Commerce(42, Scale(300)), Commerce(42, Scale(300)), Commerce(43, Scale(300))
    assert list(first.customers()) == list(again.customers()) == list(first.customers())
    assert list(first.orders()) == list(again.orders())
    assert list(first.orders()) != list(other.orders())
    assert list(crm_records(first)) == list(crm_records(again))
    assert list(event_days(first)) == list(event_days(again))


def test_orders_follow_the_calendar_and_rules() -> None:
    commerce = Commerce(7, Scale(3000))
    customer_created = {customer.customer_id: customer.created_at for customer in commerce.customers()}
    previous = None
    for order in commerce.orders():
        order_id, customer_id, order_date, ordered_at, status, currency, updated_at = order.row
        assert FIRST_DAY <= order_date <= LAST_DAY
        assert ordered_at.date() == order_date and ordered_at.tzinfo is not None
        assert customer_created[customer_id] <= ordered_at <= updated_at <= AS_OF
        assert status in ORDER_STATUSES
        assert currency in {"USD", "EUR", "GBP", "CHF", "JPY", "SEK"}
        assert 1 <= len(order.lines) <= 5
        assert [line[1] for line in order.lines] == list(range(1, len(order.lines) + 1))
        assert len({line[2] for line in order.lines}) == len(order.lines)  # a product once per order
        for line in order.lines:
            assert line[0] == order_id
            assert PRODUCT_ID_BASE < line[2] <= PRODUCT_ID_BASE + commerce.scale.products
            assert line[3] >= 1 and line[4] > 0 and 0 <= line[5] < 100
        assert previous is None or previous <= ordered_at  # ids in time order
        previous = ordered_at


def test_customers_are_realistically_messy() -> None:
    customers = list(Commerce(42, Scale(16_000)).customers())  # 2000 customers
    emails = [customer.email for customer in customers]
    padded = sum(email != email.strip() for email in emails)
    upper = sum(email.strip() != email.strip().lower() for email in emails)
    assert 20 <= padded <= 160 and 40 <= upper <= 320
    assert all(customer.email.strip().lower() == customer.canonical_email for customer in customers)
    assert len({customer.canonical_email for customer in customers}) == len(customers)
    null_phones = sum(customer.phone is None for customer in customers)
    assert 5 <= null_phones <= 50  # about 1%
    spellings = Counter(customer.country for customer in customers)
    assert {"US", "de", "Germany", "United Kingdom"} <= set(spellings)
    assert any(len(spelling) > 2 for spelling in spellings) and any(s.islower() for s in spellings)
    assert all(customer.created_at <= customer.updated_at <= AS_OF for customer in customers)


def test_crm_accounts_match_about_sixty_percent_of_customers() -> None:
    commerce = Commerce(42, Scale(16_000))
    emails = {customer.canonical_email for customer in commerce.customers()}
    records = list(crm_records(commerce))
    assert len(records) == commerce.scale.accounts
    matched = [r.account["customer_email"] for r in records if r.account["customer_email"] is not None]
    assert 0.5 < len(matched) / len(records) < 0.7
    assert set(matched) <= emails
    for record in records:
        assert re.fullmatch(r"ACC-\d{6}", record.account["account_id"])
        assert record.contacts and all(
            c["account_id"] == record.account["account_id"] for c in record.contacts
        )
        for opportunity in record.opportunities:
            assert opportunity["stage"] in STAGES
            assert re.fullmatch(r"\d+\.\d{2}", opportunity["amount"])
            assert FIRST_DAY.isoformat() <= opportunity["close_date"] <= LAST_DAY.isoformat()


def test_events_cover_the_last_days_and_sum_exactly() -> None:
    for orders in (1, 300, 2000, 40_000):
        scale = Scale(orders)
        days = list(daily_counts(scale))
        assert sum(count for _, count in days) == scale.web_events
        assert days[-1][0] == LAST_DAY or orders == 1  # 5 events over 60 days
        assert (LAST_DAY - days[0][0]).days < scale.event_days <= DAYS
    assert {format_for(day) for day, _ in daily_counts(Scale(300))} == set(FORMATS)


def test_events_are_well_formed() -> None:
    commerce = Commerce(42, Scale(300))
    seen: set[str] = set()
    anonymous = total = 0
    for day in event_days(commerce):
        times = [event["occurred_at"] for event in day.events]
        assert times == sorted(times) and all(
            t.startswith(day.day.isoformat()) and t.endswith("Z") for t in times
        )
        for event in day.events:
            assert tuple(event) == EVENT_FIELDS
            assert event["event_type"] in EVENT_TYPES
            assert (event["product_id"] is not None) == (
                event["event_type"] in ("product_view", "add_to_cart")
            )
            customer_id = event["customer_id"]
            assert customer_id is None or CUSTOMER_ID_BASE < customer_id <= CUSTOMER_ID_BASE + 50
            datetime.fromisoformat(event["occurred_at"]).astimezone(UTC)
            seen.add(event["event_id"])
            anonymous += customer_id is None
            total += 1
    assert len(seen) == total == commerce.scale.web_events
    assert 0.2 < anonymous / total < 0.4
