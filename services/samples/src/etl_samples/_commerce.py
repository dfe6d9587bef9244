"""The OLTP side of the commerce domain as row streams: customers, products, orders with their lines.

Rows are tuples in the column order of the ``oltp`` tables. Nothing is held in memory but the product
catalogue (at most 5000 entries): customers and orders are generated one at a time, in id order.

Ids are assigned by the generator (no sequences): customers from 1,000,001, products from 50,001,
orders from 10,000,001, so that joining on the wrong id finds nothing. Customers register one after
the other from 2023-01-01 to 2025-10-01 and an order only goes to a customer registered before it;
orders are in time order with a volume growing twofold over the two years.
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from . import _calendar as cal
from ._randomness import Keyed, Weighted, stream
from ._reference import (
    APPROX_PER_EUR,
    CATEGORIES,
    COUNTRIES,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    ORDER_CURRENCIES,
    PRODUCT_ADJECTIVES,
    PRODUCT_COLOURS,
    ZERO_DECIMAL_CURRENCIES,
    Category,
    Country,
)
from ._scale import Scale

CUSTOMER_ID_BASE = 1_000_000
PRODUCT_ID_BASE = 50_000
ORDER_ID_BASE = 10_000_000

CUSTOMER_COLUMNS = (
    "customer_id", "email", "first_name", "last_name", "phone", "country", "created_at", "updated_at",
)  # fmt: skip
PRODUCT_COLUMNS = (
    "product_id", "sku", "name", "category", "unit_price", "currency", "is_active", "updated_at",
)  # fmt: skip
ORDER_COLUMNS = ("order_id", "customer_id", "order_date", "ordered_at", "status", "currency", "updated_at")
ORDER_LINE_COLUMNS = (
    "order_id", "line_number", "product_id", "quantity", "unit_price", "discount_pct", "updated_at",
)  # fmt: skip
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")

_LINE_COUNTS: Weighted[int] = Weighted([(1, 40), (2, 25), (3, 17), (4, 11), (5, 7)])
_QUANTITIES: Weighted[int] = Weighted([(1, 60), (2, 20), (3, 9), (4, 5), (5, 3), (6, 1), (10, 2)])
_DISCOUNTS: Weighted[Decimal] = Weighted(
    [(Decimal("0.00"), 75), (Decimal("5.00"), 10), (Decimal("10.00"), 8), (Decimal("15.00"), 4),
     (Decimal("20.00"), 2), (Decimal("25.00"), 1)]
)  # fmt: skip
# (status, minimum and maximum days from ordering to the last update)
_STATUS_BY_AGE: tuple[tuple[float, Weighted[tuple[str, float, float]]], ...] = (
    (1, Weighted([(("placed", 0, 0), 60), (("paid", 0.001, 0.05), 40)])),
    (3, Weighted([(("paid", 0.001, 0.05), 40), (("shipped", 0.5, 3), 60)])),
    (8, Weighted([(("shipped", 0.5, 3), 50), (("delivered", 2, 8), 50)])),
    (math.inf, Weighted([(("delivered", 2, 9), 92), (("returned", 10, 40), 8)])),
)
_CANCELLED_SHARE = 0.05
_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "ß": "ss", "'": "", " ": ""})


class Customer(NamedTuple):
    customer_id: int
    email: str
    first_name: str
    last_name: str
    phone: str | None
    country: str
    created_at: datetime
    updated_at: datetime
    canonical_email: str  # trimmed, lower case: what the email really is
    country_code: str  # ISO alpha-2, whatever the spelling in ``country``

    def row(self) -> tuple[Any, ...]:
        return self[: len(CUSTOMER_COLUMNS)]


class CatalogueEntry(NamedTuple):
    category: Category
    currency: str
    list_price: Decimal
    price_in: dict[str, Decimal]  # the list price converted to each order currency


class Order(NamedTuple):
    row: tuple[Any, ...]
    lines: list[tuple[Any, ...]]


class Commerce:
    """The commerce domain for one seed and scale: each stream restarts identically when called again."""

    def __init__(self, seed: int, scale: Scale) -> None:
        self.seed = seed
        self.scale = scale
        self._customer_country = Keyed(seed, "customer-country")
        self._registration_slot_s = (
            cal.REGISTRATION_END - cal.REGISTRATION_START
        ).total_seconds() / scale.customers
        product_keys = Keyed(seed, "product-catalogue")
        self.catalogue = [_catalogue_entry(product_keys, index) for index in range(scale.products)]

    # Look-ups shared with the CRM and web event generators.

    def customer_country(self, index: int) -> Country:
        return COUNTRIES.pick(self._customer_country.unit(index))

    def customers_registered_by(self, moment: datetime) -> int:
        """How many customers (the first ones by id) had registered at ``moment``, at least one."""
        elapsed = (moment - cal.REGISTRATION_START).total_seconds()
        return min(self.scale.customers, max(1, int(elapsed / self._registration_slot_s)))

    def pick_customer_index(self, rng: random.Random, moment: datetime) -> int:
        """A customer registered by ``moment``; earlier customers have had longer to come back."""
        registered = self.customers_registered_by(moment)
        return min(registered - 1, int(registered * rng.random() ** 1.3))

    def pick_product_index(self, rng: random.Random) -> int:
        """A product, the first ones in the catalogue being the best sellers."""
        return int(self.scale.products * rng.random() ** 2)

    # Row streams.

    def customers(self) -> Iterator[Customer]:
        rng = stream(self.seed, "customers")
        for index in range(self.scale.customers):
            customer_id = CUSTOMER_ID_BASE + index + 1
            first_name, last_name = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            country = self.customer_country(index)
            canonical = _canonical_email(rng, first_name, last_name, index + 1)
            created_at = cal.REGISTRATION_START + timedelta(
                seconds=int((index + rng.random()) * self._registration_slot_s)
            )
            updated_at = created_at
            if rng.random() >= 0.6:
                updated_at = cal.seconds_after(
                    created_at, rng.random() * (cal.AS_OF - created_at).total_seconds()
                )
            yield Customer(
                customer_id=customer_id,
                email=_messy_email(rng, canonical),
                first_name=first_name,
                last_name=last_name,
                phone=None if rng.random() < 0.01 else _phone(rng, country),
                country=_country_spelling(rng, country),
                created_at=created_at,
                updated_at=updated_at,
                canonical_email=canonical,
                country_code=country.code,
            )

    def products(self) -> Iterator[tuple[Any, ...]]:
        rng = stream(self.seed, "products")
        catalogue_start = datetime(2023, 6, 1, tzinfo=cal.START.tzinfo)
        catalogue_span_s = (cal.AS_OF - catalogue_start).total_seconds()
        for index, entry in enumerate(self.catalogue):
            product_id = PRODUCT_ID_BASE + index + 1
            words = [rng.choice(PRODUCT_ADJECTIVES)]
            if rng.random() < 0.5:
                words.append(rng.choice(PRODUCT_COLOURS))
            words.append(rng.choice(entry.category.nouns))
            yield (
                product_id,
                f"{entry.category.code}-{product_id:06d}",
                " ".join(words),
                entry.category.name,
                entry.list_price,
                entry.currency,
                rng.random() >= 0.08,
                cal.seconds_after(catalogue_start, rng.random() * catalogue_span_s),
            )

    def orders(self) -> Iterator[Order]:
        rng = stream(self.seed, "orders")
        count = self.scale.orders
        for index in range(count):
            # Inverse of the cumulative distribution of a density growing linearly from 1 to 2.
            share = (index + rng.random()) / count
            ordered_at = cal.seconds_after(cal.START, (math.sqrt(1 + 3 * share) - 1) * cal.SPAN_SECONDS)
            order_id = ORDER_ID_BASE + index + 1
            customer_index = self.pick_customer_index(rng, ordered_at)
            currency = self.customer_country(customer_index).currency
            if rng.random() >= 0.85:
                currency = ORDER_CURRENCIES.pick(rng.random())
            status, updated_at = _status(rng, ordered_at)
            line_updated_at = updated_at if status == "returned" else ordered_at
            lines: list[tuple[Any, ...]] = []
            chosen: set[int] = set()
            for line_number in range(1, _LINE_COUNTS.pick(rng.random()) + 1):
                product_index = self.pick_product_index(rng)
                while product_index in chosen:
                    product_index = self.pick_product_index(rng)
                chosen.add(product_index)
                lines.append(
                    (
                        order_id,
                        line_number,
                        PRODUCT_ID_BASE + product_index + 1,
                        _QUANTITIES.pick(rng.random()),
                        self.catalogue[product_index].price_in[currency],
                        _DISCOUNTS.pick(rng.random()),
                        line_updated_at,
                    )
                )
            row = (
                order_id,
                CUSTOMER_ID_BASE + customer_index + 1,
                ordered_at.date(),
                ordered_at,
                status,
                currency,
                updated_at,
            )
            yield Order(row, lines)


def _catalogue_entry(keys: Keyed, index: int) -> CatalogueEntry:
    category = CATEGORIES.pick(keys.unit(index, 0))
    low, high = math.log(category.min_price), math.log(category.max_price)
    price = math.exp(low + keys.unit(index, 1) * (high - low))
    list_cents = max(99, round(price) * 100 - 1)  # 24.99
    currency = "EUR" if keys.unit(index, 2) < 0.2 else "USD"
    price_in = {}
    for target, per_eur in APPROX_PER_EUR.items():
        amount = list_cents / 100 / APPROX_PER_EUR[currency] * per_eur
        if target in ZERO_DECIMAL_CURRENCIES:
            price_in[target] = Decimal(round(amount))
        else:
            price_in[target] = Decimal(round(amount * 100)).scaleb(-2)
    return CatalogueEntry(category, currency, Decimal(list_cents).scaleb(-2), price_in)


def _status(rng: random.Random, ordered_at: datetime) -> tuple[str, datetime]:
    if rng.random() < _CANCELLED_SHARE:
        status, min_days, max_days = "cancelled", 0.01, 2.0
    else:
        age_days = (cal.AS_OF - ordered_at).total_seconds() / 86_400
        choices = next(weighted for max_age, weighted in _STATUS_BY_AGE if age_days < max_age)
        status, min_days, max_days = choices.pick(rng.random())
    return status, cal.seconds_after(ordered_at, rng.uniform(min_days, max_days) * 86_400)


def ascii_word(text: str) -> str:
    """'Núñez' -> 'nunez', "O'Brien" -> 'obrien', 'van den Berg' -> 'vandenberg'."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD)).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _canonical_email(rng: random.Random, first_name: str, last_name: str, number: int) -> str:
    first, last = ascii_word(first_name), ascii_word(last_name)
    local = rng.choice((f"{first}.{last}{number}", f"{first[0]}{last}{number}", f"{first}_{last}{number}"))
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def _messy_email(rng: random.Random, canonical: str) -> str:
    draw = rng.random()
    if draw < 0.04:
        return rng.choice((f" {canonical} ", f"  {canonical}", f"{canonical} "))
    if draw < 0.08:
        return canonical.upper()
    if draw < 0.12:
        local, domain = canonical.split("@")
        return ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()
    return canonical


def _phone(rng: random.Random, country: Country) -> str:
    digits = f"{rng.randrange(10**10):010d}"
    prefix = country.phone_prefix
    return rng.choice(
        (
            f"{prefix} {digits[:3]} {digits[3:6]} {digits[6:]}",
            f"{prefix}{digits}",
            f"{prefix}-{digits[:3]}-{digits[3:]}",
            f"00{prefix[1:]} {digits}",
            f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
        )
    )


def _country_spelling(rng: random.Random, country: Country) -> str:
    draw = rng.random()
    if draw < 0.45:
        return country.code
    if draw < 0.60:
        return country.code.lower()
    if draw < 0.90 or not country.aliases:
        return country.name
    return rng.choice(country.aliases)
