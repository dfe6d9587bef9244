"""etl_conformed: the conformed zone (dbt project and runner)."""

from .cli import ConformedSettings, main

__all__ = ["ConformedSettings", "main"]
