"""etl_pipeline: the developer umbrella command `etl` (Control-M runs the zones in production)."""

from .cli import main, run_pipeline

__all__ = ["main", "run_pipeline"]
