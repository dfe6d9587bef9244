"""``freshness_sla_hours`` in the sources file: on the source, overridable per entity, validated > 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl_shared import ConfigurationError
from etl_staging._config import load_sources
from etl_staging.cli import bundled_sources_file

SOURCES = """
sources:
  - name: shop
    kind: database
    freshness_sla_hours: 24
    connection: {url_env: SHOP_URL}
    entities:
      - {name: customers, table: shop.customers}
      - {name: orders, table: shop.orders, freshness_sla_hours: 2}
  - name: drops
    kind: file
    entities:
      - name: events
        files: [{path: "{data_dir}/*.csv", format: csv}]
      - name: clicks
        freshness_sla_hours: 0.5
        files: [{path: "{data_dir}/*.jsonl", format: jsonl}]
  - name: crm
    kind: rest
    freshness_sla_hours: 12
    connection: {base_url: "http://127.0.0.1:9"}
    entities:
      - {name: accounts, path: /accounts, freshness_sla_hours: 6}
      - {name: contacts, path: /contacts}
  - name: ads
    kind: rest_async
    connection: {base_url: "http://127.0.0.1:9"}
    entities:
      - name: spend
        path: /spend/{day}
        freshness_sla_hours: 30
        fan_out: {type: dates, name: day, start: today-2d, end: today}
"""


def _load(tmp_path: Path, text: str = SOURCES) -> object:
    path = tmp_path / "sources.yml"
    path.write_text(text, encoding="utf-8")
    return load_sources(path)


def test_the_entity_overrides_the_source(tmp_path: Path) -> None:
    sources = _load(tmp_path)
    found = {
        (s.name, e.name): s.effective_freshness_sla_hours(e.name)
        for s in sources.sources  # type: ignore[attr-defined]
        for e in s.entities
    }
    assert found == {
        ("shop", "customers"): 24,
        ("shop", "orders"): 2,
        ("drops", "events"): None,
        ("drops", "clicks"): 0.5,
        ("crm", "accounts"): 6,
        ("crm", "contacts"): 12,
        ("ads", "spend"): 30,
    }
    with pytest.raises(ConfigurationError, match="no entity 'nope'"):
        sources.sources[0].effective_freshness_sla_hours("nope")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("freshness_sla_hours: 24", "freshness_sla_hours: 0"),
        ("freshness_sla_hours: 2}", "freshness_sla_hours: -1}"),
        ("freshness_sla_hours: 6}", "freshness_sla_hours: soon}"),
    ],
)
def test_a_freshness_sla_must_be_a_positive_number(tmp_path: Path, old: str, new: str) -> None:
    with pytest.raises(ConfigurationError, match="freshness_sla_hours"):
        _load(tmp_path, SOURCES.replace(old, new))


def test_every_demo_source_entity_has_an_sla() -> None:
    sources = load_sources(bundled_sources_file())
    for source in sources.sources:
        for entity in source.entities:
            hours = source.effective_freshness_sla_hours(entity.name)
            assert hours is not None and 1 <= hours <= 72, (source.name, entity.name)
