"""etl_semantic: the semantic zone (star schema for Qlik, aggregates, exports)."""

from .cli import SemanticSettings, main, project_dir

__all__ = ["SemanticSettings", "main", "project_dir"]
