"""``etl-semantic``: build the semantic zone (star schema, aggregates, exports)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from etl_shared import DbtZoneSettings, dbt_zone_main

ZONE = "semantic"


class SemanticSettings(DbtZoneSettings):
    """Settings of the semantic job (see docs/configuration.md)."""


def project_dir() -> Path:
    return Path(str(resources.files("etl_semantic") / "dbt"))


def main(argv: Sequence[str] | None = None) -> int:
    return dbt_zone_main(
        ZONE, project_dir(), SemanticSettings, argv, description="Semantic zone: star schema for Qlik."
    )
