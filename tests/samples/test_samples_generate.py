"""``generate`` end to end on a real (embedded) PostgreSQL and real files."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from defusedxml import ElementTree

from etl_samples import GenerationSummary, generate
from etl_samples._commerce import Commerce
from etl_samples._events import EVENT_FIELDS, FORMATS, event_days
from etl_samples._scale import Scale

pytestmark = pytest.mark.integration

ORDERS = 300
NAMESPACE = "urn:example:web-events"
TABLES = {
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_lines": "order_id, line_number",
}


@dataclass
class Generated:
    summary: GenerationSummary
    url: str


@pytest.fixture(scope="module")
def generated(db_server, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    url = db_server.create_database("samples")
    summary = generate(tmp_path_factory.mktemp("data"), url, orders=ORDERS, seed=42)
    return Generated(summary, url)


def file_checksums(sources: Path) -> dict[str, str]:
    return {
        path.relative_to(sources).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(sources.rglob("*"))
        if path.is_file()
    }


def table_checksums(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                f"select count(*), md5(coalesce(string_agg(t::text, '|' order by {key}), ''))"
                f" from oltp.{table} t"
            ).fetchone()
            for table, key in TABLES.items()
        }


def query(url: str, statement: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(statement).fetchall()


def test_same_seed_gives_identical_files_and_tables(db_server, tmp_path: Path) -> None:
    urls = [db_server.create_database("samples") for _ in range(3)]
    generate(tmp_path / "a", urls[0], orders=ORDERS, seed=42)
    generate(tmp_path / "b", urls[1], orders=ORDERS, seed=42)
    generate(tmp_path / "c", urls[2], orders=ORDERS, seed=7)
    first, second, other = (file_checksums(tmp_path / name / "sources") for name in "abc")
    assert first == second
    assert first.keys() == other.keys()  # same days and files...
    assert {k: v for k, v in first.items() if not k.startswith("fx/")} != {
        k: v for k, v in other.items() if not k.startswith("fx/")
    }  # ...different contents
    assert first["fx/eurofxref-hist.csv"] == other["fx/eurofxref-hist.csv"]
    assert table_checksums(urls[0]) == table_checksums(urls[1])
    assert table_checksums(urls[0]) != table_checksums(urls[2])


def test_counts_match_the_scale_and_the_database(generated: Generated) -> None:
    scale, counts = Scale(ORDERS), generated.summary.counts
    assert counts["customers"] == scale.customers
    assert counts["products"] == scale.products
    assert counts["orders"] == ORDERS
    assert counts["crm_accounts"] == scale.accounts
    assert counts["web_events"] == scale.web_events
    for table in TABLES:
        assert query(generated.url, f"select count(*) from oltp.{table}") == [(counts[table],)]


def test_referential_integrity_and_rules(generated: Generated) -> None:
    url = generated.url
    orphans = """
        select
            (select count(*) from oltp.orders o left join oltp.customers c using (customer_id)
              where c.customer_id is null),
            (select count(*) from oltp.order_lines l left join oltp.products p using (product_id)
              where p.product_id is null),
            (select count(*) from oltp.order_lines l left join oltp.orders o using (order_id)
              where o.order_id is null)
    """
    assert query(url, orphans) == [(0, 0, 0)]
    statuses = {status for (status,) in query(url, "select distinct status from oltp.orders")}
    assert statuses <= {"placed", "paid", "shipped", "delivered", "cancelled", "returned"}
    assert "delivered" in statuses and "cancelled" in statuses
    lines = query(
        url,
        """select min(n), max(n), count(*) from (
               select o.order_id, count(l.order_id) as n
               from oltp.orders o left join oltp.order_lines l using (order_id)
               group by o.order_id) per_order""",
    )
    assert lines[0][0] >= 1 and lines[0][1] <= 5 and lines[0][2] == ORDERS
    dates = query(url, "select min(order_date), max(order_date) from oltp.orders")[0]
    assert str(dates[0]) >= "2024-01-01" and str(dates[1]) <= "2025-12-31"
    constraints = query(
        url,
        """select count(*) from information_schema.table_constraints
           where table_schema = 'oltp' and constraint_type = 'FOREIGN KEY'""",
    )
    assert constraints == [(3,)]


def test_order_currencies_are_in_the_ecb_history(generated: Generated) -> None:
    header = generated.summary.fx_file.read_text().splitlines()[0].split(",")
    currencies = {
        currency for (currency,) in query(generated.url, "select distinct currency from oltp.orders")
    }
    assert currencies - {"EUR"} <= set(header)  # EUR is the ECB base currency


def test_crm_files(generated: Generated) -> None:
    crm = generated.summary.crm_dir
    accounts = [
        json.loads(line) for line in (crm / "accounts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    contacts = [
        json.loads(line) for line in (crm / "contacts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    opportunities = [json.loads(line) for line in (crm / "opportunities.jsonl").read_text().splitlines()]
    assert len(accounts) == generated.summary.counts["crm_accounts"]
    assert len(contacts) == generated.summary.counts["crm_contacts"]
    assert len(opportunities) == generated.summary.counts["crm_opportunities"]
    account_ids = {account["account_id"] for account in accounts}
    assert {contact["account_id"] for contact in contacts} <= account_ids
    assert {opportunity["account_id"] for opportunity in opportunities} <= account_ids
    emails = {email for (email,) in query(generated.url, "select lower(trim(email)) from oltp.customers")}
    matched = {account["customer_email"] for account in accounts if account["customer_email"]}
    assert matched and matched <= emails


def all_events(summary: GenerationSummary) -> Iterator[tuple[Path, dict[str, str]]]:
    """Every event of every file, values as strings ('' for null)."""
    folder = summary.web_events_dir
    for path in sorted((folder / "csv").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                yield path, row
    for path in sorted((folder / "jsonl").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            yield path, {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
    for path in sorted((folder / "xml").glob("*.xml")):
        for element in ElementTree.parse(path).getroot():
            row = {"event_id": element.get("id")}
            row.update({child.tag.split("}")[1]: child.text or "" for child in element})
            yield path, {field: row.get(field, "") for field in EVENT_FIELDS}


def expected_events() -> dict[str, dict[str, str]]:
    return {
        event["event_id"]: {k: "" if v is None else str(v) for k, v in event.items()}
        for day in event_days(Commerce(42, Scale(ORDERS)))
        for event in day.events
    }


def test_web_event_files_round_trip_without_duplicates(generated: Generated) -> None:
    expected = expected_events()
    read: dict[str, dict[str, str]] = {}
    for path, row in all_events(generated.summary):
        assert row["event_id"] not in read, f"duplicate event {row['event_id']}"
        assert list(row) == list(EVENT_FIELDS)
        assert path.name == f"events_{row['occurred_at'][:10]}.{path.parent.name}"
        read[row["event_id"]] = row
    assert read == expected
    assert len(read) == generated.summary.counts["web_events"]
    assert set(generated.summary.web_event_files_by_format) == set(FORMATS)
    assert all(count > 0 for count in generated.summary.web_event_files_by_format.values())


def test_csv_quoting_matters_and_round_trips(generated: Generated) -> None:
    paths = sorted((generated.summary.web_events_dir / "csv").glob("*.csv"))
    raw = paths[0].read_bytes()
    assert raw.startswith(
        b"event_id,occurred_at,customer_id,session_id,event_type,product_id,page_url,user_agent\r\n"
    )
    agents = set()
    for path in paths:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        assert all(len(row) == len(EVENT_FIELDS) for row in rows)
        agents |= {row[-1] for row in rows[1:]}
    assert any("," in agent for agent in agents)
    assert any('"' in agent for agent in agents)
    assert any('""' in path.read_text(encoding="utf-8") for path in paths)  # quotes doubled (RFC 4180)


def test_xml_has_the_namespace_and_escapes(generated: Generated) -> None:
    paths = sorted((generated.summary.web_events_dir / "xml").glob("*.xml"))
    assert paths
    for path in paths:
        root = ElementTree.parse(path).getroot()
        assert root.tag == f"{{{NAMESPACE}}}events"
        assert all(event.tag == f"{{{NAMESPACE}}}event" and event.get("id") for event in root)
        first = root[0]
        assert first[0].tag == f"{{{NAMESPACE}}}occurred_at"


def test_fx_history_is_the_ecb_file(generated: Generated) -> None:
    summary = generated.summary
    content = summary.fx_file.read_bytes()
    assert content.startswith(b"Date,")
    assert summary.fx_fallback_file.read_bytes() == content
    assert summary.fx_file.name == summary.fx_fallback_file.name == "eurofxref-hist.csv"
    header = content.split(b"\n", 1)[0].decode().split(",")
    assert {"USD", "GBP", "CHF", "JPY", "SEK"} <= set(header)
    assert len(content.splitlines()) > 6000  # daily since 1999


def test_summary_lists_every_file(generated: Generated) -> None:
    summary = generated.summary
    sources = summary.data_dir / "sources"
    on_disk = sorted(path for path in sources.rglob("*") if path.is_file())
    assert sorted(summary.files) == on_disk
    assert summary.counts["web_event_files"] == sum(summary.web_event_files_by_format.values())
    assert not [path for path in on_disk if path.name.endswith(".tmp")]


def test_rerun_is_idempotent(database_url: str, tmp_path: Path) -> None:
    first = generate(tmp_path, database_url, orders=ORDERS, seed=3)
    before = (file_checksums(tmp_path / "sources"), table_checksums(database_url))
    stray = tmp_path / "sources" / "web_events" / "csv" / "events_2019-01-01.csv"
    stray.write_text("left over\n")
    kept = tmp_path / "sources" / "other" / "keep.txt"  # folders the generator does not own stay
    kept.parent.mkdir(parents=True)
    kept.write_text("mine\n")
    second = generate(tmp_path, database_url, orders=ORDERS, seed=3)
    assert second.counts == first.counts
    assert not stray.exists() and kept.exists()
    kept.unlink()
    assert (file_checksums(tmp_path / "sources"), table_checksums(database_url)) == before


def test_a_smaller_rerun_replaces_everything(database_url: str, tmp_path: Path) -> None:
    generate(tmp_path, database_url, orders=ORDERS, seed=3)
    summary = generate(tmp_path, database_url, orders=40, seed=3)
    assert query(database_url, "select count(*) from oltp.orders") == [(40,)]
    assert summary.counts["web_events"] == 200
    assert len(list((tmp_path / "sources" / "web_events").rglob("*.*"))) == summary.counts["web_event_files"]
