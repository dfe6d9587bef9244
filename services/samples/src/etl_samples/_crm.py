"""The CRM side: accounts with their contacts and opportunities, one account at a time.

Every fourth OLTP customer opens an account; about 60% of accounts carry that customer's email
(``customer_email``, trimmed and lower case as the CRM validates it), and their first contact is
that customer. The other accounts have no OLTP counterpart.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from . import _calendar as cal
from ._commerce import Commerce, Customer, ascii_word
from ._randomness import Weighted, stream
from ._reference import (
    CATEGORIES,
    COMPANY_FIRST,
    COMPANY_SECOND,
    COUNTRIES,
    FIRST_NAMES,
    INDUSTRIES,
    LAST_NAMES,
    TITLES,
    Country,
)

ACCOUNT_FIELDS = (
    "account_id",
    "name",
    "industry",
    "country",
    "website",
    "customer_email",
    "created_at",
    "updated_at",
)
CONTACT_FIELDS = (
    "contact_id",
    "account_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "title",
    "updated_at",
)
OPPORTUNITY_FIELDS = (
    "opportunity_id",
    "account_id",
    "name",
    "stage",
    "amount",
    "currency",
    "close_date",
    "updated_at",
)
OPEN_STAGES = ("prospecting", "qualification", "proposal", "negotiation")
STAGES = (*OPEN_STAGES, "closed_won", "closed_lost")

_MATCHED_SHARE = 0.6
_EXTRA_CONTACTS: Weighted[int] = Weighted([(0, 35), (1, 35), (2, 20), (3, 10)])
_OPPORTUNITIES: Weighted[int] = Weighted([(0, 20), (1, 40), (2, 25), (3, 15)])
_CLOSED_STAGES: Weighted[str] = Weighted([("closed_won", 52), ("closed_lost", 43), ("negotiation", 5)])
_CRM_START = datetime(2022, 1, 1, tzinfo=cal.START.tzinfo)
_COUNTRY_BY_CODE = {country.code: country for country in COUNTRIES.items}

Record = dict[str, Any]


class AccountRecords(NamedTuple):
    account: Record
    contacts: list[Record]
    opportunities: list[Record]


def crm_records(commerce: Commerce) -> Iterator[AccountRecords]:
    rng = stream(commerce.seed, "crm")
    contact_numbers = itertools.count(1)
    opportunity_numbers = itertools.count(1)
    account_customers = itertools.islice(commerce.customers(), 0, 4 * commerce.scale.accounts, 4)
    for number, customer in enumerate(account_customers, start=1):
        account_id = f"ACC-{number:06d}"
        matched = rng.random() < _MATCHED_SHARE
        country = _COUNTRY_BY_CODE[customer.country_code] if matched else COUNTRIES.pick(rng.random())
        first_word, second_word = rng.choice(COMPANY_FIRST), rng.choice(COMPANY_SECOND)
        name = f"{first_word} {second_word} {rng.choice(country.company_suffixes)}"
        domain = f"{ascii_word(first_word + second_word)}.example"
        created_at = _moment_between(rng, _CRM_START, cal.AS_OF)
        account = {
            "account_id": account_id,
            "name": name,
            "industry": rng.choice(INDUSTRIES),
            "country": country.code if rng.random() < 0.9 else country.name,
            "website": None if rng.random() < 0.05 else f"https://www.{domain}",
            "customer_email": customer.canonical_email if matched else None,
            "created_at": cal.iso_seconds(created_at),
            "updated_at": cal.iso_seconds(_moment_between(rng, created_at, cal.AS_OF)),
        }
        contacts = [
            _contact(
                rng,
                next(contact_numbers),
                account_id,
                domain,
                country,
                created_at,
                customer if matched else None,
            )
        ]
        contacts += [
            _contact(rng, next(contact_numbers), account_id, domain, country, created_at, None)
            for _ in range(_EXTRA_CONTACTS.pick(rng.random()))
        ]
        opportunities = [
            _opportunity(rng, next(opportunity_numbers), account_id, name, country)
            for _ in range(_OPPORTUNITIES.pick(rng.random()))
        ]
        yield AccountRecords(account, contacts, opportunities)


def _contact(
    rng: random.Random,
    number: int,
    account_id: str,
    domain: str,
    country: Country,
    account_created_at: datetime,
    customer: Customer | None,
) -> Record:
    if customer is not None:
        first_name, last_name, email = customer.first_name, customer.last_name, customer.canonical_email
    else:
        first_name, last_name = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{ascii_word(first_name)}.{ascii_word(last_name)}@{domain}"
    digits = f"{rng.randrange(10**9):09d}"
    return {
        "contact_id": f"CON-{number:07d}",
        "account_id": account_id,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "phone": None if rng.random() < 0.1 else f"{country.phone_prefix} {digits[:3]} {digits[3:]}",
        "title": rng.choice(TITLES),
        "updated_at": cal.iso_seconds(_moment_between(rng, account_created_at, cal.AS_OF)),
    }


def _opportunity(
    rng: random.Random, number: int, account_id: str, account_name: str, country: Country
) -> Record:
    close_date = cal.FIRST_DAY + timedelta(days=rng.randrange(cal.DAYS))
    if (cal.LAST_DAY - close_date).days > 30:
        stage = _CLOSED_STAGES.pick(rng.random())
    else:
        stage = rng.choice(OPEN_STAGES)
    cents = round(math.exp(rng.uniform(math.log(500), math.log(250_000))) * 2) * 50  # whole 50 cents
    close_at = datetime(close_date.year, close_date.month, close_date.day, tzinfo=cal.START.tzinfo)
    updated_at = _moment_between(
        rng, close_at - timedelta(days=60), min(cal.AS_OF, close_at + timedelta(days=2))
    )
    return {
        "opportunity_id": f"OPP-{number:07d}",
        "account_id": account_id,
        "name": f"{account_name} - {rng.choice(CATEGORIES.items).name} {close_date.year}",
        "stage": stage,
        "amount": f"{cents // 100}.{cents % 100:02d}",
        "currency": country.currency,
        "close_date": close_date.isoformat(),
        "updated_at": cal.iso_seconds(updated_at),
    }


def _moment_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return cal.seconds_after(start, rng.random() * max(0.0, (end - start).total_seconds()))
