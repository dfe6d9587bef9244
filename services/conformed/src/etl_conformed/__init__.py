"""etl_conformed: the conformed zone (dbt project and runner)."""

from .cli import ConformedSettings, main, project_dir

__all__ = ["ConformedSettings", "main", "project_dir"]
