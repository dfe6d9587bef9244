"""etl_semantic: the semantic zone (star schema for Qlik, aggregates, exports)."""

from .cli import SemanticSettings, main

__all__ = ["SemanticSettings", "main"]
