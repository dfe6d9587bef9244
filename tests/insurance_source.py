"""The insurance team's source database (tests/domains/insurance): three tables with composite keys,
char(n) codes, numeric(15, 2) money and dates from the 1950s on; and a change set of updates, hard
deletes and inserts with earlier dates."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import psycopg

REGIONS = {"AB1": "N", "AB2": "N", "CD10": "SW", "EF3": "SE", "GH40": "MW"}
SCHEMA = """
create schema ins;
create table ins.branches (
    branch_code char(4) primary key, branch_name varchar(40) not null, region char(2) not null
);
create table ins.policies (
    branch_code char(4) not null, policy_no integer not null, holder char(20) not null,
    start_date date not null, premium numeric(15, 2) not null, updated_at timestamptz not null,
    primary key (branch_code, policy_no)
);
create table ins.claims (
    branch_code char(4) not null, policy_no integer not null, claim_no integer not null,
    claim_date date not null, amount numeric(15, 2) not null, updated_at timestamptz not null,
    primary key (branch_code, policy_no, claim_no)
);
"""


def load_source(url: str) -> None:
    rng = random.Random(42)
    with psycopg.connect(url) as conn:
        conn.execute(SCHEMA)  # type: ignore[arg-type]
        for code, region in REGIONS.items():
            conn.execute("insert into ins.branches values (%s, %s, %s)", (code, f"Branch {code}", region))
        for number in range(1, 161):
            code = list(REGIONS)[number % len(REGIONS)]
            start = date(1968, 1, 1) + timedelta(days=rng.randrange(0, 12000))
            premium = Decimal(rng.randrange(1000, 10_000_000)) / 100
            if number == 7:
                premium = Decimal("9999999999999.99")  # the largest numeric(15, 2)
            conn.execute(
                "insert into ins.policies values (%s, %s, %s, %s, %s, '2020-01-01T00:00:00Z')",
                (code, number, f"Holder {number}", start, premium),
            )
            for claim_no in range(1, rng.randrange(1, 6)):
                claim_date = start + timedelta(days=rng.randrange(0, 4000))
                amount = Decimal(rng.randrange(1, 50_000_000)) / 100
                conn.execute(
                    "insert into ins.claims values (%s, %s, %s, %s, %s, '2020-01-01T00:00:00Z')",
                    (code, number, claim_no, claim_date, amount),
                )


def change_source(url: str) -> None:
    """Updates, hard deletes and inserts with dates before any seen so far."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "update ins.policies set premium = premium + 100.01, updated_at = now() where policy_no % 40 = 3"
        )
        conn.execute("update ins.claims set amount = amount * 2, updated_at = now() where policy_no % 50 = 1")
        conn.execute("delete from ins.claims where policy_no % 30 = 2 and claim_no = 1")
        conn.execute("delete from ins.claims where branch_code = 'AB1' and policy_no = 5")
        conn.execute("delete from ins.policies where branch_code = 'AB1' and policy_no = 5")
        conn.execute(
            "update ins.branches set branch_name = 'Branch CD10 (merged)' where branch_code = 'CD10'"
        )
        conn.execute(
            "insert into ins.policies values ('GH40', 900, 'New holder', '1955-03-01', 12.30, now())"
        )
        for claim_no in range(1, 6):
            conn.execute(
                "insert into ins.claims values ('GH40', 900, %s, %s, %s, now())",
                (claim_no, date(1955, 3, claim_no), Decimal("0.01") * claim_no),
            )
