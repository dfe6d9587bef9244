"""``etl-conformed``: build the conformed zone (dbt models and data-quality tests)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from etl_shared import DbtZoneSettings, dbt_zone_main

ZONE = "conformed"


class ConformedSettings(DbtZoneSettings):
    """Settings of the conformed job (see docs/configuration.md)."""


def project_dir() -> Path:
    return Path(str(resources.files("etl_conformed") / "dbt"))


def main(argv: Sequence[str] | None = None) -> int:
    return dbt_zone_main(
        ZONE,
        project_dir(),
        ConformedSettings,
        argv,
        description="Conformed zone: dbt build with data quality.",
    )
